/*
 * boot.h - CPL 0 setup (boot.c, exception.c), the page tables (paging.c)
 * and what they hand to CPL 3. The CPL 0 part is deliberately tiny: on this project's hosts
 * CPL 0 is emulated at ~1-2 million instructions per second, while CPL 3
 * runs natively, so everything that loops over memory happens at CPL 3.
 */
#ifndef GUEST_BOOT_H
#define GUEST_BOOT_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "pvh.h"

/* Per-CPU stacks, indexed by hardware slot (CPU 0 = 0, APs in arrival order). */
extern uint8_t kstacks[MAX_CPUS][KSTACK_SIZE];
extern uint8_t ustacks[MAX_CPUS][USTACK_SIZE];

/* From entry.S */
__attribute__((noreturn)) void enter_user(void (*entry)(unsigned), uint64_t stack_top,
					  uint64_t arg);
extern uint32_t ap_next_hw;		/* next hardware slot an AP will take */
extern uint32_t ap_hw_limit;		/* APs with slot >= this park at CPL 0 */
extern char ap_trampoline[], ap_trampoline_end[];
extern uint64_t gdt[GDT_SLOTS];

/* boot.c: called from entry.S on their CPL 0 stacks */
__attribute__((noreturn)) void boot_cpu0(void);
__attribute__((noreturn)) void boot_ap(unsigned hw);

/* boot.c: point exception vector v at handler (NULL: its reporting stub) */
void idt_set_gate(unsigned v, void *handler);

/* emutest.c: INT3, FWAIT (emutest=1), and POPCNT (emutest=2) at CPL 0 */
unsigned emutest_wanted(const char *cmdline);
void emutest_run(unsigned level);

/* Left for CPL 3 by boot_cpu0 */
extern uint64_t lapic_phys;		/* local APIC MMIO base */
extern bool lapic_x2apic;		/* x2APIC mode: no MMIO, we can't do SMP from CPL 3 */

/* paging.c: CPU 0 at CPL 3, before touching RAM above 4 GiB or starting APs */
void paging_extend(const struct hvm_start_info *si);
extern uint64_t paging_top;		/* [0, paging_top) is identity mapped, U/S set */
extern bool paging_1g;			/* 1 GiB pages map 4-512 GiB (set by entry.S) */

/* CPL 3 entry points (main.c) */
__attribute__((noreturn)) void cpu0_main(unsigned hw);
__attribute__((noreturn)) void ap_main(unsigned hw);

/* Linker script symbols */
extern char __image_start[], __image_end[];

#endif
