/*
 * mmio.c - the uncached MMIO window.
 *
 * The identity map (entry.S) covers the PCI hole below 4 GiB with
 * write-back 2 MiB pages, and 64-bit BARs may sit anywhere. Rather than
 * change live entries (which needs a TLB flush, and invlpg is CPL 0 only),
 * device ranges get fresh 4 KiB mappings with PCD|PWT (UC with the reset
 * PAT) in a virtual window at 512 GiB, under PML4 slot 1, which nothing
 * else uses. The window's tables are filled before PML4[1] is linked,
 * and later additions only turn not-present entries present, which x86
 * never caches: no flush is ever needed (see paging.c). The identity
 * alias of a BAR is never touched.
 */
#include "mmio.h"

#include <stdbool.h>

#include "lib.h"

#define PAGE 4096ULL
#define PTE_TABLE 0x7ULL		/* present, writable, user */
#define PTE_UC 0x1fULL			/* present, writable, user, PWT, PCD */
#define WINDOW_VA (512ULL << 30)	/* PML4 slot 1 */
#define WINDOW_PTS 4			/* 4 page tables: 8 MiB of mappings */
#define PA_LIMIT (1ULL << 46)

typedef uint64_t table_t[512] __attribute__((aligned(4096)));

extern table_t pml4;	/* entry.S */

static struct {
	table_t pdpt, pd, pt[WINDOW_PTS];
} win __attribute__((section(".noinit"), aligned(4096)));

static uint64_t next_page;	/* pages of the window handed out */
static bool linked;

static void link_window(void)
{
	memset(&win, 0, sizeof(win));
	win.pdpt[0] = (uint64_t)(uintptr_t)win.pd | PTE_TABLE;
	for (unsigned i = 0; i < WINDOW_PTS; i++)
		win.pd[i] = (uint64_t)(uintptr_t)win.pt[i] | PTE_TABLE;
	__atomic_store_n(&pml4[1], (uint64_t)(uintptr_t)win.pdpt | PTE_TABLE, __ATOMIC_RELEASE);
	linked = true;
}

volatile void *mmio_map(uint64_t pa, uint64_t len)
{
	uint64_t first = ALIGN_DOWN(pa, PAGE), n, va;

	if (!len || pa >= PA_LIMIT || len > PA_LIMIT - pa)
		return NULL;
	n = (ALIGN_UP(pa + len, PAGE) - first) / PAGE;
	if (n > WINDOW_PTS * 512 - next_page)
		return NULL;
	if (!linked)
		link_window();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t k = next_page + i;
		__atomic_store_n(&win.pt[k / 512][k % 512], (first + i * PAGE) | PTE_UC,
				 __ATOMIC_RELEASE);
	}
	va = WINDOW_VA + next_page * PAGE + (pa - first);
	next_page += n;
	return (volatile void *)(uintptr_t)va;
}
