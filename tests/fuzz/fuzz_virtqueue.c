/*
 * fuzz_virtqueue - a split virtqueue (src/devices/virtqueue.c) driven by a
 * hostile driver: the rings and buffers are whatever the input puts in
 * guest memory, and the device pops, reads, writes and pushes until the
 * ring is empty or broken.
 *
 * Input: a 36-byte queue header, then up to 64 KiB of guest memory.
 *   0  u16 size        4  u16 used_idx    7  u8 pops (at most)
 *   2  u16 last_avail  6  u8 flags        8  u64 desc, 16 avail, 24 used
 *   32 u32 written (what the device reports it wrote)
 *   flags bit 0: ring addresses and size as given (checked by vq_validate()
 *                like a queue state from a stream); otherwise the size is
 *                a power of two and the addresses offsets into the memory
 *                image, aligned
 *   flags bit 1: the memory image goes at the top of RAM (otherwise at
 *                64 KiB), so rings and buffers can run off the end
 *   flags bit 2: report written = the chain's writable bytes
 * Checks: vq_pop() returns 1, 0 or -EIO with a message; every segment it
 * hands out is inside guest RAM, exactly where its guest address says;
 * the chain's byte counts add up; the copy helpers never move more than
 * asked or than the chain holds, and mark what they write dirty; vq_push()
 * publishes the used index.  Memory goes back to zeros after each input.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/vm.h"
#include "devices/virtqueue.h"
#include "fuzz.h"
#include "state/stream.h"

#define HDR 36
#define WINDOW 65536ULL
#define LOW_BASE 0x10000ULL
#define COPY_MAX 8192

#define F_RAW 0x1
#define F_TOP 0x2
#define F_WRITTEN_ALL 0x4
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static struct vm *vm;
static uint8_t buf[COPY_MAX];
static uint8_t pattern[COPY_MAX];

static void check_segs(const struct vq_seg *s, unsigned n, uint64_t bytes, const char *what)
{
	uint64_t sum = 0;

	FUZZ_CHECK(n <= VQ_MAX_SEGS, "%u %s segments", n, what);
	for (unsigned i = 0; i < n; i++) {
		sum += s[i].len;
		if (!s[i].len)
			continue;
		FUZZ_CHECK(s[i].hva == mem_gpa_to_hva(&vm->mem, s[i].gpa, s[i].len) && s[i].hva,
			   "%s segment %u (0x%llx+%u) is not where its address says", what, i,
			   (unsigned long long)s[i].gpa, s[i].len);
		FUZZ_CHECK(s[i].hva >= vm->mem.host &&
			   s[i].hva + s[i].len <= vm->mem.host + vm->mem.size,
			   "%s segment %u outside guest memory", what, i);
	}
	FUZZ_CHECK(sum == bytes, "%s segments hold %llu bytes, the chain says %llu", what,
		   (unsigned long long)sum, (unsigned long long)bytes);
}

/* What vq_copy_to_in() wrote, from skip on, is marked dirty. */
static void check_dirty(const struct vq_elem *e, size_t skip, size_t len)
{
	for (unsigned i = 0; i < e->nin && len; i++) {
		size_t sl = e->in[i].len, c;

		if (skip >= sl) {
			skip -= sl;
			continue;
		}
		c = sl - skip < len ? sl - skip : len;
		FUZZ_CHECK(mem_test_dirty(&vm->mem, e->in[i].gpa + skip) &&
			   mem_test_dirty(&vm->mem, e->in[i].gpa + skip + c - 1),
			   "a write into segment %u was not marked dirty", i);
		len -= c;
		skip = 0;
	}
}

static void serve(struct vq_state *vq, const struct vq_elem *e, unsigned k, uint32_t written)
{
	size_t want = e->out_bytes < COPY_MAX ? (size_t)e->out_bytes : COPY_MAX, got;
	size_t skip = k % 3 == 0 ? 0 : k, wlen;
	struct kv_err err = { "" };
	int r;

	/* exactly what the chain holds past skip, up to what was asked */
	got = vq_copy_from_out(e, skip, buf, want);
	FUZZ_CHECK(got == (skip >= e->out_bytes ? 0 : MIN(want, e->out_bytes - skip)),
		   "vq_copy_from_out: %zu bytes of %zu asked, %zu skipped", got, want, skip);
	wlen = e->in_bytes < COPY_MAX ? (size_t)e->in_bytes : COPY_MAX;
	got = vq_copy_to_in(&vm->mem, e, skip, pattern, wlen);
	FUZZ_CHECK(got == (skip >= e->in_bytes ? 0 : MIN(wlen, e->in_bytes - skip)),
		   "vq_copy_to_in: %zu bytes of %zu asked, %zu skipped", got, wlen, skip);
	check_dirty(e, skip, got);
	r = vq_push(&vm->mem, vq, e, written, &err);
	FUZZ_CHECK(r == 0 || (r == -EIO && err.msg[0]), "vq_push: %d (%s)", r, err.msg);
	if (!r) {
		const uint16_t *idx = mem_gpa_to_hva(&vm->mem, vq->used + 2, 2);

		FUZZ_CHECK(idx && *idx == vq->used_idx, "used index not published");
		FUZZ_CHECK(mem_test_dirty(&vm->mem, vq->used + 2), "used index not marked dirty");
	}
	(void)vq_wants_interrupt(&vm->mem, vq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vq_state vq = { 0 };
	struct vq_elem *e;
	struct kv_err err = { "" };
	uint64_t base;
	size_t img;
	uint8_t flags, pops;
	uint32_t written;

	if (!vm) {
		vm = fuzz_vm_new(FUZZ_MEM_SMALL, FUZZ_VM_BARE);
		for (size_t i = 0; i < sizeof(pattern); i++)
			pattern[i] = (uint8_t)(i * 13 + 7);
	}
	if (size < HDR)
		return 0;
	img = size - HDR < WINDOW ? size - HDR : WINDOW;
	flags = data[6];
	pops = data[7];
	written = st_get32(data + 32);
	base = flags & F_TOP ? (vm->mem.size - img) & ~(MEM_PAGE_SIZE - 1) : LOW_BASE;
	if (img)
		memcpy(vm->mem.host + base, data + HDR, img);

	vq.size = st_get16(data);
	vq.last_avail = st_get16(data + 2);
	vq.used_idx = st_get16(data + 4);
	vq.enabled = 1;
	vq.desc = st_get64(data + 8);
	vq.avail = st_get64(data + 16);
	vq.used = st_get64(data + 24);
	if (!(flags & F_RAW)) {
		vq.size = (uint16_t)(1u << (vq.size % 9));	/* 1 .. 256 */
		vq.desc = (base + vq.desc % WINDOW) & ~15ULL;
		vq.avail = (base + vq.avail % WINDOW) & ~1ULL;
		vq.used = (base + vq.used % WINDOW) & ~3ULL;
	}
	/* a device takes only a queue that passes this (guest setup, streams) */
	if (vq_validate(&vq, VQ_MAX_SIZE, &err))
		goto out;

	e = malloc(sizeof(*e));
	if (!e)
		fuzz_fail("out of memory");
	for (unsigned k = 0; k <= pops; k++) {
		uint16_t before = vq.last_avail;
		int r;

		err.msg[0] = '\0';
		r = vq_pop(&vm->mem, &vq, e, &err);
		FUZZ_CHECK(r == 1 || r == 0 || (r == -EIO && err.msg[0]), "vq_pop: %d (%s)", r,
			   err.msg);
		FUZZ_CHECK((r == 1) == (vq.last_avail == (uint16_t)(before + 1)),
			   "vq_pop returned %d and moved last_avail from %u to %u", r, before,
			   vq.last_avail);
		if (r != 1)
			break;
		FUZZ_CHECK(e->head < vq.size, "head %u of %u", e->head, vq.size);
		check_segs(e->out, e->nout, e->out_bytes, "readable");
		check_segs(e->in, e->nin, e->in_bytes, "writable");
		FUZZ_CHECK(e->out_bytes + e->in_bytes <= VQ_MAX_CHAIN_BYTES, "chain of %llu bytes",
			   (unsigned long long)(e->out_bytes + e->in_bytes));
		serve(&vq, e, k, flags & F_WRITTEN_ALL ? (uint32_t)e->in_bytes : written);
	}
	free(e);
out:
	fuzz_mem_reset(&vm->mem);
	return 0;
}
