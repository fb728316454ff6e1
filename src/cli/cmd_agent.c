/*
 * cmd_agent.c - kvmove agent: the node agent of a kvmove cluster.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cluster/agent.h"
#include "cluster/clusterconf.h"
#include "cluster/embedded.h"
#include "cluster/records.h"
#include "core/cpumodel.h"
#include "core/mem.h"

static void usage(FILE *f)
{
	fputs("usage: kvmove agent [options]\n"
	      "\n"
	      "Run this host's node agent: it registers the node in the cluster's etcd\n"
	      "under a lease, publishes what the node offers, runs the VMs the cluster\n"
	      "assigns to it (one `kvmove run` per VM), takes VMs migrated to it and\n"
	      "drives the migrations of its own (docs/CLUSTER.md).  Its VMs keep running\n"
	      "when it stops; a restarted agent adopts them.\n"
	      "\n"
	      "  --name NODE          this node's name (default: the host name)\n"
	      "  --etcd URL[,URL...]  the cluster's etcd (default: $KVMOVE_ETCD, then the\n"
	      "                       etcd= line of /etc/kvmove/cluster.conf, then the\n"
	      "                       embedded one of `kvmove cluster init`, started if\n"
	      "                       needed)\n"
	      "  --mgmt-addr IP       this node's management address (shown to operators)\n"
	      "  --migration-net CIDR a network migrations may use (repeatable, in order of\n"
	      "                       preference: a migration uses the first network both\n"
	      "                       nodes have and falls back to the next if it fails\n"
	      "                       before the switchover).  Only these are used\n"
	      "  --allow-disk DIR     storage this node reaches (repeatable): VMs whose disks\n"
	      "                       lie elsewhere are never placed here\n"
	      "  --ram SIZE           RAM offered to VMs (default: the host's)\n"
	      "  --cpus N             vCPUs offered to VMs (default: the host's CPUs)\n"
	      "  --run-dir DIR        VMM sockets, consoles and logs (default /run/kvmove)\n"
	      "  --tls-psk FILE       the cluster's migration key (`kvmove keygen`; default\n"
	      "                       with the embedded etcd: /var/lib/kvmove/cluster.psk)\n"
	      "  --cluster-dir DIR    the embedded etcd's directory when no etcd is given\n"
	      "                       (default /var/lib/kvmove, as `kvmove cluster init`)\n"
	      "  --insecure           plaintext migrations (benchmarks and tests only)\n"
	      "  --quick-dir DIR      shared directory for quick migrations (vm migrate --quick)\n"
	      "  --lease-ttl S        the node's lease (default 6 s; renewed every TTL/3)\n"
	      "  --port-base N        incoming migrations listen from this port (default 7400)\n"
	      "  --kvmove FILE        the kvmove binary VMMs run (default: this one)\n"
	      "  --x-hide-feature F   testing: act as if this host's KVM lacked CPU feature F\n"
	      "                       (kvmove cpu-models --features names them): not\n"
	      "                       published, and hidden from the VMMs it starts\n"
	      "                       (repeatable)\n"
	      "  -h, --help           this text\n"
	      "\n"
	      "Stops on SIGTERM or SIGINT.  Exit status: 0 stopped, 1 could not start\n"
	      "(etcd unreachable, bad run directory), 2 usage error.\n", f);
}

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int add(const char **list, unsigned *n, unsigned max, const char *v, const char *opt)
{
	if (*n >= max) {
		fprintf(stderr, "kvmove agent: at most %u %s\n", max, opt);
		return -1;
	}
	list[(*n)++] = v;
	return 0;
}

int cmd_agent(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "etcd", required_argument, NULL, 'e' },
		{ "mgmt-addr", required_argument, NULL, 'M' },
		{ "migration-net", required_argument, NULL, 'N' },
		{ "allow-disk", required_argument, NULL, 'A' },
		{ "ram", required_argument, NULL, 'r' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'R' },
		{ "tls-psk", required_argument, NULL, 'y' },
		{ "insecure", no_argument, NULL, 'W' },
		{ "quick-dir", required_argument, NULL, 'q' },
		{ "lease-ttl", required_argument, NULL, 't' },
		{ "port-base", required_argument, NULL, 'p' },
		{ "kvmove", required_argument, NULL, 'k' },
		{ "x-hide-feature", required_argument, NULL, 'H' },
		{ "cluster-dir", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_options o = { .run_dir = "/run/kvmove" };
	static char host[256];
	static struct cluster_etcd ce;
	static struct embedded_result emb;
	struct sigaction sa = { .sa_handler = on_signal };
	struct kv_err err;
	const char *cluster_dir = NULL;
	char *end;
	unsigned long v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o.name = optarg; break;
		case 'e': o.etcd = optarg; break;
		case 'M': o.mgmt_addr = optarg; break;
		case 'N':
			if (!strchr(optarg, '/')) {
				fprintf(stderr, "kvmove agent: --migration-net wants a CIDR "
					"(10.20.0.0/24), not '%s'\n", optarg);
				return KV_EXIT_USAGE;
			}
			if (add(o.nets, &o.nnets, AGENT_MAX_NETS, optarg, "--migration-net"))
				return KV_EXIT_USAGE;
			break;
		case 'A':
			if (optarg[0] != '/') {
				fprintf(stderr, "kvmove agent: --allow-disk needs an absolute path\n");
				return KV_EXIT_USAGE;
			}
			if (add(o.allow, &o.nallow, AGENT_MAX_ALLOW, optarg, "--allow-disk"))
				return KV_EXIT_USAGE;
			break;
		case 'H':
			if (cpu_feature_find(optarg) < 0) {
				fprintf(stderr, "kvmove agent: --x-hide-feature: '%s' is not a CPU "
					"feature kvmove knows (kvmove cpu-models --features lists "
					"them)\n", optarg);
				return KV_EXIT_USAGE;
			}
			if (add(o.hide, &o.nhide, AGENT_MAX_HIDE, optarg, "--x-hide-feature"))
				return KV_EXIT_USAGE;
			break;
		case 'r':
			if (mem_parse_size(optarg, &o.ram, &err)) {
				fprintf(stderr, "kvmove agent: --ram: %s\n", err.msg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'c':
		case 't':
		case 'p':
			v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || v < 1 || v > 65000 || (c == 'p' && v > 65000 - 200)) {
				fprintf(stderr, "kvmove agent: bad number '%s'\n", optarg);
				return KV_EXIT_USAGE;
			}
			if (c == 't' && v < 3) {
				fprintf(stderr, "kvmove agent: --lease-ttl must be at least 3 s (a VMM "
					"must be able to fence its VM before the lease expires)\n");
				return KV_EXIT_USAGE;
			}
			if (c == 'c')
				o.cpus = (unsigned)v;
			else if (c == 't')
				o.lease_ttl = (unsigned)v;
			else
				o.port_base = (unsigned)v;
			break;
		case 'R': o.run_dir = optarg; break;
		case 'y': o.tls_psk = optarg; break;
		case 'W': o.insecure = true; break;
		case 'q': o.quick_dir = optarg; break;
		case 'k': o.kvmove_bin = optarg; break;
		case 'D': cluster_dir = optarg; break;
		case 'h': usage(stdout); return KV_EXIT_OK;
		default: usage(stderr); return KV_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmove agent: unexpected argument '%s'\n", argv[optind]);
		return KV_EXIT_USAGE;
	}
	if (!o.name) {
		if (gethostname(host, sizeof(host) - 1)) {
			fprintf(stderr, "kvmove agent: no --name and no host name\n");
			return KV_EXIT_USAGE;
		}
		o.name = host;
	}
	if (!cluster_node_name_ok(o.name) || !strncmp(o.name, "free:", 5)) {
		fprintf(stderr, "kvmove agent: '%s' is not a node name\n", o.name);
		return KV_EXIT_USAGE;
	}
	if (o.tls_psk && o.insecure) {
		fprintf(stderr, "kvmove agent: --tls-psk or --insecure, not both\n");
		return KV_EXIT_USAGE;
	}
	if (clusterconf_resolve(o.etcd, &ce, &err)) {
		fprintf(stderr, "kvmove agent: %s\n", err.msg);
		return KV_EXIT_USAGE;
	}
	o.etcd = ce.endpoints;
	if (ce.source == CLUSTER_ETCD_DEFAULT) {
		/* a newcomer's one-machine cluster: start the embedded etcd */
		if (cluster_embedded_ensure_ex(cluster_dir, &emb, &err)) {
			fprintf(stderr, "kvmove agent: the embedded etcd: %s\n", err.msg);
			return KV_EXIT_UNREACHABLE;
		}
		if (emb.started)
			fprintf(stderr, "kvmove agent: started the embedded etcd at %s (data %s)\n",
				emb.endpoint, emb.data_dir);
		if (!o.tls_psk && !o.insecure)
			o.tls_psk = emb.psk_path;
	}
	if (!o.tls_psk && !o.insecure) {
		fprintf(stderr, "kvmove agent: give the cluster's key (--tls-psk FILE, made with "
			"`kvmove keygen`) or --insecure\n");
		return KV_EXIT_USAGE;
	}
	if (!o.nnets)
		fprintf(stderr, "kvmove agent: warning: no --migration-net: VMs on this node "
			"cannot be migrated to or from it\n");
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (agent_run(&o, &stop_flag, &err)) {
		fprintf(stderr, "kvmove agent: %s\n", err.msg);
		return KV_EXIT_FAIL;
	}
	return KV_EXIT_OK;
}
