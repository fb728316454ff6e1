#define _GNU_SOURCE
#include "migration/ram.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include <time.h>

#include "core/vm.h"
#include "migration/proto.h"
#include "migration/ramcodec.h"
#include "state/stream.h"

#define ENTRY_HDR 8
#define RAM_HDR 8		/* u32 sequence, u32 count */

struct ram_batch {
	unsigned n;
	uint64_t gpa[MIG_RAM_BATCH];
	uint64_t top;		/* the highest gpa in it */
	const uint8_t *hva[MIG_RAM_BATCH];
	bool zero[MIG_RAM_BATCH];
	bool raw;		/* post-copy: latency first, never compressed */
	uint16_t zlen[MIG_RAM_BATCH];	/* compressed length, 0: raw */
	/* compressed pages, each as u16 length + bytes, back to back */
	uint8_t z[MIG_RAM_BATCH * (RAM_CODEC_LEN + RAM_CODEC_MAX)];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Compress what the codec picked for this record into b->z; fills
 * b->zlen, returns the bytes the data area will take. */
static uint64_t compress_batch(struct ram_sender *rs, struct ram_batch *b)
{
	struct ram_codec *c = &rs->codec;
	enum ram_codec_id k;
	uint64_t len = 0, off = 0;
	bool probe;

	memset(b->zlen, 0, sizeof(b->zlen[0]) * b->n);
	k = b->raw ? RAM_CODEC_RAW : ram_codec_pick(c, &probe);
	if (!b->raw && probe) {
		const uint8_t *sample[MIG_RAM_BATCH];
		unsigned n = 0;
		for (unsigned i = 0; i < b->n; i++)
			if (!b->zero[i])
				sample[n++] = b->hva[i];
		ram_codec_probe(c, sample, n);
	}
	if (b->raw)
		c->use = RAM_CODEC_RAW;
	for (unsigned i = 0; i < b->n; i++) {
		size_t z = 0;
		if (b->zero[i])
			continue;
		if (k != RAM_CODEC_RAW)
			z = ram_codec_compress(c, k, b->hva[i], b->z + off + RAM_CODEC_LEN);
		if (z) {
			st_put16(b->z + off, (uint16_t)z);
			b->zlen[i] = (uint16_t)z;
			off += RAM_CODEC_LEN + z;
			len += RAM_CODEC_LEN + z;
		} else {
			len += MEM_PAGE_SIZE;
		}
	}
	return len;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < MEM_PAGE_SIZE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

static int flush_batch(struct ram_sender *rs, struct ram_batch *b, struct kv_err *err)
{
	uint8_t head[RAM_HDR + ENTRY_HDR * MIG_RAM_BATCH];
	uint64_t t0, tc, data, zoff = 0;
	uint32_t len = RAM_HDR + ENTRY_HDR * b->n;
	unsigned ndata = 0, ncomp = 0;
	int r;

	if (!b->n)
		return 0;
	t0 = now_ns();
	data = compress_batch(rs, b);
	tc = now_ns() - t0;
	len += (uint32_t)data;
	/* sequence, count, every entry's header, then the data of the non-zero
	 * pages in entry order: the receiver reads raw ones straight into guest
	 * memory.  The sequence number makes a dropped, replayed or reordered
	 * record visible even when its checksum is intact. */
	st_put32(head, rs->seq++);
	st_put32(head + 4, b->n);
	for (unsigned i = 0; i < b->n; i++) {
		uint64_t flags = b->zero[i] ? MIG_PAGE_ZERO : 0;
		if (b->zlen[i])
			flags = rs->codec.use == RAM_CODEC_LZ4 ? MIG_PAGE_LZ4 : MIG_PAGE_ZSTD;
		st_put64(head + RAM_HDR + ENTRY_HDR * i, b->gpa[i] | flags);
	}
	if ((r = stream_begin(rs->s, MIG_REC_RAM, STREAM_F_MANDATORY, len, err)))
		return r;
	if ((r = stream_append(rs->s, head, RAM_HDR + ENTRY_HDR * b->n, err)))
		return r;
	for (unsigned i = 0; i < b->n; i++) {
		if (b->zero[i]) {
			rs->st.zero++;
			continue;
		}
		if (b->zlen[i]) {
			r = stream_append(rs->s, b->z + zoff, RAM_CODEC_LEN + b->zlen[i], err);
			zoff += RAM_CODEC_LEN + b->zlen[i];
			ncomp++;
		} else {
			r = stream_append(rs->s, b->hva[i], MEM_PAGE_SIZE, err);
		}
		if (r)
			return r;
		rs->st.normal++;
		ndata++;
	}
	if ((r = stream_end(rs->s, err)))
		return r;
	ram_codec_account(&rs->codec, ndata, ncomp, data, tc, now_ns() - t0);
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
static int add_page(struct ram_sender *rs, struct ram_batch *b, uint64_t page, bool skip_zero,
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

/* raw: these pages are waited for (post-copy); never compress them */
static struct ram_batch *batch_start(struct ram_sender *rs, bool raw)
{
	rs->batch->n = 0;
	rs->batch->raw = raw;
	return rs->batch;
}

static int sender_common(struct ram_sender *rs, enum ram_compress mode, struct kv_err *err)
{
	int r;

	rs->batch = calloc(1, sizeof(*rs->batch));
	if (!rs->batch)
		return kv_errf(err, ENOMEM, "RAM batch");
	if ((r = ram_codec_init(&rs->codec, mode, err))) {
		free(rs->batch);
		rs->batch = NULL;
		return r;
	}
	return 0;
}

int ram_sender_init(struct ram_sender *rs, struct vm *vm, struct stream *s,
		    const int *cancel, struct kv_err *err)
{
	int r;

	memset(rs, 0, sizeof(*rs));
	rs->vm = vm;
	rs->s = s;
	rs->cancel = cancel;
	rs->dirty = calloc((vm->mem.npages + 63) / 64, sizeof(uint64_t));
	if (!rs->dirty)
		return kv_errf(err, ENOMEM, "migration dirty bitmap");
	if ((r = sender_common(rs, RAM_COMPRESS_OFF, err))) {
		free(rs->dirty);
		rs->dirty = NULL;
	}
	return r;
}

int ram_sender_set_compress(struct ram_sender *rs, enum ram_compress mode, struct kv_err *err)
{
	ram_codec_destroy(&rs->codec);
	return ram_codec_init(&rs->codec, mode, err);
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
	return sender_common(rs, from->codec.mode, err);
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
	free(rs->batch);
	rs->batch = NULL;
	ram_codec_destroy(&rs->codec);
}

int ram_send_all(struct ram_sender *rs, struct kv_err *err)
{
	struct ram_batch *b = batch_start(rs, false);
	uint64_t pos = 0, data, end;
	int r = 0;

	/* Walk only the parts of guest RAM that hold data: a 64 GiB guest that
	 * touched 1 GiB costs 1 GiB of reading, and holes stay holes. */
	while (!mem_next_data(&rs->vm->mem, pos, &data, &end)) {
		for (uint64_t p = data >> MEM_PAGE_SHIFT;
		     p < (end + MEM_PAGE_SIZE - 1) >> MEM_PAGE_SHIFT; p++) {
			if ((p & 1023) == 0 && (r = cancelled(rs, err)))
				goto out;
			if (!in_stripe(rs, p)) {	/* on to the next stripe */
				p |= RAM_STRIPE_PAGES - 1;
				continue;
			}
			if ((r = add_page(rs, b, p, true, err)))
				goto out;
		}
		pos = end;
	}
	r = flush_batch(rs, b, err);
out:
	return r;
}

int ram_send_dirty(struct ram_sender *rs, struct kv_err *err)
{
	struct ram_batch *b = batch_start(rs, false);
	uint64_t nwords = (rs->vm->mem.npages + 63) / 64;
	int r = 0;

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
	return r;
}

int ram_send_list(struct ram_sender *rs, const uint64_t *pages, unsigned n, struct kv_err *err)
{
	struct ram_batch *b = batch_start(rs, true);
	int r = 0;

	for (unsigned i = 0; i < n && !r; i++) {
		if (pages[i] >= rs->vm->mem.npages)
			continue;
		rs->dirty[pages[i] / 64] &= ~(1ull << (pages[i] % 64));
		r = add_page(rs, b, pages[i], false, err);
	}
	if (!r)
		r = flush_batch(rs, b, err);
	return r;
}

int ram_send_next(struct ram_sender *rs, const uint64_t *only, uint64_t *cursor, unsigned max,
		  unsigned *sent, struct kv_err *err)
{
	uint64_t nwords = (rs->vm->mem.npages + 63) / 64, w = *cursor / 64;
	struct ram_batch *b = batch_start(rs, true);
	int r = 0;

	*sent = 0;
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
	uint32_t seq, count, ndata, ncomp;
	uint64_t gpa[MIG_RAM_BATCH];
	uint8_t *hva[MIG_RAM_BATCH];
	bool zero[MIG_RAM_BATCH];
	uint8_t codec[MIG_RAM_BATCH];	/* enum ram_codec_id of a data page */
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

/* Check every entry (e: count * 8 bytes) and that the record's length fits
 * the data they announce: exactly, without compressed pages; with them, at
 * least their length prefixes and at most a raw page each (the walk over
 * the data checks every length).  dec: NULL when compression was not
 * agreed, and a compressed page is refused. */
static int plan_entries(struct vm *vm, const uint8_t *e, uint32_t len, struct ram_plan *pl,
			const struct ram_decoder *dec, struct kv_err *err)
{
	uint64_t want, most, top = 0;

	pl->ndata = pl->ncomp = 0;
	for (uint32_t i = 0; i < pl->count; i++) {
		uint64_t v = st_get64(e + ENTRY_HDR * i);
		uint64_t flags = v & (MEM_PAGE_SIZE - 1), gpa = v & ~(MEM_PAGE_SIZE - 1);

		if (flags & ~(uint64_t)MIG_PAGE_FLAGS)
			return kv_errf(err, EBADMSG, "RAM page 0x%" PRIx64 " has unknown flags "
				       "0x%" PRIx64, gpa, flags);
		pl->codec[i] = RAM_CODEC_RAW;
		if (flags == MIG_PAGE_LZ4)
			pl->codec[i] = RAM_CODEC_LZ4;
		else if (flags == MIG_PAGE_ZSTD)
			pl->codec[i] = RAM_CODEC_ZSTD;
		else if (flags & ~(uint64_t)MIG_PAGE_ZERO)
			return kv_errf(err, EBADMSG, "RAM page 0x%" PRIx64 " has flags 0x%" PRIx64
				       " that exclude each other", gpa, flags);
		if (pl->codec[i] != RAM_CODEC_RAW && !dec)
			return kv_errf(err, EBADMSG, "RAM page 0x%" PRIx64 " is compressed, but "
				       "compression was not agreed", gpa);
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
		pl->ndata += !pl->zero[i] && pl->codec[i] == RAM_CODEC_RAW;
		pl->ncomp += pl->codec[i] != RAM_CODEC_RAW;
	}
	want = RAM_HDR + (uint64_t)ENTRY_HDR * pl->count + (uint64_t)pl->ndata * MEM_PAGE_SIZE;
	most = want + (uint64_t)pl->ncomp * (RAM_CODEC_LEN + RAM_CODEC_MAX);
	want += (uint64_t)pl->ncomp * (RAM_CODEC_LEN + 1);
	if (len < want || len > most || (!pl->ncomp && len != want))
		return kv_errf(err, EBADMSG, "RAM record of %u bytes, but its %u entries (%u raw, "
			       "%u compressed) need %" PRIu64 "%s", len, pl->count, pl->ndata,
			       pl->ncomp, want, pl->ncomp ? " or more" : "");
	return 0;
}

/*
 * The data area after the entries: for each data page in entry order, 4096
 * raw bytes, or a u16 length and that many compressed bytes.  next_page
 * gives entry i's page: raw, a pointer into the area; compressed, decoded
 * into `into`.  Every length is checked against what is left.
 */
struct data_walk {
	const uint8_t *p;
	size_t left;
};

static int next_page(struct ram_decoder *dec, const struct ram_plan *pl, uint32_t i,
		     struct data_walk *w, uint8_t *into, const uint8_t **page, struct kv_err *err)
{
	size_t n;
	int r;

	if (pl->codec[i] == RAM_CODEC_RAW) {
		if (w->left < MEM_PAGE_SIZE)
			return kv_errf(err, EBADMSG, "RAM record ends inside page 0x%" PRIx64,
				       pl->gpa[i]);
		*page = w->p;
		w->p += MEM_PAGE_SIZE;
		w->left -= MEM_PAGE_SIZE;
		return 0;
	}
	if (w->left < RAM_CODEC_LEN)
		return kv_errf(err, EBADMSG, "RAM record ends before page 0x%" PRIx64 "'s length",
			       pl->gpa[i]);
	n = st_get16(w->p);
	if (n > w->left - RAM_CODEC_LEN)
		return kv_errf(err, EBADMSG, "compressed page 0x%" PRIx64 " says %zu bytes, %zu "
			       "are left", pl->gpa[i], n, w->left - RAM_CODEC_LEN);
	if ((r = ram_decode(dec, (enum ram_codec_id)pl->codec[i], w->p + RAM_CODEC_LEN, n, into,
			    err)))
		return kv_err_prefix(err, r, "page 0x%" PRIx64, pl->gpa[i]);
	*page = into;
	w->p += RAM_CODEC_LEN + n;
	w->left -= RAM_CODEC_LEN + n;
	return 0;
}

static int walk_done(const struct data_walk *w, struct kv_err *err)
{
	if (w->left)
		return kv_errf(err, EBADMSG, "RAM record has %zu bytes after its last page",
			       w->left);
	return 0;
}

/* Every data page of a checked plan into guest memory (ram_apply, and a
 * compressed record once its checksum held). */
static int place_data(struct ram_decoder *dec, const struct ram_plan *pl, const uint8_t *data,
		      size_t len, struct kv_err *err)
{
	struct data_walk w = { data, len };
	int r;

	for (uint32_t i = 0; i < pl->count; i++) {
		const uint8_t *page = NULL;	/* set by next_page (gcc -O3 cannot see it) */
		if (pl->zero[i])
			continue;
		if ((r = next_page(dec, pl, i, &w, pl->hva[i], &page, err)))
			return r;
		if (page != pl->hva[i])
			memcpy(pl->hva[i], page, MEM_PAGE_SIZE);
	}
	return walk_done(&w, err);
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

int ram_apply(struct vm *vm, const uint8_t *p, uint32_t len, struct ram_decoder *dec,
	      uint64_t *pages, struct kv_err *err)
{
	struct ram_plan *pl = malloc(sizeof(*pl));
	size_t head;
	int r;

	if (!pl)
		return kv_errf(err, ENOMEM, "RAM record plan");
	if ((r = plan_count(p, len, pl, err)) ||
	    (r = plan_entries(vm, p + RAM_HDR, len, pl, dec, err)))
		goto out;
	populate_runs(vm, pl);
	head = RAM_HDR + ENTRY_HDR * pl->count;
	if ((r = place_data(dec, pl, p + head, len - head, err)))
		goto out;
	plan_finish(vm, pl, pages);
out:
	free(pl);
	return r;
}

int ram_visit(struct vm *vm, const uint8_t *p, uint32_t len, struct ram_decoder *dec,
	      ram_page_fn fn, void *opaque, struct kv_err *err)
{
	struct ram_plan *pl = malloc(sizeof(*pl));
	uint8_t *scratch = malloc(MEM_PAGE_SIZE);
	struct data_walk w;
	int r;

	if (!pl || !scratch) {
		r = kv_errf(err, ENOMEM, "RAM record plan");
		goto out;
	}
	if ((r = plan_count(p, len, pl, err)) ||
	    (r = plan_entries(vm, p + RAM_HDR, len, pl, dec, err)))
		goto out;
	w.p = p + RAM_HDR + ENTRY_HDR * pl->count;
	w.left = len - (RAM_HDR + ENTRY_HDR * pl->count);
	/* a compressed record is checked whole before any page is handed on */
	if (pl->ncomp) {
		struct data_walk chk = w;
		for (uint32_t i = 0; i < pl->count && !r; i++) {
			const uint8_t *page;
			if (!pl->zero[i])
				r = next_page(dec, pl, i, &chk, scratch, &page, err);
		}
		if (r || (r = walk_done(&chk, err)))
			goto out;
	}
	for (uint32_t i = 0; i < pl->count && !r; i++) {
		uint64_t page = mem_gpa_to_offset(&vm->mem, pl->gpa[i]) >> MEM_PAGE_SHIFT;
		const uint8_t *data = NULL;
		if (!pl->zero[i] && (r = next_page(dec, pl, i, &w, scratch, &data, err)))
			break;
		r = fn(opaque, page, data, err);
	}
out:
	free(scratch);
	free(pl);
	return r;
}

int ram_receive(struct vm *vm, struct stream *s, const struct stream_rec *rec,
		struct ram_decoder *dec, uint64_t *pages, uint32_t *seq, struct kv_err *err)
{
	uint8_t head[RAM_HDR + ENTRY_HDR * MIG_RAM_BATCH];
	struct iovec iov[MIG_RAM_BATCH];
	struct ram_plan *pl = malloc(sizeof(*pl));
	uint8_t *buf = NULL;
	size_t hlen;
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
	    (r = plan_entries(vm, head + RAM_HDR, rec->len, pl, dec, err)))
		goto out;
	populate_runs(vm, pl);
	hlen = RAM_HDR + ENTRY_HDR * pl->count;
	if (pl->ncomp) {
		/* compressed: the data area as a whole, checked by its checksum
		 * before a byte of it is decoded into guest memory */
		if (!(buf = malloc(rec->len - hlen))) {
			r = kv_errf(err, ENOMEM, "compressed RAM record");
			goto out;
		}
		iov[0] = (struct iovec){ buf, rec->len - hlen };
		if ((r = stream_read_rest_v(s, iov, 1, err)) ||
		    (r = place_data(dec, pl, buf, rec->len - hlen, err)))
			goto out;
	} else {
		for (uint32_t i = 0; i < pl->count; i++) {
			if (!pl->zero[i]) {
				iov[n].iov_base = pl->hva[i];
				iov[n++].iov_len = MEM_PAGE_SIZE;
			}
		}
		/* Straight into guest memory; a record that fails its checksum
		 * fails the migration, and this VM never runs. */
		if ((r = stream_read_rest_v(s, iov, n, err)))
			goto out;
	}
	plan_finish(vm, pl, pages);
	if (seq)
		++*seq;
out:
	free(buf);
	free(pl);
	return r;
}
