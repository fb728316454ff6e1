/*
 * verifier.h - the memory verifier: every working-set page holds content
 * that is a pure function of (address, generation, seed); generations live
 * in a metadata array; writes are paced and counted three times over.
 * See README.md for why a lost write cannot go unnoticed.
 *
 * Each CPU owns an equal, contiguous slice of the page index space and is
 * the only one to touch it, its metadata words and its state page.
 */
#ifndef GUEST_VERIFIER_H
#define GUEST_VERIFIER_H

#include <stdint.h>

#include "memmap.h"

/* CPU 0, before any fill: where things are, and how to split them;
 * compress_pct: how much of each page is a run a compressor removes. */
void vfy_setup(const struct wss_layout *l, uint64_t seed, unsigned ncpus, uint64_t rate_mib,
	       unsigned compress_pct);

/* Each CPU: write generation 0 to its slice and reset its counters. */
void vfy_fill(unsigned cpu, unsigned hw);

/* Each CPU, when the work loop starts. */
void vfy_start(unsigned cpu, uint64_t now_us);

/*
 * One slice of work, ~tens of microseconds: check the write counters,
 * do the writes the rate allows, verify the next few pages of the current
 * pass. stack_iter is a counter in the caller's stack frame that this
 * advances in step with one in the state page, binding the two.
 */
void vfy_step(unsigned cpu, uint64_t now_us, volatile uint64_t *stack_iter);

struct vfy_stats {
	uint64_t passes;	/* completed full passes over the slice */
	uint64_t pages;		/* page verifications (passes + before each write) */
	uint64_t writes;	/* page writes since the fill */
	uint64_t fails;		/* mismatches found (printed or not) */
};
void vfy_stats(unsigned cpu, struct vfy_stats *s);

#endif
