/*
 * test_cpumodel.c - CPU model tables and masking (core/cpumodel.h): every
 * level is a subset of the next; masking a rich host CPUID gives exactly
 * the model's bits; XSAVE leaves agree with the mask; refusals name what
 * is missing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/cpumodel.h"

#define NENT 16

/* A host whose KVM offers everything the table names, with XSAVE
 * components x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM, PKRU at the
 * offsets and sizes real CPUs use. */
static struct kvm_cpuid2 *rich_host(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + NENT * sizeof(c->entries[0]));
	struct kvm_cpuid_entry2 *e = c->entries;
	unsigned n = 0;

	e[n++] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd, .ebx = 0x756e6547,
					    .ecx = 0x6c65746e, .edx = 0x49656e69 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 1, .eax = 0x806c1, .ebx = 0x800,
					    .ecx = 0xffffffff & ~(1u << 27), .edx = 0xffffffff };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .eax = 1,
					    .ebx = 0xffffffff, .ecx = 0xffffffff & ~(1u << 4),
					    .edx = 0xffffffff };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 7, .index = 1, .eax = 0xffffffff };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 0, .eax = 0x2e7,
					    .ebx = 0x988, .ecx = 0x988 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 1, .eax = 0xf,
					    .ecx = 0x1800 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 2, .eax = 0x100,
					    .ebx = 0x240 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 5, .eax = 0x40,
					    .ebx = 0x440 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 6, .eax = 0x200,
					    .ebx = 0x480 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 7, .eax = 0x400,
					    .ebx = 0x680 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 9, .eax = 0x8,
					    .ebx = 0xa80 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 11, .eax = 0x10,
					    .ecx = 1 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x14, .eax = 1, .ebx = 0xf };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x40000001, .eax = 0x01007efb };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .ecx = 0xffffffff,
					    .edx = 0xffffffff };
	c->nent = n;
	return c;
}

static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c, uint32_t fn,
					   uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

/* The named features of c outside KVM's own leaf (which passes through). */
static void cpu_feats_of(const struct kvm_cpuid2 *c, struct cpu_feats *f)
{
	cpu_feats_from_cpuid(c, f);
	for (unsigned i = 0; i < cpu_feature_count(); i++)
		if (!strncmp(cpu_feature_name(i), "kvm", 3))
			cpu_feats_clear(f, i);
}

static void test_levels_nest(void **state)
{
	static const char *const chain[] = { "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4" };
	struct cpu_feats a, b, c;

	(void)state;
	for (unsigned i = 0; cpu_model_name(i); i++)
		assert_int_equal(cpu_model_base_feats(cpu_model_name(i), &a), 0);
	for (unsigned i = 0; i + 1 < 4; i++) {
		assert_int_equal(cpu_model_base_feats(chain[i], &a), 0);
		assert_int_equal(cpu_model_base_feats(chain[i + 1], &b), 0);
		assert_true(cpu_feats_subset(&a, &b));
		assert_false(cpu_feats_subset(&b, &a));
	}
	/* compat: more than v2, runs on every Westmere+ host */
	cpu_model_base_feats("x86-64-v2", &a);
	cpu_model_base_feats("compat", &b);
	assert_true(cpu_feats_subset(&a, &b));
	assert_false(cpu_feats_subset(&b, &a));
	/* v3 has no AES in the psABI; compat is not inside v3, v4 not in compat */
	cpu_model_base_feats("x86-64-v4", &c);
	assert_false(cpu_feats_subset(&c, &b));
	assert_int_equal(cpu_model_base_feats("pentium", &a), -ENOENT);
}

/* Masking the rich host to each model gives exactly the model's bits. */
static void test_mask_exact(void **state)
{
	struct kvm_cpuid2 *host = rich_host(), *out;
	struct cpu_model m;
	struct cpu_feats got;
	struct kv_err err;

	(void)state;
	for (unsigned i = 0; cpu_model_name(i); i++) {
		assert_int_equal(cpu_model_parse(cpu_model_name(i), &m, &err), 0);
		assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
		cpu_feats_of(out, &got);
		assert_memory_equal(&got, &m.feats, sizeof(got));
		/* vendor, family and KVM's leaf untouched */
		assert_memory_equal(leaf(out, 0, 0), leaf(host, 0, 0), sizeof(host->entries[0]));
		assert_int_equal(leaf(out, 1, 0)->eax, 0x806c1);
		assert_int_equal(leaf(out, 0x40000001, 0)->eax, 0x01007efb);
		/* no model uses leaf 7.1 or Intel PT: the leaves go, 7.0 says so */
		assert_null(leaf(out, 7, 1));
		assert_int_equal(leaf(out, 7, 0)->eax, 0);
		assert_null(leaf(out, 0x14, 0));
		free(out);
	}
	free(host);
}

/* XSAVE: only the components the model's features use, sizes to match. */
static void test_xsave_consistent(void **state)
{
	struct kvm_cpuid2 *host = rich_host(), *out;
	struct cpu_model m;
	struct kv_err err;

	(void)state;
	assert_int_equal(cpu_model_parse("x86-64-v3", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	assert_int_equal(leaf(out, 0xd, 0)->eax, 0x7);		/* x87 SSE AVX */
	assert_int_equal(leaf(out, 0xd, 0)->edx, 0);
	assert_int_equal(leaf(out, 0xd, 0)->ecx, 0x340);	/* 0x240 + 0x100 */
	assert_int_equal(leaf(out, 0xd, 0)->ebx, 0x340);
	assert_non_null(leaf(out, 0xd, 2));
	assert_null(leaf(out, 0xd, 5));
	assert_null(leaf(out, 0xd, 9));
	assert_null(leaf(out, 0xd, 11));
	assert_int_equal(leaf(out, 0xd, 1)->eax, 0);	/* no xsaveopt/xsavec/xsaves */
	assert_int_equal(leaf(out, 0xd, 1)->ecx, 0);	/* no supervisor state */
	assert_int_equal(cpu_xsave_size(out, 0x7), 0x340);
	free(out);

	assert_int_equal(cpu_model_parse("x86-64-v4", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	assert_int_equal(leaf(out, 0xd, 0)->eax, 0xe7);
	assert_int_equal(leaf(out, 0xd, 0)->ecx, 0xa80);	/* Hi16_ZMM ends last */
	assert_non_null(leaf(out, 0xd, 7));
	assert_null(leaf(out, 0xd, 9));
	free(out);

	/* v4 plus protection keys: PKRU comes with pku */
	assert_int_equal(cpu_model_parse("x86-64-v4,+pku", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	assert_int_equal(leaf(out, 0xd, 0)->eax, 0x2e7);
	assert_int_equal(leaf(out, 0xd, 0)->ecx, 0xa88);
	free(out);

	/* no XSAVE at all: leaf 0xD says nothing */
	assert_int_equal(cpu_model_parse("compat", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	assert_int_equal(leaf(out, 0xd, 0)->eax, 0);
	assert_int_equal(leaf(out, 0xd, 0)->ecx, 0);
	assert_int_equal(leaf(out, 0xd, 1)->eax, 0);
	assert_null(leaf(out, 0xd, 2));
	free(out);

	/* host keeps everything */
	assert_int_equal(cpu_model_parse("host", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	assert_memory_equal(out, host, sizeof(*host) + host->nent * sizeof(host->entries[0]));
	free(out);

	/* a model with a 7.1 feature keeps that subleaf */
	assert_int_equal(cpu_model_parse("x86-64-v4,+avx512_bf16,+intel_pt", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	assert_non_null(leaf(out, 7, 1));
	assert_int_equal(leaf(out, 7, 1)->eax, 1u << 5);
	assert_int_equal(leaf(out, 7, 0)->eax, 1);
	assert_non_null(leaf(out, 0x14, 0));
	free(out);
	free(host);
}

static void test_parse(void **state)
{
	struct cpu_model m;
	struct kv_err err;

	(void)state;
	assert_int_equal(cpu_model_parse("x86-64-v2,+aes,-popcnt", &m, &err), 0);
	assert_false(m.host);
	assert_string_equal(m.spec, "x86-64-v2,+aes,-popcnt");
	assert_true(cpu_feats_has(&m.feats, (unsigned)cpu_feature_find("aes")));
	assert_false(cpu_feats_has(&m.feats, (unsigned)cpu_feature_find("popcnt")));
	assert_true(cpu_feats_has(&m.feats, (unsigned)cpu_feature_find("sse4_2")));

	assert_int_equal(cpu_model_parse("host,-avx2", &m, &err), 0);
	assert_true(m.host);
	assert_true(cpu_feats_has(&m.remove, (unsigned)cpu_feature_find("avx2")));

	assert_int_equal(cpu_model_parse("skylake", &m, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "skylake"));
	assert_non_null(strstr(err.msg, "x86-64-v3"));
	assert_int_equal(cpu_model_parse("x86-64,+nonsense", &m, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "+nonsense"));
	assert_int_equal(cpu_model_parse("x86-64,avx", &m, &err), -EINVAL);
	assert_int_equal(cpu_model_parse("", &m, &err), -EINVAL);

	{
		struct cpu_feats f = { 0 };
		assert_int_equal(cpu_feats_parse_list("avx2,bmi2", &f, &err), 0);
		assert_true(cpu_feats_has(&f, (unsigned)cpu_feature_find("bmi2")));
		assert_int_equal(cpu_feats_parse_list("avx2,,bmi2", &f, &err), -EINVAL);
		assert_int_equal(cpu_feats_parse_list("avx9", &f, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "avx9"));
	}
}

/* A host without AVX2 cannot give x86-64-v3: the refusal names it; host
 * with -feat hides it; the richest model the host runs drops to compat. */
static void test_refusal_and_best(void **state)
{
	struct kvm_cpuid2 *host = rich_host(), *out = NULL;
	struct cpu_feats hide = { 0 }, have;
	struct cpu_model m;
	struct kv_err err;

	(void)state;
	cpu_feats_set(&hide, (unsigned)cpu_feature_find("avx2"));
	cpu_cpuid_hide(host, &hide);
	assert_int_equal(cpu_model_parse("x86-64-v3", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), -ENOTSUP);
	assert_string_equal(err.msg, "CPU model x86-64-v3: this host lacks avx2");
	assert_int_equal(cpu_model_parse("x86-64-v3,-avx2", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	free(out);
	assert_int_equal(cpu_model_parse("host,+avx2", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), -ENOTSUP);

	cpu_feats_from_cpuid(host, &have);
	assert_string_equal(cpu_model_best(&have), "compat");
	cpu_model_base_feats("x86-64-v4", &have);
	assert_string_equal(cpu_model_best(&have), "x86-64-v4");
	memset(&have, 0, sizeof(have));
	assert_null(cpu_model_best(&have));
	free(host);
}

/* AMD mirrors CPUID.1:EDX bits in 0x80000001:EDX; a model keeps the
 * mirror of what it gives, and nothing else. */
static void test_amd_aliases(void **state)
{
	struct kvm_cpuid2 *host = rich_host(), *out;
	struct cpu_model m;
	struct kv_err err;
	uint32_t edx;

	(void)state;
	assert_int_equal(cpu_model_parse("x86-64,-mmx", &m, &err), 0);
	assert_int_equal(cpu_model_apply(&m, host, &out, &err), 0);
	edx = leaf(out, 0x80000001, 0)->edx;
	assert_true(edx & (1u << 0));		/* fpu's mirror */
	assert_false(edx & (1u << 23));	/* mmx removed, its mirror too */
	assert_true(edx & (1u << 29));		/* lm */
	assert_false(edx & (1u << 27));	/* rdtscp: not in x86-64 */
	free(out);
	free(host);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_nest),
		cmocka_unit_test(test_mask_exact),
		cmocka_unit_test(test_xsave_consistent),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refusal_and_best),
		cmocka_unit_test(test_amd_aliases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
