/*
 * Virtqueues against a hostile driver: out-of-range indices and addresses,
 * loops, oversized chains, indirect descriptors, rings outside RAM.  Each
 * gives an error (the device then needs a reset), never a crash or a write
 * outside guest memory (the ASan build checks the latter).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/mem.h"
#include "devices/virtqueue.h"

#define QSZ 8
#define DESC 0x10000ULL
#define AVAIL 0x11000ULL
#define USED 0x12000ULL
#define BUF 0x20000ULL

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };

struct fx {
	struct guest_mem mem;
	struct vq_state vq;
	struct vq_elem e;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct kv_err err;

	if (mem_init(&f->mem, 16ULL << 20, MEM_BACKEND_MEMFD, &err))
		return -1;
	f->vq = (struct vq_state){ .size = QSZ, .enabled = 1, .desc = DESC, .avail = AVAIL,
				   .used = USED };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	mem_destroy(&f->mem);
	free(f);
	return 0;
}

static struct desc *D(struct fx *f) { return mem_gpa_to_hva(&f->mem, DESC, 16 * QSZ); }
static uint16_t *A(struct fx *f) { return mem_gpa_to_hva(&f->mem, AVAIL, 6 + 2 * QSZ); }

/* Publish head as the next available entry. */
static void offer(struct fx *f, uint16_t head)
{
	uint16_t *a = A(f);
	a[2 + a[1] % QSZ] = head;
	a[1]++;
}

static int pop(struct fx *f, struct kv_err *err)
{
	return vq_pop(&f->mem, &f->vq, &f->e, err);
}

static void test_good_chain(void **state)
{
	struct fx *f = *state;
	struct kv_err err;
	uint8_t out[] = "request";

	D(f)[0] = (struct desc){ BUF, 8, 1, 1 };		/* readable, next 1 */
	D(f)[1] = (struct desc){ BUF + 0x1000, 100, 2, 0 };	/* writable, end */
	memcpy(mem_gpa_to_hva(&f->mem, BUF, 8), out, 8);
	assert_int_equal(pop(f, &err), 0);			/* empty */
	offer(f, 0);
	assert_int_equal(pop(f, &err), 1);
	assert_int_equal(f->e.nout, 1);
	assert_int_equal(f->e.nin, 1);
	assert_int_equal(f->e.in_bytes, 100);
	{
		char got[8];
		assert_int_equal(vq_copy_from_out(&f->e, 0, got, 8), 8);
		assert_string_equal(got, "request");
	}
	assert_int_equal(vq_copy_to_in(&f->mem, &f->e, 0, "reply", 5), 5);
	assert_true(mem_test_dirty(&f->mem, BUF + 0x1000));	/* device writes are dirty */
	assert_int_equal(vq_push(&f->mem, &f->vq, &f->e, 5, &err), 0);
	{
		uint16_t *u = mem_gpa_to_hva(&f->mem, USED, 6 + 8 * QSZ);
		uint32_t *el = (uint32_t *)(u + 2);
		assert_int_equal(u[1], 1);	/* used idx */
		assert_int_equal(el[0], 0);	/* id */
		assert_int_equal(el[1], 5);	/* len */
	}
	assert_true(mem_test_dirty(&f->mem, USED));
	assert_int_equal(pop(f, &err), 0);	/* consumed */
}

static void expect_broken(struct fx *f, const char *why)
{
	struct kv_err err = { "" };
	int r = pop(f, &err);

	if (r != -EIO)
		fail_msg("%s: vq_pop returned %d", why, r);
	assert_true(err.msg[0]);
}

static void test_hostile(void **state)
{
	struct fx *f = *state;

	offer(f, QSZ);				expect_broken(f, "head out of range");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ BUF, 8, 1, QSZ + 3 };	/* next out of range */
	offer(f, 0);				expect_broken(f, "next out of range");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ BUF, 8, 1, 1 };
	D(f)[1] = (struct desc){ BUF, 8, 1, 0 };	/* 0 -> 1 -> 0 ... */
	offer(f, 0);				expect_broken(f, "loop");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ MEM_HOLE_START, 8, 0, 0 };	/* not RAM */
	offer(f, 0);				expect_broken(f, "buffer outside RAM");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ (16ULL << 20) - 4, 8, 0, 0 };	/* runs past the end */
	offer(f, 0);				expect_broken(f, "buffer past the end");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ UINT64_MAX - 2, 8, 0, 0 };	/* address wraps */
	offer(f, 0);				expect_broken(f, "wrapping address");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ BUF, 16, 4, 0 };	/* indirect */
	offer(f, 0);				expect_broken(f, "indirect");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ BUF, 8, 3, 1 };	/* writable, then readable */
	D(f)[1] = (struct desc){ BUF, 8, 0, 0 };
	offer(f, 0);				expect_broken(f, "readable after writable");
	f->vq.last_avail = A(f)[1];

	D(f)[0] = (struct desc){ BUF, 0xffffffffu, 2, 0 };	/* 4 GiB buffer */
	offer(f, 0);				expect_broken(f, "oversized buffer");
	f->vq.last_avail = A(f)[1];

	A(f)[1] = (uint16_t)(f->vq.last_avail + QSZ + 1);	/* index jumps */
	expect_broken(f, "avail index jump");
	f->vq.last_avail = A(f)[1];

	f->vq.desc = (16ULL << 20) - 64;		/* ring runs off RAM */
	offer(f, 0);				expect_broken(f, "descriptor ring outside RAM");
	f->vq.desc = DESC;
	f->vq.last_avail = A(f)[1];

	f->vq.used = MEM_HOLE_START;
	D(f)[0] = (struct desc){ BUF, 8, 2, 0 };
	offer(f, 0);
	{
		struct kv_err err;
		assert_int_equal(pop(f, &err), 1);
		assert_int_equal(vq_push(&f->mem, &f->vq, &f->e, 1, &err), -EIO);
	}
}

/* A chain longer than the segment limit (a big ring, every descriptor used). */
static void test_too_many_segments(void **state)
{
	struct fx *f = *state;
	struct desc *d = mem_gpa_to_hva(&f->mem, DESC, 16 * 256);
	uint16_t *a = mem_gpa_to_hva(&f->mem, AVAIL, 6 + 2 * 256);

	f->vq.size = 256;
	memset(a, 0, 6 + 2 * 256);
	for (int i = 0; i < 256; i++)
		d[i] = (struct desc){ BUF, 8, 1, (uint16_t)(i + 1) };
	d[255].flags = 0;
	a[2] = 0;
	a[1] = 1;
	f->vq.last_avail = 0;
	expect_broken(f, "more segments than the device takes");
}

static void test_validate(void **state)
{
	struct kv_err err;
	struct vq_state q = { .size = 6 };

	assert_int_equal(vq_validate(&q, 256, &err), -EINVAL);	/* not a power of two */
	q.size = 512;
	assert_int_equal(vq_validate(&q, 256, &err), -EINVAL);	/* too big */
	q = (struct vq_state){ .size = 0, .enabled = 1 };
	assert_int_equal(vq_validate(&q, 256, &err), -EINVAL);
	q = (struct vq_state){ .size = 8, .enabled = 1, .desc = 8 };
	assert_int_equal(vq_validate(&q, 256, &err), -EINVAL);	/* misaligned */
	q = (struct vq_state){ .size = 8, .enabled = 2 };
	assert_int_equal(vq_validate(&q, 256, &err), -EINVAL);
	q = (struct vq_state){ .size = 8, .enabled = 1, .desc = 0x1000, .avail = 0x2000,
			       .used = 0x3000 };
	assert_int_equal(vq_validate(&q, 256, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_segments, setup, teardown),
		cmocka_unit_test(test_validate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
