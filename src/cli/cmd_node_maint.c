/*
 * cmd_node_maint.c - kvmove node maintenance NODE on|off: put a node into
 * maintenance and drain it (every VM live-migrated away by its agent,
 * src/cluster/agent_drain.c), or take it out and cancel the drain.
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fputs("usage: kvmove node maintenance NODE on [--wait] [--quick-fallback] [--timeout SEC]\n"
	      "       kvmove node maintenance NODE off\n"
	      "\n"
	      "on: NODE takes no new VMs, and its agent live-migrates every VM on it\n"
	      "away, placed like 'vm migrate' without --to and paced by every node's\n"
	      "migration limit (never more at once).  The drain ends 'drained' when no\n"
	      "VM is left, or 'drain-incomplete' when every VM left cannot move (no node\n"
	      "fits it, or its migration failed twice): those keep running on NODE and\n"
	      "are listed with the reason.  'kvmove node show NODE' follows it.\n"
	      "off: NODE takes VMs again; a drain under way is cancelled: migrations it\n"
	      "queued are dropped, one already running finishes, nothing moves later.\n"
	      "\n"
	      "  -w, --wait               follow the drain until it ends (progress lines;\n"
	      "                           on a terminal, one updating line)\n"
	      "  -q, --quick-fallback     a VM whose live migration failed twice moves\n"
	      "                           by quick migration (save/restore) instead\n"
	      "  -t, --timeout SEC        with --wait: stop following after SEC seconds\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 done (with --wait: drained), 1 failed (with --wait:\n"
	      "drain-incomplete), 2 usage error, 3 no such node, 4 the drain was\n"
	      "cancelled while we waited, 5 etcd unreachable, 6 --timeout expired first\n",
	      f);
}

struct maint_opts {
	struct ccli c;
	const char *node;
	bool on, wait, quick;
	unsigned timeout_ms;
};

static int get_json(struct ccli *c, const char *key, json_t **out, int64_t *mod, int64_t *rev)
{
	struct store_kv kv;
	struct kv_err err;
	int rc = store_get(c->st, key, &kv, rev, &err);

	*out = NULL;
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return ccli_store_fail(c, rc, &err, NULL);
	if (mod)
		*mod = kv.mod_rev;
	if (cluster_json_object(key, kv.value, kv.vlen, out, &err)) {
		ccli_msg(c, "warning: %s; replacing it", err.msg);
		*out = NULL;
	}
	store_kv_free(&kv);
	return 0;
}

/* nodecfg's maintenance, and the drain record, in one transaction (with a
 * compare on both, so a concurrent change means: read again). */
static int set_state(struct maint_opts *o, json_t **drain_out)
{
	char ckey[96], dkey[96], id[48];
	struct kv_err err;

	snprintf(ckey, sizeof(ckey), "/kvmove/nodecfg/%s", o->node);
	snprintf(dkey, sizeof(dkey), "/kvmove/drains/%s", o->node);
	for (int attempt = 0; attempt < 5; attempt++) {
		json_t *cfg, *drain;
		int64_t cmod = 0, dmod = 0;
		char *ctext, *dtext = NULL;
		bool ok = false, have_c, have_d;
		int rc;

		if ((rc = get_json(&o->c, ckey, &cfg, &cmod, NULL)) ||
		    (rc = get_json(&o->c, dkey, &drain, &dmod, NULL))) {
			json_decref(cfg);
			return rc;
		}
		have_c = cmod != 0;
		have_d = dmod != 0;
		if (!cfg)
			cfg = json_pack("{s:b, s:n}", "maintenance", 0, "migration-limit");
		json_object_set_new(cfg, "maintenance", json_boolean(o->on));
		if (o->on) {
			if (!drain || strcmp(cluster_jstr(drain, "state"), "draining")) {
				/* a new drain (the last one, if any, had ended) */
				json_decref(drain);
				if (cluster_migration_id_new(id, sizeof(id), &err)) {
					json_decref(cfg);
					ccli_msg(&o->c, "%s", err.msg);
					return KV_EXIT_FAIL;
				}
				drain = json_pack("{s:s, s:s, s:s, s:f, s:n, s:b, s:i, s:n, s:{}, s:{}}",
						  "id", id, "node", o->node, "state", "draining",
						  "started", ccli_wall(), "finished", "quick-fallback",
						  o->quick, "moved", 0, "remaining", "stuck", "vms");
			}
		} else if (drain && !strcmp(cluster_jstr(drain, "state"), "draining")) {
			json_object_set_new(drain, "state", json_string("cancelled"));
			json_object_set_new(drain, "finished", json_real(ccli_wall()));
		} else {
			json_decref(drain);
			drain = NULL;	/* nothing to change there */
		}
		ctext = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
		if (drain)
			dtext = json_dumps(drain, JSON_COMPACT | JSON_SORT_KEYS |
						  JSON_REAL_PRECISION(15));
		{
			const struct store_cmp cmps[2] = {
				{ .key = ckey, .target = have_c ? STORE_CMP_MOD : STORE_CMP_CREATE,
				  .result = STORE_EQ, .num = have_c ? cmod : 0 },
				{ .key = dkey, .target = have_d ? STORE_CMP_MOD : STORE_CMP_CREATE,
				  .result = STORE_EQ, .num = have_d ? dmod : 0 },
			};
			const struct store_op ops[2] = {
				{ .type = STORE_OP_PUT, .key = ckey, .value = ctext },
				{ .type = STORE_OP_PUT, .key = dkey, .value = dtext },
			};
			rc = ctext && (!drain || dtext)
				? store_txn(o->c.st, cmps, 2, ops, drain ? 2 : 1, NULL, 0, &ok, NULL,
					    &err)
				: kv_errf(&err, ENOMEM, "out of memory");
		}
		free(ctext);
		free(dtext);
		json_decref(cfg);
		if (rc) {
			json_decref(drain);
			return ccli_store_fail(&o->c, rc, &err, rc == -ECONNREFUSED ? NULL :
					       "the change may or may not be made: kvmove node show");
		}
		if (ok) {
			*drain_out = drain;
			return KV_EXIT_OK;
		}
		json_decref(drain);
	}
	ccli_msg(&o->c, "%s keeps changing under us; try again", ckey);
	return KV_EXIT_FAIL;
}

/* off: drop the migrations the cancelled drain had queued; a running one
 * finishes.  Says which. */
static int drop_queued(struct maint_opts *o, const char *drain_id)
{
	struct store_list l;
	struct kv_err err;
	int rc = store_list(o->c.st, "/kvmove/migrations/", &l, &err);

	if (rc)
		return ccli_store_fail(&o->c, rc, &err, NULL);
	for (size_t i = 0; i < l.n; i++) {
		json_t *rec = NULL;
		const char *st;
		char vm[64];

		if (cluster_json_object(l.kvs[i].key, l.kvs[i].value, l.kvs[i].vlen, &rec, &err) ||
		    strcmp(cluster_jstr(rec, "drain"), drain_id)) {
			json_decref(rec);
			continue;
		}
		st = cluster_jstr(rec, "state");
		cluster_sanitize(vm, sizeof(vm), cluster_jstr(rec, "vm"));
		if (!strcmp(st, "queued")) {
			/* only if still queued: the agent may be starting it */
			bool ok = false;

			rc = cluster_migration_cancel_queued(o->c.st, &l.kvs[i], rec,
							     DRAIN_CANCELLED, ccli_wall(), &ok, &err);
			if (!rc && ok && !o->c.json)
				printf("%s: dropped the queued migration of %s\n", o->node, vm);
			else if (!rc && !o->c.json)
				printf("%s: the migration of %s started meanwhile; it finishes\n",
				       o->node, vm);
		} else if (!strcmp(st, "running") && !o->c.json) {
			printf("%s: the migration of %s is under way; it finishes\n", o->node, vm);
		}
		json_decref(rec);
	}
	store_list_free(&l);
	return KV_EXIT_OK;
}

void node_drain_line(json_t *d, char *buf, size_t len)
{
	const char *st = cluster_jstr(d, "state");
	json_int_t moved = cluster_jint(d, "moved", 0), left = cluster_jint(d, "remaining", 0);
	json_int_t eta = cluster_jint(d, "eta-s", -1);
	json_t *fl = json_object_get(d, "in-flight");
	size_t nstuck = json_object_size(json_object_get(d, "stuck"));
	size_t o;

	if (!strcmp(st, "draining") && !json_is_integer(json_object_get(d, "remaining"))) {
		snprintf(buf, len, "draining: starting (the node's agent takes it up)");
	} else if (!strcmp(st, "draining")) {
		o = (size_t)snprintf(buf, len, "draining: %lld of %lld moved", (long long)moved,
				     (long long)(moved + left));
		if (nstuck && o < len)
			o += (size_t)snprintf(buf + o, len - o, ", %zu cannot move", nstuck);
		if (json_is_object(fl) && o < len) {
			char vm[64], to[64];
			json_t *p = json_object_get(fl, "progress");
			double tot = cluster_jbytes(p, "total"), rem = cluster_jbytes(p, "remaining");
			cluster_sanitize(vm, sizeof(vm), cluster_jstr(fl, "vm"));
			cluster_sanitize(to, sizeof(to), cluster_jstr(fl, "to"));
			o += (size_t)snprintf(buf + o, len - o, ", %s -> %s", vm, to);
			if (tot > 0 && o < len)
				o += (size_t)snprintf(buf + o, len - o, " %.0f%%",
						      100.0 * (tot - rem) / tot);
		}
		if (eta >= 0 && o < len)
			snprintf(buf + o, len - o, ", ETA %lld s", (long long)eta);
	} else if (!strcmp(st, "drained")) {
		snprintf(buf, len, "drained (%lld moved)", (long long)moved);
	} else if (!strcmp(st, "drain-incomplete")) {
		snprintf(buf, len, "drain-incomplete: %lld moved, %lld cannot move",
			 (long long)moved, (long long)left);
	} else {
		cluster_sanitize(buf, len, st[0] ? st : "-");
	}
}

/* The VMs that cannot move, one line each. */
static void print_stuck(json_t *d)
{
	const char *vm;
	json_t *why;

	json_object_foreach(json_object_get(d, "stuck"), vm, why) {
		char v[64], w[512];
		cluster_sanitize(v, sizeof(v), vm);
		cluster_sanitize(w, sizeof(w), json_string_value(why) ?: "?");
		printf("  %s stays: %s\n", v, w);
	}
}

static int follow(struct maint_opts *o)
{
	double deadline = o->timeout_ms ? ccli_now() + o->timeout_ms / 1000.0 : 0;
	bool tty = !o->c.json && isatty(STDOUT_FILENO);
	char key[96], line[600], last[600] = "";
	int64_t rev = 0;

	snprintf(key, sizeof(key), "/kvmove/drains/%s", o->node);
	for (;;) {
		json_t *d;
		const char *st;
		bool changed;
		int rc = get_json(&o->c, key, &d, NULL, &rev);

		if (rc)
			return rc;
		if (!d) {
			ccli_msg(&o->c, "the drain record of %s was deleted", o->node);
			return KV_EXIT_FAIL;
		}
		st = cluster_jstr(d, "state");
		node_drain_line(d, line, sizeof(line));
		if (!o->c.json && strcmp(line, last)) {
			printf(tty ? "\r\033[K%s: %s" : "%s: %s\n", o->node, line);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", line);
		}
		if (strcmp(st, "draining")) {
			if (tty)
				putchar('\n');
			if (o->c.json)
				ccli_print_json(d);
			else
				print_stuck(d);
			rc = !strcmp(st, "drained") ? KV_EXIT_OK :
			     !strcmp(st, "cancelled") ? KV_EXIT_CANCELLED : KV_EXIT_FAIL;
			json_decref(d);
			return rc;
		}
		json_decref(d);
		if (deadline && ccli_now() >= deadline) {
			if (tty)
				putchar('\n');
			ccli_msg(&o->c, "%s is still draining after %u s; it goes on (kvmove node "
				 "show %s)", o->node, o->timeout_ms / 1000, o->node);
			return KV_EXIT_INDETERMINATE;
		}
		rev++;
		rc = ccli_wait(&o->c, key, &rev, deadline ?
			       (unsigned)((deadline - ccli_now()) * 1000) + 1 : 5000, &changed,
			       "the drain goes on (kvmove node show)");
		if (rc)
			return rc;
	}
}

int node_maintenance(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "wait", no_argument, NULL, 'w' },
		{ "quick-fallback", no_argument, NULL, 'q' },
		{ "timeout", required_argument, NULL, 't' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct maint_opts o = { .c = { .verb = "node maintenance" } };
	json_t *drain = NULL;
	char key[96];
	struct store_kv kv;
	struct kv_err err;
	int ch, status, rc;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":wqt:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&o.c, ch, optarg))
			continue;
		if (ch == 'w') {
			o.wait = true;
		} else if (ch == 'q') {
			o.quick = true;
		} else if (ch == 't') {
			if ((status = ccli_parse_timeout(&o.c, optarg, false, &o.timeout_ms)))
				return status;
		} else if (ch == 'h') {
			usage(stdout);
			return KV_EXIT_OK;
		} else {
			return ccli_bad_opt(&o.c, ch, argv);
		}
	}
	if (argc - optind != 2 || (strcmp(argv[optind + 1], "on") &&
				   strcmp(argv[optind + 1], "off"))) {
		ccli_msg(&o.c, "give NODE and on or off");
		usage(stderr);
		return KV_EXIT_USAGE;
	}
	o.node = argv[optind];
	o.on = !strcmp(argv[optind + 1], "on");
	if ((status = ccli_check_node_name(&o.c, o.node)))
		return status;
	if (!o.on && (o.wait || o.quick || o.timeout_ms)) {
		ccli_msg(&o.c, "--wait, --quick-fallback and --timeout go with 'on'");
		return KV_EXIT_USAGE;
	}
	if ((status = ccli_open(&o.c)))
		return status;
	snprintf(key, sizeof(key), "/kvmove/nodes/%s", o.node);
	rc = store_get(o.c.st, key, &kv, NULL, &err);
	if (rc == -ENOENT && o.on) {
		ccli_msg(&o.c, "no node %s is up (kvmove node list): nothing to drain", o.node);
		status = KV_EXIT_REFUSED;
		goto out;
	} else if (rc && rc != -ENOENT) {
		status = ccli_store_fail(&o.c, rc, &err, NULL);
		goto out;
	}
	if (!rc)
		store_kv_free(&kv);
	if ((status = set_state(&o, &drain)))
		goto out;
	if (!o.on) {
		if (drain)
			status = drop_queued(&o, cluster_jstr(drain, "id"));
		if (!status && o.c.json) {
			json_t *j = json_pack("{s:s, s:b, s:s}", "node", o.node, "maintenance", 0,
					      "drain", drain ? "cancelled" : "none");
			ccli_print_json(j);
			json_decref(j);
		} else if (!status) {
			printf("%s: maintenance off%s\n", o.node,
			       drain ? "; the drain is cancelled" : "");
		}
		goto out;
	}
	if (o.wait) {
		status = follow(&o);
		goto out;
	}
	if (o.c.json) {
		json_t *j = json_pack("{s:s, s:b, s:O}", "node", o.node, "maintenance", 1, "drain",
				      drain);
		ccli_print_json(j);
		json_decref(j);
	} else
		printf("%s: maintenance on, draining (kvmove node show %s)\n", o.node, o.node);
out:
	json_decref(drain);
	ccli_close(&o.c);
	return status;
}
