/*
 * bzimage.h - boot a Linux bzImage through the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"): the protected-
 * mode kernel is loaded at 1 MiB, a zero page (struct boot_params) carries
 * the setup header, the e820 map, the command line and the initrd, and the
 * boot vCPU enters at load address + 0x200 in 64-bit mode with identity-
 * mapped page tables, a GDT holding __BOOT_CS/__BOOT_DS and RSI = zero page.
 *
 * For kernels without a PVH entry note (CONFIG_PVH=n); a vmlinux with the
 * note goes through pvh.h instead.  Every field of the file is untrusted.
 *
 * Low-memory layout (below the EBDA at 0x9fc00, all inside RAM):
 *   0x0500  GDT (null, null, __BOOT_CS 0x10, __BOOT_DS 0x18)
 *   0x7000  zero page (4 KiB)
 *   0x8000  command line (up to BZ_CMDLINE_MAX bytes including NUL)
 *   0x9000  PML4, 0xa000 PDPT, 0xb000..0xefff four page directories:
 *           the first 4 GiB identity-mapped with 2 MiB pages
 * The MP table lives in the BIOS area (mptable.h), which the e820 map
 * reserves; the initrd goes at the top of low RAM.
 */
#ifndef KVMOVE_BOOT_BZIMAGE_H
#define KVMOVE_BOOT_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "core/mem.h"

#define BZ_GDT_GPA 0x500ULL
#define BZ_ZERO_PAGE_GPA 0x7000ULL
#define BZ_CMDLINE_GPA 0x8000ULL
#define BZ_CMDLINE_MAX 4096
#define BZ_PML4_GPA 0x9000ULL
#define BZ_PDPT_GPA 0xa000ULL
#define BZ_PD_GPA 0xb000ULL		/* four pages */
#define BZ_LOAD_GPA 0x100000ULL		/* protected-mode kernel: 1 MiB */
#define BZ_ENTRY64_OFFSET 0x200
#define BZ_BOOT_CS 0x10
#define BZ_BOOT_DS 0x18

/* Offsets in the file's first sector and in the zero page (boot.rst). */
#define BZ_HDR_OFFSET 0x1f1		/* struct setup_header */
#define BZ_E820_ENTRIES 0x1e8
#define BZ_E820_TABLE 0x2d0
#define BZ_E820_MAX 128
#define BZ_ZERO_PAGE_SIZE 4096

#define BZ_XLF_KERNEL_64 0x1
#define BZ_LOADED_HIGH 0x1
#define BZ_MIN_VERSION 0x020c		/* xloadflags, 64-bit entry */

/* What the loader reads out of the setup header (host byte order). */
struct bz_header {
	uint8_t setup_sects;		/* 0 means 4 */
	uint16_t version;
	uint8_t loadflags;
	uint32_t code32_start;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable;
	uint16_t xloadflags;
	uint32_t cmdline_size;		/* longest command line, without NUL */
	uint64_t pref_address;
	uint32_t init_size;		/* memory the kernel needs from its load address */
	unsigned hdr_end;		/* file offset just past the setup header */
	uint64_t kernel_offset;		/* protected-mode kernel in the file */
	uint64_t kernel_size;
};

struct bz_boot {
	uint64_t entry;			/* 64-bit entry point */
	uint64_t zero_page;		/* RSI */
	uint64_t cr3;
	uint64_t gdt_base;
	uint16_t gdt_limit;
	uint64_t kernel_end;		/* end of what the kernel may use at boot */
	uint64_t initrd_gpa, initrd_size;
};

/* Does this look like a bzImage ("HdrS" at 0x202)? Pure, no allocation. */
bool bzimage_detect(const uint8_t *buf, size_t size);

/* Parse and check the setup header (pure). */
int bzimage_parse(const uint8_t *buf, size_t size, struct bz_header *hdr,
		  struct kv_err *err);

/* Load kernel, zero page, command line, initrd (may be NULL), page tables
 * and GDT into guest memory (dirty-marked). */
int bzimage_load(struct guest_mem *mem, const uint8_t *kernel, size_t ksize,
		 const uint8_t *initrd, size_t isize, const char *cmdline,
		 struct bz_boot *out, struct kv_err *err);

#endif
