/*
 * Placement as a pure function (cluster/placement.c): every reason a node
 * is refused, the score (least loaded wins, ties by name), the exclusion of
 * the node a VM runs on, and "none fits" with every verdict filled.
 */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/placement.h"

#define MIB (1024ULL * 1024)
#define GIB (1024 * MIB)

static const char *const host_features[] = { "sse4_2", "avx", "avx2", "aes" };

/* A healthy, empty node with 4 GiB and 4 vCPUs. */
static struct place_node node(const char *name)
{
	return (struct place_node){
		.name = name, .up = true, .cpu_vendor = "GenuineIntel",
		.features = host_features, .nfeatures = 4, .ram_total = 4 * GIB,
		.cpus = 4, .reach = 1,
	};
}

static struct place_vm vm512(void)
{
	return (struct place_vm){ .name = "web1", .mem = 512 * MIB, .cpus = 1 };
}

/* The verdict for one node alone. */
static struct place_verdict judge1(const struct place_vm *vm, const struct place_node *n)
{
	struct place_verdict v;
	int r = place_choose(vm, n, 1, &v);

	assert_int_equal(r, v.fits ? 0 : -1);
	return v;
}

static void fits_and_scores(void **state)
{
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	v = judge1(&vm, &n);
	assert_true(v.fits);
	/* RAM 1/8, vCPUs 1/4 after placing, no load: max = 0.25 */
	assert_true(fabs(v.score - 0.25) < 1e-9);
	n.load1 = 2;	/* half the node's CPUs busy: + 0.5 * 0.5 */
	v = judge1(&vm, &n);
	assert_true(fabs(v.score - 0.5) < 1e-9);
	n.load1 = 40;	/* load counts at most 0.5 */
	v = judge1(&vm, &n);
	assert_true(fabs(v.score - 0.75) < 1e-9);
	n.load1 = NAN;	/* nonsense load counts as none */
	v = judge1(&vm, &n);
	assert_true(fabs(v.score - 0.25) < 1e-9);
}

static void refused_down_maintenance_runs_there(void **state)
{
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	n.up = false;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "down");

	n = node("h1");
	n.maintenance = true;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "in maintenance");

	n = node("h1");
	vm.exclude = "h1";
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "the VM runs there");
}

static void refused_ram(void **state)
{
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	n.ram_total = 1 * GIB;
	n.ram_used = 768 * MIB;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "not enough free RAM: 256 MiB free, the VM needs 512 MiB");
	/* exactly enough fits */
	n.ram_used = 512 * MIB;
	v = judge1(&vm, &n);
	assert_true(v.fits);
	/* more used than offered (a shrunk --ram): nothing free, no underflow */
	n.ram_used = 2 * GIB;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "not enough free RAM: 0 MiB free, the VM needs 512 MiB");
}

static void refused_cpus(void **state)
{
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	vm.cpus = 2;
	n.cpus = 2;
	n.cpus_used = 1;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "not enough free vCPUs: 1 of 2 free, the VM needs 2");
	n.cpus_used = 0;
	v = judge1(&vm, &n);
	assert_true(v.fits);
	assert_true(fabs(v.score - 1.0) < 1e-9);	/* full after placing */
}

static void refused_vendor_and_features(void **state)
{
	static const char *const want[] = { "avx2", "avx512f", "sse4_2", "avx512f", "amx" };
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	vm.cpu_vendor = "AuthenticAMD";
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "CPU vendor GenuineIntel, the VM needs AuthenticAMD");
	vm.cpu_vendor = "GenuineIntel";
	v = judge1(&vm, &n);
	assert_true(v.fits);

	/* missing ones listed once each, in the VM's order */
	vm.features = want;
	vm.nfeatures = 5;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "missing CPU features: avx512f amx");
	/* a subset fits */
	vm.nfeatures = 1;
	v = judge1(&vm, &n);
	assert_true(v.fits);
}

static void many_missing_features_truncate(void **state)
{
	static char names[64][16];
	static const char *list[64];
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	for (int i = 0; i < 64; i++) {
		snprintf(names[i], sizeof(names[i]), "feature%02d", i);
		list[i] = names[i];
	}
	vm.features = list;
	vm.nfeatures = 64;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_true(strlen(v.reason) < sizeof(v.reason));
	assert_non_null(strstr(v.reason, "missing CPU features: feature00 feature01"));
	assert_non_null(strstr(v.reason, " ..."));
}

static void refused_reach(void **state)
{
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	n.reach = 0;
	n.reach_reason = "/shared/web1.img: No such file or directory";
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "its agent cannot reach the VM's storage: "
			    "/shared/web1.img: No such file or directory");
	n.reach = -1;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "has not checked the VM's disks yet");
}

static void least_loaded_wins(void **state)
{
	struct place_node n[3] = { node("h1"), node("h2"), node("h3") };
	struct place_vm vm = vm512();
	struct place_verdict v[3];

	(void)state;
	n[0].ram_used = 3 * GIB;	/* RAM 7/8 after placing */
	n[1].cpus_used = 2;		/* vCPUs 3/4 */
	n[2].load1 = 3;			/* 0.25 + 0.5 * 0.75 = 0.625 */
	assert_int_equal(place_choose(&vm, n, 3, v), 2);
	assert_true(v[0].fits && v[1].fits && v[2].fits);
	assert_true(fabs(v[0].score - 0.875) < 1e-9);
	assert_true(fabs(v[1].score - 0.75) < 1e-9);
	assert_true(fabs(v[2].score - 0.625) < 1e-9);
	n[2].load1 = 4;			/* 0.75: ties with h2, h2 wins by name */
	assert_int_equal(place_choose(&vm, n, 3, v), 1);
}

static void tie_by_name(void **state)
{
	struct place_node n[3] = { node("h3"), node("h1"), node("h2") };
	struct place_vm vm = vm512();
	struct place_verdict v[3];

	(void)state;
	assert_int_equal(place_choose(&vm, n, 3, v), 1);	/* "h1" */
	vm.exclude = "h1";
	assert_int_equal(place_choose(&vm, n, 3, v), 2);	/* "h2" */
	assert_false(v[1].fits);
	assert_string_equal(v[1].reason, "the VM runs there");
}

static void none_fits_every_verdict(void **state)
{
	struct place_node n[5] = { node("a"), node("b"), node("c"), node("d"), node("e") };
	struct place_vm vm = vm512();
	struct place_verdict v[5];

	(void)state;
	memset(v, 0x55, sizeof(v));	/* garbage that must be overwritten */
	n[0].up = false;
	n[1].maintenance = true;
	n[2].ram_used = 4 * GIB;
	n[3].reach = -1;
	vm.exclude = "e";
	assert_int_equal(place_choose(&vm, n, 5, v), -1);
	for (int i = 0; i < 5; i++) {
		assert_false(v[i].fits);
		assert_true(strlen(v[i].reason) > 0 && strlen(v[i].reason) < sizeof(v[i].reason));
	}
	assert_string_equal(v[0].reason, "down");
	assert_string_equal(v[1].reason, "in maintenance");
	assert_string_equal(v[2].reason, "not enough free RAM: 0 MiB free, the VM needs 512 MiB");
	assert_string_equal(v[3].reason, "has not checked the VM's disks yet");
	assert_string_equal(v[4].reason, "the VM runs there");
	/* and no nodes at all */
	assert_int_equal(place_choose(&vm, n, 0, v), -1);
}

static void zero_sized_node(void **state)
{
	struct place_node n = node("h1");
	struct place_vm vm = vm512();
	struct place_verdict v;

	(void)state;
	n.ram_total = 0;
	n.cpus = 0;
	v = judge1(&vm, &n);
	assert_false(v.fits);
	assert_string_equal(v.reason, "not enough free RAM: 0 MiB free, the VM needs 512 MiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fits_and_scores),
		cmocka_unit_test(refused_down_maintenance_runs_there),
		cmocka_unit_test(refused_ram),
		cmocka_unit_test(refused_cpus),
		cmocka_unit_test(refused_vendor_and_features),
		cmocka_unit_test(many_missing_features_truncate),
		cmocka_unit_test(refused_reach),
		cmocka_unit_test(least_loaded_wins),
		cmocka_unit_test(tie_by_name),
		cmocka_unit_test(none_fits_every_verdict),
		cmocka_unit_test(zero_sized_node),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
