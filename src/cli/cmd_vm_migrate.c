/*
 * cmd_vm_migrate.c - kvmove vm migrate NAME [--to NODE]: queue a migration
 * record (/kvmove/migrations/ID, state "queued", from = the VM's owner) in a
 * create-only transaction that also checks the VM still runs there; the
 * source node's agent takes it from there (slot, placement, the migration
 * itself) and writes its progress into the record, which we follow.
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "migration/policy.h"

#define DEFAULT_DOWNTIME_MS 300
#define MIB (1024.0 * 1024.0)

struct mig_opts {
	struct ccli c;
	const char *name, *to, *policy;
	bool quick, no_wait;
	long downtime_ms;
	unsigned timeout_ms;	/* 0: no limit */
};

static void usage(FILE *f)
{
	fputs("usage: kvmove vm migrate NAME [--to NODE] [options]\n"
	      "\n"
	      "Live-migrate a running VM to another node.  The request is queued; the\n"
	      "agent of the node the VM runs on starts it when one of its migration\n"
	      "slots is free (node set --migration-limit), picks the destination if\n"
	      "--to is not given (docs/CLUSTER.md, \"Placement\"), migrates over the\n"
	      "first migration network both nodes share and falls back to the next\n"
	      "ones.  This waits until the migration ends, with a progress line on a\n"
	      "terminal.  Ctrl-C stops following only: the migration goes on.\n"
	      "\n"
	      "  -T, --to NODE            the destination (default: the best node)\n"
	      "  -q, --quick              quick migration: pause, save, restore on NODE\n"
	      "                           (through the agents' shared directory)\n"
	      "  -d, --downtime-ms N      downtime target, 1..3600000 (default 300)\n"
	      "  -p, --policy P           auto-converge, force, fail, postcopy or auto (see\n"
	      "                           kvmove migrate --help; default: the VMM's)\n"
	      "  -n, --no-wait            return once the migration is queued (its ID)\n"
	      "  -t, --timeout SEC        stop waiting after SEC seconds (default: wait\n"
	      "                           until it ends)\n"
	      CCLI_HELP_COMMON
	      "                           (--json: the migration record at the end)\n"
	      "\n"
	      "exit status:\n"
	      "  0  completed: the VM runs on the destination (--no-wait: queued)\n"
	      "  1  failed: the VM still runs on the source\n"
	      "  2  usage error\n"
	      "  3  refused: no such VM, not running, --to is where it runs or no known\n"
	      "     node, a migration of it is under way, or no node fits\n"
	      "  4  cancelled: the VM runs on the source\n"
	      CCLI_HELP_EXIT_ETCD
	      "  6  the timeout expired first: the migration goes on (kvmove migration\n"
	      "     list; kvmove vm show NAME)\n", f);
}

static int parse(int argc, char **argv, struct mig_opts *o)
{
	static const struct option longopts[] = {
		{ "to", required_argument, NULL, 'T' },
		{ "quick", no_argument, NULL, 'q' },
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "policy", required_argument, NULL, 'p' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	enum mig_policy pol;
	char *end;
	int ch;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":T:qd:p:nt:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&o->c, ch, optarg))
			continue;
		switch (ch) {
		case 'T':
			if (ccli_check_node_name(&o->c, optarg))
				return KV_EXIT_USAGE;
			o->to = optarg;
			break;
		case 'q':
			o->quick = true;
			break;
		case 'd':
			errno = 0;
			o->downtime_ms = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || o->downtime_ms < 1 ||
			    o->downtime_ms > 3600000) {
				ccli_msg(&o->c, "--downtime-ms must be 1..3600000, not '%s'", optarg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'p':
			if (mig_policy_parse(optarg, &pol)) {
				ccli_msg(&o->c, "--policy: '%s' is none of auto-converge, force, "
					 "fail, postcopy, auto", optarg);
				return KV_EXIT_USAGE;
			}
			o->policy = mig_policy_name(pol);
			break;
		case 'n':
			o->no_wait = true;
			break;
		case 't':
			if (ccli_parse_timeout(&o->c, optarg, false, &o->timeout_ms))
				return KV_EXIT_USAGE;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			return ccli_bad_opt(&o->c, ch, argv);
		}
	}
	return ccli_vm_name_arg(&o->c, argc, argv, &o->name);
}

/* A migration of the VM that has not ended, if any: its ID and state. */
static int busy_migration(struct ccli *c, const char *vm, char *id, size_t len)
{
	struct store_list l;
	struct kv_err err;
	int rc = store_list(c->st, "/kvmove/migrations/", &l, &err);

	id[0] = '\0';
	if (rc)
		return ccli_store_fail(c, rc, &err, NULL);
	for (size_t i = 0; i < l.n && !id[0]; i++) {
		json_t *m = NULL;

		if (cluster_json_object("migration", l.kvs[i].value, l.kvs[i].vlen, &m, NULL))
			continue;
		if (!strcmp(cluster_jstr(m, "vm"), vm) &&
		    !cluster_migration_state_terminal(cluster_jstr(m, "state")))
			cluster_sanitize(id, len, l.kvs[i].key + strlen("/kvmove/migrations/"));
		json_decref(m);
	}
	store_list_free(&l);
	return KV_EXIT_OK;
}

/* Check and queue.  0 with id and from set, else an exit status. */
static int queue(struct mig_opts *o, char *id, size_t idlen, char *from, size_t fromlen,
		 json_t **rec)
{
	struct ccli *c = &o->c;
	struct vm_keys k = { 0 };
	struct nodeset ns = { 0 };
	struct kv_err err;
	char busy[64], key[96], owner_key[64], *text = NULL;
	bool ok = false;
	int status, rc;

	if ((status = ccli_vm_keys(c, o->name, &k)))
		return status;
	status = KV_EXIT_REFUSED;
	ccli_owner(&k, from, fromlen);
	if (!k.spec) {
		ccli_msg(c, "no VM named %s (kvmove vm list)", o->name);
		goto out;
	}
	if (!from[0]) {
		ccli_msg(c, "%s is not running (kvmove vm start %s)", o->name, o->name);
		goto out;
	}
	if (!strncmp(from, "free:", 5)) {
		ccli_msg(c, "%s is being handed over between nodes right now", o->name);
		goto out;
	}
	if (o->to && !strcmp(o->to, from)) {
		ccli_msg(c, "%s runs on %s already", o->name, from);
		goto out;
	}
	if (o->to) {
		if ((status = ccli_nodes(c, NULL, &ns)))
			goto out;
		status = KV_EXIT_REFUSED;
		if (nodeset_find(&ns, o->to) < 0) {
			ccli_msg(c, "no node named %s (kvmove node list)", o->to);
			goto out;
		}
	}
	if ((status = busy_migration(c, o->name, busy, sizeof(busy))))
		goto out;
	if (busy[0]) {
		ccli_msg(c, "%s has a migration under way already: %s (kvmove migration list)",
			 o->name, busy);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	if (cluster_migration_id_new(id, idlen, &err)) {
		ccli_msg(c, "%s", err.msg);
		status = KV_EXIT_FAIL;
		goto out;
	}
	*rec = json_pack("{s:s, s:s, s:s, s:s?, s:n, s:b, s:i, s:s?, s:s, s:n, s:n, s:[], s:n,"
			 " s:n, s:f, s:n, s:n}",
			 "id", id, "vm", o->name, "from", from, "requested-to", o->to, "to",
			 "quick", o->quick, "downtime-ms",
			 (int)(o->downtime_ms ? o->downtime_ms : DEFAULT_DOWNTIME_MS),
			 "policy", o->policy, "state", "queued", "reason", "network", "attempts",
			 "progress", "stats", "requested", ccli_wall(), "started", "finished");
	text = *rec ? json_dumps(*rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))
		     : NULL;
	if (!text) {
		ccli_msg(c, "out of memory");
		status = KV_EXIT_FAIL;
		goto out;
	}
	snprintf(key, sizeof(key), "/kvmove/migrations/%s", id);
	snprintf(owner_key, sizeof(owner_key), "/kvmove/vms/%s/owner", o->name);
	{
		/* queued only if the VM still runs where we saw it */
		const struct store_cmp cmps[] = {
			{ .key = key, .target = STORE_CMP_CREATE, .result = STORE_EQ },
			{ .key = owner_key, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = k.owner->mod_rev },
		};
		const struct store_op put = { .type = STORE_OP_PUT, .key = key, .value = text };

		rc = store_txn(c->st, cmps, 2, &put, 1, NULL, 0, &ok, NULL, &err);
	}
	if (rc) {
		status = ccli_store_fail(c, rc, &err, rc == -ECONNREFUSED ? NULL :
					 "the migration may or may not be queued: kvmove "
					 "migration list");
		goto out;
	}
	if (!ok) {
		ccli_msg(c, "%s moved or stopped meanwhile; nothing was queued (kvmove vm show %s)",
			 o->name, o->name);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	status = KV_EXIT_OK;
out:
	if (status) {
		json_decref(*rec);
		*rec = NULL;
	}
	free(text);
	nodeset_free(&ns);
	ccli_vm_keys_free(&k);
	return status;
}

/* ---- following the record ---- */

struct follow {
	struct mig_opts *o;
	bool tty;		/* a progress line on stdout */
	bool line;		/* it is shown */
	char state[32];
	char why[192];		/* the last reason shown */
	char to[72];
};

static void clear_line(struct follow *f)
{
	if (f->line) {
		fputs("\r\033[K", stdout);
		fflush(stdout);
		f->line = false;
	}
}

static int term_cols(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static void progress_line(struct follow *f, json_t *rec)
{
	json_t *p = json_object_get(rec, "progress");
	double total = cluster_jbytes(p, "total"), sent = cluster_jbytes(p, "transferred");
	double left = cluster_jbytes(p, "remaining"), pct = 0;
	json_int_t round = cluster_jint(p, "round", 0);
	char line[256], bar[21], st[32];
	int n, cols = term_cols();

	if (!json_is_object(p) || !f->tty)
		return;
	if (total > 0)
		pct = round <= 1 ? sent * 100 / total : 100 - left * 100 / total;
	pct = pct < 0 ? 0 : pct > 99 ? 99 : pct;
	for (int i = 0; i < 20; i++)
		bar[i] = i < (int)(pct / 5) ? '#' : '-';
	bar[20] = '\0';
	cluster_sanitize(st, sizeof(st), cluster_jstr(p, "status"));
	n = snprintf(line, sizeof(line), "%s -> %s [%s] %3d%%  %.1f/%.1f MiB  round %lld  %s",
		     f->o->name, f->to[0] ? f->to : "?", bar, (int)pct, sent / MIB, total / MIB,
		     (long long)(round > 0 ? round : 1), st);
	if (n < 0)
		return;
	if (n >= cols)	/* never wrap: \r could not take it back */
		line[cols - 1] = '\0';
	printf("\r\033[K%s", line);
	fflush(stdout);
	f->line = true;
}

/* A new state: one line (not --json). */
static void note_state(struct follow *f, json_t *rec)
{
	char st[32], why[192], from[72], net[64];

	cluster_sanitize(st, sizeof(st), cluster_jstr(rec, "state"));
	cluster_sanitize(f->to, sizeof(f->to), *cluster_jstr(rec, "to") ?
			 cluster_jstr(rec, "to") : cluster_jstr(rec, "requested-to"));
	cluster_sanitize(why, sizeof(why), cluster_jstr(rec, "reason"));
	/* a new state, or a new reason to wait in the queue */
	if (!strcmp(st, f->state) && (strcmp(st, "queued") || !strcmp(why, f->why)))
		return;
	snprintf(f->state, sizeof(f->state), "%s", st);
	snprintf(f->why, sizeof(f->why), "%s", why);
	if (f->o->c.json || cluster_migration_state_terminal(st))
		return;
	cluster_sanitize(from, sizeof(from), cluster_jstr(rec, "from"));
	cluster_sanitize(net, sizeof(net), cluster_jstr(rec, "network"));
	clear_line(f);
	if (!strcmp(st, "queued") && why[0])
		printf("%s: queued: %s\n", f->o->name, why);
	else if (!strcmp(st, "queued"))
		printf("%s: queued: waiting for a slot on %s\n", f->o->name, from);
	else if (!strcmp(st, "running"))
		printf("%s: running: %s -> %s%s%s\n", f->o->name, from, f->to[0] ? f->to : "?",
		       net[0] ? " over " : "", net);
	else
		printf("%s: %s%s%s\n", f->o->name, st, why[0] ? ": " : "", why);
	fflush(stdout);
}

/* The end: message and exit status. */
static int finish(struct follow *f, json_t *rec)
{
	struct mig_opts *o = f->o;
	const char *st = cluster_jstr(rec, "state");
	char why[192], from[72];
	json_t *s = json_object_get(rec, "stats");

	clear_line(f);
	cluster_sanitize(why, sizeof(why), cluster_jstr(rec, "reason"));
	cluster_sanitize(from, sizeof(from), cluster_jstr(rec, "from"));
	if (o->c.json)
		ccli_print_json(rec);
	if (!strcmp(st, "completed")) {
		if (!o->c.json)
			printf("%s: migrated from %s to %s in %.1f s (downtime %lld ms, %.1f MiB "
			       "sent)\n", o->name, from, f->to, cluster_jbytes(s, "total-time-ms") /
			       1000, (long long)cluster_jint(s, "downtime-ms", 0),
			       cluster_jbytes(s, "transferred") / MIB);
		return KV_EXIT_OK;
	}
	if (!strcmp(st, "cancelled")) {
		ccli_msg(&o->c, "%s: cancelled%s%s; it runs on %s", o->name, why[0] ? ": " : "",
			 why, from);
		return KV_EXIT_CANCELLED;
	}
	if (cluster_jbool(rec, "refused", false)) {
		ccli_msg(&o->c, "%s: refused: %s; it runs on %s", o->name,
			 why[0] ? why : "no node fits", from);
		return KV_EXIT_REFUSED;
	}
	ccli_msg(&o->c, "%s: the migration failed: %s; it runs on %s", o->name,
		 why[0] ? why : "no reason given", from);
	return KV_EXIT_FAIL;
}

static int follow(struct mig_opts *o, const char *id)
{
	struct follow f = { .o = o, .tty = !o->c.json && isatty(STDOUT_FILENO) };
	double deadline = o->timeout_ms ? ccli_now() + o->timeout_ms / 1000.0 : 0;
	const char *after = "the migration goes on (kvmove migration list)";
	char key[96];
	int64_t rev;
	int status;

	snprintf(key, sizeof(key), "/kvmove/migrations/%s", id);
	for (;;) {
		struct store_kv kv;
		struct kv_err err;
		json_t *rec = NULL;
		bool changed;
		int rc = store_get(o->c.st, key, &kv, &rev, &err);

		if (rc == -ENOENT) {
			clear_line(&f);
			ccli_msg(&o->c, "migration %s: its record was deleted; see kvmove vm show %s",
				 id, o->name);
			return KV_EXIT_FAIL;
		}
		if (rc) {
			clear_line(&f);
			return ccli_store_fail(&o->c, rc, &err, after);
		}
		rc = cluster_json_object(key, kv.value, kv.vlen, &rec, &err);
		store_kv_free(&kv);
		if (rc) {
			clear_line(&f);
			ccli_msg(&o->c, "%s", err.msg);
			return KV_EXIT_FAIL;
		}
		note_state(&f, rec);
		if (cluster_migration_state_terminal(f.state)) {
			status = finish(&f, rec);
			json_decref(rec);
			return status;
		}
		if (!strcmp(f.state, "running"))
			progress_line(&f, rec);
		json_decref(rec);
		if (deadline && ccli_now() >= deadline) {
			clear_line(&f);
			ccli_msg(&o->c, "migration %s is still %s after %u s; it goes on (kvmove "
				 "migration list)", id, f.state, o->timeout_ms / 1000);
			return KV_EXIT_INDETERMINATE;
		}
		rev++;
		status = ccli_wait(&o->c, key, &rev,
				   deadline ? (unsigned)((deadline - ccli_now()) * 1000) + 1 : 5000,
				   &changed, after);
		if (status) {
			clear_line(&f);
			return status;
		}
	}
}

int cmd_vm_migrate(int argc, char **argv)
{
	struct mig_opts o = { .c = { .verb = "vm migrate" } };
	char id[32], from[80];
	json_t *rec = NULL;
	int status;

	status = parse(argc, argv, &o);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if ((status = ccli_open(&o.c)))
		return status;
	status = queue(&o, id, sizeof(id), from, sizeof(from), &rec);
	if (status)
		goto out;
	if (o.no_wait) {
		if (o.c.json)
			ccli_print_json(rec);
		else
			printf("%s: migration %s queued (from %s)\n", o.name, id, from);
		goto out;
	}
	if (!o.c.json && !isatty(STDOUT_FILENO))
		printf("%s: migration %s queued (from %s)\n", o.name, id, from);
	status = follow(&o, id);
out:
	json_decref(rec);
	ccli_close(&o.c);
	return status;
}
