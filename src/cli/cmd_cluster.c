/*
 * cmd_cluster.c - kvmove cluster init | status (balancer and tips:
 * cmd_cluster_tips.c; cpu-baseline: cmd_cluster_cpu.c): set a cluster up (the
 * embedded single-machine etcd, or the kvmove keys on an existing etcd) and
 * tell how it is (etcd's members and quorum, nodes, VMs, migrations).
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/embedded.h"

static void usage_cluster(FILE *f)
{
	fputs("usage: kvmove cluster SUBVERB [options]\n"
	      "\n"
	      "  init [--dir DIR]   start the embedded single-machine etcd (or, with an\n"
	      "                     etcd given, prepare that one) and the cluster's key\n"
	      "  status             etcd's members and quorum, nodes, VMs, migrations\n"
	      "  balancer [MODE]    show or set the load balancer: off, recommend, automatic\n"
	      "  tips [apply ID]    the balancer's recommendations; apply one\n"
	      "  cpu-baseline       the richest CPU model every node runs (vm create --cpu)\n"
	      "\n"
	      "Each takes --etcd, --json and --help.\n", f);
}

static void usage_init(FILE *f)
{
	fputs("usage: kvmove cluster init [--dir DIR] [--listen IP]\n"
	      "\n"
	      "Without an etcd given (--etcd, $KVMOVE_ETCD, the etcd= line of\n"
	      "/etc/kvmove/cluster.conf): make sure the embedded etcd answers at\n"
	      "http://127.0.0.1:2479: if none does, start /usr/bin/etcd in the background\n"
	      "as a single member named after this host (data DIR/etcd, log DIR/etcd.log,\n"
	      "pid DIR/etcd.pid, peer URL http://127.0.0.1:2480) and wait up to 10 s\n"
	      "for it.  With an etcd given, use that one (it must run already).  Then\n"
	      "write /kvmove/config ({\"migration-limit\": 1}) unless it exists, and the\n"
	      "cluster's migration key DIR/cluster.psk unless it exists: copy that file\n"
	      "to every node (scp), it is what 'kvmove agent --tls-psk' wants.  Running\n"
	      "init again changes nothing that exists.\n"
	      "\n"
	      "  -d, --dir DIR            where the embedded etcd and the key live\n"
	      "                           (default /var/lib/kvmove)\n"
	      "  -l, --listen IP          the embedded etcd also listens on IP:2479 (an\n"
	      "                           IPv4 address of this host on the management\n"
	      "                           network), so agents on other hosts reach it:\n"
	      "                           'kvmove agent --etcd http://IP:2479'\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 ready, 1 failed (e.g. etcd would not start: the message\n"
	      "quotes its log), 2 usage error, 5 the given etcd is unreachable\n", f);
}

static void usage_status(FILE *f)
{
	fputs("usage: kvmove cluster status\n"
	      "\n"
	      "etcd's view (each endpoint: answers or not, leader, version, database size;\n"
	      "the members; whether a quorum answers), then the nodes (up, down, in\n"
	      "maintenance), the VMs (defined, running) and the migrations (queued,\n"
	      "running).\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 etcd has a quorum, 1 failed, 2 usage error, 5 no etcd\n"
	      "endpoint answers, or no quorum (nothing can change until a majority of\n"
	      "the members is back)\n", f);
}

/* Common options (plus --dir and --listen for init); no arguments. */
static int parse(struct ccli *c, int argc, char **argv, void (*usage)(FILE *), const char **dir,
		 const char **listen)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, dir ? ":d:l:e:jh" : ":e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(c, ch, optarg))
			continue;
		if (ch == 'd' && dir) {
			*dir = optarg;
			continue;
		}
		if (ch == 'l' && listen) {
			*listen = optarg;
			continue;
		}
		if (ch == 'h') {
			usage(stdout);
			return -1;
		}
		if (ch == 'd' || ch == 'l')
			ch = '?';
		return ccli_bad_opt(c, ch, argv);
	}
	if (optind < argc) {
		ccli_msg(c, "unexpected argument '%s'", argv[optind]);
		return KV_EXIT_USAGE;
	}
	return 0;
}

static int cluster_init(int argc, char **argv)
{
	struct ccli c = { .verb = "cluster init" };
	struct embedded_result r = { 0 };
	struct kv_err err;
	const char *dir = NULL, *listen = NULL;
	int status, rc;

	status = parse(&c, argc, argv, usage_init, &dir, &listen);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if (clusterconf_resolve(c.etcd_opt, &c.etcd, &err)) {
		ccli_msg(&c, "%s", err.msg);
		return KV_EXIT_USAGE;
	}
	if (listen && c.etcd.source != CLUSTER_ETCD_DEFAULT) {
		ccli_msg(&c, "--listen is for the embedded etcd; this one is given (%s)",
			 c.etcd.endpoints);
		return KV_EXIT_USAGE;
	}
	if (listen && strlen(listen) >= sizeof(r.listen)) {
		ccli_msg(&c, "--listen '%s' is not an IPv4 address", listen);
		return KV_EXIT_USAGE;
	}
	if (c.etcd.source == CLUSTER_ETCD_DEFAULT) {
		if (listen)
			snprintf(r.listen, sizeof(r.listen), "%s", listen);
		rc = cluster_embedded_ensure_ex(dir, &r, &err);
		if (rc) {
			ccli_msg(&c, "%s", err.msg);
			return KV_EXIT_FAIL;
		}
	} else {
		/* an etcd of the operator's: the keys and the key file only */
		if ((status = ccli_open(&c)))
			return status;
		snprintf(r.endpoint, sizeof(r.endpoint), "%.*s", (int)sizeof(r.endpoint) - 1,
			 c.etcd.endpoints);
		rc = cluster_config_init(c.st, &r.config_written, &err);
		if (rc) {
			status = ccli_store_fail(&c, rc, &err, NULL);
			ccli_close(&c);
			return status;
		}
		ccli_close(&c);
		snprintf(r.dir, sizeof(r.dir), "%s", dir ? dir : CLUSTER_DEFAULT_DIR);
		rc = cluster_psk_init(r.dir, r.psk_path, sizeof(r.psk_path), &r.psk_written, &err);
		if (rc) {
			ccli_msg(&c, "the cluster is ready but its key is not: %s", err.msg);
			return KV_EXIT_FAIL;
		}
	}
	if (c.json) {
		json_t *j = json_pack("{s:s, s:b, s:b, s:b, s:s, s:b}", "endpoint",
				      c.etcd.source == CLUSTER_ETCD_DEFAULT ? r.endpoint :
				      c.etcd.endpoints, "embedded",
				      c.etcd.source == CLUSTER_ETCD_DEFAULT, "started", r.started,
				      "config-written", r.config_written, "psk", r.psk_path,
				      "psk-written", r.psk_written);

		if (r.listen[0])
			json_object_set_new(j, "listen", json_string(r.listen));
		if (r.started) {
			json_object_set_new(j, "pid", json_integer(r.pid));
			json_object_set_new(j, "data-dir", json_string(r.data_dir));
			json_object_set_new(j, "log", json_string(r.log_path));
		}
		ccli_print_json(j);
		json_decref(j);
		return KV_EXIT_OK;
	}
	if (c.etcd.source != CLUSTER_ETCD_DEFAULT)
		printf("etcd: %s (from %s)\n", c.etcd.endpoints, c.etcd.from);
	else if (r.started)
		printf("etcd: started (pid %d), answering at %s\n"
		       "      data %s, log %s\n", (int)r.pid, r.endpoint, r.data_dir, r.log_path);
	else
		printf("etcd: answering at %s already\n", r.endpoint);
	printf("/kvmove/config: %s\n", r.config_written ? "written ({\"migration-limit\": 1})" :
	       "exists (kept)");
	printf("cluster key: %s%s\n", r.psk_path, r.psk_written ? " (new)" : " (exists, kept)");
	if (c.etcd.source == CLUSTER_ETCD_DEFAULT && r.listen[0] && !r.started)
		printf("\nNote: an etcd already answered at %s, so --listen %s changed nothing:\n"
		       "stop it (kill $(cat %s/etcd.pid)) and run init again to listen there.\n",
		       r.endpoint, r.listen, r.dir);
	if (c.etcd.source == CLUSTER_ETCD_DEFAULT && r.listen[0] && r.started)
		printf("\nNext, start an agent on each host (the embedded etcd listens on\n"
		       "http://%s:2479 too; copy the key to each host first):\n"
		       "  kvmove agent --etcd http://%s:2479 --mgmt-addr IP --migration-net CIDR "
		       "--allow-disk DIR --tls-psk %s\n"
		       "then: kvmove node list\n", r.listen, r.listen, r.psk_path);
	else if (c.etcd.source == CLUSTER_ETCD_DEFAULT)
		printf("\nNext, start this host's agent (the embedded etcd listens on 127.0.0.1\n"
		       "only: a cluster of several hosts needs an etcd they all reach, see\n"
		       "docs/CLUSTER.md):\n"
		       "  kvmove agent --mgmt-addr IP --migration-net CIDR --allow-disk DIR%s%s\n"
		       "then: kvmove node list\n",
		       strcmp(r.dir, CLUSTER_DEFAULT_DIR) ? " --tls-psk " : "",
		       strcmp(r.dir, CLUSTER_DEFAULT_DIR) ? r.psk_path : "");
	else
		printf("\nNext, on each host (copy the key there first, e.g. scp %s HOST:%s):\n"
		       "  kvmove agent --etcd %s --tls-psk %s \\\n"
		       "               --mgmt-addr IP --migration-net CIDR --allow-disk DIR\n"
		       "then: kvmove node list\n", r.psk_path, r.psk_path, c.etcd.endpoints,
		       r.psk_path);
	return KV_EXIT_OK;
}

/* Counts of what the store holds. */
struct counts {
	size_t up, down, maint, bad, vms, running, queued, migrating;
};

static int count(struct ccli *c, struct counts *n)
{
	struct nodeset ns;
	struct store_list l;
	struct kv_err err;
	int status, rc;

	memset(n, 0, sizeof(*n));
	if ((status = ccli_nodes(c, NULL, &ns)))
		return status;
	for (size_t i = 0; i < ns.n; i++) {
		const char *s = nodeset_state(&ns.v[i]);

		if (!strcmp(s, "up"))
			n->up++;
		else if (!strcmp(s, "maintenance"))
			n->maint++;
		else if (!strcmp(s, "down"))
			n->down++;
		else
			n->bad++;
	}
	nodeset_free(&ns);
	rc = store_list(c->st, "/kvmove/vms/", &l, &err);
	if (rc)
		return ccli_store_fail(c, rc, &err, NULL);
	for (size_t i = 0; i < l.n; i++) {
		const char *leaf = strrchr(l.kvs[i].key, '/');

		if (leaf && !strcmp(leaf, "/spec"))
			n->vms++;
		else if (leaf && !strcmp(leaf, "/owner"))
			n->running++;
	}
	store_list_free(&l);
	rc = store_list(c->st, "/kvmove/migrations/", &l, &err);
	if (rc)
		return ccli_store_fail(c, rc, &err, NULL);
	for (size_t i = 0; i < l.n; i++) {
		json_t *m = NULL;
		const char *st;

		if (cluster_json_object("migration", l.kvs[i].value, l.kvs[i].vlen, &m, NULL))
			continue;
		st = cluster_jstr(m, "state");
		if (!strcmp(st, "queued"))
			n->queued++;
		else if (!strcmp(st, "running"))
			n->migrating++;
		json_decref(m);
	}
	store_list_free(&l);
	return KV_EXIT_OK;
}

static void print_etcd(const struct ccli *c, json_t *s, bool quorum)
{
	json_t *e;
	size_t i;
	char leader[80], a[32];

	cluster_sanitize(leader, sizeof(leader), cluster_jstr(s, "leader"));
	printf("etcd: %s, leader %s, %zu member%s (endpoints from %s)\n",
	       quorum ? "quorum" : "NO QUORUM", leader[0] ? leader : "none",
	       json_array_size(json_object_get(s, "members")),
	       json_array_size(json_object_get(s, "members")) == 1 ? "" : "s", c->etcd.from);
	json_array_foreach(json_object_get(s, "endpoints"), i, e) {
		char ep[128], ver[32], why[192];

		cluster_sanitize(ep, sizeof(ep), cluster_jstr(e, "endpoint"));
		if (!cluster_jbool(e, "ok", false)) {
			cluster_sanitize(why, sizeof(why), cluster_jstr(e, "error"));
			printf("  %s  unreachable: %s\n", ep, why[0] ? why : "no answer");
			continue;
		}
		cluster_sanitize(ver, sizeof(ver), cluster_jstr(e, "version"));
		ccli_fmt_bytes(a, sizeof(a), (uint64_t)cluster_jnum(e, "db-size", 0));
		printf("  %s  ok%s  etcd %s  db %s  raft index %lld term %lld\n", ep,
		       cluster_jbool(e, "is-leader", false) ? "  leader" : "", ver, a,
		       (long long)cluster_jnum(e, "raft-index", 0),
		       (long long)cluster_jnum(e, "raft-term", 0));
	}
}

static int cluster_status(int argc, char **argv)
{
	struct ccli c = { .verb = "cluster status" };
	struct counts n;
	struct kv_err err;
	json_t *s = NULL;
	bool quorum;
	int status, rc;

	status = parse(&c, argc, argv, usage_status, NULL, NULL);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if ((status = ccli_open(&c)))
		return status;
	rc = store_cluster_status(c.st, &s, &err);
	if (rc) {
		status = ccli_store_fail(&c, rc, &err, NULL);
		goto out;
	}
	quorum = cluster_jbool(s, "quorum", false);
	if (quorum && (status = count(&c, &n)))
		goto out;
	if (c.json) {
		json_t *j = json_pack("{s:O, s:s}", "etcd", s, "from", c.etcd.from);

		if (quorum) {
			json_object_set_new(j, "nodes", json_pack("{s:I, s:I, s:I, s:I}", "up",
				(json_int_t)n.up, "down", (json_int_t)n.down, "maintenance",
				(json_int_t)n.maint, "bad-record", (json_int_t)n.bad));
			json_object_set_new(j, "vms", json_pack("{s:I, s:I}", "defined",
				(json_int_t)n.vms, "running", (json_int_t)n.running));
			json_object_set_new(j, "migrations", json_pack("{s:I, s:I}", "queued",
				(json_int_t)n.queued, "running", (json_int_t)n.migrating));
		}
		ccli_print_json(j);
		json_decref(j);
	} else {
		print_etcd(&c, s, quorum);
		if (quorum) {
			printf("nodes: %zu up, %zu down, %zu in maintenance", n.up, n.down, n.maint);
			if (n.bad)
				printf(", %zu with a bad record", n.bad);
			printf("\nvms: %zu defined, %zu running\n", n.vms, n.running);
			printf("migrations: %zu queued, %zu running\n", n.queued, n.migrating);
		}
	}
	if (!quorum) {
		char why[256];

		cluster_sanitize(why, sizeof(why), cluster_jstr(s, "quorum-error"));
		if (!strncmp(why, "etcd at ", 8) && strstr(why, ": "))	/* said already */
			memmove(why, strstr(why, ": ") + 2, strlen(strstr(why, ": ") + 2) + 1);
		ccli_msg(&c, "etcd at %s has no quorum%s%s%s: nothing can change until a "
			 "majority of its members answers", c.etcd.endpoints, why[0] ? " (" : "",
			 why, why[0] ? ")" : "");
		status = KV_EXIT_UNREACHABLE;
	}
out:
	json_decref(s);
	ccli_close(&c);
	return status;
}

int cmd_cluster(int argc, char **argv)
{
	if (argc < 2) {
		usage_cluster(stderr);
		return KV_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage_cluster(stdout);
		return KV_EXIT_OK;
	}
	if (!strcmp(argv[1], "init"))
		return cluster_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "status"))
		return cluster_status(argc - 1, argv + 1);
	if (!strcmp(argv[1], "balancer"))
		return cmd_cluster_balancer(argc - 1, argv + 1);
	if (!strcmp(argv[1], "tips"))
		return cmd_cluster_tips(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cpu-baseline"))
		return cmd_cluster_cpu_baseline(argc - 1, argv + 1);
	fprintf(stderr, "kvmove cluster: unknown subverb '%s'\n\n", argv[1]);
	usage_cluster(stderr);
	return KV_EXIT_USAGE;
}
