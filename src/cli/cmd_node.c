/*
 * cmd_node.c - kvmove node list | show NODE | set NODE: the hosts of the
 * cluster as their agents publish them (/kvmove/nodes/, lease-bound) and the
 * operator's settings for them (/kvmove/nodecfg/).
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATION_LIMIT_MAX 64

static void usage_node(FILE *f)
{
	fputs("usage: kvmove node SUBVERB [options]\n"
	      "\n"
	      "The cluster's nodes (hosts running 'kvmove agent'):\n"
	      "  list        every node: state, VMs, vCPUs and RAM used, load\n"
	      "  show NODE   one node in detail, with its migration slots\n"
	      "  set NODE [--maintenance on|off] [--migration-limit N|default]\n"
	      "  maintenance NODE on|off [--wait]   maintenance with a drain: every VM\n"
	      "              moved away (see 'kvmove node maintenance --help')\n"
	      "\n"
	      "Every subverb takes --etcd, --json and --help.\n"
	      "exit status: 0 done, 1 failed, 2 usage error, 3 no such node,\n"
	      "5 etcd unreachable\n", f);
}

static void usage_list(FILE *f)
{
	fputs("usage: kvmove node list\n"
	      "\n"
	      "Every node: up (its agent renews its lease), down (only settings are left,\n"
	      "or its agent stopped), maintenance, or bad record; its VMs, vCPUs and RAM\n"
	      "used of what it offers, 1-minute load, migration limit.\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 listed, 1 failed, 2 usage error, 5 etcd unreachable\n", f);
}

static void usage_show(FILE *f)
{
	fputs("usage: kvmove node show NODE\n"
	      "\n"
	      "One node: its record as its agent publishes it, its settings, and the\n"
	      "migrations holding its slots.\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 shown, 1 failed, 2 usage error, 3 no such node,\n"
	      "5 etcd unreachable\n", f);
}

static void usage_set(FILE *f)
{
	fputs("usage: kvmove node set NODE [--maintenance on|off] [--migration-limit N|default]\n"
	      "\n"
	      "Change a node's settings (/kvmove/nodecfg/NODE).  A node in maintenance\n"
	      "gets no new VMs, neither started nor migrated to it; the VMs on it keep\n"
	      "running until you migrate them away.  The migration limit is how many\n"
	      "migrations may leave the node at once (0: none; default: the cluster's,\n"
	      "/kvmove/config).  Settings for a node whose agent has not started yet are\n"
	      "kept for it.\n"
	      "\n"
	      "  -m, --maintenance on|off\n"
	      "  -l, --migration-limit N|default   0..64, or the cluster's\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 set, 1 failed, 2 usage error, 5 etcd unreachable (nothing\n"
	      "was changed)\n", f);
}

static json_t *node_json(const struct nodeset *ns, size_t i)
{
	const struct cluster_node *n = &ns->v[i];

	return json_pack("{s:s, s:s, s:s?, s:O?, s:O?, s:i, s:b}", "name", n->name,
			 "state", nodeset_state(n), "problem", n->problem[0] ? n->problem : NULL,
			 "record", n->rec, "config", n->cfg, "migration-limit", n->migration_limit,
			 "maintenance", ns->place[i].maintenance);
}

static int node_list(int argc, char **argv)
{
	struct ccli c = { .verb = "node list" };
	struct nodeset ns = { 0 };
	struct ccli_table t;
	int status;

	status = ccli_parse_simple(&c, argc, argv, usage_list, CCLI_ARG_NONE, NULL);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if ((status = ccli_open(&c)) || (status = ccli_nodes(&c, NULL, &ns)))
		goto out;
	if (c.json) {
		json_t *a = json_array();

		for (size_t i = 0; i < ns.n; i++)
			json_array_append_new(a, node_json(&ns, i));
		ccli_print_json(a);
		json_decref(a);
		goto out;
	}
	if (!ns.n) {
		printf("no nodes yet: run 'kvmove agent' on each host\n");
		goto out;
	}
	ccli_table_init(&t, 8, "NAME", "STATE", "VMS", "VCPUS", "RAM", "LOAD", "MIGR", "ADDR");
	for (size_t i = 0; i < ns.n; i++) {
		const struct cluster_node *n = &ns.v[i];
		const struct place_node *p = &ns.place[i];
		char vms[16] = "", cpus[32] = "", ram[64] = "", load[16] = "", lim[16], addr[64];
		char a[24], b[24];
		bool rec = n->rec && !n->problem[0];

		if (rec) {
			snprintf(vms, sizeof(vms), "%zu",
				 json_array_size(json_object_get(n->rec, "vms")));
			snprintf(cpus, sizeof(cpus), "%u/%u", p->cpus_used, p->cpus);
			ccli_fmt_bytes(a, sizeof(a), p->ram_used);
			ccli_fmt_bytes(b, sizeof(b), p->ram_total);
			snprintf(ram, sizeof(ram), "%s/%s", a, b);
			snprintf(load, sizeof(load), "%.2f", n->load[0]);
		}
		snprintf(lim, sizeof(lim), "%d%s", n->migration_limit, n->limit_from_cfg ? "" : "*");
		cluster_sanitize(addr, sizeof(addr), cluster_jstr(n->rec, "mgmt-addr"));
		ccli_table_add(&t, n->name, nodeset_state(n), vms, cpus, ram, load, lim, addr);
	}
	ccli_table_print(&t);
	printf("(MIGR: migrations that may leave the node at once; * = the cluster's "
	       "default)\n");
out:
	nodeset_free(&ns);
	ccli_close(&c);
	return status;
}

static void show_line(const char *label, const char *value)
{
	char s[512];

	cluster_sanitize(s, sizeof(s), value);
	printf("  %-16s %s\n", label, *s ? s : "-");
}

/* The array of strings at key, space-separated (sanitised by show_line). */
static void join(json_t *rec, const char *key, char *buf, size_t len)
{
	size_t i, off = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(json_object_get(rec, key), i, v) {
		int n = snprintf(buf + off, len - off, "%s%s", off ? " " : "",
				 json_is_string(v) ? json_string_value(v) : "?");

		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
}

static void show_human(const struct nodeset *ns, size_t i, const struct store_list *slots,
		       json_t *drain)
{
	const struct cluster_node *n = &ns->v[i];
	const struct place_node *p = &ns->place[i];
	char buf[1024], a[32], b[32];

	printf("%s: %s\n", n->name, nodeset_state(n));
	if (n->problem[0])
		show_line("problem", n->problem);
	if (n->rec && !n->problem[0]) {
		show_line("mgmt-addr", cluster_jstr(n->rec, "mgmt-addr"));
		join(n->rec, "migration-nets", buf, sizeof(buf));
		show_line("migration-nets", buf);
		join(n->rec, "migration-addrs", buf, sizeof(buf));
		show_line("migration-addrs", buf);
		snprintf(buf, sizeof(buf), "%u of %u used", p->cpus_used, p->cpus);
		show_line("vcpus", buf);
		ccli_fmt_bytes(a, sizeof(a), p->ram_used);
		ccli_fmt_bytes(b, sizeof(b), p->ram_total);
		snprintf(buf, sizeof(buf), "%s of %s used", a, b);
		if (cluster_jint(n->rec, "host-ram-free", -1) >= 0) {
			ccli_fmt_bytes(a, sizeof(a), (uint64_t)cluster_jint(n->rec, "host-ram-free", 0));
			snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (host: %s free)", a);
		}
		show_line("ram", buf);
		snprintf(buf, sizeof(buf), "%.2f %.2f %.2f", n->load[0], n->load[1], n->load[2]);
		show_line("load", buf);
		snprintf(buf, sizeof(buf), "%s, %zu features", n->vendor[0] ? n->vendor : "unknown",
			 p->nfeatures);
		show_line("cpu", buf);
		join(n->rec, "vms", buf, sizeof(buf));
		show_line("vms", buf);
		if (cluster_jint(n->rec, "agent-pid", 0) > 0) {
			ccli_fmt_time(a, sizeof(a), cluster_jnum(n->rec, "started", 0));
			snprintf(buf, sizeof(buf), "pid %lld, started %s",
				 (long long)cluster_jint(n->rec, "agent-pid", 0), a);
			show_line("agent", buf);
		}
	}
	show_line("maintenance", p->maintenance ? "on" : "off");
	if (drain) {
		const char *vm;
		json_t *why;
		node_drain_line(drain, buf, sizeof(buf));
		show_line("drain", buf);
		json_object_foreach(json_object_get(drain, "stuck"), vm, why) {
			snprintf(buf, sizeof(buf), "%s stays: %s", vm,
				 json_string_value(why) ?: "?");
			show_line("", buf);
		}
	}
	snprintf(buf, sizeof(buf), "%d%s", n->migration_limit,
		 n->limit_from_cfg ? "" : " (the cluster's default)");
	show_line("migration-limit", buf);
	for (size_t k = 0; k < slots->n; k++) {
		char v[64];

		ccli_text(&slots->kvs[k], v, sizeof(v));
		snprintf(buf, sizeof(buf), "%s: %s", slots->kvs[k].key + strlen("/kvmove/slots/") +
			 strlen(n->name) + 1, v);
		show_line(k ? "" : "slots", buf);
	}
}

static int node_show(int argc, char **argv)
{
	struct ccli c = { .verb = "node show" };
	struct nodeset ns = { 0 };
	struct store_list slots = { 0 };
	struct store_kv dkv;
	struct kv_err err;
	json_t *drain = NULL;
	const char *name = NULL;
	char prefix[96];
	int status, i, rc;

	status = ccli_parse_simple(&c, argc, argv, usage_show, CCLI_ARG_NODE, &name);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if ((status = ccli_open(&c)) || (status = ccli_nodes(&c, NULL, &ns)))
		goto out;
	i = nodeset_find(&ns, name);
	if (i < 0) {
		ccli_msg(&c, "no node named %s (kvmove node list)", name);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	snprintf(prefix, sizeof(prefix), "/kvmove/slots/%s/", name);
	rc = store_list(c.st, prefix, &slots, &err);
	if (rc) {
		status = ccli_store_fail(&c, rc, &err, NULL);
		goto out;
	}
	/* the last drain of this node, if any (kvmove node maintenance) */
	snprintf(prefix, sizeof(prefix), "/kvmove/drains/%s", name);
	rc = store_get(c.st, prefix, &dkv, NULL, &err);
	if (rc && rc != -ENOENT) {
		status = ccli_store_fail(&c, rc, &err, NULL);
		goto out;
	}
	if (!rc) {
		if (cluster_json_object(prefix, dkv.value, dkv.vlen, &drain, &err))
			ccli_msg(&c, "warning: %s", err.msg);
		store_kv_free(&dkv);
	}
	snprintf(prefix, sizeof(prefix), "/kvmove/slots/%s/", name);
	if (c.json) {
		json_t *j = node_json(&ns, (size_t)i), *s = json_object();

		for (size_t k = 0; k < slots.n; k++) {
			char slot[32], v[64];

			cluster_sanitize(slot, sizeof(slot), slots.kvs[k].key + strlen(prefix));
			ccli_text(&slots.kvs[k], v, sizeof(v));
			json_object_set_new(s, slot, json_string(v));
		}
		json_object_set_new(j, "slots", s);
		json_object_set(j, "drain", drain ? drain : json_null());
		ccli_print_json(j);
		json_decref(j);
	} else {
		show_human(&ns, (size_t)i, &slots, drain);
	}
out:
	json_decref(drain);
	store_list_free(&slots);
	nodeset_free(&ns);
	ccli_close(&c);
	return status;
}

/* --- node set --- */

struct set_opts {
	int maintenance;	/* -1 unchanged, 0 off, 1 on */
	int limit;		/* -2 unchanged, -1 default, else N */
};

static int put_cfg(struct ccli *c, const char *name, const struct set_opts *s, json_t **out)
{
	char key[96];

	snprintf(key, sizeof(key), "/kvmove/nodecfg/%s", name);
	for (int attempt = 0; attempt < 5; attempt++) {
		struct store_kv kv = { 0 };
		struct kv_err err;
		json_t *cfg = NULL;
		char *text;
		bool ok = false, found;
		int rc = store_get(c->st, key, &kv, NULL, &err);

		if (rc && rc != -ENOENT)
			return ccli_store_fail(c, rc, &err, NULL);
		found = rc == 0;
		/* keep what else is there; a malformed value is replaced */
		if (found && cluster_json_object(key, kv.value, kv.vlen, &cfg, &err)) {
			ccli_msg(c, "warning: %s; replacing it", err.msg);
			cfg = NULL;
		}
		if (!cfg)
			cfg = json_pack("{s:b, s:n}", "maintenance", 0, "migration-limit");
		if (s->maintenance >= 0)
			json_object_set_new(cfg, "maintenance", json_boolean(s->maintenance));
		if (s->limit == -1)
			json_object_set_new(cfg, "migration-limit", json_null());
		else if (s->limit >= 0)
			json_object_set_new(cfg, "migration-limit", json_integer(s->limit));
		text = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
		{
			const struct store_cmp cmp = {
				.key = key, .target = found ? STORE_CMP_MOD : STORE_CMP_CREATE,
				.result = STORE_EQ, .num = found ? kv.mod_rev : 0,
			};
			const struct store_op put = { .type = STORE_OP_PUT, .key = key,
						      .value = text };

			rc = text ? store_txn(c->st, &cmp, 1, &put, 1, NULL, 0, &ok, NULL, &err)
				  : kv_errf(&err, ENOMEM, "out of memory");
		}
		free(text);
		if (found)
			store_kv_free(&kv);
		if (rc) {
			json_decref(cfg);
			return ccli_store_fail(c, rc, &err, rc == -ECONNREFUSED ? NULL :
					       "the change may or may not be made: kvmove node show");
		}
		if (ok) {
			*out = cfg;
			return KV_EXIT_OK;
		}
		json_decref(cfg);
	}
	ccli_msg(c, "%s keeps changing under us; try again", key);
	return KV_EXIT_FAIL;
}

static int node_set(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "maintenance", required_argument, NULL, 'm' },
		{ "migration-limit", required_argument, NULL, 'l' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ccli c = { .verb = "node set" };
	struct set_opts s = { .maintenance = -1, .limit = -2 };
	struct store_kv kv;
	struct kv_err err;
	json_t *cfg = NULL;
	const char *name;
	char key[96];
	int ch, status, rc;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":m:l:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&c, ch, optarg))
			continue;
		if (ch == 'm') {
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				ccli_msg(&c, "--maintenance on or off, not '%s'", optarg);
				return KV_EXIT_USAGE;
			}
			s.maintenance = !strcmp(optarg, "on");
		} else if (ch == 'l') {
			char *end;
			long n;

			errno = 0;
			n = strtol(optarg, &end, 10);
			if (!strcmp(optarg, "default")) {
				s.limit = -1;
			} else if (errno || end == optarg || *end || n < 0 ||
				   n > MIGRATION_LIMIT_MAX) {
				ccli_msg(&c, "--migration-limit must be 0..%d or 'default', not '%s'",
					 MIGRATION_LIMIT_MAX, optarg);
				return KV_EXIT_USAGE;
			} else {
				s.limit = (int)n;
			}
		} else if (ch == 'h') {
			usage_set(stdout);
			return KV_EXIT_OK;
		} else {
			return ccli_bad_opt(&c, ch, argv);
		}
	}
	if (optind != argc - 1) {
		ccli_msg(&c, "%s", optind == argc ? "which node? (NODE)" : "one NODE only");
		return KV_EXIT_USAGE;
	}
	name = argv[optind];
	if ((status = ccli_check_node_name(&c, name)))
		return status;
	if (s.maintenance < 0 && s.limit == -2) {
		ccli_msg(&c, "nothing to set: --maintenance on|off and/or --migration-limit "
			 "N|default");
		return KV_EXIT_USAGE;
	}
	if ((status = ccli_open(&c)) || (status = put_cfg(&c, name, &s, &cfg)))
		goto out;
	snprintf(key, sizeof(key), "/kvmove/nodes/%s", name);
	rc = store_get(c.st, key, &kv, NULL, &err);
	if (rc == 0)
		store_kv_free(&kv);
	if (c.json) {
		json_t *j = json_pack("{s:s, s:O, s:b}", "name", name, "config", cfg, "up", rc == 0);

		ccli_print_json(j);
		json_decref(j);
	} else {
		json_t *lim = json_object_get(cfg, "migration-limit");

		if (json_is_integer(lim))
			printf("%s: maintenance %s, migration limit %lld\n", name,
			       json_is_true(json_object_get(cfg, "maintenance")) ? "on" : "off",
			       (long long)json_integer_value(lim));
		else
			printf("%s: maintenance %s, migration limit: the cluster's default\n", name,
			       json_is_true(json_object_get(cfg, "maintenance")) ? "on" : "off");
		if (rc == -ENOENT)
			printf("(no agent runs as %s right now: the settings wait for it)\n", name);
	}
	status = KV_EXIT_OK;
out:
	json_decref(cfg);
	ccli_close(&c);
	return status;
}

int cmd_node(int argc, char **argv)
{
	if (argc < 2) {
		usage_node(stderr);
		return KV_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage_node(stdout);
		return KV_EXIT_OK;
	}
	if (!strcmp(argv[1], "list"))
		return node_list(argc - 1, argv + 1);
	if (!strcmp(argv[1], "show"))
		return node_show(argc - 1, argv + 1);
	if (!strcmp(argv[1], "set"))
		return node_set(argc - 1, argv + 1);
	if (!strcmp(argv[1], "maintenance"))
		return node_maintenance(argc - 1, argv + 1);
	fprintf(stderr, "kvmove node: unknown subverb '%s'\n\n", argv[1]);
	usage_node(stderr);
	return KV_EXIT_USAGE;
}
