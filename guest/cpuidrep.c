/*
 * cpuidrep.c - cpuid=1: the CPUID leaves this guest was given (cpuidrep.h).
 */
#include "cpuidrep.h"

#include <stdbool.h>

#include "console.h"
#include "lib.h"
#include "x86.h"

#define MAX_LEAVES 48
#define MSR_PLATFORM_INFO 0xce		/* bit 31: CPUID faulting available */
#define MSR_MISC_FEATURES_ENABLES 0x140	/* bit 0: CPUID faults at CPL > 0 */

static struct seen {
	uint32_t fn, sub, r[4];
} seen[MAX_LEAVES];
static unsigned nseen;

static void take(uint32_t fn, uint32_t sub)
{
	if (nseen < MAX_LEAVES) {
		seen[nseen].fn = fn;
		seen[nseen].sub = sub;
		cpuid(fn, sub, seen[nseen].r);
		nseen++;
	}
}

void cpuid_capture(void)
{
	static const uint32_t leaves[][2] = {
		{ 1, 0 }, { 7, 0 }, { 7, 1 }, { 0xd, 0 }, { 0xd, 1 },
		{ 0x40000000, 0 }, { 0x40000001, 0 }, { 0x80000001, 0 },
	};
	uint32_t r[4], max_basic, max_ext;
	/* CPUID faulting: a CPUID then traps to KVM even where the hardware
	 * would run it (PVM), and KVM answers from the guest's table */
	const bool fault = (rdmsr(MSR_PLATFORM_INFO) >> 31) & 1;

	if (fault)
		wrmsr(MSR_MISC_FEATURES_ENABLES, 1);
	take(0, 0);
	max_basic = seen[0].r[0];
	cpuid(0x80000000, 0, r);
	max_ext = r[0];
	take(0x80000000, 0);
	for (unsigned i = 0; i < ARRAY_SIZE(leaves); i++) {
		uint32_t fn = leaves[i][0];
		if (fn < 0x40000000 ? fn > max_basic : fn >= 0x80000000 && fn > max_ext)
			continue;
		take(fn, leaves[i][1]);
	}
	/* the XSAVE components offered, with their sizes and offsets */
	if (max_basic >= 0xd) {
		cpuid(0xd, 0, r);
		for (uint32_t sub = 2; sub < 32; sub++)
			if ((r[0] >> sub) & 1)
				take(0xd, sub);
	}
	if (fault)
		wrmsr(MSR_MISC_FEATURES_ENABLES, 0);
}

void cpuid_report(void)
{
	bool differs = false;

	for (unsigned i = 0; i < nseen; i++) {
		const struct seen *s = &seen[i];
		uint32_t r[4];

		con_line("CPUID 0x%08x.%u eax=0x%08x ebx=0x%08x ecx=0x%08x edx=0x%08x", s->fn,
			 s->sub, s->r[0], s->r[1], s->r[2], s->r[3]);
		cpuid(s->fn, s->sub, r);
		if ((s->fn == 7 && s->sub == 0) && (r[1] != s->r[1] || r[2] != s->r[2]))
			differs = true;
	}
	if (differs)
		con_line("WARN CPUID at CPL 3 shows other feature bits than at CPL 0: this "
			 "host runs guest user mode without CPUID faulting (PVM)");
	con_line("CPUID done");
}
