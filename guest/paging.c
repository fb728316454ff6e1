/*
 * paging.c - the identity map CPL 3 works in.
 *
 * Everything from 0 up to the top of RAM (at least 4 GiB, so the local
 * APIC is covered) is mapped 1:1 with the U/S bit set, so CPL 3 can touch
 * all memory. The tables are prebuilt in the image (entry.S): the first
 * 4 GiB with 2 MiB pages and, when CPUID offers 1 GiB pages, 4-512 GiB
 * with those (entry.S picks before paging is on).
 *
 * Without 1 GiB pages, RAM above 4 GiB needs 2 MiB-page directories
 * (512 entries per GiB). That loop would take milliseconds per GiB at
 * CPL 0 where CPL 0 is emulated, so it runs at CPL 3, natively: the
 * tables are ordinary user-writable memory in this guest. The new
 * directories are filled before they are linked in, and the PDPT entries
 * that link them were not present before, which x86 never caches: no TLB
 * flush is needed (a shadow-paging host traps and tracks the PDPT writes).
 */
#include "boot.h"
#include "lib.h"
#include "x86.h"

#define PTE_FLAGS 0x7ULL	/* present, writable, user */
#define PTE_PS 0x80ULL
#define GiB (1ULL << 30)
#define STATIC_GIGS 4		/* prebuilt by entry.S */

typedef uint64_t table_t[512] __attribute__((aligned(4096)));

extern table_t pml4, pdpt;	/* entry.S */
static table_t pd_high[MAX_PD_PAGES - STATIC_GIGS] __attribute__((section(".noinit")));

uint64_t paging_top = STATIC_GIGS * GiB;

/* Highest RAM address per the memory map (0 if there is no usable map). */
static uint64_t ram_top(const struct hvm_start_info *si)
{
	const struct hvm_memmap_entry *e;
	uint64_t top = 0;

	if (si->magic != HVM_START_MAGIC || si->version < 1 || !si->memmap_paddr ||
	    si->memmap_paddr >= STATIC_GIGS * GiB)
		return 0;
	e = (const struct hvm_memmap_entry *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries && i < 128; i++)
		if (e[i].type == HVM_MEMMAP_RAM && e[i].addr + e[i].size > top)
			top = e[i].addr + e[i].size;
	return top;
}

void paging_extend(const struct hvm_start_info *si)
{
	uint64_t gigs;

	if (paging_1g) {
		paging_top = MAX_1G_TOP * GiB;
		return;
	}
	gigs = MIN(ALIGN_UP(ram_top(si), GiB) / GiB, (uint64_t)MAX_PD_PAGES);
	for (uint64_t g = STATIC_GIGS; g < gigs; g++) {
		uint64_t *d = pd_high[g - STATIC_GIGS], addr = g * GiB | PTE_FLAGS | PTE_PS;
		for (unsigned i = 0; i < 512; i++, addr += 1ULL << 21)
			d[i] = addr;
		__atomic_store_n(&pdpt[g], (uint64_t)(uintptr_t)d | PTE_FLAGS, __ATOMIC_RELEASE);
	}
	if (gigs > STATIC_GIGS)
		paging_top = gigs * GiB;	/* RAM beyond stays unused (reported at CPL 3) */
}
