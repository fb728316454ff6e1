/*
 * clock.h - guest time in microseconds since the guest's first instruction.
 *
 * Preferred source is kvmclock: the hypervisor publishes per-vCPU scale
 * and offset (struct pvclock) and we combine them with rdtsc on every read,
 * so the clock stays right when a migration changes host, TSC frequency
 * or offset. Fallback is the TSC calibrated against the PIT.
 *
 * clock_cpl0_*() run during CPL 0 setup; everything else runs at CPL 3.
 */
#ifndef GUEST_CLOCK_H
#define GUEST_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "cmdline.h"

/* Probe CPUID for kvmclock (CPU 0, once). */
void clock_cpl0_detect(void);
/* Register this CPU's pvclock area with the hypervisor (each CPU). */
void clock_cpl0_enable(unsigned hw_cpu);

/* CPU 0 at CPL 3: choose the clock and fix the epoch. false: no clock. */
bool clock_init(enum clock_choice choice);
const char *clock_name(void);

/* CPU 0: the guest time at which the TSC read `tsc` (for timing CPL 0). */
uint64_t clock_us_at_tsc(uint64_t tsc);

/*
 * Microseconds since the first guest instruction, read on CPU hw_cpu.
 * Normally monotonic; if the hypervisor's clock steps back (a bad clock
 * restore), so does this, modulo 2^64: use differences.
 */
uint64_t clock_us(unsigned hw_cpu);

/* rdtsc at the PVH entry point, saved by entry.S. */
extern uint64_t boot_tsc;

#endif
