/*
 * cpumodel.h - named CPU models: which CPUID feature bits a guest is given.
 *
 * A model is "host" (everything this host's KVM supports, as before) or a
 * named baseline (x86-64, x86-64-v2, compat, x86-64-v3, x86-64-v4) with
 * "+feat" / "-feat" changes.  A named model sets the feature registers to
 * exactly the model's bits, keeps only the XSAVE state components its
 * features need (with sizes to match), and leaves the rest of the host's
 * CPUID (vendor, family, caches, topology, KVM's own leaves) as it is.
 * Pure table work, no ioctls: unit-tested without KVM (docs/CPU-MODELS.md).
 */
#ifndef KVMOVE_CORE_CPUMODEL_H
#define KVMOVE_CORE_CPUMODEL_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define CPU_MODEL_SPEC_MAX 256	/* "x86-64-v2,+aes,-popcnt" */
#define CPU_FEATS_WORDS 8	/* room for 512 named features */

/* A set of named features (indexes into the feature table). */
struct cpu_feats {
	uint64_t w[CPU_FEATS_WORDS];
};

struct cpu_model {
	bool host;			/* pass the host's CPUID through */
	char spec[CPU_MODEL_SPEC_MAX];	/* canonical spelling, e.g. "x86-64-v2,+aes" */
	struct cpu_feats feats;		/* named models: exactly these features */
	struct cpu_feats remove;	/* every "-feat" */
	struct cpu_feats add;		/* every "+feat" (the host must have them) */
};

/* The feature table. */
unsigned cpu_feature_count(void);
const char *cpu_feature_name(unsigned i);
/* Where feature i lives: CPUID.fn.idx register reg (0 eax .. 3 edx) bit. */
void cpu_feature_where(unsigned i, uint32_t *fn, uint32_t *idx, int *reg, unsigned *bit);
/* The name of CPUID.fn.idx register reg (0 eax .. 3 edx) bit, or NULL. */
const char *cpu_feature_name_at(uint32_t fn, uint32_t idx, int reg, unsigned bit);
/* Index of a feature by name (Linux /proc/cpuinfo spelling), or -1. */
int cpu_feature_find(const char *name);

static inline bool cpu_feats_has(const struct cpu_feats *f, unsigned i)
{
	return (f->w[i / 64] >> (i % 64)) & 1;
}
static inline void cpu_feats_set(struct cpu_feats *f, unsigned i)
{
	f->w[i / 64] |= 1ull << (i % 64);
}
static inline void cpu_feats_clear(struct cpu_feats *f, unsigned i)
{
	f->w[i / 64] &= ~(1ull << (i % 64));
}
/* Is every feature of a in b? */
bool cpu_feats_subset(const struct cpu_feats *a, const struct cpu_feats *b);
/* The features of a not in b, as "avx2 bmi2" (empty: none). Returns how many. */
unsigned cpu_feats_missing(const struct cpu_feats *a, const struct cpu_feats *b, char *out,
			   size_t cap);
/* Every named feature, space-separated. */
void cpu_feats_names(const struct cpu_feats *f, char *out, size_t cap);

/* "avx2,bmi2" -> set (adds to f); an unknown name is an error naming it. */
int cpu_feats_parse_list(const char *list, struct cpu_feats *f, struct kv_err *err);

/* The named models, from the poorest: index 0..n-1, or NULL past the end. */
const char *cpu_model_name(unsigned i);
const char *cpu_model_describe(unsigned i);
int cpu_model_base_feats(const char *name, struct cpu_feats *out);

/* Parse "host", "MODEL" or either with ",+feat,-feat..." (an unknown model
 * or feature is an error naming it, with the known ones). */
int cpu_model_parse(const char *spec, struct cpu_model *m, struct kv_err *err);

/* The named features a CPUID table offers. */
void cpu_feats_from_cpuid(const struct kvm_cpuid2 *c, struct cpu_feats *out);
/* Drop named features from a CPUID table (--x-hide-host-feature). */
void cpu_cpuid_hide(struct kvm_cpuid2 *c, const struct cpu_feats *hide);

/* The guest CPUID for model m on a host whose KVM supports `host`: fails,
 * naming the features, if the host lacks any the model needs.  *out is
 * malloc'ed. */
int cpu_model_apply(const struct cpu_model *m, const struct kvm_cpuid2 *host,
		    struct kvm_cpuid2 **out, struct kv_err *err);

/* The richest named model (plus nothing) whose features are all in f, or
 * NULL if not even x86-64. */
const char *cpu_model_best(const struct cpu_feats *f);

/* XSAVE: the size of the area for the components in xcr0, from the
 * table's own leaf 0xD subleaves (0 if a component is not described). */
uint32_t cpu_xsave_size(const struct kvm_cpuid2 *c, uint64_t xcr0);

#endif
