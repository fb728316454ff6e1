/*
 * placement.h - which node should run a VM: a pure function of what the
 * cluster store says about the nodes, so unit tests can drive it and the
 * CLI (vm start) and the agent (vm migrate without --to) decide alike.
 * The score is documented in docs/CLUSTER.md ("Placement").
 */
#ifndef KVMOVE_CLUSTER_PLACEMENT_H
#define KVMOVE_CLUSTER_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct place_node {
	const char *name;
	bool up;			/* its lease-bound node key exists */
	bool maintenance;
	const char *cpu_vendor;
	const char *const *features;	/* sorted or not; compared as sets */
	size_t nfeatures;
	uint64_t ram_total, ram_used;	/* what it offers VMs, what VMs use */
	unsigned cpus, cpus_used;
	double load1;			/* 1-minute load average */
	int reach;			/* 1: its agent says it reaches the VM's disks and
					 * networks; 0: it does not (reach_reason); -1: not
					 * answered yet */
	const char *reach_reason;
};

struct place_vm {
	const char *name;
	uint64_t mem;
	unsigned cpus;
	const char *cpu_vendor;		/* NULL: any (a VM that never ran) */
	const char *const *features;	/* the features it was given; may be empty */
	size_t nfeatures;
	const char *exclude;		/* the node it runs on (a migration), or NULL */
};

struct place_verdict {
	bool fits;
	double score;			/* lower is better; meaningful when fits */
	char reason[192];		/* why not, when !fits ("not enough free RAM: ...") */
};

/* Fill verdicts[0..n) and return the index of the chosen node (the fitting
 * one with the lowest score; ties broken by name), or -1 if none fits. */
int place_choose(const struct place_vm *vm, const struct place_node *nodes, size_t n,
		 struct place_verdict *verdicts);

#endif
