/*
 * clock.c - kvmclock (pvclock protocol) and the TSC/PIT fallback.
 */
#include "clock.h"

#include "layout.h"
#include "lib.h"
#include "x86.h"

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define PIT_HZ 1193182ULL

/* Layout fixed by the KVM ABI (pvclock_vcpu_time_info). */
struct pvclock {
	uint32_t version;	/* odd while the hypervisor updates the rest */
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;	/* ns at tsc_timestamp */
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
};
_Static_assert(sizeof(struct pvclock) == 32, "pvclock layout");

/* Written by the hypervisor; aligned so no entry crosses a page. */
static struct pvclock pvclock_area[MAX_CPUS]
	__attribute__((section(".noinit"), aligned(64)));

/* Set at CPL 0 (.bss is zeroed before that code runs). */
static bool kvmclock_present;

/* Set once by clock_init(), read-only afterwards. */
static enum { SRC_NONE, SRC_KVMCLOCK, SRC_TSC } source;
static const char *source_name = "none";
static uint64_t epoch_ns;	/* kvmclock ns at boot_tsc */
static uint64_t tsc_ns_mult;	/* TSC source: ns = delta * mult >> 32 */

void clock_cpl0_detect(void)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	if (!(r[2] & (1u << 31)))	/* no hypervisor bit: bare metal */
		return;
	/* KVM sits at 0x40000000, or 0x40000100 behind Hyper-V enlightenments. */
	for (uint32_t base = 0x40000000; base <= 0x40000100; base += 0x100) {
		cpuid(base, 0, r);
		if (r[1] == 0x4b4d564b && r[2] == 0x564b4d56 && r[3] == 0x0000004d) {
			if (r[0] < base + 1 && r[0] != 0)
				return;
			cpuid(base + 1, 0, r);
			kvmclock_present = (r[0] & KVM_FEATURE_CLOCKSOURCE2) != 0;
			return;
		}
	}
}

void clock_cpl0_enable(unsigned hw_cpu)
{
	if (kvmclock_present)
		wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)(uintptr_t)&pvclock_area[hw_cpu] | 1);
}

static uint64_t scale_delta(uint64_t delta, uint32_t mul, int8_t shift)
{
	if (shift < 0)
		delta >>= -shift;
	else
		delta <<= shift;
	return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* kvmclock ns at TSC value tsc (tsc 0 = now). Never caches the scale. */
static uint64_t pvclock_ns_at(unsigned hw_cpu, uint64_t tsc)
{
	const volatile struct pvclock *p = &pvclock_area[hw_cpu];
	uint32_t ver, mul;
	uint64_t now, ts, st;
	int8_t shift;

	do {
		ver = p->version;
		barrier();	/* x86 keeps loads in order; stop the compiler */
		now = tsc ? tsc : rdtsc();
		ts = p->tsc_timestamp;
		st = p->system_time;
		mul = p->tsc_to_system_mul;
		shift = p->tsc_shift;
		barrier();
	} while ((ver & 1) || ver != p->version);
	if (now >= ts)
		return st + scale_delta(now - ts, mul, shift);
	return st - scale_delta(ts - now, mul, shift);
}

/* Count PIT channel 2 down from `ticks` and return the TSC cycles it took. */
static uint64_t pit_measure(uint32_t ticks)
{
	uint64_t t0, t1;
	uint32_t polls = 0;

	outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));	/* gate on, speaker off */
	outb(0x43, 0xb0);		/* channel 2, lo/hi byte, mode 0, binary */
	outb(0x42, (uint8_t)ticks);
	outb(0x42, (uint8_t)(ticks >> 8));	/* counting starts here */
	t0 = rdtsc();
	while (!(inb(0x61) & 0x20))	/* OUT2 rises at terminal count */
		if (++polls > 10000000)
			return 0;
	t1 = rdtsc();
	return polls < 2 ? 0 : t1 - t0;	/* OUT2 high at once: no PIT here */
}

static bool tsc_calibrate(void)
{
	const uint32_t ticks = (uint32_t)(PIT_HZ * 50 / 1000);	/* 50 ms */
	uint64_t best = 0;

	/* Take the shortest of three runs: exits only ever make it longer. */
	for (int i = 0; i < 3; i++) {
		uint64_t c = pit_measure(ticks);
		if (!c)
			return false;
		if (!best || c < best)
			best = c;
	}
	uint64_t hz = best * PIT_HZ / ticks;
	if (hz < 10000000)	/* < 10 MHz: nonsense */
		return false;
	tsc_ns_mult = (uint64_t)(((unsigned __int128)1000000000 << 32) / hz);
	return true;
}

bool clock_init(enum clock_choice choice)
{
	if (kvmclock_present && choice == CLOCK_AUTO) {
		source = SRC_KVMCLOCK;
		source_name = "kvmclock";
		epoch_ns = pvclock_ns_at(0, boot_tsc);
		return true;
	}
	if (tsc_calibrate()) {
		source = SRC_TSC;
		source_name = "tsc-pit";
		return true;
	}
	return false;
}

const char *clock_name(void)
{
	return source_name;
}

/*
 * Wrapping arithmetic on purpose: if a VMM restored the clock wrongly
 * after a migration, time may step back, even below the epoch. Callers
 * take differences, and the work loop notices and reports a step back.
 */
static uint64_t us_at(unsigned hw_cpu, uint64_t tsc)
{
	if (source == SRC_KVMCLOCK)
		return (uint64_t)((int64_t)(pvclock_ns_at(hw_cpu, tsc) - epoch_ns) / 1000);
	if (source == SRC_TSC) {
		int64_t d = (int64_t)((tsc ? tsc : rdtsc()) - boot_tsc);
		int64_t ns = (int64_t)(((__int128)d * tsc_ns_mult) >> 32);
		return (uint64_t)(ns / 1000);
	}
	return 0;
}

uint64_t clock_us_at_tsc(uint64_t tsc)
{
	return us_at(0, tsc);
}

uint64_t clock_us(unsigned hw_cpu)
{
	return us_at(hw_cpu, 0);
}
