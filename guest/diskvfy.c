/*
 * diskvfy.c - see diskvfy.h and README.md ("The disk verifier").
 *
 * Disk layout (4 KiB blocks from sector 0): block 0 is a header (magic,
 * seed, epoch, block count, state), blocks 1..n-1 hold data. Block b with
 * generation g holds word 0 = g << 32 | b, word 1 = the epoch, words
 * 2..511 = H(b, g, seed, epoch) + i * K. The epoch changes at every
 * format (every boot), so blocks left by an earlier run never match.
 *
 * Invariants (data blocks):
 *   D1  block b on disk holds content(b, gens[b]) once no write to it is
 *       in flight; checked by every read of b (passes and pre-write reads);
 *   D2  sum(gens[1..n)) == (n - 1) + W (mod 2^32), W = completed writes;
 *       checked at the end of every pass;
 *   D3  W in the state page == W in the mirror page; checked every step;
 *   D4  every used entry completes exactly one request in flight.
 * At most one request in flight touches a given block ("locked"), so a
 * read never races a write of the same block.
 */
#include "diskvfy.h"

#include <stdbool.h>

#include "clock.h"
#include "console.h"
#include "lib.h"
#include "x86.h"

#define BLOCK 4096u
#define WORDS (BLOCK / 8)
#define SPB (BLOCK / VBLK_SECTOR)	/* sectors per block */
#define REQ_BLOCKS 8			/* blocks per format or verify request */
#define MAX_DEPTH 16
#define MAX_BLOCKS (1u << 18)		/* 1 GiB of disk; gens[] is 1 MiB */
#define DEFAULT_BLOCKS 4096u		/* 16 MiB */
#define STRIDE 0x9e3779b97f4a7c15ULL
#define HDR_MAGIC 0x314b5344564d564bULL	/* "KVMVDSK1" */
#define HDR_VERSION 1
#define HDR_FORMATTING 1
#define HDR_FORMATTED 2
#define BURST_US 10000			/* elapsed time credited per step, at most */
#define STALL_US 5000000		/* a request older than this is reported */
#define STALL_CHECK_US 100000
#define FLUSH_BATCH 16			/* flush after this many completed writes, */
#define FLUSH_DELAY_US 50000		/* or this long after the first of them */
#define FAIL_LINES_PER_SEC 4
#define CREDIT 1000000ULL		/* credit per block (rates are per second) */

enum dphase {
	DP_READ_HEADER,		/* what was there before: the old epoch */
	DP_MARK_HEADER,		/* header: "formatting", new epoch */
	DP_FORMAT,		/* generation 1 to every data block */
	DP_FORMAT_FLUSH,
	DP_DONE_HEADER,		/* header: "formatted" */
	DP_DONE_FLUSH,
	DP_RUN,			/* writes and passes */
	DP_DEAD,		/* the format failed: only stats from here on */
};

enum rop { OP_NONE, OP_HDR_READ, OP_HDR_WRITE, OP_FORMAT, OP_VERIFY, OP_PREREAD, OP_WRITE,
	   OP_FLUSH };
static const char *const op_name[] = { "none", "header-read", "header-write", "format",
				       "verify", "pre-write-read", "write", "flush" };

struct req {
	uint8_t op;		/* enum rop; OP_NONE: tag idle */
	bool ends_pass, stall_reported;
	int8_t buf;		/* data buffer, -1 for a flush */
	uint32_t block, count;	/* blocks [block, block + count); flush: writes covered */
	uint32_t gen;		/* generation written */
	uint64_t issued;	/* active_us at submission */
};

struct dstate {
	uint32_t phase;
	uint32_t nblocks, depth;
	uint64_t capacity, seed, epoch, key;
	const char *previous;	/* what the header said at boot */
	bool flush_ok;
	uint64_t rate, vrate;			/* writes/s, verified blocks/s (0: no limit) */
	uint64_t wcredit, vcredit, last_us, active_us, next_stall_check;
	struct req req[VBLK_MAX_TAGS];		/* by tag */
	uint32_t buf_free;			/* bit i: bufs[i] is free */
	unsigned inflight, wops;		/* requests; write operations (2 requests each) */
	bool flush_inflight;
	uint64_t unflushed;			/* writes completed since the last flush began */
	uint64_t unflushed_since;		/* active_us when the first of them completed */
	uint32_t cursor, pass_sum;		/* pass: next block; sum of gens over [1, cursor) */
	uint32_t format_next;
	uint32_t wblock;			/* next write target, 0 = not chosen yet */
	uint64_t prng;
	uint64_t writes;			/* W, copy 1 */
	uint64_t passes, verified, reads, fails;
	uint64_t fail_window_us, fail_lines;
};

/* Each in its own page, like the memory verifier's state and mirror. */
static union {
	struct dstate s;
	uint8_t pad[8192];
} state __attribute__((section(".noinit"), aligned(4096)));
_Static_assert(sizeof(struct dstate) <= 8192, "disk state size");
static union {
	uint64_t writes;			/* W, copy 2 */
	uint8_t pad[4096];
} mirror __attribute__((section(".noinit"), aligned(4096)));
static uint32_t gens[MAX_BLOCKS] __attribute__((section(".noinit"), aligned(4096)));
static uint64_t bufs[MAX_DEPTH][REQ_BLOCKS * WORDS] __attribute__((section(".noinit"),
								   aligned(4096)));
static bool enabled;

#define D (state.s)

static uint64_t hash64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* ---- block contents ---- */

static uint64_t epoch_key(uint64_t epoch)
{
	return hash64(D.seed * STRIDE ^ hash64(epoch + 0x4449534bULL));
}

static uint64_t block_base(uint64_t key, uint32_t b, uint32_t g)
{
	return hash64(((uint64_t)g << 32 | b) ^ key);
}

/* Expected word i of data block b, generation g, this epoch. */
static uint64_t data_word(uint32_t b, uint32_t g, unsigned i)
{
	if (i == 0)
		return (uint64_t)g << 32 | b;
	if (i == 1)
		return D.epoch;
	return block_base(D.key, b, g) + i * STRIDE;
}

static uint64_t header_word(uint32_t hstate, unsigned i)
{
	switch (i) {
	case 0: return HDR_MAGIC;
	case 1: return HDR_VERSION;
	case 2: return D.seed;
	case 3: return D.epoch;
	case 4: return D.nblocks;
	case 5: return hstate;
	default: return block_base(D.key, 0, hstate) + i * STRIDE;
	}
}

static uint64_t expected_word(uint32_t b, uint32_t g, unsigned i)
{
	return b ? data_word(b, g, i) : header_word(HDR_FORMATTED, i);
}

static void fill_data(uint64_t *p, uint32_t b, uint32_t g)
{
	uint64_t v = block_base(D.key, b, g) + STRIDE;

	p[0] = data_word(b, g, 0);
	p[1] = D.epoch;
	for (unsigned i = 2; i < WORDS; i++) {
		v += STRIDE;
		p[i] = v;
	}
}

static void fill_header(uint64_t *p, uint32_t hstate)
{
	for (unsigned i = 0; i < WORDS; i++)
		p[i] = header_word(hstate, i);
}

/* 0 if p holds data block b, generation g, of the epoch with this key. */
static uint64_t data_diff(const uint64_t *p, uint64_t key, uint64_t epoch, uint32_t b,
			  uint32_t g)
{
	uint64_t v = block_base(key, b, g) + STRIDE, d;

	d = (p[0] ^ ((uint64_t)g << 32 | b)) | (p[1] ^ epoch);
	for (unsigned i = 2; i < WORDS; i++) {
		v += STRIDE;
		d |= p[i] ^ v;
	}
	return d;
}

/* ---- failures ---- */

static bool may_print(void)
{
	uint64_t now = clock_us(0);

	if (now - D.fail_window_us >= 1000000) {
		D.fail_window_us = now;
		D.fail_lines = 0;
	}
	return D.fail_lines++ < FAIL_LINES_PER_SEC;
}

/* What does a bad block hold? Tells a lost write from a stale or misplaced one. */
static void diagnose(uint32_t b, const uint64_t *p, unsigned bad)
{
	uint32_t hb = (uint32_t)p[0], hg = (uint32_t)(p[0] >> 32);
	uint64_t any = 0;
	char what[64];

	for (unsigned i = 0; i < WORDS; i++)
		any |= p[i];
	if (!any)
		snprintf(what, sizeof(what), "zero");
	else if (p[0] == HDR_MAGIC)
		snprintf(what, sizeof(what), "header");
	else if (p[1] == D.epoch && hb == b && data_diff(p, D.key, D.epoch, hb, hg) == 0)
		snprintf(what, sizeof(what), "gen:%u", hg);
	else if (p[1] == D.epoch && hb && data_diff(p, D.key, D.epoch, hb, hg) == 0)
		snprintf(what, sizeof(what), "block:%u:gen:%u", hb, hg);
	else if (p[1] != D.epoch && hb && data_diff(p, epoch_key(p[1]), p[1], hb, hg) == 0)
		snprintf(what, sizeof(what), "epoch:0x%lx:block:%u:gen:%u", p[1], hb, hg);
	else
		snprintf(what, sizeof(what), "corrupt");
	con_line("DISK DIAG block=%u content=%s bad_bytes=%u", b, what, bad);
}

static void report_block(uint32_t b, uint32_t g, const uint64_t *p)
{
	const uint8_t *bytes = (const uint8_t *)p;
	unsigned first = BLOCK, bad = 0;
	uint32_t hg = (uint32_t)(p[0] >> 32);
	char found[16];

	D.fails++;
	if (!may_print())
		return;
	for (unsigned i = 0; i < WORDS; i++) {
		uint64_t e = expected_word(b, g, i);
		for (unsigned k = 0; k < 8; k++)
			if (bytes[i * 8 + k] != (uint8_t)(e >> (8 * k))) {
				bad++;
				if (first == BLOCK)
					first = i * 8 + k;
			}
	}
	if (first == BLOCK)
		first = 0;
	if (b && (uint32_t)p[0] == b && data_diff(p, D.key, D.epoch, b, hg) == 0)
		snprintf(found, sizeof(found), "%u", hg);
	else
		snprintf(found, sizeof(found), "?");
	con_line("DISK FAIL block=%u expected=%u found=%s offset=%u", b, b ? g : 0, found, first);
	diagnose(b, p, bad);
}

static void check_block(uint32_t b, const uint64_t *p)
{
	uint32_t g = b ? READ_ONCE(gens[b]) : 0;
	uint64_t d = 0;

	D.verified++;
	barrier();	/* the device wrote this buffer: read memory */
	if (b) {
		d = data_diff(p, D.key, D.epoch, b, g);
	} else {
		for (unsigned i = 0; i < WORDS; i++)
			d |= p[i] ^ header_word(HDR_FORMATTED, i);
	}
	if (__builtin_expect(d != 0, 0))
		report_block(b, g, p);
}

static void fail_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_line(const char *fmt, ...)
{
	char buf[160];
	va_list ap;

	D.fails++;
	if (!may_print())
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	con_line("DISK FAIL %s", buf);
}

/* ---- requests ---- */

static int buf_get(void)
{
	int i;

	if (!D.buf_free)
		return -1;
	i = __builtin_ctz(D.buf_free);
	D.buf_free &= ~(1u << i);
	return i;
}

static void buf_put(int i)
{
	if (i >= 0)
		D.buf_free |= 1u << i;
}

static bool can_submit(bool need_buf)
{
	return D.inflight < D.depth && (!need_buf || D.buf_free);
}

/* Queue one request; the caller has checked can_submit(). Returns the tag or -1. */
static int submit(enum rop op, uint32_t block, uint32_t count, int buf, uint32_t gen)
{
	enum vblk_op vop = op == OP_FLUSH ? VBLK_FLUSH :
			   (op == OP_HDR_READ || op == OP_VERIFY || op == OP_PREREAD) ? VBLK_READ :
			   VBLK_WRITE;
	int t = vblk_submit(vop, (uint64_t)block * SPB, buf >= 0 ? bufs[buf] : NULL,
			    count * BLOCK);
	struct req *r;

	if (t < 0)
		return -1;
	r = &D.req[t];
	memset(r, 0, sizeof(*r));
	r->op = (uint8_t)op;
	r->buf = (int8_t)buf;
	r->block = block;
	r->count = count;
	r->gen = gen;
	r->issued = D.active_us;
	D.inflight++;
	return t;
}

static bool locked(uint32_t b)
{
	for (unsigned t = 0; t < VBLK_MAX_TAGS; t++) {
		const struct req *r = &D.req[t];
		if (r->op != OP_NONE && r->op != OP_FLUSH && b >= r->block &&
		    b - r->block < r->count)
			return true;
	}
	return false;
}

/* ---- the format, step by step ---- */

static void enter(enum dphase p);

static void submit_or_die(enum rop op, uint32_t block, uint32_t count, int buf)
{
	if (submit(op, block, count, buf, 0) < 0) {
		buf_put(buf);
		fail_line("what=submit op=%s block=%u", op_name[op], block);
		D.phase = DP_DEAD;
	}
}

static void write_header(uint32_t hstate)
{
	int b = buf_get();

	fill_header(bufs[b], hstate);
	submit_or_die(OP_HDR_WRITE, 0, 1, b);
}

static void enter(enum dphase p)
{
	D.phase = p;
	switch (p) {
	case DP_READ_HEADER:
		submit_or_die(OP_HDR_READ, 0, 1, buf_get());
		break;
	case DP_MARK_HEADER:
		write_header(HDR_FORMATTING);
		break;
	case DP_FORMAT:
		con_line("DISK FORMAT blocks=%u epoch=0x%lx previous=%s", D.nblocks, D.epoch,
			 D.previous);
		D.format_next = 1;
		break;
	case DP_FORMAT_FLUSH:
	case DP_DONE_FLUSH:
		if (D.flush_ok)
			submit_or_die(OP_FLUSH, 0, 0, -1);
		else
			enter(p == DP_FORMAT_FLUSH ? DP_DONE_HEADER : DP_RUN);
		break;
	case DP_DONE_HEADER:
		write_header(HDR_FORMATTED);
		break;
	case DP_RUN:
		D.cursor = 0;
		D.pass_sum = 0;
		con_line("DISK %lu blocks=%u", D.capacity, D.nblocks);
		break;
	case DP_DEAD:
		break;
	}
}

static void read_old_header(const uint64_t *p)
{
	if (p[0] == HDR_MAGIC && p[1] == HDR_VERSION) {
		D.previous = p[5] == HDR_FORMATTED ? "formatted" : "partly-formatted";
		D.epoch = p[3] + 1;
	} else {
		D.previous = "none";
		D.epoch = hash64(rdtsc()) >> 16;	/* a fresh disk: any epoch will do */
	}
	D.key = epoch_key(D.epoch);
}

static void format_step(void)
{
	while (D.phase == DP_FORMAT && D.format_next < D.nblocks && can_submit(true)) {
		uint32_t k = MIN(REQ_BLOCKS, D.nblocks - D.format_next);
		int b = buf_get();

		for (uint32_t i = 0; i < k; i++)
			fill_data(bufs[b] + i * WORDS, D.format_next + i, 1);
		submit_or_die(OP_FORMAT, D.format_next, k, b);
		D.format_next += k;
	}
	if (D.phase == DP_FORMAT && D.format_next >= D.nblocks && !D.inflight)
		enter(DP_FORMAT_FLUSH);
}

/* ---- steady state ---- */

static void count_write(uint32_t b)
{
	/* each copy from its own old value, never re-synced (as in verifier.c) */
	WRITE_ONCE(gens[b], READ_ONCE(gens[b]) + 1);
	WRITE_ONCE(D.writes, READ_ONCE(D.writes) + 1);
	WRITE_ONCE(mirror.writes, READ_ONCE(mirror.writes) + 1);
	if (b < D.cursor)
		D.pass_sum++;	/* this pass already summed the old value */
	if (!D.unflushed++)
		D.unflushed_since = D.active_us;
}

static void complete(const struct vblk_done *d)
{
	struct req r = D.req[d->tag];

	D.req[d->tag].op = OP_NONE;
	D.inflight--;
	if (r.op == OP_NONE) {
		fail_line("what=unexpected-completion id=%u len=%u", d->id, d->len);
		return;
	}
	if (d->status != VBLK_S_OK) {
		fail_line("what=status op=%s block=%u status=%u", op_name[r.op], r.block,
			  d->status);
		buf_put(r.buf);
		if (r.op == OP_PREREAD || r.op == OP_WRITE)
			D.wops--;
		if (r.op == OP_FLUSH)
			D.flush_inflight = false;
		if (D.phase != DP_RUN)
			D.phase = DP_DEAD;
		return;
	}
	switch (r.op) {
	case OP_HDR_READ:
		read_old_header(bufs[r.buf]);
		buf_put(r.buf);
		enter(DP_MARK_HEADER);
		break;
	case OP_HDR_WRITE:
		buf_put(r.buf);
		enter(D.phase == DP_MARK_HEADER ? DP_FORMAT : DP_DONE_FLUSH);
		break;
	case OP_FORMAT:
		buf_put(r.buf);
		break;
	case OP_FLUSH:
		if (D.phase == DP_FORMAT_FLUSH)
			enter(DP_DONE_HEADER);
		else if (D.phase == DP_DONE_FLUSH)
			enter(DP_RUN);
		D.flush_inflight = false;
		D.unflushed -= MIN(D.unflushed, r.count);
		if (D.unflushed)	/* completed while the flush ran */
			D.unflushed_since = D.active_us;
		break;
	case OP_VERIFY:
		D.reads++;
		for (uint32_t i = 0; i < r.count; i++)
			check_block(r.block + i, bufs[r.buf] + i * WORDS);
		if (r.ends_pass)
			D.passes++;
		buf_put(r.buf);
		break;
	case OP_PREREAD: {
		uint32_t g = READ_ONCE(gens[r.block]) + 1;

		D.reads++;
		check_block(r.block, bufs[r.buf]);	/* before the overwrite hides it */
		fill_data(bufs[r.buf], r.block, g);
		if (submit(OP_WRITE, r.block, 1, r.buf, g) < 0) {
			buf_put(r.buf);
			D.wops--;
		}
		break;
	}
	case OP_WRITE:
		count_write(r.block);
		buf_put(r.buf);
		D.wops--;
		break;
	}
}

static void check_counters(void)
{
	uint64_t w1 = READ_ONCE(D.writes), w2 = READ_ONCE(mirror.writes);

	if (w1 != w2)
		fail_line("what=write-counter state=%lu mirror=%lu", w1, w2);
}

static void start_writes(uint64_t el)
{
	const unsigned max_wops = D.depth > 1 ? D.depth - 1 : 1;

	D.wcredit = MIN(D.wcredit + el * D.rate, MAX(BURST_US * D.rate, CREDIT));
	while (D.wcredit >= CREDIT && D.wops < max_wops && can_submit(true)) {
		int b;

		if (!D.wblock) {
			D.prng ^= D.prng << 13;
			D.prng ^= D.prng >> 7;
			D.prng ^= D.prng << 17;
			D.wblock = 1 + (uint32_t)(D.prng % (D.nblocks - 1));
		}
		if (locked(D.wblock))
			break;	/* a pass is reading it: next step */
		b = buf_get();
		if (submit(OP_PREREAD, D.wblock, 1, b, 0) < 0) {
			buf_put(b);
			break;
		}
		D.wops++;
		D.wblock = 0;
		D.wcredit -= CREDIT;
	}
}

static void start_verifies(uint64_t el)
{
	if (D.vrate)
		D.vcredit = MIN(D.vcredit + el * D.vrate,
				MAX(BURST_US * D.vrate, REQ_BLOCKS * CREDIT));
	while (can_submit(true) && (!D.vrate || D.vcredit >= REQ_BLOCKS * CREDIT)) {
		uint32_t k = 0, c = D.cursor;
		int b, t;

		while (k < REQ_BLOCKS && c + k < D.nblocks && !locked(c + k))
			k++;
		if (!k)
			break;	/* a write holds the next block: wait for it */
		b = buf_get();
		if ((t = submit(OP_VERIFY, c, k, b, 0)) < 0) {
			buf_put(b);
			break;
		}
		for (uint32_t i = 0; i < k; i++)
			if (c + i)
				D.pass_sum += READ_ONCE(gens[c + i]);
		D.cursor = c + k;
		if (D.vrate)
			D.vcredit -= k * CREDIT;
		if (D.cursor == D.nblocks) {
			uint32_t want = (uint32_t)(D.nblocks - 1 + READ_ONCE(D.writes));
			if (D.pass_sum != want)
				fail_line("what=generation-sum expected=%u found=%u", want, D.pass_sum);
			D.req[t].ends_pass = true;
			D.cursor = 0;
			D.pass_sum = 0;
		}
	}
}

static void start_flush(void)
{
	if (!D.flush_ok || !D.unflushed || D.flush_inflight || !can_submit(false))
		return;
	if (D.unflushed < FLUSH_BATCH && D.active_us - D.unflushed_since < FLUSH_DELAY_US)
		return;	/* a batch: more writes are coming */
	int t = submit(OP_FLUSH, 0, 0, -1, 0);
	if (t >= 0) {
		D.req[t].count = (uint32_t)MIN(D.unflushed, (uint64_t)UINT32_MAX);
		D.flush_inflight = true;
	}
}

static void check_stalls(void)
{
	if (D.active_us < D.next_stall_check)
		return;
	D.next_stall_check = D.active_us + STALL_CHECK_US;
	for (unsigned t = 0; t < VBLK_MAX_TAGS; t++) {
		struct req *r = &D.req[t];
		if (r->op == OP_NONE || r->stall_reported || D.active_us - r->issued < STALL_US)
			continue;
		r->stall_reported = true;
		con_line("DISK STALL op=%s block=%u tag=%u age_ms=%lu device_status=0x%02x",
			 op_name[r->op], r->block, t, (D.active_us - r->issued) / 1000,
			 vblk_device_status());
	}
}

void dvfy_step(uint64_t now)
{
	struct vblk_done d;
	uint64_t el;

	if (!enabled)
		return;
	/* time a pause or a migration took does not count (no bursts, no false stalls) */
	el = now > D.last_us ? MIN(now - D.last_us, (uint64_t)BURST_US) : 0;
	D.last_us = now;
	D.active_us += el;
	for (unsigned k = 0; k < D.depth + 1; k++) {
		enum vblk_event ev = vblk_next(&d);
		if (ev == VBLK_NONE)
			break;
		if (ev == VBLK_BOGUS)
			fail_line("what=unexpected-completion id=%u len=%u", d.id, d.len);
		else
			complete(&d);
	}
	if (D.phase == DP_FORMAT) {
		format_step();
	} else if (D.phase == DP_RUN) {
		check_counters();
		start_flush();
		if (D.rate)
			start_writes(el);
		start_verifies(el);
	}
	check_stalls();
	vblk_kick();
}

void dvfy_init(const struct vblk_info *info, const struct config *cfg)
{
	uint64_t avail = info->capacity / SPB, want = cfg->disk_blocks;

	memset(&D, 0, sizeof(D));
	if (info->read_only) {
		con_line("WARN DISK device is read-only: no disk verifier");
		return;
	}
	if (avail < 2) {
		con_line("WARN DISK capacity %lu sectors is too small: no disk verifier",
			 info->capacity);
		return;
	}
	if (!want) {
		want = MIN(avail, (uint64_t)DEFAULT_BLOCKS);
	} else if (want < 2) {
		con_line("WARN diskblocks=%lu raised to 2 (header and one data block)", want);
		want = 2;
	} else if (want > avail) {
		con_line("WARN diskblocks=%lu is more than the disk holds; clamped to %lu", want,
			 avail);
		want = avail;
	}
	if (want > MAX_BLOCKS) {
		con_line("WARN diskblocks=%lu clamped to %u", want, MAX_BLOCKS);
		want = MAX_BLOCKS;
	}
	D.capacity = info->capacity;
	D.nblocks = (uint32_t)want;
	D.depth = (uint32_t)MIN(MIN(cfg->disk_depth, (uint64_t)MAX_DEPTH), (uint64_t)info->tags);
	if (cfg->disk_depth > D.depth)
		con_line("WARN diskdepth=%lu clamped to %u", cfg->disk_depth, D.depth);
	D.seed = cfg->seed;
	D.flush_ok = info->flush;
	D.rate = cfg->disk_rate;
	D.vrate = cfg->disk_verify;
	D.buf_free = (1u << D.depth) - 1;
	D.prng = hash64(cfg->seed ^ 0x424c4b53ULL) | 1;
	D.last_us = clock_us(0);
	D.next_stall_check = STALL_CHECK_US;
	for (uint32_t b = 1; b < D.nblocks; b++)
		gens[b] = 1;	/* what the format writes */
	mirror.writes = 0;
	enabled = true;
	enter(DP_READ_HEADER);
	vblk_kick();
}

void dvfy_print_stats(void)
{
	if (!enabled)
		return;
	if (D.fails)	/* never "OK" again once something was wrong */
		con_line("DISK BAD %lu blocks=%lu writes=%lu reads=%lu fails=%lu", D.passes,
			 D.verified, D.writes, D.reads, D.fails);
	else if (D.phase == DP_RUN)
		con_line("DISK OK %lu blocks=%lu writes=%lu reads=%lu", D.passes, D.verified,
			 D.writes, D.reads);
}
