#define _GNU_SOURCE
#include "migration/ram.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include "core/vm.h"
#include "migration/proto.h"
#include "state/stream.h"

#define ENTRY_HDR 8
#define RAM_HDR 8		/* u32 sequence, u32 count */

struct batch {
	unsigned n;
	uint64_t gpa[MIG_RAM_BATCH];
	uint64_t top;		/* the highest gpa in it */
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
	uint8_t head[RAM_HDR + ENTRY_HDR * MIG_RAM_BATCH];
	uint32_t len = RAM_HDR + ENTRY_HDR * b->n;
	int r;

	if (!b->n)
		return 0;
	/* sequence, count, every entry's header, then the data of the non-zero
	 * pages in entry order: the receiver reads those straight into guest
	 * memory.  The sequence number makes a dropped, replayed or reordered
	 * record visible even when its checksum is intact. */
	st_put32(head, rs->seq++);
	st_put32(head + 4, b->n);
	for (unsigned i = 0; i < b->n; i++) {
		st_put64(head + RAM_HDR + ENTRY_HDR * i,
			 b->gpa[i] | (b->zero[i] ? MIG_PAGE_ZERO : 0));
		if (!b->zero[i])
			len += (uint32_t)MEM_PAGE_SIZE;
	}
	if ((r = stream_begin(rs->s, MIG_REC_RAM, STREAM_F_MANDATORY, len, err)))
		return r;
	if ((r = stream_append(rs->s, head, RAM_HDR + ENTRY_HDR * b->n, err)))
		return r;
	for (unsigned i = 0; i < b->n; i++) {
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
	rs->st.entries += b->n;
	b->n = 0;
	if (rs->progress)
		rs->progress(rs->progress_opaque);
	return 0;
}

uint64_t ram_page_gpa(const struct vm *vm, uint64_t page)
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
	uint64_t gpa = ram_page_gpa(rs->vm, page);
	bool zero;

	/* once per record (receivers refuse a repeat): post-copy's requests
	 * may name a page twice; passes go upwards and never search */
	if (b->n && gpa <= b->top)
		for (unsigned j = 0; j < b->n; j++)
			if (b->gpa[j] == gpa)
				return 0;
	zero = page_is_zero(hva);
	if (zero && skip_zero) {
		rs->st.zero++;
		return 0;
	}
	b->top = !b->n || gpa > b->top ? gpa : b->top;
	b->gpa[b->n] = gpa;
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

int ram_sender_init_stripe(struct ram_sender *rs, const struct ram_sender *from,
			   struct stream *s, unsigned stripe, unsigned nstripes,
			   struct kv_err *err)
{
	if (!nstripes || stripe >= nstripes)
		return kv_errf(err, EINVAL, "stripe %u of %u", stripe, nstripes);
	memset(rs, 0, sizeof(*rs));
	rs->vm = from->vm;
	rs->s = s;
	rs->cancel = from->cancel;
	rs->dirty = from->dirty;
	rs->shared_dirty = true;
	rs->stripe = stripe;
	rs->nstripes = nstripes;
	return 0;
}

/* a bitmap word belongs to one stripe (ram_send_dirty decides by its first page) */
_Static_assert(RAM_STRIPE_PAGES % 64 == 0, "a stripe is whole bitmap words");

static bool in_stripe(const struct ram_sender *rs, uint64_t page)
{
	return rs->nstripes <= 1 || (page / RAM_STRIPE_PAGES) % rs->nstripes == rs->stripe;
}

void ram_sender_destroy(struct ram_sender *rs)
{
	if (!rs->shared_dirty)
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
			if (!in_stripe(rs, p)) {	/* on to the next stripe */
				p |= RAM_STRIPE_PAGES - 1;
				continue;
			}
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
		uint64_t bits;

		if ((w & 255) == 0 && (r = cancelled(rs, err)))
			goto out;
		if (!in_stripe(rs, w * 64))	/* another sender's word: not even read */
			continue;
		if (!(bits = rs->dirty[w]))
			continue;
		while (bits) {
			unsigned bit = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			if ((r = add_page(rs, b, w * 64 + bit, false, err)))
				goto out;
		}
		/* Their bits go now, though up to a batch of them is copied
		 * only at the next flush: a guest write meanwhile is in the
		 * dirty log, and the next sync sends the page again. */
		rs->dirty[w] = 0;
	}
	r = flush_batch(rs, b, err);
out:
	free(b);
	return r;
}

int ram_send_list(struct ram_sender *rs, const uint64_t *pages, unsigned n, struct kv_err *err)
{
	struct batch *b = calloc(1, sizeof(*b));
	int r = 0;

	if (!b)
		return kv_errf(err, ENOMEM, "RAM batch");
	for (unsigned i = 0; i < n && !r; i++) {
		if (pages[i] >= rs->vm->mem.npages)
			continue;
		rs->dirty[pages[i] / 64] &= ~(1ull << (pages[i] % 64));
		r = add_page(rs, b, pages[i], false, err);
	}
	if (!r)
		r = flush_batch(rs, b, err);
	free(b);
	return r;
}

int ram_send_next(struct ram_sender *rs, const uint64_t *only, uint64_t *cursor, unsigned max,
		  unsigned *sent, struct kv_err *err)
{
	uint64_t nwords = (rs->vm->mem.npages + 63) / 64, w = *cursor / 64;
	struct batch *b = calloc(1, sizeof(*b));
	int r = 0;

	*sent = 0;
	if (!b)
		return kv_errf(err, ENOMEM, "RAM batch");
	if (max > MIG_RAM_BATCH)
		max = MIG_RAM_BATCH;
	for (uint64_t k = 0; k <= nwords && *sent < max && !r; k++, w = (w + 1) % nwords) {
		uint64_t bits = rs->dirty[w] & (only ? only[w] : ~0ull);

		if (k == 0)	/* the first word: from the cursor on */
			bits &= ~0ull << (*cursor % 64);
		while (bits && *sent < max && !r) {
			unsigned bit = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			rs->dirty[w] &= ~(1ull << bit);
			r = add_page(rs, b, w * 64 + bit, false, err);
			++*sent;
			*cursor = w * 64 + bit + 1;
		}
	}
	if (*cursor >= rs->vm->mem.npages)
		*cursor = 0;
	if (!r)
		r = flush_batch(rs, b, err);
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

/* One RAM record's entries, checked: where each page goes. */
struct ram_plan {
	uint32_t seq, count, ndata;
	uint64_t gpa[MIG_RAM_BATCH];
	uint8_t *hva[MIG_RAM_BATCH];
	bool zero[MIG_RAM_BATCH];
};

static int plan_count(const uint8_t *p, uint32_t len, struct ram_plan *pl, struct kv_err *err)
{
	if (len < RAM_HDR)
		return kv_errf(err, EBADMSG, "RAM record truncated");
	pl->seq = st_get32(p);
	pl->count = st_get32(p + 4);
	if (pl->count == 0 || pl->count > MIG_RAM_BATCH)
		return kv_errf(err, EBADMSG, "RAM record with %u pages (1..%d allowed)", pl->count,
			       MIG_RAM_BATCH);
	if ((len - RAM_HDR) / ENTRY_HDR < pl->count)
		return kv_errf(err, EBADMSG, "RAM record truncated in its entries (%u bytes for "
			       "%u pages)", len, pl->count);
	return 0;
}

/* Check every entry (e: count * 8 bytes) and that the record's length is
 * exactly the entries plus the data they announce. */
static int plan_entries(struct vm *vm, const uint8_t *e, uint32_t len, struct ram_plan *pl,
			struct kv_err *err)
{
	uint64_t want, top = 0;

	pl->ndata = 0;
	for (uint32_t i = 0; i < pl->count; i++) {
		uint64_t v = st_get64(e + ENTRY_HDR * i);
		uint64_t flags = v & (MEM_PAGE_SIZE - 1), gpa = v & ~(MEM_PAGE_SIZE - 1);

		if (flags & ~(uint64_t)MIG_PAGE_FLAGS)
			return kv_errf(err, EBADMSG, "RAM page 0x%" PRIx64 " has unknown flags "
				       "0x%" PRIx64, gpa, flags);
		pl->hva[i] = mem_gpa_to_hva(&vm->mem, gpa, MEM_PAGE_SIZE);
		if (!pl->hva[i])
			return kv_errf(err, EBADMSG, "RAM page at 0x%" PRIx64 " is outside the "
				       "VM's memory", gpa);
		/* a page once per record: the receivers would disagree on which
		 * copy wins, and the direct one would hash the last twice.
		 * Senders go upwards, so only an out-of-order entry is searched. */
		if (i && gpa <= top) {
			for (uint32_t j = 0; j < i; j++)
				if (pl->gpa[j] == gpa)
					return kv_errf(err, EBADMSG, "RAM page 0x%" PRIx64 " appears "
						       "twice in one record", gpa);
		}
		top = gpa > top ? gpa : top;
		pl->gpa[i] = gpa;
		pl->zero[i] = flags & MIG_PAGE_ZERO;
		pl->ndata += !pl->zero[i];
	}
	want = RAM_HDR + (uint64_t)ENTRY_HDR * pl->count + (uint64_t)pl->ndata * MEM_PAGE_SIZE;
	if (len != want)
		return kv_errf(err, EBADMSG, "RAM record of %u bytes, but its %u entries (%u with "
			       "data) need %" PRIu64, len, pl->count, pl->ndata, want);
	return 0;
}

/*
 * A fresh destination's memory is all holes: letting the copy fault every
 * 4 KiB page in costs a third of the receiver's time.  Populate each run of
 * consecutive data pages in one call instead.  Only a hint: errors (older
 * kernels without MADV_POPULATE_WRITE) just leave the faults.
 */
static void populate_runs(struct vm *vm, const struct ram_plan *pl)
{
	uint64_t run_start = 0, run_end = 0;

	for (uint32_t i = 0; i < pl->count; i++) {
		if (pl->zero[i])
			continue;
		if (pl->gpa[i] == run_end && run_end) {
			run_end += MEM_PAGE_SIZE;
			continue;
		}
		if (run_end)
			mem_populate(&vm->mem, run_start, run_end - run_start);
		run_start = pl->gpa[i];
		run_end = pl->gpa[i] + MEM_PAGE_SIZE;
	}
	if (run_end)
		mem_populate(&vm->mem, run_start, run_end - run_start);
}

/* After the data is in place (and checked): clear the zero pages, and mark
 * everything written as the VMM's own writes. */
static void plan_finish(struct vm *vm, const struct ram_plan *pl, uint64_t *pages)
{
	for (uint32_t i = 0; i < pl->count; i++) {
		if (pl->zero[i])
			memset(pl->hva[i], 0, MEM_PAGE_SIZE);
		mem_mark_dirty(&vm->mem, pl->gpa[i], MEM_PAGE_SIZE);
	}
	*pages += pl->count;
}

int ram_apply(struct vm *vm, const uint8_t *p, uint32_t len, uint64_t *pages,
	      struct kv_err *err)
{
	struct ram_plan *pl = malloc(sizeof(*pl));
	const uint8_t *data;
	int r;

	if (!pl)
		return kv_errf(err, ENOMEM, "RAM record plan");
	if ((r = plan_count(p, len, pl, err)) ||
	    (r = plan_entries(vm, p + RAM_HDR, len, pl, err)))
		goto out;
	populate_runs(vm, pl);
	data = p + RAM_HDR + ENTRY_HDR * pl->count;
	for (uint32_t i = 0; i < pl->count; i++) {
		if (!pl->zero[i]) {
			memcpy(pl->hva[i], data, MEM_PAGE_SIZE);
			data += MEM_PAGE_SIZE;
		}
	}
	plan_finish(vm, pl, pages);
out:
	free(pl);
	return r;
}

int ram_visit(struct vm *vm, const uint8_t *p, uint32_t len, ram_page_fn fn, void *opaque,
	      struct kv_err *err)
{
	struct ram_plan *pl = malloc(sizeof(*pl));
	const uint8_t *data;
	int r;

	if (!pl)
		return kv_errf(err, ENOMEM, "RAM record plan");
	if ((r = plan_count(p, len, pl, err)) ||
	    (r = plan_entries(vm, p + RAM_HDR, len, pl, err)))
		goto out;
	data = p + RAM_HDR + ENTRY_HDR * pl->count;
	for (uint32_t i = 0; i < pl->count && !r; i++) {
		uint64_t page = mem_gpa_to_offset(&vm->mem, pl->gpa[i]) >> MEM_PAGE_SHIFT;
		r = fn(opaque, page, pl->zero[i] ? NULL : data, err);
		if (!pl->zero[i])
			data += MEM_PAGE_SIZE;
	}
out:
	free(pl);
	return r;
}

int ram_receive(struct vm *vm, struct stream *s, const struct stream_rec *rec,
		uint64_t *pages, uint32_t *seq, struct kv_err *err)
{
	uint8_t head[RAM_HDR + ENTRY_HDR * MIG_RAM_BATCH];
	struct iovec iov[MIG_RAM_BATCH];
	struct ram_plan *pl = malloc(sizeof(*pl));
	unsigned n = 0;
	int r;

	if (!pl)
		return kv_errf(err, ENOMEM, "RAM record plan");
	/* sequence and count first, then exactly the entries it announces */
	if (rec->len < RAM_HDR) {
		r = kv_errf(err, EBADMSG, "RAM record truncated");
		goto out;
	}
	if ((r = stream_read_part(s, head, RAM_HDR, err)) ||
	    (r = plan_count(head, rec->len, pl, err)))
		goto out;
	if (seq && pl->seq != *seq) {
		r = kv_errf(err, EBADMSG, "RAM record %u arrived where %u belongs (a record lost, "
			    "replayed or reordered)", pl->seq, *seq);
		goto out;
	}
	if ((r = stream_read_part(s, head + RAM_HDR, ENTRY_HDR * pl->count, err)) ||
	    (r = plan_entries(vm, head + RAM_HDR, rec->len, pl, err)))
		goto out;
	populate_runs(vm, pl);
	for (uint32_t i = 0; i < pl->count; i++) {
		if (!pl->zero[i]) {
			iov[n].iov_base = pl->hva[i];
			iov[n++].iov_len = MEM_PAGE_SIZE;
		}
	}
	/* Straight into guest memory; a record that fails its checksum fails
	 * the migration, and this VM never runs. */
	if ((r = stream_read_rest_v(s, iov, n, err)))
		goto out;
	plan_finish(vm, pl, pages);
	if (seq)
		++*seq;
out:
	free(pl);
	return r;
}
