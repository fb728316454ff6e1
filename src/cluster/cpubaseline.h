/*
 * cpubaseline.h - the CPU every node of a cluster offers: the features
 * all nodes share, the richest named model inside them (what a VM can be
 * given and still move to any node), and what the nodes share beyond it.
 * Nodes of different CPU vendors have no common model: a guest sees its
 * host's vendor, so it never moves between them.  A pure function
 * (kvmove cluster cpu-baseline prints it; unit-tested).
 */
#ifndef KVMOVE_CLUSTER_CPUBASELINE_H
#define KVMOVE_CLUSTER_CPUBASELINE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/cpumodel.h"

struct cpubase_node {
	const char *name;
	const char *vendor;		/* "" or NULL: unknown */
	struct cpu_feats feats;		/* what its KVM gives a guest */
};

struct cpubase {
	size_t n;			/* nodes counted */
	bool mixed_vendors;		/* then model is NULL */
	const char *vendor;		/* the nodes' (the first one's when mixed) */
	struct cpu_feats common;	/* in every node */
	const char *model;		/* the richest named model in common, or NULL */
	struct cpu_feats model_feats;	/* its features */
	struct cpu_feats beyond;	/* common less model_feats (all of common
					 * when there is no model) */
};

void cpubase_compute(const struct cpubase_node *nodes, size_t n, struct cpubase *out);

#endif
