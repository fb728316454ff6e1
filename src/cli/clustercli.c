/*
 * clustercli.c - what the cluster verbs share (clustercli.h).
 */
#define _GNU_SOURCE
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

/* Reads: quick per request, a little patience to connect. */
#define CCLI_TIMEOUT_MS 3000
#define CCLI_CONNECT_MS 1000

void ccli_msg(const struct ccli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kvmove %s: ", c->verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int ccli_common_opt(struct ccli *c, int ch, const char *arg)
{
	switch (ch) {
	case 'e':
		c->etcd_opt = arg;
		return 1;
	case 'j':
		c->json = true;
		return 1;
	default:
		return 0;
	}
}

int ccli_bad_opt(const struct ccli *c, int ch, char **argv)
{
	if (ch == ':')
		ccli_msg(c, "option '%s' needs a value", argv[optind - 1]);
	else
		ccli_msg(c, "unknown option '%s'", argv[optind - 1]);
	fprintf(stderr, "Try 'kvmove %s --help'.\n", c->verb);
	return KV_EXIT_USAGE;
}

int ccli_parse_common(struct ccli *c, int argc, char **argv, void (*usage)(FILE *))
{
	static const struct option longopts[] = { CCLI_LONGOPTS, { NULL, 0, NULL, 0 } };
	int ch;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(c, ch, optarg))
			continue;
		if (ch == 'h') {
			usage(stdout);
			return -1;
		}
		return ccli_bad_opt(c, ch, argv);
	}
	return 0;
}

int ccli_parse_simple(struct ccli *c, int argc, char **argv, void (*usage)(FILE *),
		      enum ccli_arg arg, const char **name)
{
	int status = ccli_parse_common(c, argc, argv, usage);

	if (status)
		return status;
	if (optind != argc - (arg != CCLI_ARG_NONE ? 1 : 0)) {
		ccli_msg(c, "%s", arg != CCLI_ARG_NONE && optind == argc ?
			 (arg == CCLI_ARG_VM ? "which VM? (NAME)" : "which node? (NODE)") :
			 "unexpected argument");
		fprintf(stderr, "Try 'kvmove %s --help'.\n", c->verb);
		return KV_EXIT_USAGE;
	}
	if (arg == CCLI_ARG_NONE)
		return 0;
	*name = argv[optind];
	return arg == CCLI_ARG_VM ? ccli_check_vm_name(c, *name) : ccli_check_node_name(c, *name);
}

int ccli_vm_name_arg(const struct ccli *c, int argc, char **argv, const char **name)
{
	if (optind != argc - 1) {
		ccli_msg(c, "%s", optind == argc ? "which VM? (NAME)" : "one NAME only");
		fprintf(stderr, "Try 'kvmove %s --help'.\n", c->verb);
		return KV_EXIT_USAGE;
	}
	*name = argv[optind];
	return ccli_check_vm_name(c, *name);
}

int ccli_open(struct ccli *c)
{
	struct store_options so = {
		.timeout_ms = CCLI_TIMEOUT_MS, .connect_timeout_ms = CCLI_CONNECT_MS,
	};
	struct kv_err err;
	int rc;

	rc = clusterconf_resolve(c->etcd_opt, &c->etcd, &err);
	if (rc) {
		ccli_msg(c, "%s", err.msg);
		return KV_EXIT_USAGE;
	}
	so.endpoints = c->etcd.endpoints;
	rc = store_open(&c->st, &so, &err);
	if (rc) {
		c->st = NULL;
		return ccli_store_fail(c, rc, &err, NULL);
	}
	return KV_EXIT_OK;
}

void ccli_close(struct ccli *c)
{
	if (c->st)
		store_close(c->st);
	c->st = NULL;
}

bool ccli_unreachable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
	       rc == -ENETUNREACH || rc == -ECONNRESET || rc == -EAGAIN ||
	       rc == -ECONNABORTED;
}

int ccli_store_fail(const struct ccli *c, int rc, const struct kv_err *err, const char *after)
{
	/* the store's messages name the endpoints already */
	bool named = !strncmp(err->msg, "etcd at ", 8);

	if (ccli_unreachable(rc)) {
		ccli_msg(c, "%s%s%s%s; %s", named ? "" : "etcd at ", named ? "" : c->etcd.endpoints,
			 named ? "" : ": ", err->msg, after ? after : "nothing was changed");
		if (c->etcd.source == CLUSTER_ETCD_DEFAULT)
			fprintf(stderr, "(no --etcd, $KVMOVE_ETCD or etcd= line in the cluster "
				"configuration: this is the embedded etcd of 'kvmove cluster "
				"init')\n");
		return KV_EXIT_UNREACHABLE;
	}
	ccli_msg(c, "%s%s%s%s", named ? "" : "etcd at ", named ? "" : c->etcd.endpoints,
		 named ? "" : ": ", err->msg);
	return KV_EXIT_FAIL;
}

static const struct store_kv *find_key(const struct store_list *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->kvs[i].key, key))
			return &l->kvs[i];
	return NULL;
}

int ccli_vm_keys(struct ccli *c, const char *vm, struct vm_keys *k)
{
	char prefix[64], key[80];
	struct kv_err err;
	int rc;

	memset(k, 0, sizeof(*k));
	snprintf(prefix, sizeof(prefix), "/kvmove/vms/%s/", vm);
	rc = store_list(c->st, prefix, &k->l, &err);
	if (rc)
		return ccli_store_fail(c, rc, &err, NULL);
	snprintf(key, sizeof(key), "%sspec", prefix);
	k->spec = find_key(&k->l, key);
	snprintf(key, sizeof(key), "%sowner", prefix);
	k->owner = find_key(&k->l, key);
	snprintf(key, sizeof(key), "%sstatus", prefix);
	k->status = find_key(&k->l, key);
	return KV_EXIT_OK;
}

void ccli_vm_keys_free(struct vm_keys *k)
{
	store_list_free(&k->l);
	memset(k, 0, sizeof(*k));
}

void ccli_text(const struct store_kv *kv, char *buf, size_t len)
{
	char tmp[256];
	size_t n = kv && kv->value ? kv->vlen : 0;

	if (n > sizeof(tmp) - 1)
		n = sizeof(tmp) - 1;
	if (n)
		memcpy(tmp, kv->value, n);
	tmp[n] = '\0';
	/* a value with a trailing newline (etcdctl put) means the same */
	tmp[strcspn(tmp, "\r\n")] = '\0';
	cluster_sanitize(buf, len, tmp);
}

void ccli_owner(const struct vm_keys *k, char *buf, size_t len)
{
	ccli_text(k->owner, buf, len);
}

int ccli_nodes(struct ccli *c, const char *vm, struct nodeset *ns)
{
	struct store_list nodes = { 0 }, cfgs = { 0 }, reach = { 0 };
	struct store_kv config = { 0 };
	struct kv_err err;
	char prefix[64];
	bool have_config = false;
	int rc, status = KV_EXIT_OK;

	memset(ns, 0, sizeof(*ns));
	if ((rc = store_list(c->st, "/kvmove/nodes/", &nodes, &err)) ||
	    (rc = store_list(c->st, "/kvmove/nodecfg/", &cfgs, &err)))
		goto fail;
	if (vm) {
		snprintf(prefix, sizeof(prefix), "/kvmove/reach/%s/", vm);
		if ((rc = store_list(c->st, prefix, &reach, &err)))
			goto fail;
	}
	rc = store_get(c->st, "/kvmove/config", &config, NULL, &err);
	if (rc && rc != -ENOENT)
		goto fail;
	have_config = rc == 0;
	rc = nodeset_build(ns, &nodes, &cfgs, vm ? &reach : NULL, vm,
			   have_config ? config.value : NULL, have_config ? config.vlen : 0, &err);
	if (rc) {
		ccli_msg(c, "%s", err.msg);
		status = KV_EXIT_FAIL;
	} else if (ns->ignored && !c->json) {
		ccli_msg(c, "warning: ignored %zu key%s with an invalid node name (e.g. %s)",
			 ns->ignored, ns->ignored == 1 ? "" : "s", ns->ignored_example);
	}
	goto out;
fail:
	status = ccli_store_fail(c, rc, &err, NULL);
out:
	if (have_config)
		store_kv_free(&config);
	store_list_free(&nodes);
	store_list_free(&cfgs);
	store_list_free(&reach);
	return status;
}

/* A name that is not one: 2, with what a name must be. */
static int bad_name(const struct ccli *c, const char *name, const char *what, int max,
		    const char *rule)
{
	char s[80];

	cluster_sanitize(s, sizeof(s), name);
	ccli_msg(c, "'%s' is not a %s name: 1 to %d %s", s, what, max, rule);
	return KV_EXIT_USAGE;
}

int ccli_check_vm_name(const struct ccli *c, const char *name)
{
	if (cluster_vm_name_ok(name))
		return KV_EXIT_OK;
	return bad_name(c, name, "VM", CLUSTER_VM_NAME_MAX,
			"characters, lowercase letters, digits and '-', not starting with '-'");
}

int ccli_check_node_name(const struct ccli *c, const char *name)
{
	if (cluster_node_name_ok(name))
		return KV_EXIT_OK;
	return bad_name(c, name, "node", CLUSTER_NODE_NAME_MAX,
			"letters, digits, '-', '.' or '_', starting with a letter or digit");
}

int ccli_parse_timeout(const struct ccli *c, const char *s, bool allow_zero, unsigned *ms)
{
	char *end;
	double sec;

	errno = 0;
	sec = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(sec) || sec < 0 || sec > 86400 ||
	    (sec == 0 && !allow_zero)) {
		ccli_msg(c, "--timeout: '%s' is not a number of seconds in %s86400]", s,
			 allow_zero ? "[0, " : "(0, ");
		return KV_EXIT_USAGE;
	}
	*ms = (unsigned)(sec * 1000);
	if (!*ms && sec > 0)
		*ms = 1;
	return KV_EXIT_OK;
}

int ccli_wait(struct ccli *c, const char *prefix, int64_t *rev, unsigned timeout_ms,
	      bool *changed, const char *after)
{
	double deadline = ccli_now() + timeout_ms / 1000.0;
	struct kv_err err;
	int64_t ev = 0;
	int rc;

	*changed = false;
	for (;;) {
		double left = deadline - ccli_now();

		if (left <= 0)
			return KV_EXIT_OK;
		rc = store_watch_wait(c->st, prefix, *rev, (unsigned)(left * 1000) + 1, &ev, &err);
		if (rc == 0) {
			*changed = true;
			if (ev >= *rev)
				*rev = ev + 1;
			return KV_EXIT_OK;
		}
		if (rc == -ETIMEDOUT && ccli_now() >= deadline - 0.05)
			return KV_EXIT_OK;
		if (!ccli_unreachable(rc))
			return ccli_store_fail(c, rc, &err, after);
		/* etcd away for a moment (a leader election): try again until
		 * the deadline, then say so */
		if (ccli_now() + 0.5 >= deadline)
			return ccli_store_fail(c, rc, &err, after);
		struct timespec ts = { 0, 500 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
}

void ccli_print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY |
			     JSON_REAL_PRECISION(12));

	if (s) {
		printf("%s\n", s);
		free(s);
	}
}

void ccli_fmt_bytes(char *buf, size_t len, uint64_t b)
{
	const double mib = 1024.0 * 1024, gib = mib * 1024;

	if (b >= (uint64_t)(10 * gib) || (b >= (uint64_t)gib && b % (uint64_t)gib == 0))
		snprintf(buf, len, b % (uint64_t)gib ? "%.1f GiB" : "%.0f GiB", (double)b / gib);
	else if (b >= (uint64_t)gib)
		snprintf(buf, len, "%.2f GiB", (double)b / gib);
	else if (b == 0)
		snprintf(buf, len, "0 MiB");
	else if (b < (uint64_t)mib)
		snprintf(buf, len, "%.0f KiB", (double)b / 1024);
	else if (b % (uint64_t)mib == 0 || b >= (uint64_t)(10 * mib))
		snprintf(buf, len, "%.0f MiB", (double)b / mib);
	else
		snprintf(buf, len, "%.1f MiB", (double)b / mib);
}

void ccli_fmt_time(char *buf, size_t len, double t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || !isfinite(t) || t > 1e11 || !localtime_r(&tt, &tm) ||
	    !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
}

double ccli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double ccli_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1e3;
}

/* Room for one more row. */
static void table_grow(struct ccli_table *t)
{
	if (t->nrows >= t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **n = realloc(t->cells, cap * t->ncols * sizeof(*n));

		if (!n)
			abort();	/* a table of a few thousand rows */
		t->cells = n;
		t->cap = cap;
	}
}

static void table_row(struct ccli_table *t, va_list ap)
{
	table_grow(t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		char *d = strdup(s && *s ? s : "-");

		if (!d)
			abort();
		t->cells[t->nrows * t->ncols + i] = d;
	}
	t->nrows++;
}

void ccli_table_init(struct ccli_table *t, size_t ncols, ...)
{
	va_list ap;

	memset(t, 0, sizeof(*t));
	t->ncols = ncols > CCLI_TABLE_COLS ? CCLI_TABLE_COLS : ncols;
	va_start(ap, ncols);
	table_row(t, ap);
	va_end(ap);
}

void ccli_table_add(struct ccli_table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	table_row(t, ap);
	va_end(ap);
}

void ccli_table_print(struct ccli_table *t)
{
	size_t w[CCLI_TABLE_COLS] = { 0 };

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			size_t l = strlen(t->cells[r * t->ncols + i]);

			if (l > w[i])
				w[i] = l;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];

			if (i + 1 == t->ncols)
				printf("%s\n", s);
			else
				printf("%-*s  ", (int)w[i], s);
		}
	}
	for (size_t k = 0; k < t->nrows * t->ncols; k++)
		free(t->cells[k]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}
