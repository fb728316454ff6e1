/* Guest memory: layout around the PCI hole, size parsing, address checks,
 * VMM dirty bitmap. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/mem.h"

static void test_layout_small(void **state)
{
	struct mem_region r[2];
	struct kv_err err;

	assert_int_equal(mem_layout(16ULL << 20, r, 2, &err), 1);
	assert_int_equal(r[0].gpa, 0);
	assert_int_equal(r[0].size, 16ULL << 20);
	assert_int_equal(mem_layout(MEM_HOLE_START, r, 2, &err), 1);
	assert_int_equal(r[0].size, MEM_HOLE_START);
}

static void test_layout_split(void **state)
{
	struct mem_region r[2];
	struct kv_err err;

	assert_int_equal(mem_layout(MEM_HOLE_START + 4096, r, 2, &err), 2);
	assert_int_equal(r[1].gpa, MEM_4G);
	assert_int_equal(r[1].size, 4096);
	assert_int_equal(r[1].offset, MEM_HOLE_START);

	assert_int_equal(mem_layout(64ULL << 30, r, 2, &err), 2);
	assert_int_equal(r[0].size, MEM_HOLE_START);
	assert_int_equal(r[1].gpa + r[1].size, MEM_4G + (64ULL << 30) - MEM_HOLE_START);
	/* nothing in the hole */
	assert_true(r[0].gpa + r[0].size <= MEM_HOLE_START);
	assert_true(r[1].gpa >= MEM_4G);
}

static void test_layout_invalid(void **state)
{
	struct mem_region r[2];
	struct kv_err err;

	assert_int_equal(mem_layout(0, r, 2, &err), -EINVAL);
	assert_int_equal(mem_layout((16ULL << 20) - 4096, r, 2, &err), -EINVAL);
	assert_int_equal(mem_layout((16ULL << 20) + 1, r, 2, &err), -EINVAL);
	assert_int_equal(mem_layout(MEM_MAX_SIZE + 4096, r, 2, &err), -EINVAL);
	assert_int_equal(mem_layout(8ULL << 30, r, 1, &err), -ENOSPC);
}

static void test_parse_size(void **state)
{
	uint64_t v;
	struct kv_err err;

	assert_int_equal(mem_parse_size("512M", &v, &err), 0);
	assert_int_equal(v, 512ULL << 20);
	assert_int_equal(mem_parse_size("64G", &v, &err), 0);
	assert_int_equal(v, 64ULL << 30);
	assert_int_equal(mem_parse_size("1GiB", &v, &err), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(mem_parse_size("4096", &v, &err), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(mem_parse_size("", &v, &err), -EINVAL);
	assert_int_equal(mem_parse_size("-1G", &v, &err), -EINVAL);
	assert_int_equal(mem_parse_size("12Q", &v, &err), -EINVAL);
	assert_int_equal(mem_parse_size("1Gx", &v, &err), -EINVAL);
	assert_int_equal(mem_parse_size("99999999999999999999", &v, &err), -EINVAL);
	assert_int_equal(mem_parse_size("17179869184T", &v, &err), -ERANGE);
}

static void test_gpa_checks(void **state)
{
	struct guest_mem m;
	struct kv_err err;
	uint8_t b = 0;

	assert_int_equal(mem_init(&m, MEM_HOLE_START + (16ULL << 20), &err), 0);
	assert_non_null(mem_gpa_to_hva(&m, 0, 1));
	assert_non_null(mem_gpa_to_hva(&m, MEM_HOLE_START - 1, 1));
	assert_null(mem_gpa_to_hva(&m, MEM_HOLE_START - 1, 2));	/* runs into hole */
	assert_null(mem_gpa_to_hva(&m, MEM_HOLE_START, 1));
	assert_null(mem_gpa_to_hva(&m, 0xfee00000, 4));		/* LAPIC */
	assert_non_null(mem_gpa_to_hva(&m, MEM_4G, 16ULL << 20));
	assert_null(mem_gpa_to_hva(&m, MEM_4G, (16ULL << 20) + 1));
	assert_null(mem_gpa_to_hva(&m, UINT64_MAX, 2));		/* wraps */
	assert_null(mem_gpa_to_hva(&m, 4096, UINT64_MAX));
	/* RAM above 4 GiB is the memfd right after low RAM */
	assert_ptr_equal(mem_gpa_to_hva(&m, MEM_4G, 1), m.host + MEM_HOLE_START);
	assert_int_equal(mem_write(&m, MEM_HOLE_START, &b, 1, &err), -EFAULT);
	assert_int_equal(mem_read(&m, UINT64_MAX, &b, 1, &err), -EFAULT);
	mem_destroy(&m);
}

static void test_dirty(void **state)
{
	struct guest_mem m;
	struct kv_err err;
	uint32_t v = 0xdeadbeef;

	assert_int_equal(mem_init(&m, MEM_HOLE_START + (16ULL << 20), &err), 0);
	assert_false(mem_test_dirty(&m, 0x5000));
	assert_int_equal(mem_write(&m, 0x5ffe, &v, sizeof(v), &err), 0);	/* spans 2 pages */
	assert_true(mem_test_dirty(&m, 0x5000));
	assert_true(mem_test_dirty(&m, 0x6000));
	assert_false(mem_test_dirty(&m, 0x7000));
	assert_false(mem_test_dirty(&m, 0x4000));
	/* a range across the hole marks the RAM on both sides, nothing else */
	mem_mark_dirty(&m, MEM_HOLE_START - 4096, MEM_4G - MEM_HOLE_START + 8192);
	assert_true(mem_test_dirty(&m, MEM_HOLE_START - 4096));
	assert_true(mem_test_dirty(&m, MEM_4G));
	assert_false(mem_test_dirty(&m, MEM_4G + 4096));	/* end is exclusive */
	mem_mark_dirty(&m, UINT64_MAX - 10, 100);	/* must not crash */
	mem_destroy(&m);
}

/* 64 GiB of guest RAM must cost nothing until touched. */
static void test_big_sparse(void **state)
{
	struct guest_mem m;
	struct kv_err err;

	assert_int_equal(mem_init(&m, 64ULL << 30, &err), 0);
	m.host[0] = 1;
	*(uint8_t *)mem_gpa_to_hva(&m, MEM_4G + (60ULL << 30), 1) = 2;
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_small),
		cmocka_unit_test(test_layout_split),
		cmocka_unit_test(test_layout_invalid),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_gpa_checks),
		cmocka_unit_test(test_dirty),
		cmocka_unit_test(test_big_sparse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
