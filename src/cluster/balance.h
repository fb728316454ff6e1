/*
 * balance.h - the load balancer's decision, a pure function of the loads the
 * agents publish (docs/CLUSTER.md, "Load balancing"), so that unit tests
 * drive it and the balancer and the CLI decide alike.
 *
 * A node's CPU load is the CPU its VMs' VMMs used, as a percentage of the
 * CPUs the node offers; a VM's is a percentage of one CPU.  The balancer
 * acts when the busiest node stays above cpu_threshold, or the spread
 * between the busiest and the idlest stays above spread (means over the
 * last few samples, taken by the caller).  It then proposes the one move of
 * a VM off the busiest node that leaves the node loads with the smallest
 * variance, and only if that move
 *   - lowers the variance by at least min_gain (a fraction),
 *   - leaves the target at least hysteresis points below where the source
 *     was (so the next look never sees the target as the new hot spot and
 *     moves it back: no ping-pong),
 *   - goes to a node the placement rules accept.
 */
#ifndef KVMOVE_CLUSTER_BALANCE_H
#define KVMOVE_CLUSTER_BALANCE_H

#include <stdbool.h>
#include <stddef.h>

struct bal_node {
	const char *name;
	unsigned cpus;			/* what it offers VMs (> 0) */
	double cpu;			/* mean load, % of its cpus */
	bool eligible;			/* up, not in maintenance, enough samples */
};

struct bal_vm {
	const char *name;
	size_t node;			/* index of the node it runs on */
	double cpu;			/* mean, % of one CPU */
	bool movable;			/* running, no move of it under way or recent */
	const bool *fits;		/* per node: placement accepts it there */
};

struct bal_settings {
	double cpu_threshold;		/* % (default 80) */
	double spread;			/* points (default 25) */
	double min_gain;		/* fraction of the variance (default 0.1) */
	double hysteresis;		/* points (default 10) */
};

struct bal_move {
	size_t vm, from, to;
	double from_before, from_after, to_before, to_after;
	double spread_before, spread_after;
};

#define BAL_DEFAULTS { .cpu_threshold = 80, .spread = 25, .min_gain = 0.1, .hysteresis = 10 }

/*
 * 1 and *m when a move is recommended; 0 when none is needed or none helps
 * (why says which, for the log and `cluster tips`).
 */
int bal_recommend(const struct bal_node *nodes, size_t nn, const struct bal_vm *vms, size_t nv,
		  const struct bal_settings *s, struct bal_move *m, char *why, size_t len);

#endif
