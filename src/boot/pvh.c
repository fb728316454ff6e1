#include "boot/pvh.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "boot/elf.h"

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "memmap entry layout");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "modlist entry layout");
_Static_assert(PVH_MEMMAP_GPA + PVH_MAX_MEMMAP * 24 <= PVH_MODLIST_GPA, "memmap fits");

/* Legacy PC holes in the first MiB: EBDA, VGA, option ROMs and BIOS. */
#define EBDA_START 0x9fc00ULL
#define BIOS_START 0xf0000ULL

static int add(struct hvm_memmap_table_entry *e, unsigned *n, unsigned max,
	       uint64_t addr, uint64_t size, uint32_t type, struct kv_err *err)
{
	if (*n >= max)
		return kv_errf(err, ENOSPC, "memory map needs more than %u entries", max);
	e[(*n)++] = (struct hvm_memmap_table_entry){ .addr = addr, .size = size, .type = type };
	return 0;
}

int pvh_build_memmap(const struct guest_mem *mem, struct hvm_memmap_table_entry *e,
		     unsigned max, struct kv_err *err)
{
	unsigned n = 0;
	int r;

	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *rg = &mem->regions[i];
		if (rg->gpa == 0) {
			/* Region 0 always reaches past 1 MiB (16 MiB minimum). */
			if ((r = add(e, &n, max, 0, EBDA_START, E820_RAM, err)) ||
			    (r = add(e, &n, max, EBDA_START, 0xa0000 - EBDA_START,
				     E820_RESERVED, err)) ||
			    (r = add(e, &n, max, BIOS_START, PVH_KERNEL_MIN - BIOS_START,
				     E820_RESERVED, err)) ||
			    (r = add(e, &n, max, PVH_KERNEL_MIN, rg->size - PVH_KERNEL_MIN,
				     E820_RAM, err)))
				return r;
		} else if ((r = add(e, &n, max, rg->gpa, rg->size, E820_RAM, err))) {
			return r;
		}
	}
	return (int)n;
}

static int load_segments(struct guest_mem *mem, const uint8_t *kernel,
			 const struct elf_image *img, struct kv_err *err)
{
	for (unsigned i = 0; i < img->nload; i++) {
		const struct elf_load *l = &img->load[i];
		uint8_t *dst;

		if (l->paddr < PVH_KERNEL_MIN)
			return kv_errf(err, ENOEXEC, "kernel segment at 0x%" PRIx64
				       " is below 1 MiB", l->paddr);
		dst = mem_gpa_to_hva(mem, l->paddr, l->memsz);
		if (!dst)
			return kv_errf(err, ENOEXEC, "kernel segment 0x%" PRIx64 "+0x%" PRIx64
				       " does not fit in guest RAM (%" PRIu64 " MiB)",
				       l->paddr, l->memsz, mem->size >> 20);
		memcpy(dst, kernel + l->offset, l->filesz);
		memset(dst + l->filesz, 0, l->memsz - l->filesz);
		mem_mark_dirty(mem, l->paddr, l->memsz);
	}
	return 0;
}

int pvh_load(struct guest_mem *mem, const uint8_t *kernel, size_t ksize,
	     const uint8_t *initrd, size_t isize, const char *cmdline,
	     struct pvh_boot *out, struct kv_err *err)
{
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	struct hvm_start_info si;
	struct elf_image img;
	size_t cmdlen = cmdline ? strlen(cmdline) : 0;
	int r, nmap;

	memset(out, 0, sizeof(*out));
	r = elf_parse(kernel, ksize, &img, err);
	if (r)
		return kv_err_prefix(err, r, "kernel");
	if (!img.has_pvh)
		return kv_errf(err, ENOEXEC, "kernel has no PVH entry note "
			       "(XEN_ELFNOTE_PHYS32_ENTRY); is it built with CONFIG_PVH?");
	if (cmdlen >= PVH_CMDLINE_MAX)
		return kv_errf(err, E2BIG, "command line is %zu bytes; the limit is %d",
			       cmdlen, PVH_CMDLINE_MAX - 1);
	r = load_segments(mem, kernel, &img, err);
	if (r)
		return r;
	out->entry = img.pvh_entry;
	out->kernel_start = img.lowest;
	out->kernel_end = img.highest;

	nmap = pvh_build_memmap(mem, map, PVH_MAX_MEMMAP, err);
	if (nmap < 0)
		return nmap;

	memset(&si, 0, sizeof(si));
	si.magic = HVM_START_MAGIC;
	si.version = 1;
	si.memmap_paddr = PVH_MEMMAP_GPA;
	si.memmap_entries = (uint32_t)nmap;
	si.cmdline_paddr = PVH_CMDLINE_GPA;

	if (initrd) {
		/* Highest page-aligned spot in low RAM that clears the kernel. */
		const struct mem_region *low = &mem->regions[0];
		uint64_t top = low->gpa + low->size;
		uint64_t gpa = isize <= top ? (top - isize) & ~(MEM_PAGE_SIZE - 1) : 0;
		struct hvm_modlist_entry mod = { 0 };

		if (!isize || isize > top || gpa < out->kernel_end || gpa < PVH_KERNEL_MIN)
			return kv_errf(err, ENOSPC, "initrd (%zu bytes) does not fit in low "
				       "RAM above the kernel", isize);
		if ((r = mem_write(mem, gpa, initrd, isize, err)))
			return r;
		mod.paddr = gpa;
		mod.size = isize;
		if ((r = mem_write(mem, PVH_MODLIST_GPA, &mod, sizeof(mod), err)))
			return r;
		si.nr_modules = 1;
		si.modlist_paddr = PVH_MODLIST_GPA;
		out->initrd_gpa = gpa;
		out->initrd_size = isize;
	}

	if ((r = mem_write(mem, PVH_CMDLINE_GPA, cmdline ? cmdline : "", cmdlen + 1, err)) ||
	    (r = mem_write(mem, PVH_MEMMAP_GPA, map, (uint64_t)nmap * sizeof(map[0]), err)) ||
	    (r = mem_write(mem, PVH_START_INFO_GPA, &si, sizeof(si), err)))
		return r;
	out->start_info = (uint32_t)PVH_START_INFO_GPA;
	return 0;
}
