/*
 * pvh.h - boot a kernel through the PVH boot ABI (Xen's hvm_start_info):
 * load the ELF's segments, write the start info, memory map, command line
 * and an optional initrd module into guest RAM.  QEMU's -kernel takes the
 * same path for PVH ELFs, so both VMMs boot the same image identically.
 *
 * Low-memory layout used here (all below 1 MiB, inside RAM):
 *   0x6000  struct hvm_start_info
 *   0x6100  memory map (PVH_MAX_MEMMAP entries)
 *   0x6500  module list (initrd)
 *   0x7000  command line (up to PVH_CMDLINE_MAX bytes including NUL)
 * Kernels load at 1 MiB or above; the initrd goes at the top of low RAM.
 */
#ifndef KVMOVE_BOOT_PVH_H
#define KVMOVE_BOOT_PVH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "core/mem.h"

#define HVM_START_MAGIC 0x336ec578u
#define PVH_START_INFO_GPA 0x6000ULL
#define PVH_MEMMAP_GPA 0x6100ULL
#define PVH_MODLIST_GPA 0x6500ULL
#define PVH_CMDLINE_GPA 0x7000ULL
#define PVH_CMDLINE_MAX 4096
#define PVH_MAX_MEMMAP 16
#define PVH_KERNEL_MIN 0x100000ULL

#define E820_RAM 1
#define E820_RESERVED 2

/* Wire layouts from the PVH ABI (all little-endian, packed by nature). */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;	/* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

struct pvh_boot {
	uint32_t entry;		/* 32-bit entry point */
	uint32_t start_info;	/* its guest-physical address (EBX) */
	uint64_t kernel_start, kernel_end;
	uint64_t initrd_gpa, initrd_size;
};

/* The e820-style map for this RAM layout (pure). Returns entry count or -errno. */
int pvh_build_memmap(const struct guest_mem *mem, struct hvm_memmap_table_entry *e,
		     unsigned max, struct kv_err *err);

/* Load everything into guest memory (dirty-marked). initrd may be NULL. */
int pvh_load(struct guest_mem *mem, const uint8_t *kernel, size_t ksize,
	     const uint8_t *initrd, size_t isize, const char *cmdline,
	     struct pvh_boot *out, struct kv_err *err);

#endif
