/*
 * pvh.h - the PVH boot ABI as the guest sees it: the ELF note that names
 * our 32-bit entry point, and the start-of-day structure whose physical
 * address arrives in EBX (layout from Xen's public start_info.h).
 */
#ifndef GUEST_PVH_H
#define GUEST_PVH_H

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578

#ifndef __ASSEMBLER__
#include <stdint.h>

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;		/* version >= 1 */
	uint32_t memmap_entries;	/* version >= 1 */
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;			/* 1 = RAM, like e820 */
	uint32_t reserved;
};

#define HVM_MEMMAP_RAM 1

_Static_assert(sizeof(struct hvm_start_info) == 56, "start info layout");
_Static_assert(sizeof(struct hvm_memmap_entry) == 24, "memmap entry layout");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "module entry layout");

/* Physical address of the start info, saved by entry.S before anything else. */
extern uint32_t boot_start_info;
#endif

#endif
