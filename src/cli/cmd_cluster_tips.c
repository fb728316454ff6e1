/*
 * cmd_cluster_tips.c - kvmove cluster balancer [MODE ...], kvmove cluster
 * tips [--all], kvmove cluster tips apply ID: the load balancer's settings
 * (/kvmove/config's "balancer") and its recommendations (/kvmove/tips/ID),
 * docs/CLUSTER.md "Load balancing".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/clustercli.h"
#include "cluster/balance.h"

static void usage_balancer(FILE *f)
{
	fputs("usage: kvmove cluster balancer [off|recommend|automatic] [--cpu-threshold PCT]\n"
	      "                               [--spread PCT] [--samples N]\n"
	      "\n"
	      "Show or set the load balancer (one agent runs it).  It acts when the\n"
	      "busiest node's CPU load stays above the threshold, or the spread between\n"
	      "the busiest and the idlest node stays above --spread, for N samples in a\n"
	      "row (an agent samples every 3 s): it proposes moving one VM off the busiest\n"
	      "node (a tip).  off: nothing; recommend: tips are listed ('kvmove cluster\n"
	      "tips') and applied by hand ('kvmove cluster tips apply ID'); automatic:\n"
	      "each tip is applied at once, within the migration limits.\n"
	      "\n"
	      "  --cpu-threshold PCT      1..100 (default 80)\n"
	      "  --spread PCT             1..100 points (default 25)\n"
	      "  --samples N              1..12 (default 3)\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status:\n"
	      "  0  shown or set\n"
	      "  1  failed\n"
	      "  2  usage error\n"
	      CCLI_HELP_EXIT_ETCD, f);
}

static void usage_tips(FILE *f)
{
	fputs("usage: kvmove cluster tips [--all]\n"
	      "       kvmove cluster tips apply ID\n"
	      "\n"
	      "The balancer's tips: the open ones (and with --all the applied, stale and\n"
	      "failed ones too, with the loads before, predicted and measured after).\n"
	      "'apply ID' queues the tip's migration (the VM must still run where the\n"
	      "tip found it); 'kvmove migration list' follows it.\n"
	      "\n"
	      "  -a, --all                every tip kept (the last 50 closed ones)\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status:\n"
	      "  0  listed, or the migration queued\n"
	      "  1  failed\n"
	      "  2  usage error\n"
	      "  3  refused: no such tip, not open, or the VM moved meanwhile\n"
	      CCLI_HELP_EXIT_ETCD, f);
}

static bool pct_ok(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 1 || v > 100)
		return false;
	*out = v;
	return true;
}

int cmd_cluster_balancer(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "cpu-threshold", required_argument, NULL, 'c' },
		{ "spread", required_argument, NULL, 's' },
		{ "samples", required_argument, NULL, 'n' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ccli c = { .verb = "cluster balancer" };
	double thr = -1, spread = -1;
	long samples = -1;
	const char *mode = NULL;
	struct store_kv kv = { 0 };
	json_t *cfg = NULL, *b;
	struct kv_err err;
	int64_t mod = 0;
	int ch, status = KV_EXIT_USAGE, rc;
	bool have = false;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:s:n:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case 'c':
			if (!pct_ok(optarg, &thr)) {
				ccli_msg(&c, "--cpu-threshold must be 1..100, not '%s'", optarg);
				return KV_EXIT_USAGE;
			}
			break;
		case 's':
			if (!pct_ok(optarg, &spread)) {
				ccli_msg(&c, "--spread must be 1..100, not '%s'", optarg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'n': {
			char *end;
			errno = 0;
			samples = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || samples < 1 || samples > 12) {
				ccli_msg(&c, "--samples must be 1..12, not '%s'", optarg);
				return KV_EXIT_USAGE;
			}
			break;
		}
		case 'h':
			usage_balancer(stdout);
			return KV_EXIT_OK;
		default:
			return ccli_bad_opt(&c, ch, argv);
		}
	}
	if (optind < argc) {
		mode = argv[optind++];
		if (strcmp(mode, "off") && strcmp(mode, "recommend") && strcmp(mode, "automatic")) {
			ccli_msg(&c, "the mode is off, recommend or automatic, not '%s'", mode);
			return KV_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		ccli_msg(&c, "unexpected argument '%s'", argv[optind]);
		return KV_EXIT_USAGE;
	}
	if ((status = ccli_open(&c)))
		return status;
	rc = store_get(c.st, "/kvmove/config", &kv, NULL, &err);
	if (rc && rc != -ENOENT) {
		status = ccli_store_fail(&c, rc, &err, NULL);
		goto out;
	}
	have = !rc;
	if (have) {
		mod = kv.mod_rev;
		if (cluster_json_object("/kvmove/config", kv.value, kv.vlen, &cfg, &err)) {
			ccli_msg(&c, "%s", err.msg);
			status = KV_EXIT_FAIL;
			goto out;
		}
	} else {
		cfg = json_pack("{s:i}", "migration-limit", 1);
	}
	b = json_object_get(cfg, "balancer");
	if (!json_is_object(b)) {
		b = json_object();
		json_object_set_new(cfg, "balancer", b);
	}
	if (mode || thr > 0 || spread > 0 || samples > 0) {
		char *text;
		bool ok = false;
		struct store_cmp cmp = { .key = "/kvmove/config",
					 .target = have ? STORE_CMP_MOD : STORE_CMP_CREATE,
					 .result = STORE_EQ, .num = have ? mod : 0 };
		struct store_op op = { .type = STORE_OP_PUT, .key = "/kvmove/config" };

		if (mode)
			json_object_set_new(b, "mode", json_string(mode));
		if (thr > 0)
			json_object_set_new(b, "cpu-threshold", json_real(thr));
		if (spread > 0)
			json_object_set_new(b, "spread", json_real(spread));
		if (samples > 0)
			json_object_set_new(b, "samples", json_integer(samples));
		text = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
		op.value = text;
		rc = text ? store_txn(c.st, &cmp, 1, &op, 1, NULL, 0, &ok, NULL, &err) : -ENOMEM;
		free(text);
		if (rc) {
			status = ccli_store_fail(&c, rc, &err, NULL);
			goto out;
		}
		if (!ok) {
			ccli_msg(&c, "/kvmove/config changed while it was being written: try again");
			status = KV_EXIT_FAIL;
			goto out;
		}
	}
	{
		const struct bal_settings d = BAL_DEFAULTS;
		const char *m = cluster_jstr(b, "mode");
		json_t *out = json_pack("{s:s, s:f, s:f, s:I}", "mode", *m ? m : "off",
					"cpu-threshold", cluster_jnum(b, "cpu-threshold",
								      d.cpu_threshold),
					"spread", cluster_jnum(b, "spread", d.spread), "samples",
					(json_int_t)cluster_jint(b, "samples", 3));
		struct store_kv who = { 0 };

		if (!store_get(c.st, "/kvmove/balancer", &who, NULL, &err)) {
			char n[80];
			cluster_sanitize(n, sizeof(n), who.value);
			json_object_set_new(out, "run-by", json_string(n));
			store_kv_free(&who);
		}
		if (c.json) {
			ccli_print_json(out);
		} else {
			char m2[32];
			cluster_sanitize(m2, sizeof(m2), cluster_jstr(out, "mode"));
			printf("balancer: %s, CPU threshold %.0f %%, spread %.0f points, %lld samples"
			       "; run by %s\n", m2, cluster_jnum(out, "cpu-threshold", 0),
			       cluster_jnum(out, "spread", 0),
			       (long long)cluster_jint(out, "samples", 0),
			       *cluster_jstr(out, "run-by") ? cluster_jstr(out, "run-by")
							    : "no agent yet");
		}
		json_decref(out);
	}
	status = KV_EXIT_OK;
out:
	store_kv_free(&kv);
	json_decref(cfg);
	ccli_close(&c);
	return status;
}

static void loads(char *buf, size_t len, json_t *tip, const char *which)
{
	json_t *o = json_object_get(tip, which);
	char f[80], t[80];

	cluster_sanitize(f, sizeof(f), cluster_jstr(tip, "from"));
	cluster_sanitize(t, sizeof(t), cluster_jstr(tip, "to"));
	if (!json_is_object(o)) {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf, len, "%s %.0f %%, %s %.0f %%", f, cluster_jnum(o, "from", 0), t,
		 cluster_jnum(o, "to", 0));
}

static int tips_list(struct ccli *c, bool all)
{
	struct store_list l = { 0 };
	struct ccli_table t;
	struct kv_err err;
	json_t *out = json_array(), *tip;
	size_t i;
	int rc;

	rc = store_list(c->st, "/kvmove/tips/", &l, &err);
	if (rc) {
		json_decref(out);
		return ccli_store_fail(c, rc, &err, "");
	}
	for (i = 0; i < l.n; i++) {
		if (cluster_json_object(l.kvs[i].key, l.kvs[i].value, l.kvs[i].vlen, &tip, &err))
			continue;
		if (all || !strcmp(cluster_jstr(tip, "state"), "open"))
			json_array_append(out, tip);
		json_decref(tip);
	}
	store_list_free(&l);
	if (c->json) {
		ccli_print_json(out);
		json_decref(out);
		return KV_EXIT_OK;
	}
	ccli_table_init(&t, 6, "ID", "STATE", "MOVE", "BEFORE", "PREDICTED", "MEASURED");
	json_array_foreach(out, i, tip) {
		char id[64], st[16], vm[40], f[70], to[70], mv[200], b[400], p[400], m[400];

		cluster_sanitize(id, sizeof(id), cluster_jstr(tip, "id"));
		cluster_sanitize(st, sizeof(st), cluster_jstr(tip, "state"));
		cluster_sanitize(vm, sizeof(vm), cluster_jstr(tip, "vm"));
		cluster_sanitize(f, sizeof(f), cluster_jstr(tip, "from"));
		cluster_sanitize(to, sizeof(to), cluster_jstr(tip, "to"));
		snprintf(mv, sizeof(mv), "%s %s -> %s", vm, f, to);
		loads(b, sizeof(b), tip, "before");
		loads(p, sizeof(p), tip, "after");
		loads(m, sizeof(m), tip, "measured");
		ccli_table_add(&t, id, st, mv, b, p, m);
	}
	ccli_table_print(&t);
	if (!json_array_size(out))
		printf("(no %stips)\n", all ? "" : "open ");
	json_decref(out);
	return KV_EXIT_OK;
}

static int tips_apply(struct ccli *c, const char *id)
{
	char tkey[128], okey[128], mkey[128], mid[64], *ttext = NULL, *mtext = NULL;
	struct store_kv tkv = { 0 }, okv = { 0 };
	json_t *tip = NULL, *mig = NULL;
	struct kv_err err;
	bool ok = false;
	int rc, status;

	if (!cluster_tip_id_ok(id)) {
		ccli_msg(c, "'%s' is not a tip ID (tYYYYMMDDhhmmss-xxxxxx)", id);
		return KV_EXIT_USAGE;
	}
	snprintf(tkey, sizeof(tkey), "/kvmove/tips/%s", id);
	rc = store_get(c->st, tkey, &tkv, NULL, &err);
	if (rc == -ENOENT) {
		ccli_msg(c, "no tip %s (kvmove cluster tips --all)", id);
		return KV_EXIT_REFUSED;
	}
	if (rc)
		return ccli_store_fail(c, rc, &err, NULL);
	status = KV_EXIT_FAIL;
	if (cluster_json_object(tkey, tkv.value, tkv.vlen, &tip, &err)) {
		ccli_msg(c, "%s", err.msg);
		goto out;
	}
	if (strcmp(cluster_jstr(tip, "state"), "open") ||
	    !cluster_vm_name_ok(cluster_jstr(tip, "vm")) ||
	    !cluster_node_name_ok(cluster_jstr(tip, "from")) ||
	    !cluster_node_name_ok(cluster_jstr(tip, "to"))) {
		char st[32];
		cluster_sanitize(st, sizeof(st), cluster_jstr(tip, "state"));
		ccli_msg(c, "tip %s is %s, not open: nothing to apply", id, st);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	snprintf(okey, sizeof(okey), "/kvmove/vms/%s/owner", cluster_jstr(tip, "vm"));
	rc = store_get(c->st, okey, &okv, NULL, &err);
	if (rc && rc != -ENOENT) {
		status = ccli_store_fail(c, rc, &err, NULL);
		goto out;
	}
	if (rc || strcmp(okv.value, cluster_jstr(tip, "from"))) {
		ccli_msg(c, "%s no longer runs on %s: tip %s is out of date",
			 cluster_jstr(tip, "vm"), cluster_jstr(tip, "from"), id);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	if ((rc = cluster_migration_id_new(mid, sizeof(mid), &err))) {
		ccli_msg(c, "%s", err.msg);
		goto out;
	}
	mig = cluster_migration_queued(mid, cluster_jstr(tip, "vm"), cluster_jstr(tip, "from"),
				       cluster_jstr(tip, "to"), false,
				       "queued by kvmove cluster tips apply", ccli_wall());
	if (mig)
		json_object_set_new(mig, "tip", json_string(id));
	json_object_set_new(tip, "state", json_string("applied"));
	json_object_set_new(tip, "applied", json_real(ccli_wall()));
	json_object_set_new(tip, "migration", json_string(mid));
	ttext = json_dumps(tip, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
	mtext = mig ? json_dumps(mig, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))
		    : NULL;
	snprintf(mkey, sizeof(mkey), "/kvmove/migrations/%s", mid);
	if (!ttext || !mtext) {
		ccli_msg(c, "out of memory");
		goto out;
	}
	{
		const struct store_cmp cmps[] = {
			{ .key = tkey, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = tkv.mod_rev },
			{ .key = okey, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = okv.mod_rev },
			{ .key = mkey, .target = STORE_CMP_CREATE, .result = STORE_EQ },
		};
		const struct store_op ops[] = {
			{ .type = STORE_OP_PUT, .key = tkey, .value = ttext },
			{ .type = STORE_OP_PUT, .key = mkey, .value = mtext },
		};
		rc = store_txn(c->st, cmps, 3, ops, 2, NULL, 0, &ok, NULL, &err);
	}
	if (rc) {
		status = ccli_store_fail(c, rc, &err, NULL);
		goto out;
	}
	if (!ok) {
		ccli_msg(c, "tip %s or %s changed meanwhile: look again (kvmove cluster tips)", id,
			 cluster_jstr(tip, "vm"));
		status = KV_EXIT_REFUSED;
		goto out;
	}
	if (c->json)
		ccli_print_json(mig);
	else
		printf("tip %s applied: migration %s of %s from %s to %s queued (kvmove migration "
		       "list)\n", id, mid, cluster_jstr(tip, "vm"), cluster_jstr(tip, "from"),
		       cluster_jstr(tip, "to"));
	status = KV_EXIT_OK;
out:
	free(ttext);
	free(mtext);
	json_decref(tip);
	json_decref(mig);
	store_kv_free(&tkv);
	store_kv_free(&okv);
	return status;
}

int cmd_cluster_tips(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ccli c = { .verb = "cluster tips" };
	const char *id = NULL;
	bool all = false, apply = false;
	int ch, status;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":ae:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case 'a':
			all = true;
			break;
		case 'h':
			usage_tips(stdout);
			return KV_EXIT_OK;
		default:
			return ccli_bad_opt(&c, ch, argv);
		}
	}
	if (optind < argc) {
		if (strcmp(argv[optind], "apply")) {
			ccli_msg(&c, "unexpected argument '%s' (apply ID?)", argv[optind]);
			return KV_EXIT_USAGE;
		}
		apply = true;
		c.verb = "cluster tips apply";
		if (++optind >= argc) {
			ccli_msg(&c, "which tip? (ID, from kvmove cluster tips)");
			return KV_EXIT_USAGE;
		}
		id = argv[optind++];
		if (optind < argc) {
			ccli_msg(&c, "one ID only");
			return KV_EXIT_USAGE;
		}
	}
	if ((status = ccli_open(&c)))
		return status;
	status = apply ? tips_apply(&c, id) : tips_list(&c, all);
	ccli_close(&c);
	return status;
}
