/*
 * vmcpu.h - the CPU of a cluster VM, for placement and its status.
 *
 * A VM on a named model (vm create --cpu x86-64-v2) is given exactly the
 * model's features wherever it runs, so a node can boot it or take it when
 * its KVM offers every one of them.  A VM on "host" takes what the node it
 * boots on offers (less its "-feat"s; its "+feat"s the node must have), and
 * can then move only to nodes with every feature it booted with, which its
 * status records.  On a move the CPU vendor must match as well: a guest sees
 * its host's vendor whatever the model.  Pure functions: unit-tested.
 */
#ifndef KVMOVE_CLUSTER_VMCPU_H
#define KVMOVE_CLUSTER_VMCPU_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cluster/placement.h"
#include "core/cpumodel.h"

#define VMCPU_NEED_MAX (CPU_FEATS_WORDS * 64)

/* What a node must offer a VM. */
struct vmcpu_need {
	const char *vendor;			/* NULL: any */
	const char *features[VMCPU_NEED_MAX];	/* into the feature table or status */
	size_t n;
};

/*
 * The need of a VM on model m: status NULL for a boot (start, failover),
 * else its status object (a move; the strings point into it, so keep it
 * while the need is used).
 */
void vmcpu_need(const struct cpu_model *m, json_t *status, struct vmcpu_need *out);
/* Point pv's vendor and features at need. */
void vmcpu_place(const struct vmcpu_need *need, struct place_vm *pv);

/* The named features in a JSON array of names; names the table does not
 * know (and non-strings) are skipped and counted in *unknown (may be NULL). */
void vmcpu_feats_from_json(json_t *names, struct cpu_feats *out, unsigned *unknown);
/* f's names as a JSON array, in table order (NULL: out of memory). */
json_t *vmcpu_feats_json(const struct cpu_feats *f);

/*
 * The features a VM on model m is given when it boots on a node whose
 * features are host (an array of names): a named model's own, else the
 * host's less the model's "-feat"s.  A new array (NULL: out of memory).
 */
json_t *vmcpu_boot_features(const struct cpu_model *m, json_t *host);

#endif
