/*
 * elf.h - parse an x86 ELF kernel image (ELF32 or ELF64) into the segments
 * to load and its PVH entry point.  Pure: works on a buffer, touches no
 * guest memory, trusts nothing in the buffer.
 */
#ifndef KVMOVE_BOOT_ELF_H
#define KVMOVE_BOOT_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define ELF_MAX_LOAD 16
#define XEN_ELFNOTE_PHYS32_ENTRY 18

struct elf_load {
	uint64_t paddr;		/* guest-physical load address */
	uint64_t offset;	/* in the file */
	uint64_t filesz, memsz;	/* filesz <= memsz; the rest is zeroed */
};

struct elf_image {
	unsigned nload;
	struct elf_load load[ELF_MAX_LOAD];
	uint64_t lowest, highest;	/* [lowest, highest) spans every segment */
	bool has_pvh;
	uint32_t pvh_entry;	/* XEN_ELFNOTE_PHYS32_ENTRY */
};

int elf_parse(const uint8_t *buf, size_t size, struct elf_image *img,
	      struct kv_err *err);

#endif
