/*
 * smp.c - AP bring-up. The CPL 0 half (real mode -> long mode -> CPL 3)
 * is trampoline.S, entry.S and boot_ap(); this is the CPL 3 half: the
 * IPIs, the delays between them (native at CPL 3, where a busy-wait is
 * cheap) and the check-in protocol.
 *
 * Logical CPU numbers are handed out at check-in, in order; CPU 0 closes
 * check-in when it stops waiting, so late APs can't claim a slice.
 */
#include "smp.h"

#include "boot.h"
#include "clock.h"
#include "console.h"
#include "lib.h"
#include "x86.h"

#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define ICR_BUSY (1u << 12)
#define ICR_INIT 0x00000500u
#define ICR_SIPI 0x00000600u
#define ICR_ASSERT 0x00004000u
#define ICR_ALL_BUT_SELF 0x000c0000u
#define CHECKIN_CLOSED 0x80000000u
#define CHECKIN_WAIT_US 2000000

static uint32_t checkin;	/* APs checked in, | CHECKIN_CLOSED once closed */

static void delay_us(uint64_t us)
{
	uint64_t t = clock_us(0);
	while (clock_us(0) - t < us)
		cpu_relax();
}

static void icr_send(volatile uint32_t *apic, uint32_t lo)
{
	apic[APIC_ICR_HI / 4] = 0;
	apic[APIC_ICR_LO / 4] = lo;
	for (unsigned i = 0; i < 1000 && (apic[APIC_ICR_LO / 4] & ICR_BUSY); i++)
		delay_us(10);
}

unsigned smp_start(unsigned want, const struct memmap_info *mi)
{
	volatile uint32_t *apic = (volatile uint32_t *)(uintptr_t)lapic_phys;
	uint64_t tsize = (uint64_t)(ap_trampoline_end - ap_trampoline), t0;
	uint32_t old;

	if (want <= 1)
		return 1;
	if (lapic_x2apic) {
		con_line("WARN smp: local APIC is in x2APIC mode; running on 1 CPU");
		return 1;
	}
	if (!memmap_is_ram(mi, TRAMPOLINE_PA, TRAMPOLINE_PA + 4096) || tsize > 4096) {
		con_line("WARN smp: no RAM for the trampoline at 0x%x; running on 1 CPU",
			 TRAMPOLINE_PA);
		return 1;
	}
	memcpy((void *)(uintptr_t)TRAMPOLINE_PA, ap_trampoline, tsize);
	/* APs beyond cpus= park at CPL 0; the store is visible before the IPI */
	__atomic_store_n(&ap_hw_limit, want, __ATOMIC_SEQ_CST);

	icr_send(apic, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
	delay_us(10000);
	for (int i = 0; i < 2; i++) {
		icr_send(apic, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_SIPI | (TRAMPOLINE_PA >> 12));
		delay_us(200);
	}

	t0 = clock_us(0);
	while ((__atomic_load_n(&checkin, __ATOMIC_ACQUIRE) & ~CHECKIN_CLOSED) < want - 1 &&
	       clock_us(0) - t0 < CHECKIN_WAIT_US)
		cpu_relax();
	old = __atomic_fetch_or(&checkin, CHECKIN_CLOSED, __ATOMIC_ACQ_REL);
	return 1 + (old & ~CHECKIN_CLOSED);
}

int smp_checkin(void)
{
	uint32_t old = __atomic_load_n(&checkin, __ATOMIC_ACQUIRE);

	for (;;) {
		if (old & CHECKIN_CLOSED)
			return -1;
		if (__atomic_compare_exchange_n(&checkin, &old, old + 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return (int)old + 1;
	}
}
