/*
 * cpumodel.c - the feature table, the named models and the masking of a
 * host CPUID to a model (cpumodel.h, docs/CPU-MODELS.md).
 */
#define _GNU_SOURCE
#include "core/cpumodel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EAX, EBX, ECX, EDX };

struct feature {
	const char *name;	/* Linux /proc/cpuinfo spelling */
	uint32_t fn, idx;
	uint8_t reg, bit;
};

#define F1C(n, b) { n, 1, 0, ECX, b }
#define F1D(n, b) { n, 1, 0, EDX, b }
#define F7B(n, b) { n, 7, 0, EBX, b }
#define F7C(n, b) { n, 7, 0, ECX, b }
#define F7D(n, b) { n, 7, 0, EDX, b }
#define F71A(n, b) { n, 7, 1, EAX, b }
#define FDA(n, b) { n, 0xd, 1, EAX, b }
#define FXC(n, b) { n, 0x80000001, 0, ECX, b }
#define FXD(n, b) { n, 0x80000001, 0, EDX, b }
#define FKVM(n, b) { n, 0x40000001, 0, EAX, b }

static const struct feature features[] = {
	F1D("fpu", 0), F1D("vme", 1), F1D("de", 2), F1D("pse", 3), F1D("tsc", 4),
	F1D("msr", 5), F1D("pae", 6), F1D("mce", 7), F1D("cx8", 8), F1D("apic", 9),
	F1D("sep", 11), F1D("mtrr", 12), F1D("pge", 13), F1D("mca", 14), F1D("cmov", 15),
	F1D("pat", 16), F1D("pse36", 17), F1D("pn", 18), F1D("clflush", 19), F1D("ds", 21),
	F1D("acpi", 22), F1D("mmx", 23), F1D("fxsr", 24), F1D("sse", 25), F1D("sse2", 26),
	F1D("ss", 27), F1D("ht", 28), F1D("tm", 29), F1D("pbe", 31),

	F1C("pni", 0), F1C("pclmulqdq", 1), F1C("dtes64", 2), F1C("monitor", 3),
	F1C("ds_cpl", 4), F1C("vmx", 5), F1C("smx", 6), F1C("est", 7), F1C("tm2", 8),
	F1C("ssse3", 9), F1C("cid", 10), F1C("sdbg", 11), F1C("fma", 12), F1C("cx16", 13),
	F1C("xtpr", 14), F1C("pdcm", 15), F1C("pcid", 17), F1C("dca", 18),
	F1C("sse4_1", 19), F1C("sse4_2", 20), F1C("x2apic", 21), F1C("movbe", 22),
	F1C("popcnt", 23), F1C("tsc_deadline_timer", 24), F1C("aes", 25), F1C("xsave", 26),
	F1C("avx", 28), F1C("f16c", 29), F1C("rdrand", 30), F1C("hypervisor", 31),

	F7B("fsgsbase", 0), F7B("tsc_adjust", 1), F7B("sgx", 2), F7B("bmi1", 3),
	F7B("hle", 4), F7B("avx2", 5), F7B("fdp_excptn_only", 6), F7B("smep", 7),
	F7B("bmi2", 8), F7B("erms", 9), F7B("invpcid", 10), F7B("rtm", 11), F7B("cqm", 12),
	F7B("zero_fcs_fds", 13), F7B("mpx", 14), F7B("rdt_a", 15), F7B("avx512f", 16),
	F7B("avx512dq", 17), F7B("rdseed", 18), F7B("adx", 19), F7B("smap", 20),
	F7B("avx512ifma", 21), F7B("clflushopt", 23), F7B("clwb", 24), F7B("intel_pt", 25),
	F7B("avx512pf", 26), F7B("avx512er", 27), F7B("avx512cd", 28), F7B("sha_ni", 29),
	F7B("avx512bw", 30), F7B("avx512vl", 31),

	F7C("prefetchwt1", 0), F7C("avx512vbmi", 1), F7C("umip", 2), F7C("pku", 3),
	F7C("waitpkg", 5), F7C("avx512_vbmi2", 6), F7C("shstk", 7), F7C("gfni", 8),
	F7C("vaes", 9), F7C("vpclmulqdq", 10), F7C("avx512_vnni", 11),
	F7C("avx512_bitalg", 12), F7C("tme", 13), F7C("avx512_vpopcntdq", 14),
	F7C("la57", 16), F7C("rdpid", 22), F7C("bus_lock_detect", 24), F7C("cldemote", 25),
	F7C("movdiri", 27), F7C("movdir64b", 28), F7C("enqcmd", 29), F7C("sgx_lc", 30),
	F7C("pks", 31),

	F7D("avx512_4vnniw", 2), F7D("avx512_4fmaps", 3), F7D("fsrm", 4),
	F7D("avx512_vp2intersect", 8), F7D("srbds_ctrl", 9), F7D("md_clear", 10),
	F7D("serialize", 14), F7D("tsxldtrk", 16), F7D("pconfig", 18), F7D("arch_lbr", 19),
	F7D("ibt", 20), F7D("amx_bf16", 22), F7D("avx512_fp16", 23), F7D("amx_tile", 24),
	F7D("amx_int8", 25), F7D("spec_ctrl", 26), F7D("intel_stibp", 27),
	F7D("flush_l1d", 28), F7D("arch_capabilities", 29), F7D("core_capabilities", 30),
	F7D("spec_ctrl_ssbd", 31),

	F71A("avx_vnni", 4), F71A("avx512_bf16", 5), F71A("fzrm", 10), F71A("fsrs", 11),
	F71A("fsrc", 12), F71A("amx_fp16", 21), F71A("avx_ifma", 23),

	FDA("xsaveopt", 0), FDA("xsavec", 1), FDA("xgetbv1", 2), FDA("xsaves", 3),
	FDA("xfd", 4),

	FXC("lahf_lm", 0), FXC("cmp_legacy", 1), FXC("svm", 2), FXC("extapic", 3),
	FXC("cr8_legacy", 4), FXC("abm", 5), FXC("sse4a", 6), FXC("misalignsse", 7),
	FXC("3dnowprefetch", 8), FXC("osvw", 9), FXC("ibs", 10), FXC("xop", 11),
	FXC("skinit", 12), FXC("wdt", 13), FXC("lwp", 15), FXC("fma4", 16), FXC("tce", 17),
	FXC("nodeid_msr", 19), FXC("tbm", 21), FXC("topoext", 22), FXC("perfctr_core", 23),
	FXC("perfctr_nb", 24), FXC("bpext", 26), FXC("ptsc", 27), FXC("perfctr_llc", 28),
	FXC("mwaitx", 29),

	FXD("syscall", 11), FXD("mp", 19), FXD("nx", 20), FXD("mmxext", 22),
	FXD("fxsr_opt", 25), FXD("pdpe1gb", 26), FXD("rdtscp", 27), FXD("lm", 29),
	FXD("3dnowext", 30), FXD("3dnow", 31),

	FKVM("kvmclock", 0), FKVM("kvm_nopiodelay", 1), FKVM("kvmclock2", 3),
	FKVM("kvm_async_pf", 4), FKVM("kvm_steal_time", 5), FKVM("kvm_pv_eoi", 6),
	FKVM("kvm_pv_unhalt", 7), FKVM("kvm_pv_tlb_flush", 9), FKVM("kvm_async_pf_vmexit", 10),
	FKVM("kvm_pv_send_ipi", 11), FKVM("kvm_poll_control", 12),
	FKVM("kvm_pv_sched_yield", 13), FKVM("kvm_async_pf_int", 14),
	FKVM("kvm_msi_ext_dest_id", 15), FKVM("kvm_hc_map_gpa_range", 16),
	FKVM("kvm_migration_control", 17), FKVM("kvmclock_stable_bit", 24),
};

#define NFEAT (sizeof(features) / sizeof(features[0]))
_Static_assert(NFEAT <= CPU_FEATS_WORDS * 64, "the feature table outgrew struct cpu_feats");

/* The registers a named model sets to exactly its bits.  KVM's own leaf
 * (0x40000001) is the host kernel's, not the CPU's: it passes through,
 * minus explicit "-feat" removals, and preflight checks it as before. */
static const struct model_reg {
	uint32_t fn, idx;
	uint8_t reg;
} model_regs[] = {
	{ 1, 0, ECX }, { 1, 0, EDX }, { 7, 0, EBX }, { 7, 0, ECX }, { 7, 0, EDX },
	{ 7, 1, EAX }, { 7, 1, EBX }, { 7, 1, ECX }, { 7, 1, EDX }, { 0xd, 1, EAX }, { 0x80000001, 0, ECX }, { 0x80000001, 0, EDX },
};

/* AMD mirrors these CPUID.1:EDX bits in CPUID.0x80000001:EDX; where the
 * host does, a model keeps the mirror of each bit it gives. */
#define AMD_EDX_ALIASES 0x0183f3ffu

/* ---- the named models ---- */

/* What KVM emulates on every host, so every model has it. */
static const char *const kvm_base[] = { "hypervisor", "x2apic", NULL };
/* x86-64 psABI baseline (AMD K8, Intel Prescott-64). */
static const char *const lvl1[] = {
	"fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr",
	"pge", "mca", "cmov", "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2",
	"syscall", "nx", "lm", NULL };
static const char *const lvl2[] = {
	"pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm", NULL };
static const char *const compat_add[] = { "aes", "pclmulqdq", NULL };
static const char *const lvl3[] = {
	"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave", NULL };
static const char *const lvl4[] = {
	"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", NULL };

static const struct model {
	const char *name;
	const char *what;
	const char *const *parts[5];
} models[] = {
	{ "x86-64", "the x86-64 baseline: SSE2 (AMD K8, Intel Prescott)",
	  { kvm_base, lvl1 } },
	{ "x86-64-v2", "+ SSE3, SSSE3, SSE4.1/4.2, POPCNT, CMPXCHG16B, LAHF (Intel Nehalem, "
	  "AMD Bulldozer, 2008-2011)", { kvm_base, lvl1, lvl2 } },
	{ "compat", "x86-64-v2 + AES-NI, PCLMULQDQ: every host kvmove supports (Intel "
	  "Westmere, AMD Bulldozer and later)", { kvm_base, lvl1, lvl2, compat_add } },
	{ "x86-64-v3", "x86-64-v2 + AVX, AVX2, BMI1/2, F16C, FMA, LZCNT, MOVBE, XSAVE "
	  "(Intel Haswell, AMD Excavator, 2013-2015)", { kvm_base, lvl1, lvl2, lvl3 } },
	{ "x86-64-v4", "x86-64-v3 + AVX-512 F/BW/CD/DQ/VL (Intel Skylake-SP, AMD Zen 4)",
	  { kvm_base, lvl1, lvl2, lvl3, lvl4 } },
};
#define NMODELS (sizeof(models) / sizeof(models[0]))

unsigned cpu_feature_count(void)
{
	return NFEAT;
}

const char *cpu_feature_name(unsigned i)
{
	return i < NFEAT ? features[i].name : NULL;
}

void cpu_feature_where(unsigned i, uint32_t *fn, uint32_t *idx, int *reg, unsigned *bit)
{
	if (i >= NFEAT)
		i = 0;
	*fn = features[i].fn;
	*idx = features[i].idx;
	*reg = features[i].reg;
	*bit = features[i].bit;
}

const char *cpu_feature_name_at(uint32_t fn, uint32_t idx, int reg, unsigned bit)
{
	for (unsigned i = 0; i < NFEAT; i++)
		if (features[i].fn == fn && features[i].idx == idx && features[i].reg == reg &&
		    features[i].bit == bit)
			return features[i].name;
	return NULL;
}

int cpu_feature_find(const char *name)
{
	for (unsigned i = 0; i < NFEAT; i++)
		if (!strcmp(features[i].name, name))
			return (int)i;
	return -1;
}

bool cpu_feats_subset(const struct cpu_feats *a, const struct cpu_feats *b)
{
	for (unsigned i = 0; i < CPU_FEATS_WORDS; i++)
		if (a->w[i] & ~b->w[i])
			return false;
	return true;
}

static void append(char *out, size_t cap, size_t *len, const char *s)
{
	int n = snprintf(out + *len, cap - *len, "%s%s", *len ? " " : "", s);

	if (n > 0 && (size_t)n < cap - *len)
		*len += (size_t)n;
}

unsigned cpu_feats_missing(const struct cpu_feats *a, const struct cpu_feats *b, char *out,
			   size_t cap)
{
	unsigned n = 0;
	size_t len = 0;

	if (cap)
		out[0] = 0;
	for (unsigned i = 0; i < NFEAT; i++)
		if (cpu_feats_has(a, i) && !cpu_feats_has(b, i)) {
			if (cap)
				append(out, cap, &len, features[i].name);
			n++;
		}
	return n;
}

void cpu_feats_names(const struct cpu_feats *f, char *out, size_t cap)
{
	static const struct cpu_feats none;

	cpu_feats_missing(f, &none, out, cap);
}

int cpu_feats_parse_list(const char *list, struct cpu_feats *f, struct kv_err *err)
{
	const char *p = list;

	while (*p) {
		const char *e = strchrnul(p, ',');
		char name[64];
		int k;

		if (e == p || (size_t)(e - p) >= sizeof(name))
			return kv_errf(err, EINVAL, "'%s' is not a comma-separated list of CPU "
				       "features", list);
		memcpy(name, p, (size_t)(e - p));
		name[e - p] = 0;
		if ((k = cpu_feature_find(name)) < 0)
			return kv_errf(err, EINVAL, "'%s' is not a CPU feature kvmove knows "
				       "(kvmove cpu-models --features lists them)", name);
		cpu_feats_set(f, (unsigned)k);
		p = *e ? e + 1 : e;
	}
	return 0;
}

const char *cpu_model_name(unsigned i)
{
	return i < NMODELS ? models[i].name : NULL;
}

const char *cpu_model_describe(unsigned i)
{
	return i < NMODELS ? models[i].what : NULL;
}

int cpu_model_base_feats(const char *name, struct cpu_feats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < NMODELS; i++) {
		if (strcmp(models[i].name, name))
			continue;
		for (unsigned p = 0; p < 5 && models[i].parts[p]; p++)
			for (const char *const *f = models[i].parts[p]; *f; f++) {
				int k = cpu_feature_find(*f);
				if (k < 0)
					return -EINVAL;	/* a table bug; the unit test sees it */
				cpu_feats_set(out, (unsigned)k);
			}
		return 0;
	}
	return -ENOENT;
}

static void model_names(char *out, size_t cap)
{
	size_t len = 0;

	out[0] = 0;
	append(out, cap, &len, "host");
	for (unsigned i = 0; i < NMODELS; i++)
		append(out, cap, &len, models[i].name);
}

int cpu_model_parse(const char *spec, struct cpu_model *m, struct kv_err *err)
{
	char buf[CPU_MODEL_SPEC_MAX], names[160];
	char *save = NULL, *tok;
	size_t len;

	memset(m, 0, sizeof(*m));
	if (!spec || !*spec || strlen(spec) >= sizeof(buf))
		return kv_errf(err, EINVAL, "CPU model: give host or a model name (at most %d "
			       "characters)", CPU_MODEL_SPEC_MAX - 1);
	memcpy(buf, spec, strlen(spec) + 1);
	tok = strtok_r(buf, ",", &save);
	if (!tok)
		return kv_errf(err, EINVAL, "CPU model '%s': no model name", spec);
	if (!strcmp(tok, "host")) {
		m->host = true;
	} else if (cpu_model_base_feats(tok, &m->feats)) {
		model_names(names, sizeof(names));
		return kv_errf(err, EINVAL, "CPU model '%s' is unknown (known: %s; "
			       "kvmove cpu-models lists them)", tok, names);
	}
	len = (size_t)snprintf(m->spec, sizeof(m->spec), "%s", tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		int k;

		if ((tok[0] != '+' && tok[0] != '-') || (k = cpu_feature_find(tok + 1)) < 0)
			return kv_errf(err, EINVAL, "CPU model '%s': '%s' is not +FEATURE or "
				       "-FEATURE with a known feature (kvmove cpu-models "
				       "--features lists them)", spec, tok);
		if (tok[0] == '+') {
			cpu_feats_set(&m->add, (unsigned)k);
			cpu_feats_clear(&m->remove, (unsigned)k);
			if (!m->host)
				cpu_feats_set(&m->feats, (unsigned)k);
		} else {
			cpu_feats_set(&m->remove, (unsigned)k);
			cpu_feats_clear(&m->add, (unsigned)k);
			cpu_feats_clear(&m->feats, (unsigned)k);
		}
		len += (size_t)snprintf(m->spec + len, sizeof(m->spec) - len, ",%s", tok);
	}
	return 0;
}

/* ---- CPUID tables ---- */

static struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return (struct kvm_cpuid_entry2 *)&c->entries[i];
	return NULL;
}

static uint32_t *reg_ptr(struct kvm_cpuid_entry2 *e, int reg)
{
	switch (reg) {
	case EAX: return &e->eax;
	case EBX: return &e->ebx;
	case ECX: return &e->ecx;
	default: return &e->edx;
	}
}

void cpu_feats_from_cpuid(const struct kvm_cpuid2 *c, struct cpu_feats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < NFEAT; i++) {
		struct kvm_cpuid_entry2 *e = leaf(c, features[i].fn, features[i].idx);
		if (e && (*reg_ptr(e, features[i].reg) >> features[i].bit) & 1)
			cpu_feats_set(out, i);
	}
}

void cpu_cpuid_hide(struct kvm_cpuid2 *c, const struct cpu_feats *hide)
{
	for (unsigned i = 0; i < NFEAT; i++) {
		struct kvm_cpuid_entry2 *e;
		if (!cpu_feats_has(hide, i) ||
		    !(e = leaf(c, features[i].fn, features[i].idx)))
			continue;
		*reg_ptr(e, features[i].reg) &= ~(1u << features[i].bit);
		/* and its AMD mirror */
		if (features[i].fn == 1 && features[i].reg == EDX &&
		    (AMD_EDX_ALIASES >> features[i].bit) & 1 && (e = leaf(c, 0x80000001, 0)))
			e->edx &= ~(1u << features[i].bit);
	}
}

uint32_t cpu_xsave_size(const struct kvm_cpuid2 *c, uint64_t xcr0)
{
	uint32_t size = 512 + 64;	/* legacy area + XSAVE header */

	for (unsigned i = 2; i < 64; i++) {
		struct kvm_cpuid_entry2 *e;
		if (!((xcr0 >> i) & 1))
			continue;
		if (!(e = leaf(c, 0xd, i)) || !e->eax)
			return 0;
		if (e->ebx + e->eax > size)
			size = e->ebx + e->eax;
	}
	return size;
}

static bool feat(const struct cpu_feats *f, const char *name)
{
	int k = cpu_feature_find(name);

	return k >= 0 && cpu_feats_has(f, (unsigned)k);
}

/* Leaf 0xD for a named model: only the components its features use. */
static void mask_xsave(struct kvm_cpuid2 *c, const struct cpu_feats *f)
{
	struct kvm_cpuid_entry2 *d0 = leaf(c, 0xd, 0), *d1 = leaf(c, 0xd, 1);
	uint64_t xcr0 = 0;
	uint32_t n = 0;

	if (feat(f, "xsave") && d0) {
		xcr0 = 0x3;				/* x87, SSE */
		if (feat(f, "avx"))
			xcr0 |= 0x4;			/* YMM_Hi128 */
		if (feat(f, "avx512f"))
			xcr0 |= 0xe0;			/* opmask, ZMM_Hi256, Hi16_ZMM */
		if (feat(f, "pku"))
			xcr0 |= 0x200;			/* PKRU */
		if (feat(f, "amx_tile"))
			xcr0 |= 0x60000;		/* XTILECFG, XTILEDATA */
		xcr0 &= ((uint64_t)d0->edx << 32) | d0->eax;
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		/* a component the model does not use goes, with its subleaf */
		if (e->function == 0xd && e->index >= 2 &&
		    (e->index >= 64 || !((xcr0 >> e->index) & 1)))
			continue;
		c->entries[n++] = *e;
	}
	c->nent = n;
	d0 = leaf(c, 0xd, 0);
	d1 = leaf(c, 0xd, 1);
	if (d0) {
		d0->eax = (uint32_t)xcr0;
		d0->edx = (uint32_t)(xcr0 >> 32);
		d0->ebx = d0->ecx = xcr0 ? cpu_xsave_size(c, xcr0) : 0;
	}
	if (d1) {
		/* supervisor components (XSS): no model gives any */
		d1->ecx = d1->edx = 0;
		if (!xcr0)
			d1->eax = d1->ebx = 0;
	}
}

/* Leaves that only describe a feature go with it. */
static void drop_feature_leaves(struct kvm_cpuid2 *c, const struct cpu_feats *f)
{
	static const struct {
		uint32_t fn;
		const char *feature;
	} owned[] = {
		{ 0x12, "sgx" }, { 0x14, "intel_pt" }, { 0x1d, "amx_tile" }, { 0x1e, "amx_tile" },
	};
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->nent; i++) {
		bool keep = true;
		for (size_t k = 0; k < sizeof(owned) / sizeof(owned[0]); k++)
			if (c->entries[i].function == owned[k].fn && !feat(f, owned[k].feature))
				keep = false;
		if (keep)
			c->entries[n++] = c->entries[i];
	}
	c->nent = n;
}

/* Leaf 7's subleaves beyond 0 only while the model uses them: 7.0:EAX
 * (the last subleaf) says so, as QEMU's models do. */
static void mask_leaf7(struct kvm_cpuid2 *c)
{
	struct kvm_cpuid_entry2 *l70 = leaf(c, 7, 0);
	uint32_t n = 0;
	bool sub1 = false;

	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 7 && e->index == 1)
			sub1 = e->eax | e->ebx | e->ecx | e->edx;
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 7 && e->index >= (sub1 ? 2u : 1u))
			continue;
		c->entries[n++] = *e;
	}
	c->nent = n;
	if ((l70 = leaf(c, 7, 0)))
		l70->eax = sub1 ? 1 : 0;
}

static int named_features(const struct cpu_model *m, const struct cpu_feats *have,
			  struct cpu_feats *want, struct kv_err *err)
{
	char missing[512];

	if (m->host) {
		*want = *have;
		for (unsigned i = 0; i < CPU_FEATS_WORDS; i++)
			want->w[i] &= ~m->remove.w[i];
		if (cpu_feats_missing(&m->add, have, missing, sizeof(missing)))
			return kv_errf(err, ENOTSUP, "CPU model %s: this host lacks %s", m->spec,
				       missing);
		return 0;
	}
	*want = m->feats;
	if (cpu_feats_missing(want, have, missing, sizeof(missing)))
		return kv_errf(err, ENOTSUP, "CPU model %s: this host lacks %s", m->spec,
			       missing);
	return 0;
}

int cpu_model_apply(const struct cpu_model *m, const struct kvm_cpuid2 *host,
		    struct kvm_cpuid2 **out, struct kv_err *err)
{
	size_t sz = sizeof(*host) + host->nent * sizeof(host->entries[0]);
	struct cpu_feats have, want, drop;
	struct kvm_cpuid2 *c;
	int r;

	cpu_feats_from_cpuid(host, &have);
	if ((r = named_features(m, &have, &want, err)))
		return r;
	if (!(c = malloc(sz)))
		return kv_errf(err, ENOMEM, "CPUID table");
	memcpy(c, host, sz);
	if (m->host) {
		cpu_cpuid_hide(c, &m->remove);
		*out = c;
		return 0;
	}
	for (size_t i = 0; i < sizeof(model_regs) / sizeof(model_regs[0]); i++) {
		struct kvm_cpuid_entry2 *e = leaf(c, model_regs[i].fn, model_regs[i].idx);
		if (e)
			*reg_ptr(e, model_regs[i].reg) = 0;
	}
	for (unsigned i = 0; i < NFEAT; i++) {
		struct kvm_cpuid_entry2 *e;
		bool in_model = false;

		for (size_t k = 0; k < sizeof(model_regs) / sizeof(model_regs[0]); k++)
			in_model |= model_regs[k].fn == features[i].fn &&
				    model_regs[k].idx == features[i].idx &&
				    model_regs[k].reg == features[i].reg;
		if (!in_model || !cpu_feats_has(&want, i) ||
		    !(e = leaf(c, features[i].fn, features[i].idx)))
			continue;
		*reg_ptr(e, features[i].reg) |= 1u << features[i].bit;
	}
	/* AMD's mirrors of the CPUID.1:EDX bits given */
	{
		struct kvm_cpuid_entry2 *h = leaf(host, 0x80000001, 0), *e = leaf(c, 0x80000001, 0),
					*l1 = leaf(c, 1, 0);
		if (h && e && l1)
			e->edx |= h->edx & l1->edx & AMD_EDX_ALIASES;
	}
	/* KVM's leaf: as the host's, minus what the spec removed */
	memset(&drop, 0, sizeof(drop));
	for (unsigned i = 0; i < NFEAT; i++)
		if (features[i].fn == 0x40000001 && cpu_feats_has(&m->remove, i))
			cpu_feats_set(&drop, i);
	cpu_cpuid_hide(c, &drop);
	drop_feature_leaves(c, &want);
	mask_leaf7(c);
	mask_xsave(c, &want);
	*out = c;
	return 0;
}

const char *cpu_model_best(const struct cpu_feats *f)
{
	for (unsigned i = NMODELS; i-- > 0;) {
		struct cpu_feats m;
		if (!cpu_model_base_feats(models[i].name, &m) && cpu_feats_subset(&m, f))
			return models[i].name;
	}
	return NULL;
}
