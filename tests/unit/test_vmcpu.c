/*
 * The CPU of a cluster VM (cluster/vmcpu.c) and of a cluster
 * (cluster/cpubaseline.c): what a node must offer a VM on a named model or
 * on host, at boot and on a move; what the VM's status says it was given;
 * placement refusing a node that lacks a model's feature, by name; the
 * baseline of a set of nodes (intersection, richest model, mixed vendors).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/cpubaseline.h"
#include "cluster/placement.h"
#include "cluster/vmcpu.h"

static unsigned feat(const char *name)
{
	int k = cpu_feature_find(name);

	assert_true(k >= 0);
	return (unsigned)k;
}

static struct cpu_model model(const char *spec)
{
	struct cpu_model m;
	struct kv_err err;

	assert_int_equal(cpu_model_parse(spec, &m, &err), 0);
	return m;
}

static bool has_name(const struct vmcpu_need *n, const char *name)
{
	for (size_t i = 0; i < n->n; i++)
		if (!strcmp(n->features[i], name))
			return true;
	return false;
}

static bool json_has(json_t *a, const char *name)
{
	json_t *v;
	size_t i;

	json_array_foreach(a, i, v)
		if (!strcmp(json_string_value(v), name))
			return true;
	return false;
}

/* A named model needs exactly its features, at boot and on a move; the
 * vendor only on a move. */
static void need_named(void **state)
{
	struct cpu_model m = model("x86-64-v2,+aes,-popcnt");
	struct cpu_feats f;
	struct vmcpu_need n;
	json_t *st = json_pack("{s:s, s:[s]}", "cpu-vendor", "GenuineIntel", "cpu-features",
			       "avx512f");
	unsigned count = 0;

	(void)state;
	vmcpu_need(&m, NULL, &n);
	assert_null(n.vendor);
	for (unsigned i = 0; i < cpu_feature_count(); i++)
		count += cpu_feats_has(&m.feats, i);
	assert_int_equal(n.n, count);
	assert_true(has_name(&n, "sse4_2"));
	assert_true(has_name(&n, "aes"));
	assert_false(has_name(&n, "popcnt"));
	assert_false(has_name(&n, "avx2"));
	/* a move: the model's features, not whatever the status claims */
	vmcpu_need(&m, st, &n);
	assert_string_equal(n.vendor, "GenuineIntel");
	assert_int_equal(n.n, count);
	assert_false(has_name(&n, "avx512f"));
	/* every x86-64-v2 feature but popcnt, plus aes */
	assert_int_equal(cpu_model_base_feats("x86-64-v2", &f), 0);
	cpu_feats_clear(&f, feat("popcnt"));
	cpu_feats_set(&f, feat("aes"));
	assert_true(cpu_feats_subset(&f, &m.feats) && cpu_feats_subset(&m.feats, &f));
	json_decref(st);
}

/* host: nothing to boot (but its "+feat"s), the status's features to move. */
static void need_host(void **state)
{
	struct cpu_model h = model("host"), hplus = model("host,+avx2");
	struct vmcpu_need n;
	json_t *st = json_pack("{s:s, s:[s, s, i]}", "cpu-vendor", "AuthenticAMD",
			       "cpu-features", "sse2", "avx2", 7);

	(void)state;
	vmcpu_need(&h, NULL, &n);
	assert_int_equal(n.n, 0);
	assert_null(n.vendor);
	vmcpu_need(&hplus, NULL, &n);
	assert_int_equal(n.n, 1);
	assert_string_equal(n.features[0], "avx2");
	vmcpu_need(&h, st, &n);
	assert_string_equal(n.vendor, "AuthenticAMD");
	assert_int_equal(n.n, 2);	/* the non-string is skipped */
	assert_string_equal(n.features[0], "sse2");
	assert_string_equal(n.features[1], "avx2");
	/* a status without a vendor: any */
	json_object_set_new(st, "cpu-vendor", json_string(""));
	vmcpu_need(&h, st, &n);
	assert_null(n.vendor);
	json_decref(st);
}

/* What a boot gives the guest, as its status reports it. */
static void boot_features(void **state)
{
	json_t *host = json_pack("[s, s, s, s]", "sse2", "avx2", "kvmclock", "not-in-the-table");
	struct cpu_model h = model("host"), hminus = model("host,-avx2"), v1 = model("x86-64");
	struct cpu_feats f;
	json_t *a;
	unsigned unknown;

	(void)state;
	a = vmcpu_boot_features(&h, host);
	assert_true(json_equal(a, host));	/* the host's, as published */
	json_decref(a);
	a = vmcpu_boot_features(&hminus, host);
	assert_int_equal(json_array_size(a), 3);
	assert_false(json_has(a, "avx2"));
	assert_true(json_has(a, "kvmclock"));
	json_decref(a);
	a = vmcpu_boot_features(&v1, host);	/* the model's, whatever the host has */
	assert_true(json_has(a, "sse2") && json_has(a, "lm"));
	assert_false(json_has(a, "avx2") || json_has(a, "kvmclock"));
	vmcpu_feats_from_json(a, &f, &unknown);
	assert_int_equal(unknown, 0);
	assert_true(cpu_feats_subset(&f, &v1.feats) && cpu_feats_subset(&v1.feats, &f));
	json_decref(a);
	vmcpu_feats_from_json(host, &f, &unknown);
	assert_int_equal(unknown, 1);
	assert_true(cpu_feats_has(&f, feat("avx2")));
	json_decref(host);
}

/* Placement with a named model's need: a node lacking one of its features
 * is refused with the feature named; a richer node fits. */
static void placement_named(void **state)
{
	struct cpu_model m = model("x86-64-v2");
	struct cpu_feats v2;
	const char *rich[VMCPU_NEED_MAX], *poor[VMCPU_NEED_MAX];
	size_t nr = 0, np = 0;
	struct place_node nodes[2] = {
		{ .name = "h1", .up = true, .cpu_vendor = "GenuineIntel", .ram_total = 1ull << 32,
		  .cpus = 4, .reach = 1 },
		{ .name = "h2", .up = true, .cpu_vendor = "GenuineIntel", .ram_total = 1ull << 32,
		  .cpus = 4, .reach = 1 },
	};
	struct place_vm vm = { .name = "web1", .mem = 1 << 28, .cpus = 1 };
	struct place_verdict v[2];
	struct vmcpu_need n;

	(void)state;
	assert_int_equal(cpu_model_base_feats("x86-64-v2", &v2), 0);
	for (unsigned i = 0; i < cpu_feature_count(); i++) {
		if (!cpu_feats_has(&v2, i))
			continue;
		rich[nr++] = cpu_feature_name(i);
		if (strcmp(cpu_feature_name(i), "sse4_2"))
			poor[np++] = cpu_feature_name(i);
	}
	rich[nr++] = "avx2";
	nodes[0].features = poor;
	nodes[0].nfeatures = np;
	nodes[1].features = rich;
	nodes[1].nfeatures = nr;
	vmcpu_need(&m, NULL, &n);
	vmcpu_place(&n, &vm);
	assert_int_equal(place_choose(&vm, nodes, 2, v), 1);
	assert_false(v[0].fits);
	assert_string_equal(v[0].reason, "missing CPU features: sse4_2");
	/* on host, a boot goes anywhere */
	m = model("host");
	vmcpu_need(&m, NULL, &n);
	vmcpu_place(&n, &vm);
	assert_int_equal(place_choose(&vm, nodes, 2, v), 0);	/* by name */
	assert_true(v[1].fits);
}

static struct cpubase_node bnode(const char *name, const char *vendor, const char *model_name)
{
	struct cpubase_node n = { .name = name, .vendor = vendor };

	assert_int_equal(cpu_model_base_feats(model_name, &n.feats), 0);
	return n;
}

static void baseline(void **state)
{
	struct cpubase_node nodes[3] = {
		bnode("h1", "GenuineIntel", "x86-64-v3"),
		bnode("h2", "GenuineIntel", "x86-64-v2"),
		bnode("h3", "GenuineIntel", "x86-64-v4"),
	};
	struct cpubase b;

	(void)state;
	cpu_feats_set(&nodes[0].feats, feat("aes"));
	cpu_feats_set(&nodes[1].feats, feat("aes"));
	cpu_feats_set(&nodes[1].feats, feat("pclmulqdq"));
	cpu_feats_set(&nodes[2].feats, feat("aes"));
	cpu_feats_set(&nodes[0].feats, feat("kvmclock"));
	cpu_feats_set(&nodes[1].feats, feat("kvmclock"));
	cpu_feats_set(&nodes[2].feats, feat("kvmclock"));

	cpubase_compute(nodes, 3, &b);
	assert_int_equal(b.n, 3);
	assert_false(b.mixed_vendors);
	assert_string_equal(b.vendor, "GenuineIntel");
	/* compat needs pclmulqdq, which h1 and h3 lack: x86-64-v2 */
	assert_non_null(b.model);
	assert_string_equal(b.model, "x86-64-v2");
	assert_true(cpu_feats_has(&b.beyond, feat("aes")));
	assert_true(cpu_feats_has(&b.beyond, feat("kvmclock")));
	assert_false(cpu_feats_has(&b.beyond, feat("pclmulqdq")));
	assert_false(cpu_feats_has(&b.beyond, feat("sse4_2")));	/* in the model */
	assert_false(cpu_feats_has(&b.common, feat("avx2")));

	/* two nodes: v3 and v4 share v3 */
	cpubase_compute(&nodes[0], 1, &b);
	assert_string_equal(b.model, "x86-64-v3");
	cpubase_compute((struct cpubase_node[]){ nodes[0], nodes[2] }, 2, &b);
	assert_string_equal(b.model, "x86-64-v3");

	/* one node lacking sse2: no model at all */
	cpu_feats_clear(&nodes[1].feats, feat("sse2"));
	cpubase_compute(nodes, 3, &b);
	assert_null(b.model);
	assert_true(cpu_feats_has(&b.beyond, feat("sse"))); /* beyond = common */
	cpu_feats_set(&nodes[1].feats, feat("sse2"));

	/* mixed vendors: no model, said so */
	nodes[2].vendor = "AuthenticAMD";
	cpubase_compute(nodes, 3, &b);
	assert_true(b.mixed_vendors);
	assert_null(b.model);
	nodes[2].vendor = NULL;	/* unknown vs known: still not one vendor */
	cpubase_compute(nodes, 3, &b);
	assert_true(b.mixed_vendors);

	cpubase_compute(nodes, 0, &b);
	assert_int_equal(b.n, 0);
	assert_null(b.model);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(need_named),
		cmocka_unit_test(need_host),
		cmocka_unit_test(boot_features),
		cmocka_unit_test(placement_named),
		cmocka_unit_test(baseline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
