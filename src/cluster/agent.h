/*
 * agent.h - kvmove agent: one per host.  It registers the node in etcd under
 * a lease, publishes what the node offers, starts and supervises the VMMs of
 * the VMs the cluster assigns to it, takes VMs migrated to it, drives the
 * migrations of its VMs, and writes what actually runs back (docs/CLUSTER.md).
 */
#ifndef KVMOVE_CLUSTER_AGENT_H
#define KVMOVE_CLUSTER_AGENT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define AGENT_MAX_NETS 8
#define AGENT_MAX_ALLOW 16
#define AGENT_MAX_HIDE 16

struct agent_options {
	const char *name;		/* node name (default: the host name) */
	const char *etcd;		/* endpoints */
	const char *mgmt_addr;		/* shown to operators; NULL: none */
	const char *run_dir;		/* VMM sockets, consoles, logs (/run/kvmove) */
	const char *kvmove_bin;		/* the binary VMMs run (default: this one) */
	const char *tls_psk;		/* the cluster's migration key */
	bool insecure;			/* plaintext migrations (tests, benchmarks) */
	const char *quick_dir;		/* shared directory for quick migrations */
	const char *nets[AGENT_MAX_NETS];	/* migration networks (CIDR), in order */
	unsigned nnets;
	const char *allow[AGENT_MAX_ALLOW];	/* storage this node reaches (dirs) */
	unsigned nallow;
	const char *hide[AGENT_MAX_HIDE];	/* --x-hide-feature: testing */
	unsigned nhide;
	uint64_t ram;			/* RAM offered to VMs (0: the host's) */
	unsigned cpus;			/* vCPUs offered (0: the host's CPUs) */
	unsigned lease_ttl;		/* seconds (default 6) */
	unsigned port_base;		/* incoming migrations listen from here (7400) */
};

/* Run until *stop becomes non-zero (SIGTERM/SIGINT).  The VMMs it started
 * keep running when it ends: a restarted agent adopts them. */
int agent_run(const struct agent_options *o, volatile sig_atomic_t *stop, struct kv_err *err);

#endif
