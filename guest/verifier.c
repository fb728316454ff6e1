/*
 * verifier.c - see verifier.h and README.md ("Why a lost write cannot go
 * unnoticed"). Everything here runs at CPL 3, natively.
 *
 * Invariants, per CPU slice:
 *   I1  page j holds content(gpa_j, gens[j], seed), all 4096 bytes;
 *   I2  sum(gens[lo..hi)) == W (mod 2^32), W = writes done by this CPU;
 *   I3  W in the state page == W in the mirror page == W in register r15;
 *   I4  the step counter in the state page == its copy on the stack.
 * I1 is checked by full passes and before every overwrite, I2 at the end
 * of every pass, I3 and I4 on every step. Counters are only ever
 * incremented from their own memory value, never re-synced from another
 * copy, so a discrepancy, once created, stays visible.
 */
#include "verifier.h"

#include "clock.h"
#include "console.h"
#include "layout.h"
#include "lib.h"
#include "x86.h"

#define PAGE ((uint64_t)4096)
#define WORDS (PAGE / 8)
#define STRIDE 0x9e3779b97f4a7c15ULL	/* odd: consecutive words all differ */
#define VERIFY_CHUNK 8			/* pages per step: ~5 us, keeps HB jitter low */
#define WRITE_SLICE_US 40		/* at most this long writing per step */
#define BURST_US 10000			/* unused write budget carried over, at most */
#define FAIL_LINES_PER_SEC 4

/*
 * Copy 3 of the write counter lives only in a CPU register. Every guest
 * C file is compiled with -ffixed-r15, so nothing else touches r15, and
 * enter_user() zeroes it. Registers travel with the vCPU state at
 * switchover, never through the dirty log: if guest memory as a whole
 * were rolled back to an older, self-consistent state, r15 would not be.
 */
register uint64_t wreg __asm__("r15");

struct vfy_range {
	uint64_t gpa, first, npages;	/* index space [first, first + npages) */
};

static struct {
	uint64_t seed;
	uint32_t *gens;			/* metadata: generation per page index */
	uint64_t *mirror;		/* write-counter mirrors, 64 bytes apart */
	struct vfy_range r[MEM_MAX_RANGES];
	unsigned nr, ncpus;
	uint64_t npages;
	uint64_t rate_pps;		/* whole-VM target, pages per second */
	unsigned uniq;			/* words 1..uniq-1 unique, the rest repeat
					 * the page's base (compress=) */
} V;

struct vfy_cpu {
	uint64_t writes;		/* W, copy 1 */
	uint64_t iter;			/* steps; copy on the caller's stack */
	uint64_t lo, hi, cursor;	/* slice, and the current pass position */
	uint32_t pass_sum;		/* sum of gens over [lo, cursor) */
	uint32_t hw;
	uint64_t passes, verified, fails;
	uint64_t prng;
	uint64_t credit, last_us;	/* write pacing, in pages * 1e6 / ncpus */
	uint64_t fail_window_us, fail_lines;
};

/* One page per CPU, so each CPU's state is one unit for the dirty log. */
static union {
	struct vfy_cpu s;
	uint8_t pad[PAGE];
} state[MAX_CPUS] __attribute__((section(".noinit"), aligned(4096)));

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t prng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/*
 * Page content: word 0 = generation << 32 | page frame number (readable
 * in a diagnosis), words 1..uniq-1 = base + i * STRIDE with base a hash
 * of (gpa, generation, seed), words uniq..511 = base itself (compress=
 * makes that share of the page a run a compressor takes away; 0: none).
 * Any two generations differ in every word.
 */
static uint64_t header_word(uint64_t gpa, uint32_t gen)
{
	return (uint64_t)gen << 32 | (uint32_t)(gpa >> 12);
}

static uint64_t body_base(uint64_t gpa, uint32_t gen)
{
	return mix64(gpa ^ mix64(V.seed + ((uint64_t)gen * 2 + 1) * STRIDE));
}

static uint64_t expected_word(uint64_t gpa, uint32_t gen, unsigned i)
{
	if (!i)
		return header_word(gpa, gen);
	return i < V.uniq ? body_base(gpa, gen) + i * STRIDE : body_base(gpa, gen);
}

static void fill_page(uint64_t gpa, uint32_t gen)
{
	uint64_t *p = (uint64_t *)(uintptr_t)gpa, base = body_base(gpa, gen), v = base;
	unsigned i;

	p[0] = header_word(gpa, gen);
#pragma GCC unroll 8
	for (i = 1; i < V.uniq; i++) {
		v += STRIDE;
		p[i] = v;
	}
	for (; i < WORDS; i++)
		p[i] = base;
}

/* 0 if the page at p holds content(gpa, gen); no branches in the loop. */
static uint64_t page_diff(const uint64_t *p, uint64_t gpa, uint32_t gen)
{
	uint64_t base = body_base(gpa, gen), v = base, d;
	unsigned i;

	barrier();	/* always read memory, never what we think we wrote */
	d = p[0] ^ header_word(gpa, gen);
#pragma GCC unroll 8
	for (i = 1; i < V.uniq; i++) {
		v += STRIDE;
		d |= p[i] ^ v;
	}
	for (; i < WORDS; i++)
		d |= p[i] ^ base;
	return d;
}

static uint64_t page_gpa(uint64_t j)
{
	for (unsigned i = 0; i + 1 < V.nr; i++)
		if (j < V.r[i].first + V.r[i].npages)
			return V.r[i].gpa + (j - V.r[i].first) * PAGE;
	return V.r[V.nr - 1].gpa + (j - V.r[V.nr - 1].first) * PAGE;
}

/* Rate limit for FAIL lines; every failure is still counted. */
static bool may_print(struct vfy_cpu *st)
{
	uint64_t now = clock_us(st->hw);

	if (now - st->fail_window_us >= 1000000) {
		st->fail_window_us = now;
		st->fail_lines = 0;
	}
	return st->fail_lines++ < FAIL_LINES_PER_SEC;
}

/* What does a bad page hold? Tells a stale copy from a misplaced or torn one. */
static void diagnose(unsigned cpu, uint64_t gpa, uint32_t gen, unsigned bad_bytes)
{
	const uint64_t *p = (const uint64_t *)(uintptr_t)gpa;
	uint64_t any = 0, hgpa = (p[0] & 0xffffffffULL) << 12;
	uint32_t hgen = (uint32_t)(p[0] >> 32);
	char what[64];

	for (unsigned i = 0; i < WORDS; i++)
		any |= p[i];
	if (!any)
		snprintf(what, sizeof(what), "zero");
	else if (page_diff(p, hgpa, hgen) == 0 && hgpa == gpa)
		snprintf(what, sizeof(what), "gen:%u", hgen);	/* whole page, other generation */
	else if (page_diff(p, hgpa, hgen) == 0)
		snprintf(what, sizeof(what), "page:0x%lx:gen:%u", hgpa, hgen);
	else
		snprintf(what, sizeof(what), "corrupt");
	con_line("VERIFY DIAG cpu=%u page=0x%lx gen=%u content=%s bad_bytes=%u",
		 cpu, gpa, gen, what, bad_bytes);
}

static void report_page(struct vfy_cpu *st, unsigned cpu, uint64_t gpa, uint32_t gen)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)gpa;
	unsigned first = PAGE, bad = 0;

	st->fails++;
	if (!may_print(st))
		return;
	for (unsigned i = 0; i < WORDS; i++) {
		uint64_t e = expected_word(gpa, gen, i);
		for (unsigned b = 0; b < 8; b++)
			if (p[i * 8 + b] != (uint8_t)(e >> (8 * b))) {
				bad++;
				if (first == PAGE)
					first = i * 8 + b;
			}
	}
	if (first == PAGE)
		first = 0;	/* changed back while we looked */
	con_line("VERIFY FAIL cpu=%u page=0x%lx expected=0x%016lx found=0x%016lx offset=%u",
		 cpu, gpa, expected_word(gpa, gen, first / 8),
		 ((const uint64_t *)p)[first / 8], first);
	diagnose(cpu, gpa, gen, bad);
}

/* A bookkeeping copy disagrees: report the page that holds `where`. */
static void report_value(struct vfy_cpu *st, unsigned cpu, const volatile void *where,
			 uint64_t expected, uint64_t found, const char *what)
{
	uint64_t a = (uint64_t)(uintptr_t)where;

	st->fails++;
	if (!may_print(st))
		return;
	con_line("VERIFY FAIL cpu=%u page=0x%lx expected=0x%016lx found=0x%016lx offset=%lu",
		 cpu, a & ~(PAGE - 1), expected, found, a & (PAGE - 1));
	con_line("VERIFY DIAG cpu=%u page=0x%lx what=%s", cpu, a & ~(PAGE - 1), what);
}

static void check_page(struct vfy_cpu *st, unsigned cpu, uint64_t gpa, uint32_t gen)
{
	st->verified++;
	if (__builtin_expect(page_diff((const uint64_t *)(uintptr_t)gpa, gpa, gen) != 0, 0))
		report_page(st, cpu, gpa, gen);
}

void vfy_setup(const struct wss_layout *l, uint64_t seed, unsigned ncpus, uint64_t rate_mib,
	       unsigned compress_pct)
{
	uint64_t first = 0;

	memset(&V, 0, sizeof(V));
	V.seed = seed;
	V.gens = (uint32_t *)(uintptr_t)l->meta;
	V.mirror = (uint64_t *)(uintptr_t)l->mirror;
	V.ncpus = ncpus;
	V.npages = l->npages;
	V.rate_pps = rate_mib * 256;
	/* the share of the page's bytes that repeat: the header word stays */
	V.uniq = compress_pct >= 100 ? 1 : (unsigned)(WORDS - WORDS * compress_pct / 100);
	if (V.uniq < 1)
		V.uniq = 1;
	for (unsigned i = 0; i < l->nwss; i++) {
		uint64_t n = (l->wss[i].end - l->wss[i].start) / PAGE;
		V.r[V.nr++] = (struct vfy_range){ l->wss[i].start, first, n };
		first += n;
	}
}

void vfy_fill(unsigned cpu, unsigned hw)
{
	struct vfy_cpu *st = &state[cpu].s;

	memset(st, 0, sizeof(*st));
	st->hw = hw;
	st->lo = V.npages * cpu / V.ncpus;
	st->hi = V.npages * (cpu + 1) / V.ncpus;
	st->cursor = st->lo;
	st->prng = mix64(V.seed ^ (cpu + 1) * STRIDE) | 1;
	for (uint64_t j = st->lo; j < st->hi; j++) {
		fill_page(page_gpa(j), 0);
		V.gens[j] = 0;
	}
	V.mirror[cpu * 8] = 0;
	wreg = 0;
}

void vfy_start(unsigned cpu, uint64_t now_us)
{
	state[cpu].s.last_us = now_us;
}

static void write_one(struct vfy_cpu *st, unsigned cpu)
{
	uint64_t n = st->hi - st->lo;
	uint64_t j = st->lo + (uint64_t)(((unsigned __int128)prng_next(&st->prng) * n) >> 64);
	uint64_t gpa = page_gpa(j);
	uint32_t g = READ_ONCE(V.gens[j]);

	check_page(st, cpu, gpa, g);	/* catch it before the overwrite hides it */
	fill_page(gpa, ++g);
	WRITE_ONCE(V.gens[j], g);
	if (j < st->cursor)
		st->pass_sum++;		/* this pass already summed the old value */
	wreg++;
	WRITE_ONCE(st->writes, READ_ONCE(st->writes) + 1);
	WRITE_ONCE(V.mirror[cpu * 8], READ_ONCE(V.mirror[cpu * 8]) + 1);
}

static void check_counters(struct vfy_cpu *st, unsigned cpu, volatile uint64_t *stack_iter)
{
	uint64_t w1 = READ_ONCE(st->writes), w2 = READ_ONCE(V.mirror[cpu * 8]);
	uint64_t i1 = READ_ONCE(st->iter) + 1, i2 = *stack_iter + 1;

	if (w1 != wreg)
		report_value(st, cpu, &st->writes, wreg, w1, "write-counter");
	if (w2 != wreg)
		report_value(st, cpu, &V.mirror[cpu * 8], wreg, w2, "write-counter-mirror");
	if (i1 != i2)
		report_value(st, cpu, stack_iter, i1, i2, "stack-step-counter");
	WRITE_ONCE(st->iter, i1);
	*stack_iter = i2;
}

static void do_writes(struct vfy_cpu *st, unsigned cpu, uint64_t now)
{
	const uint64_t cost = 1000000ULL * V.ncpus;	/* credit per page write */
	uint64_t el = now > st->last_us ? MIN(now - st->last_us, BURST_US) : 0;
	uint64_t cap = MAX(BURST_US * V.rate_pps, cost);
	uint64_t t0 = clock_us(st->hw);	/* raw clock for the time box */
	unsigned n = 0;

	st->last_us = now;
	st->credit = MIN(st->credit + el * V.rate_pps, cap);
	while (st->credit >= cost) {
		write_one(st, cpu);
		st->credit -= cost;
		if ((++n & 3) == 0 && clock_us(st->hw) - t0 > WRITE_SLICE_US)
			break;	/* the rest waits for the next step */
	}
}

static void verify_chunk(struct vfy_cpu *st, unsigned cpu)
{
	for (unsigned k = 0; k < VERIFY_CHUNK; k++) {
		uint64_t j = st->cursor;
		uint32_t g = READ_ONCE(V.gens[j]);

		check_page(st, cpu, page_gpa(j), g);
		st->pass_sum += g;
		st->cursor = ++j;
		if (j == st->hi) {
			if (st->pass_sum != (uint32_t)wreg)
				report_value(st, cpu, &V.gens[st->lo], (uint32_t)wreg,
					     st->pass_sum, "generation-sum");
			st->passes++;
			st->cursor = st->lo;
			st->pass_sum = 0;
		}
	}
}

void vfy_step(unsigned cpu, uint64_t now_us, volatile uint64_t *stack_iter)
{
	struct vfy_cpu *st = &state[cpu].s;

	check_counters(st, cpu, stack_iter);
	if (st->hi == st->lo)
		return;
	if (V.rate_pps)
		do_writes(st, cpu, now_us);
	verify_chunk(st, cpu);
}

void vfy_stats(unsigned cpu, struct vfy_stats *s)
{
	const struct vfy_cpu *st = &state[cpu].s;

	s->passes = st->passes;
	s->pages = st->verified;
	s->writes = st->writes;
	s->fails = st->fails;
}
