#define _GNU_SOURCE
#include "migration/ram.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/vm.h"
#include "migration/proto.h"
#include "state/stream.h"

#define ENTRY_HDR 8

struct batch {
	unsigned n;
	uint64_t gpa[MIG_RAM_BATCH];
	const uint8_t *hva[MIG_RAM_BATCH];
	bool zero[MIG_RAM_BATCH];
};

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < MEM_PAGE_SIZE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

static int flush_batch(struct ram_sender *rs, struct batch *b, struct kv_err *err)
{
	uint8_t hdr[ENTRY_HDR];
	uint32_t len = 4;
	int r;

	if (!b->n)
		return 0;
	for (unsigned i = 0; i < b->n; i++)
		len += ENTRY_HDR + (b->zero[i] ? 0 : (uint32_t)MEM_PAGE_SIZE);
	if ((r = stream_begin(rs->s, MIG_REC_RAM, STREAM_F_MANDATORY, len, err)))
		return r;
	st_put32(hdr, b->n);
	if ((r = stream_append(rs->s, hdr, 4, err)))
		return r;
	for (unsigned i = 0; i < b->n; i++) {
		st_put64(hdr, b->gpa[i] | (b->zero[i] ? MIG_PAGE_ZERO : 0));
		if ((r = stream_append(rs->s, hdr, ENTRY_HDR, err)))
			return r;
		if (!b->zero[i]) {
			if ((r = stream_append(rs->s, b->hva[i], MEM_PAGE_SIZE, err)))
				return r;
			rs->st.normal++;
		} else {
			rs->st.zero++;
		}
	}
	if ((r = stream_end(rs->s, err)))
		return r;
	rs->st.bytes += len + STREAM_HDR_SIZE + STREAM_TRAILER_SIZE;
	b->n = 0;
	if (rs->progress)
		rs->progress(rs->progress_opaque);
	return 0;
}

/* memfd page index -> guest-physical address */
static uint64_t page_gpa(const struct vm *vm, uint64_t page)
{
	uint64_t off = page << MEM_PAGE_SHIFT;

	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		if (off >= r->offset && off - r->offset < r->size)
			return r->gpa + (off - r->offset);
	}
	return UINT64_MAX;
}

/* skip_zero: in the first pass the destination's memory is already zero */
static int add_page(struct ram_sender *rs, struct batch *b, uint64_t page, bool skip_zero,
		    struct kv_err *err)
{
	const uint8_t *hva = rs->vm->mem.host + (page << MEM_PAGE_SHIFT);
	bool zero = page_is_zero(hva);

	if (zero && skip_zero) {
		rs->st.zero++;
		return 0;
	}
	b->gpa[b->n] = page_gpa(rs->vm, page);
	b->hva[b->n] = hva;
	b->zero[b->n] = zero;
	if (++b->n == MIG_RAM_BATCH)
		return flush_batch(rs, b, err);
	return 0;
}

static int cancelled(const struct ram_sender *rs, struct kv_err *err)
{
	if (rs->cancel && __atomic_load_n(rs->cancel, __ATOMIC_RELAXED))
		return kv_errf(err, ECANCELED, "migration cancelled");
	return 0;
}

int ram_sender_init(struct ram_sender *rs, struct vm *vm, struct stream *s,
		    const int *cancel, struct kv_err *err)
{
	memset(rs, 0, sizeof(*rs));
	rs->vm = vm;
	rs->s = s;
	rs->cancel = cancel;
	rs->dirty = calloc((vm->mem.npages + 63) / 64, sizeof(uint64_t));
	if (!rs->dirty)
		return kv_errf(err, ENOMEM, "migration dirty bitmap");
	return 0;
}

void ram_sender_destroy(struct ram_sender *rs)
{
	free(rs->dirty);
	rs->dirty = NULL;
}

int ram_send_all(struct ram_sender *rs, struct kv_err *err)
{
	struct batch *b = calloc(1, sizeof(*b));
	off_t pos = 0, end = (off_t)rs->vm->mem.size;
	int r = 0;

	if (!b)
		return kv_errf(err, ENOMEM, "RAM batch");
	/* Walk only the parts of the memfd that hold data: a 64 GiB guest that
	 * touched 1 GiB costs 1 GiB of reading, and holes stay holes. */
	while (pos < end) {
		off_t data = lseek(rs->vm->mem.memfd, pos, SEEK_DATA), hole;
		if (data < 0)
			break;	/* ENXIO: no more data */
		hole = lseek(rs->vm->mem.memfd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		for (uint64_t p = (uint64_t)data >> MEM_PAGE_SHIFT;
		     p < ((uint64_t)hole + MEM_PAGE_SIZE - 1) >> MEM_PAGE_SHIFT; p++) {
			if ((p & 1023) == 0 && (r = cancelled(rs, err)))
				goto out;
			if ((r = add_page(rs, b, p, true, err)))
				goto out;
		}
		pos = hole;
	}
	r = flush_batch(rs, b, err);
out:
	free(b);
	return r;
}

int ram_send_dirty(struct ram_sender *rs, struct kv_err *err)
{
	struct batch *b = calloc(1, sizeof(*b));
	uint64_t nwords = (rs->vm->mem.npages + 63) / 64;
	int r = 0;

	if (!b)
		return kv_errf(err, ENOMEM, "RAM batch");
	for (uint64_t w = 0; w < nwords; w++) {
		uint64_t bits = rs->dirty[w];

		if (!bits)
			continue;
		if ((w & 255) == 0 && (r = cancelled(rs, err)))
			goto out;
		while (bits) {
			unsigned bit = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			if ((r = add_page(rs, b, w * 64 + bit, false, err)))
				goto out;
		}
		/* The pages are in the stream buffer (or on the wire): only now
		 * may their bits go. */
		rs->dirty[w] = 0;
	}
	r = flush_batch(rs, b, err);
out:
	free(b);
	return r;
}

uint64_t ram_dirty_count(const struct ram_sender *rs)
{
	uint64_t n = 0, nwords = (rs->vm->mem.npages + 63) / 64;

	for (uint64_t w = 0; w < nwords; w++)
		n += (uint64_t)__builtin_popcountll(rs->dirty[w]);
	return n;
}

/*
 * A fresh destination's memory is all holes: letting the copy fault every
 * 4 KiB page in costs a third of the receiver's time.  Populate each run of
 * consecutive pages of a batch in one call instead.  Only a hint: errors
 * (older kernels without MADV_POPULATE_WRITE) just leave the faults.
 */
static void populate_runs(struct vm *vm, const uint8_t *p, uint32_t count, uint32_t len)
{
	uint64_t run_start = 0, run_end = 0;
	uint32_t pos = 4;

	for (uint32_t i = 0; i < count && len - pos >= ENTRY_HDR; i++) {
		uint64_t v = st_get64(p + pos), gpa = v & ~(MEM_PAGE_SIZE - 1);
		pos += ENTRY_HDR + ((v & MIG_PAGE_ZERO) ? 0 : (uint32_t)MEM_PAGE_SIZE);
		if (pos > len)
			break;
		if (gpa == run_end && run_end) {
			run_end += MEM_PAGE_SIZE;
			continue;
		}
		if (run_end)
			mem_populate(&vm->mem, run_start, run_end - run_start);
		run_start = gpa;
		run_end = gpa + MEM_PAGE_SIZE;
	}
	if (run_end)
		mem_populate(&vm->mem, run_start, run_end - run_start);
}

int ram_apply(struct vm *vm, const uint8_t *p, uint32_t len, uint64_t *pages,
	      struct kv_err *err)
{
	uint32_t count, pos = 4;

	if (len < 4)
		return kv_errf(err, EBADMSG, "RAM record truncated");
	count = st_get32(p);
	if (count == 0 || count > MIG_RAM_BATCH)
		return kv_errf(err, EBADMSG, "RAM record with %u pages (1..%d allowed)", count,
			       MIG_RAM_BATCH);
	populate_runs(vm, p, count, len);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t v, gpa, flags;
		uint8_t *dst;

		if (len - pos < ENTRY_HDR)
			return kv_errf(err, EBADMSG, "RAM record truncated at page %u", i);
		v = st_get64(p + pos);
		pos += ENTRY_HDR;
		flags = v & (MEM_PAGE_SIZE - 1);
		gpa = v & ~(MEM_PAGE_SIZE - 1);
		if (flags & ~(uint64_t)MIG_PAGE_FLAGS)
			return kv_errf(err, EBADMSG, "RAM page 0x%" PRIx64 " has unknown flags "
				       "0x%" PRIx64, gpa, flags);
		dst = mem_gpa_to_hva(&vm->mem, gpa, MEM_PAGE_SIZE);
		if (!dst)
			return kv_errf(err, EBADMSG, "RAM page at 0x%" PRIx64 " is outside the "
				       "VM's memory", gpa);
		if (flags & MIG_PAGE_ZERO) {
			memset(dst, 0, MEM_PAGE_SIZE);
		} else {
			if (len - pos < MEM_PAGE_SIZE)
				return kv_errf(err, EBADMSG, "RAM record truncated in page "
					       "0x%" PRIx64, gpa);
			memcpy(dst, p + pos, MEM_PAGE_SIZE);
			pos += (uint32_t)MEM_PAGE_SIZE;
		}
		mem_mark_dirty(&vm->mem, gpa, MEM_PAGE_SIZE);
	}
	if (pos != len)
		return kv_errf(err, EBADMSG, "RAM record has %u stray bytes", len - pos);
	*pages += count;
	return 0;
}
