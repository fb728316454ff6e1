/*
 * migwatch.c - start a migration on a VMM and follow it to its end.
 *
 * The VMM's migrate command returns at once; the migration then reports
 * through MIGRATION / MIGRATION_PASS events and query-migrate.  We wait for
 * events in slices of at most 100 ms and ask query-migrate every 200 ms (the
 * progress line), until a MIGRATION event with a terminal status arrives:
 * its "stats" are the result (a source whose migration completed exits right
 * after sending it, so there may be nobody left to ask).
 *
 * Ctrl-C (SIGINT, and SIGTERM) is read from a signalfd, never a handler: the
 * first one sends migrate_cancel and we keep waiting for the outcome (the
 * VMM decides: too late once GO was sent); later ones only say so.
 */
#define _GNU_SOURCE
#include "cli/migwatch.h"
#include "cli/cli.h"
#include "control/control.h"
#include "migration/ramcodec.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 200		/* query-migrate period */
#define EVENT_SLICE_MS 100	/* longest wait before looking at signals */
#define MIB (1024.0 * 1024.0)
#define PAGE 4096.0

struct watch {
	const struct migwatch_opts *o;
	struct ctl_client *c;
	char name[80];
	bool tty;		/* a progress line on stdout */
	bool line_shown;	/* it is on screen now (needs clearing) */
	int sigfd;
	int interrupts;
	char status[32];	/* last status seen (event or query) */
	json_t *last;		/* last query-migrate answer */
	double t_prev;		/* throughput estimate between polls */
	json_int_t bytes_prev;
	double rate;		/* bytes/s, smoothed */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static json_int_t jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? json_integer_value(v) :
	       json_is_real(v) ? (json_int_t)json_real_value(v) : 0;
}

static double jnum(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* Where the CLI stops following: the end, or a paused post-copy (which
 * waits for an operator: 'kvmove migrate --resume'). */
static bool is_terminal(const char *st)
{
	return !strcmp(st, "completed") || !strcmp(st, "failed") ||
	       !strcmp(st, "cancelled") || !strcmp(st, "indeterminate") ||
	       !strcmp(st, "postcopy-paused");
}

static void print_json_line(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s) {
		printf("%s\n", s);
		free(s);
	}
	fflush(stdout);
}

static void clear_line(struct watch *w)
{
	if (w->line_shown) {
		fputs("\r\033[K", stdout);
		fflush(stdout);
		w->line_shown = false;
	}
}

/* Human messages on stderr, never through the progress line. */
static void say(struct watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct watch *w, const char *fmt, ...)
{
	va_list ap;

	clear_line(w);
	fprintf(stderr, "kvmove %s: %s: ", w->o->verb, w->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int term_cols(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* Percent of RAM handled: the first pass's progress, then what is left. */
static int percent(json_t *q)
{
	json_t *ram = json_object_get(q, "ram");
	double total = (double)jint(ram, "total"), pct;

	if (!strcmp(jstr(q, "status"), "completed"))
		return 100;
	if (total <= 0)
		return 0;
	if (jint(ram, "dirty-sync-count") == 0)
		pct = (double)(jint(ram, "normal") + jint(ram, "duplicate")) * PAGE * 100 / total;
	else
		pct = 100 - (double)jint(ram, "remaining") * 100 / total;
	if (pct < 0)
		pct = 0;
	return pct > 99 ? 99 : (int)pct;
}

static void show_progress(struct watch *w, json_t *q)
{
	json_t *ram = json_object_get(q, "ram");
	char line[512];
	int n, cols = term_cols();
	json_t *thr = json_object_get(q, "cpu-throttle-percentage");
	json_int_t syncs = jint(ram, "dirty-sync-count");

	const char *st = jstr(q, "status");

	if (!strcmp(st, "none"))	/* asked before the migration thread began */
		st = "setup";
	n = snprintf(line, sizeof(line), "%s: %s %3d%%  %.1f/%.1f MiB  %.1f MiB/s", w->name,
		     st, percent(q), (double)jint(ram, "transferred") / MIB,
		     (double)jint(ram, "total") / MIB, w->rate / MIB);
	/* The round in progress: 1 is the first full pass; dirty rate and
	 * expected downtime exist once a round has ended. */
	if (w->o->kind == MIGWATCH_LIVE && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "  round %lld",
			      (long long)jint(ram, "dirty-sync-count") + 1);
	if (w->o->kind == MIGWATCH_LIVE && syncs && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "  dirty %.1f MiB/s",
			      jnum(ram, "dirty-pages-rate") * PAGE / MIB);
	if (syncs && json_object_get(q, "expected-downtime") && n > 0 &&
	    (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "  expected downtime %lld ms",
			      (long long)jint(q, "expected-downtime"));
	if (thr && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "  throttle %lld%%",
			      (long long)json_integer_value(thr));
	if (!strncmp(st, "postcopy", 8) && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "  %.1f MiB still at the "
			      "source, %lld pages asked for", (double)jint(ram, "remaining") / MIB,
			      (long long)jint(ram, "postcopy-requests"));
	if (n < 0)
		return;
	if (n >= cols)		/* never wrap: \r could not take it back */
		line[cols - 1] = '\0';
	printf("\r\033[K%s", line);
	fflush(stdout);
	w->line_shown = true;
}

/* Polls may see a state before its event arrives: only events print. */
static void note_status(struct watch *w, const char *st, bool from_event)
{
	if (!*st || !strcmp(st, "none"))
		return;	/* asked before the migration thread began */
	snprintf(w->status, sizeof(w->status), "%s", st);
	/* Not a terminal and not --json: one line per change, for logs. */
	if (from_event && !w->tty && !w->o->json && !is_terminal(st))
		printf("%s: %s\n", w->name, st);
}

static void poll_query(struct watch *w)
{
	struct kv_err err;
	json_t *q = NULL;
	double t = now_s();

	if (ctl_client_execute(w->c, "query-migrate", NULL, &q, NULL, &err) < 0 ||
	    !json_is_object(q)) {
		json_decref(q);
		return;		/* a source that just completed is gone: events tell */
	}
	{
		json_int_t b = jint(json_object_get(q, "ram"), "transferred");
		if (w->t_prev > 0 && t > w->t_prev && b >= w->bytes_prev) {
			double r = (double)(b - w->bytes_prev) / (t - w->t_prev);
			w->rate = w->rate > 0 ? 0.5 * w->rate + 0.5 * r : r;
		}
		w->t_prev = t;
		w->bytes_prev = b;
	}
	json_decref(w->last);
	w->last = q;
	note_status(w, jstr(q, "status"), false);
	if (w->o->json) {
		json_t *p = json_pack("{s:s, s:O}", "event", "progress", "data", q);
		print_json_line(p);
		json_decref(p);
	} else if (w->tty && !is_terminal(jstr(q, "status"))) {
		show_progress(w, q);
	}
}

/* One event; returns its stats (new reference) if it ends the migration. */
static json_t *handle_event(struct watch *w, json_t *ev)
{
	const char *name = jstr(ev, "event");
	json_t *data = json_object_get(ev, "data");

	if (!strcmp(name, "MIGRATION")) {
		const char *st = jstr(data, "status");
		if (w->o->json)
			print_json_line(ev);
		note_status(w, st, true);
		if (is_terminal(st)) {
			json_t *stats = json_object_get(data, "stats");
			if (json_is_object(stats))
				return json_incref(stats);
			/* an older VMM without stats: fall back to the last answer */
			stats = w->last ? json_deep_copy(w->last) : json_object();
			json_object_set_new(stats, "status", json_string(st));
			return stats;
		}
	} else if (!strcmp(name, "MIGRATION_PASS")) {
		if (w->o->json)
			print_json_line(ev);
		else if (!w->tty)
			printf("%s: round %lld: %.1f MiB dirty, expected downtime %.0f ms, "
			       "dirty rate %.1f MiB/s%s\n", w->name, (long long)jint(data, "pass"),
			       (double)jint(data, "remaining") / MIB,
			       jnum(data, "expected-downtime"),
			       jnum(data, "dirty-pages-rate") * PAGE / MIB,
			       jint(data, "cpu-throttle-percentage") ? ", vCPUs throttled" : "");
	}
	return NULL;
}

static void handle_signals(struct watch *w)
{
	struct signalfd_siginfo si;
	struct kv_err err;

	while (read(w->sigfd, &si, sizeof(si)) == sizeof(si)) {
		int rc;

		if (++w->interrupts > 1) {
			say(w, "still waiting for the migration to end (status %s); the VMM "
			    "decides when it is safe", *w->status ? w->status : "unknown");
			continue;
		}
		rc = ctl_client_execute(w->c, "migrate_cancel", NULL, NULL, NULL, &err);
		if (rc == 0)
			say(w, "cancelling; waiting for the VM to run on the source again");
		else
			say(w, "cannot cancel: %s; waiting for the outcome", err.msg);
	}
}

static void print_refusal(struct watch *w, json_t *stats)
{
	json_t *pf = json_object_get(stats, "x-preflight"), *f;
	size_t i;

	say(w, "the destination refused the VM at preflight; nothing was done, the VM "
	    "keeps running on the source");
	json_array_foreach(json_object_get(pf, "failures"), i, f)
		fprintf(stderr, "  [%s] %s\n", jstr(f, "id"), jstr(f, "reason"));
	if (!json_array_size(json_object_get(pf, "failures")))
		fprintf(stderr, "  %s\n", jstr(stats, "error-desc"));
}

/* x-switchover's marks (ms after the pause) as each step's own share */
/* "compression  lz4 1234 pages, zstd 0: 38.1 MiB -> 9.6 MiB (auto)", or
 * why nothing was compressed */
static void print_compression(json_t *c)
{
	json_int_t lz4 = jint(c, "x-lz4-pages"), zstd = jint(c, "x-zstd-pages");
	const char *mode = json_string_value(json_object_get(c, "x-mode"));

	if (!json_is_object(c) || !mode)
		return;
	if (!strcmp(mode, "off")) {
		printf("  compression  off\n");
		return;
	}
	if (!lz4 && !zstd) {
		printf("  compression  %s: no page was worth it (the link kept up, or the pages "
		       "did not compress)\n", mode);
		return;
	}
	printf("  compression  %s: %lld pages lz4, %lld zstd, %lld raw; page data %.1f MiB on the "
	       "wire, %.2fx smaller\n", mode, (long long)lz4, (long long)zstd,
	       (long long)jint(c, "x-raw-pages"), (double)jint(c, "compressed-size") / MIB,
	       json_number_value(json_object_get(c, "compression-rate")));
}

static void print_switchover(json_t *sw)
{
	static const char *const steps[][2] = {
		{ "paused", "pause" }, { "last-pages", "last pages" }, { "state-sent", "state" },
		{ "ready", "destination load" }, { "released", "locks+GO" },
		{ "resumed", "resume" } };
	double prev = 0;
	const char *sep = "";

	printf("  switchover  ");
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		json_t *v = json_object_get(sw, steps[i][0]);
		if (!json_is_number(v))
			continue;
		printf("%s %s %.1f", sep, steps[i][1], json_number_value(v) - prev);
		prev = json_number_value(v);
		sep = ",";
	}
	printf(" ms\n");
}

static void print_stats(struct watch *w, json_t *s)
{
	json_t *ram = json_object_get(s, "ram");
	double total_ms = (double)jint(s, "total-time");
	double sent = (double)jint(ram, "transferred");

	printf("  total time   %.2f s (setup %lld ms)\n", total_ms / 1e3,
	       (long long)jint(s, "setup-time"));
	if (json_object_get(s, "downtime")) {
		json_int_t d = jint(s, "downtime");
		if (d < 0)
			printf("  downtime     unknown (the destination's confirmation was lost)\n");
		else if (w->o->kind == MIGWATCH_LIVE && !w->o->via)
			printf("  downtime     %lld ms (target %lld ms)\n", (long long)d,
			       (long long)jint(s, "x-downtime-target"));
		else if (w->o->kind == MIGWATCH_LIVE)
			printf("  downtime     %lld ms (stopped for the save and the restore)\n",
			       (long long)d);
		else
			printf("  downtime     %lld ms until the file was safe; the VM stays "
			       "stopped until it is restored\n", (long long)d);
	}
	if (json_is_object(json_object_get(s, "x-switchover")))
		print_switchover(json_object_get(s, "x-switchover"));
	if (json_is_true(json_object_get(s, "x-local"))) {
		/* same host: the pages were handed over, not sent */
		printf("  handed over  RAM %.0f MiB as a file descriptor, TAPs likewise; %.1f KiB "
		       "of vCPU and device state over the socket\n",
		       (double)jint(ram, "total") / MIB, sent / 1024);
		return;
	}
	printf("  %s  %.1f MiB (RAM %.0f MiB: %lld pages with data, %lld zero pages)\n",
	       w->o->kind == MIGWATCH_LIVE ? "transferred" : "written    ", sent / MIB,
	       (double)jint(ram, "total") / MIB, (long long)jint(ram, "normal"),
	       (long long)jint(ram, "duplicate"));
	print_compression(json_object_get(s, "compression"));
	if (w->o->kind == MIGWATCH_LIVE && !w->o->via)
		printf("  rounds       %lld\n", (long long)jint(ram, "dirty-sync-count"));
	if (total_ms > 0)
		printf("  throughput   %.1f MiB/s\n", sent / MIB / (total_ms / 1e3));
	if (json_object_get(s, "cpu-throttle-percentage"))
		printf("  throttle     %lld%% of vCPU time at the end\n",
		       (long long)jint(s, "cpu-throttle-percentage"));
	if (json_object_get(s, "x-postcopy-time")) {
		json_t *d = json_object_get(s, "x-postcopy-destination");
		printf("  post-copy    %lld ms after the VM resumed there; %lld pages asked for\n",
		       (long long)jint(s, "x-postcopy-time"),
		       (long long)jint(ram, "postcopy-requests"));
		if (d)
			printf("  page faults  %lld; on-demand page latency p50 %lld us, p99 %lld "
			       "us\n", (long long)jint(d, "faults"),
			       (long long)jint(d, "fault-latency-p50-us"),
			       (long long)jint(d, "fault-latency-p99-us"));
	}
}

/* --check-only: what each policy would do, from the sample. */
static void print_prediction(json_t *s)
{
	json_t *p = json_object_get(s, "x-prediction"), *pol, *o;
	const char *name;

	if (!p)
		return;
	printf("  sampled      guest dirties %.1f MiB/s (working set %.0f MiB, hot %.1f "
	       "MiB); link %.1f MiB/s\n", jnum(p, "dirty-rate") / MIB,
	       jnum(p, "working-set") / MIB, jnum(p, "hot-set") / MIB,
	       jnum(p, "bandwidth") / MIB);
	pol = json_object_get(p, "policies");
	json_object_foreach(pol, name, o) {
		if (!json_is_true(json_object_get(o, "converges")))
			printf("  %-14s would not converge (gives up after %lld rounds)\n", name,
			       (long long)jint(o, "rounds"));
		else
			printf("  %-14s %.1f s total, %lld ms downtime, %lld rounds%s\n", name,
			       (double)jint(o, "total-time") / 1e3, (long long)jint(o, "downtime"),
			       (long long)jint(o, "rounds"),
			       jint(o, "throttle") ? " (throttled)" : "");
	}
	printf("  choice       %s (what --policy auto would use)\n", jstr(p, "choice"));
}

/* The summary, and the exit status for the outcome. */
static int finish(struct watch *w, json_t *s)
{
	const char *st = jstr(s, "status"), *id = jstr(s, "x-error-id");
	bool check_only = json_is_true(json_object_get(s, "x-check-only"));
	int code;

	if (!strcmp(st, "completed"))
		code = KV_EXIT_OK;
	else if (!strcmp(st, "cancelled"))
		code = KV_EXIT_CANCELLED;
	else if (!strcmp(st, "indeterminate"))
		code = KV_EXIT_INDETERMINATE;
	else if (!strcmp(st, "postcopy-paused"))
		code = KV_EXIT_POSTCOPY_PAUSED;
	else if (!strcmp(id, "preflight"))
		code = KV_EXIT_REFUSED;
	else if (!strcmp(id, "unreachable"))
		code = KV_EXIT_UNREACHABLE;
	else
		code = KV_EXIT_FAIL;

	clear_line(w);
	if (w->o->json) {
		print_json_line(s);
		if (code == KV_EXIT_INDETERMINATE || code == KV_EXIT_POSTCOPY_PAUSED)
			/* what to do must be seen */
			fprintf(stderr, "kvmove %s: %s\n", w->o->verb, jstr(s, "error-desc"));
		return code;
	}
	if (code == KV_EXIT_OK && check_only) {
		printf("%s: preflight passed: %s can take this VM (nothing was moved)\n",
		       w->name, w->o->target);
		print_prediction(s);
		return code;
	}
	switch (code) {
	case KV_EXIT_OK:
		if (w->o->kind == MIGWATCH_LIVE)
			printf("%s: migrated to %s\n", w->name, w->o->target);
		else
			printf("%s: saved to %s; the VM is stopped (restore it with 'kvmove run "
			       "--restore %s')\n", w->name, w->o->target, w->o->target);
		break;
	case KV_EXIT_REFUSED:
		print_refusal(w, s);
		return code;
	case KV_EXIT_UNREACHABLE:
		say(w, "cannot reach the destination: %s; the VM keeps running on the source",
		    jstr(s, "error-desc"));
		return code;
	case KV_EXIT_CANCELLED:
		say(w, "%s cancelled; the VM keeps running on the source",
		    w->o->kind == MIGWATCH_LIVE ? "migration" : "save");
		printf("%s: cancelled\n", w->name);
		break;
	case KV_EXIT_INDETERMINATE:
		say(w, "migration outcome INDETERMINATE: %s", jstr(s, "error-desc"));
		printf("%s: indeterminate\n", w->name);
		break;
	case KV_EXIT_POSTCOPY_PAUSED:
		say(w, "%s", jstr(s, "error-desc"));
		printf("%s: postcopy-paused\n", w->name);
		break;
	default:
		if (!strcmp(id, "shutdown"))	/* the VMM quit with its VM */
			say(w, "%s ended: %s", w->o->kind == MIGWATCH_LIVE ? "migration" : "save",
			    jstr(s, "error-desc"));
		else
			say(w, "%s failed (%s): %s; the VM keeps running on the source",
			    w->o->kind == MIGWATCH_LIVE ? "migration" : "save", *id ? id : "?",
			    jstr(s, "error-desc"));
		printf("%s: failed\n", w->name);
		break;
	}
	print_stats(w, s);
	return code;
}

static int block_signals(struct watch *w)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	w->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return w->sigfd < 0 ? -errno : 0;
}

/* Follow the migration until its terminal event; *result = its stats. */
static int follow(struct watch *w, json_t **result)
{
	double next_poll = now_s();

	*result = NULL;
	for (;;) {
		struct kv_err err;
		json_t *ev = NULL;
		double t = now_s();
		int wait_ms, rc;

		handle_signals(w);
		if (t >= next_poll) {
			poll_query(w);
			next_poll = t + POLL_MS / 1e3;
		}
		wait_ms = (int)((next_poll - now_s()) * 1e3);
		if (wait_ms > EVENT_SLICE_MS)
			wait_ms = EVENT_SLICE_MS;
		if (wait_ms < 0)
			wait_ms = 0;
		rc = ctl_client_next_event(w->c, wait_ms, &ev, &err);
		if (rc == -ETIMEDOUT)
			continue;
		if (rc < 0) {
			/* Gone without a last word: a crash, or a lost connection. */
			if (w->last && is_terminal(jstr(w->last, "status"))) {
				*result = json_incref(w->last);
				return 0;
			}
			say(w, "lost the VMM's control socket before the migration ended (%s; "
			    "last status %s). Check where the VM runs: 'kvmove status' on the "
			    "source and on the destination", err.msg,
			    *w->status ? w->status : "unknown");
			return -ECONNRESET;
		}
		*result = handle_event(w, ev);
		json_decref(ev);
		if (*result)
			return 0;
	}
}

int migwatch_run(const struct migwatch_opts *o)
{
	struct watch w = { .o = o, .sigfd = -1 };
	struct kv_err err;
	json_t *vm = NULL, *result = NULL;
	int rc, code;

	snprintf(w.name, sizeof(w.name), "%s", o->control);
	w.tty = !o->json && isatty(STDOUT_FILENO);
	rc = ctl_client_connect(&w.c, o->control, o->timeout_ms, &err);
	if (rc < 0) {
		fprintf(stderr, "kvmove %s: cannot reach the VMM: %s\n", o->verb, err.msg);
		return KV_EXIT_UNREACHABLE;
	}
	rc = ctl_client_execute(w.c, "query-vm", NULL, &vm, NULL, &err);
	if (rc == 0 && *jstr(vm, "name"))
		snprintf(w.name, sizeof(w.name), "%s", jstr(vm, "name"));
	json_decref(vm);
	if (rc < 0 && rc != -EREMOTEIO) {
		fprintf(stderr, "kvmove %s: %s\n", o->verb, err.msg);
		code = KV_EXIT_UNREACHABLE;
		goto out;
	}

	/* From here on, Ctrl-C means "cancel", not "die". */
	if ((rc = block_signals(&w)) < 0) {
		fprintf(stderr, "kvmove %s: signalfd: %s\n", o->verb, strerror(-rc));
		code = KV_EXIT_FAIL;
		goto out;
	}
	rc = ctl_client_execute(w.c, "migrate", o->args, NULL, NULL, &err);
	if (rc < 0) {
		if (o->json) {
			json_t *e = json_pack("{s:{s:s}}", "error", "desc", err.msg);
			print_json_line(e);
			json_decref(e);
		}
		fprintf(stderr, "kvmove %s: %s: %s\n", o->verb, w.name, err.msg);
		code = rc == -EREMOTEIO ? KV_EXIT_FAIL : KV_EXIT_UNREACHABLE;
		goto out;
	}
	if (!o->json && !w.tty)
		printf("%s: %s to %s\n", w.name, o->kind == MIGWATCH_LIVE ?
		       (json_is_true(json_object_get(o->args, "check-only")) ?
			"checking a migration" : "migrating") : "saving", o->target);

	if (follow(&w, &result) < 0) {
		code = KV_EXIT_INDETERMINATE;
		goto out;
	}
	code = finish(&w, result);
	/* The VM runs elsewhere (or in the file): the source VMM waits in
	 * postmigrate for a quit.  Send it, and wait until the VMM is gone, so
	 * that a script may reuse its socket, lock or memory next. */
	if (code == KV_EXIT_OK && !json_is_true(json_object_get(result, "x-check-only")) &&
	    !o->keep_source) {
		/* an --exit-after-migration VMM may be gone already: fine */
		ctl_client_execute(w.c, "quit", NULL, NULL, NULL, &err);
		if (ctl_client_wait_closed(w.c, o->timeout_ms, &err) < 0)
			fprintf(stderr, "kvmove %s: warning: %s\n", o->verb, err.msg);
	}
out:
	clear_line(&w);
	fflush(stdout);
	json_decref(result);
	json_decref(w.last);
	ctl_client_close(w.c);
	if (w.sigfd >= 0)
		close(w.sigfd);
	return code;
}

int migwatch_compress_arg(const char *verb, const char *mode, json_t *args)
{
	enum ram_compress m;
	struct kv_err e = { "" };

	if (ram_compress_parse(mode, &m, &e)) {
		fprintf(stderr, "kvmove %s: --compress: %s\n", verb, e.msg);
		return -1;
	}
	json_object_set_new(args, "compress", json_string(ram_compress_name(m)));
	return 0;
}

int migwatch_parse_timeout(const char *s)
{
	char *end;
	double sec;
	int ms;

	errno = 0;
	sec = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(sec) || sec <= 0 || sec > 86400)
		return -1;
	ms = (int)(sec * 1000);
	return ms < 1 ? 1 : ms;
}
