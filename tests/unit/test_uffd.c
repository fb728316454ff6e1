/*
 * userfaultfd over guest memory (core/uffd.h), the mechanics of post-copy,
 * on memfd (what a post-copy destination uses) and anon: a
 * thread touching a missing page waits until uffd_place() puts it there,
 * sees exactly what was placed, a page already there is not replaced
 * (-EEXIST), and a discarded page is missing again.  No KVM needed: the
 * toucher is a plain thread, as a device thread would be.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/mem.h"
#include "core/uffd.h"

struct toucher {
	struct guest_mem *mem;
	uint64_t page;
	volatile uint8_t seen;
	volatile int done;
};

static void *touch(void *p)
{
	struct toucher *t = p;

	t->seen = t->mem->host[(t->page << MEM_PAGE_SHIFT) + 100];
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Wait for the fault on `page` (5 s at most), as post-copy's fault thread does. */
static void wait_fault(int fd, struct guest_mem *mem, uint64_t page)
{
	for (int i = 0; i < 5000; i++) {
		uint64_t pages[8];
		int n = uffd_read_faults(fd, mem, pages, 8);

		assert_true(n >= 0);
		for (int k = 0; k < n; k++)
			if (pages[k] == page)
				return;
		usleep(1000);
	}
	fail_msg("no fault reported for page %llu", (unsigned long long)page);
}

static void check_backend(enum mem_backend b)
{
	struct guest_mem m;
	struct kv_err err;
	struct toucher t;
	pthread_t th;
	uint8_t page[4096];
	int fd;

	if (!uffd_supported())
		fail_msg("userfaultfd cannot watch guest memory on this host");
	assert_int_equal(mem_init(&m, 16ULL << 20, b, &err), 0);
	m.host[(1 << MEM_PAGE_SHIFT) + 100] = 0x11;	/* page 1 is there already */
	fd = uffd_register(&m, &err);
	if (fd < 0)
		fail_msg("%s: %s", mem_backend_name(b), err.msg);

	/* a missing page: the toucher waits until the page is placed (in
	 * another 2 MiB than page 1: see test_anon_neighbours) */
	t = (struct toucher){ .mem = &m, .page = 1000 };
	assert_int_equal(pthread_create(&th, NULL, touch, &t), 0);
	wait_fault(fd, &m, 1000);
	usleep(20000);
	assert_int_equal(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);
	memset(page, 0x5a, sizeof(page));
	assert_int_equal(uffd_place(fd, &m, 1000, page), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.seen, 0x5a);

	/* a page that is there is never replaced */
	memset(page, 0x77, sizeof(page));
	assert_int_equal(uffd_place(fd, &m, 1, page), -EEXIST);
	assert_int_equal(m.host[(1 << MEM_PAGE_SHIFT) + 100], 0x11);
	assert_int_equal(uffd_place(fd, &m, m.npages, page), -EINVAL);

	/* discarded: missing again, and a zero page can be placed */
	assert_int_equal(mem_discard(&m, 1000, 1, &err), 0);
	t = (struct toucher){ .mem = &m, .page = 1000, .seen = 0xff };
	assert_int_equal(pthread_create(&th, NULL, touch, &t), 0);
	wait_fault(fd, &m, 1000);
	assert_int_equal(uffd_place(fd, &m, 1000, NULL), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.seen, 0);

	uffd_unregister(fd, &m);
	mem_destroy(&m);
}

static void test_memfd(void **state)
{
	(void)state;
	check_backend(MEM_BACKEND_MEMFD);
}

static void test_anon(void **state)
{
	(void)state;
	check_backend(MEM_BACKEND_ANON);
}

/* Why a destination on anon offers no post-copy: where transparent huge
 * pages are on, a page written (received) brings its whole 2 MiB in, so a
 * neighbour that was never sent reads as zeros instead of faulting. */
static void test_anon_neighbours(void **state)
{
	struct guest_mem m;
	struct kv_err err;
	struct toucher t;
	pthread_t th;
	uint64_t data, end;
	int fd;

	(void)state;
	assert_int_equal(mem_init(&m, 16ULL << 20, MEM_BACKEND_ANON, &err), 0);
	m.host[(1 << MEM_PAGE_SHIFT) + 100] = 0x11;
	assert_int_equal(mem_next_data(&m, 0, &data, &end), 0);
	if (end <= (300ULL << MEM_PAGE_SHIFT)) {
		print_message("no transparent huge page here (THP off?): the hazard does not "
			      "show on this host\n");
		mem_destroy(&m);
		return;
	}
	fd = uffd_register(&m, &err);
	assert_true(fd >= 0);
	t = (struct toucher){ .mem = &m, .page = 300, .seen = 0xff };
	assert_int_equal(pthread_create(&th, NULL, touch, &t), 0);
	for (int i = 0; i < 2000 && !__atomic_load_n(&t.done, __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	if (!__atomic_load_n(&t.done, __ATOMIC_ACQUIRE)) {
		wait_fault(fd, &m, 300);
		uffd_place(fd, &m, 300, NULL);
		pthread_join(th, NULL);
		fail_msg("page 300 faulted although its huge page is present");
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.seen, 0);	/* zeros, and no fault: post-copy would miss it */
	uffd_unregister(fd, &m);
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memfd),
		cmocka_unit_test(test_anon),
		cmocka_unit_test(test_anon_neighbours),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
