/* Guest memory: layout around the PCI hole, size parsing, address checks,
 * VMM dirty bitmap, the backends (memfd, anon, hugetlb). */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/mem.h"
#include "vmm/sandbox.h"

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

	assert_int_equal(mem_init(&m, MEM_HOLE_START + (16ULL << 20), MEM_BACKEND_MEMFD, &err), 0);
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

	assert_int_equal(mem_init(&m, MEM_HOLE_START + (16ULL << 20), MEM_BACKEND_MEMFD, &err), 0);
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

	assert_int_equal(mem_init(&m, 64ULL << 30, MEM_BACKEND_MEMFD, &err), 0);
	m.host[0] = 1;
	*(uint8_t *)mem_gpa_to_hva(&m, MEM_4G + (60ULL << 30), 1) = 2;
	mem_destroy(&m);
}

static void test_backend_parse(void **state)
{
	enum mem_backend b;
	struct kv_err err;

	(void)state;
	assert_int_equal(mem_backend_parse("memfd", &b, &err), 0);
	assert_int_equal(b, MEM_BACKEND_MEMFD);
	assert_int_equal(mem_backend_parse("anon", &b, &err), 0);
	assert_int_equal(b, MEM_BACKEND_ANON);
	assert_int_equal(mem_backend_parse("hugetlb", &b, &err), 0);
	assert_int_equal(b, MEM_BACKEND_HUGETLB);
	assert_string_equal(mem_backend_name(MEM_BACKEND_ANON), "anon");
	assert_int_equal(mem_backend_parse("shm", &b, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "memfd, anon or hugetlb"));
	assert_int_equal(mem_backend_parse("", &b, &err), -EINVAL);
	assert_int_equal(mem_backend_parse(NULL, &b, &err), -EINVAL);
	assert_true(mem_backend_shareable(MEM_BACKEND_MEMFD));
	assert_true(mem_backend_shareable(MEM_BACKEND_HUGETLB));
	assert_false(mem_backend_shareable(MEM_BACKEND_ANON));
}

/* What mem_next_data() calls data: written pages, never the rest; a
 * discarded page is a hole again and reads as zeros. */
static void check_ranges(enum mem_backend b)
{
	struct guest_mem m;
	struct kv_err err;
	uint64_t data, end, total = 0, huge = b == MEM_BACKEND_ANON ? MEM_HUGE_PAGE_SIZE : 4096;

	assert_int_equal(mem_init(&m, 64ULL << 20, b, &err), 0);
	assert_int_equal(m.backend, b);
	assert_int_equal(mem_next_data(&m, 0, &data, &end), -ENXIO);
	assert_int_equal(mem_resident_bytes(&m), 0);
	m.host[5 * 4096] = 1;
	m.host[(40ULL << 20) + 4096] = 2;
	/* the first range holds page 5 and ends before the second write */
	assert_int_equal(mem_next_data(&m, 0, &data, &end), 0);
	assert_true(data <= 5 * 4096 && end > 5 * 4096 && end <= (40ULL << 20));
	assert_true(end - data <= huge);
	total += end - data;
	assert_int_equal(mem_next_data(&m, end, &data, &end), 0);
	assert_true(data <= (40ULL << 20) + 4096 && end > (40ULL << 20) + 4096);
	total += end - data;
	assert_int_equal(mem_next_data(&m, end, &data, &end), -ENXIO);
	assert_int_equal(mem_next_data(&m, m.size, &data, &end), -ENXIO);
	assert_int_equal(mem_resident_bytes(&m), total);

	assert_int_equal(mem_discard(&m, 5, 1, &err), 0);
	if (b == MEM_BACKEND_MEMFD)	/* (before a read allocates it again) */
		assert_int_equal(mem_resident_bytes(&m), 4096);
	assert_int_equal(m.host[5 * 4096], 0);
	assert_int_equal(mem_discard(&m, m.npages, 1, &err), -EINVAL);
	mem_destroy(&m);
}

static void test_ranges_memfd(void **state)
{
	(void)state;
	check_ranges(MEM_BACKEND_MEMFD);
}

static void test_ranges_anon(void **state)
{
	(void)state;
	check_ranges(MEM_BACKEND_ANON);
}

/* hugetlb: sizes in 2 MiB steps; a host without enough free huge pages
 * refuses at start, naming where they are reserved; where it has them,
 * the memory works, is a shareable memfd, and cannot drop single pages. */
static void test_hugetlb(void **state)
{
	struct guest_mem m, m2;
	struct kv_err err;
	uint64_t too_big = ((mem_hugetlb_free() >> 20) + 64) << 20;

	(void)state;
	assert_int_equal(mem_init(&m, (16ULL << 20) + 4096, MEM_BACKEND_HUGETLB, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "multiple of 2 MiB"));
	assert_int_equal(mem_init(&m, too_big, MEM_BACKEND_HUGETLB, &err), -ENOMEM);
	assert_non_null(strstr(err.msg, "nr_hugepages"));
	if (mem_hugetlb_free() < (32ULL << 20)) {
		print_message("only %llu MiB of free huge pages: the working half is not run\n",
			      (unsigned long long)(mem_hugetlb_free() >> 20));
		return;
	}
	assert_int_equal(mem_init(&m, 16ULL << 20, MEM_BACKEND_HUGETLB, &err), 0);
	assert_true(mem_backend_shareable(m.backend));
	m.host[3 * 4096] = 7;
	assert_int_equal(mem_discard(&m, 3, 1, &err), -ENOTSUP);
	assert_int_equal(m.host[3 * 4096], 7);
	/* handed over as a memfd, it is known for what it is */
	assert_int_equal(mem_init_fd(&m2, 16ULL << 20, m.memfd, &err), 0);
	assert_int_equal(m2.backend, MEM_BACKEND_HUGETLB);
	assert_int_equal(m2.host[3 * 4096], 7);
	mem_destroy(&m2);
	mem_destroy(&m);
}

/* An incoming or restoring VMM builds its VM inside its sandbox (seccomp
 * allowlist, capabilities dropped): every backend must work there, which a
 * child process checks (a call the filter forbids fails with EPERM). */
static int sandboxed_child(void)
{
	enum mem_backend bs[] = { MEM_BACKEND_MEMFD, MEM_BACKEND_ANON, MEM_BACKEND_HUGETLB };
	unsigned nb = mem_hugetlb_free() >= (16ULL << 20) ? 3 : 2;
	struct kv_err err;

	if (sandbox_enter(false, &err)) {
		fprintf(stderr, "sandbox: %s\n", err.msg);
		return 10;
	}
	for (unsigned i = 0; i < nb; i++) {
		struct guest_mem m;
		uint64_t data, end;

		if (mem_init(&m, 16ULL << 20, bs[i], &err)) {
			fprintf(stderr, "%s: %s\n", mem_backend_name(bs[i]), err.msg);
			return 20 + (int)i;
		}
		m.host[7 * 4096] = 1;
		if (mem_next_data(&m, 0, &data, &end) || data > 7 * 4096 || end <= 7 * 4096)
			return 30 + (int)i;
		if (mem_resident_bytes(&m) < 4096)
			return 40 + (int)i;
		if (bs[i] != MEM_BACKEND_HUGETLB && mem_discard(&m, 7, 1, &err)) {
			fprintf(stderr, "%s: %s\n", mem_backend_name(bs[i]), err.msg);
			return 50 + (int)i;
		}
		mem_destroy(&m);
	}
	return 0;
}

static void test_backends_sandboxed(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(sandboxed_child());
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		fail_msg("the sandboxed child was killed by signal %d (a forbidden system call?)",
			 WTERMSIG(st));
	if (WEXITSTATUS(st))
		fail_msg("the sandboxed child failed: code %d", WEXITSTATUS(st));
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
		cmocka_unit_test(test_backend_parse),
		cmocka_unit_test(test_ranges_memfd),
		cmocka_unit_test(test_ranges_anon),
		cmocka_unit_test(test_hugetlb),
		cmocka_unit_test(test_backends_sandboxed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
