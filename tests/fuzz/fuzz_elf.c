/*
 * fuzz_elf - an ELF kernel through elf_parse() and pvh_load() (src/boot/
 * elf.c, pvh.c) into a 16 MiB guest, as `kvmove run --kernel` does.
 *
 * Input: the file, then one byte of loader options (loader_opts.h).
 * Checks: 0 or -errno with a message; an accepted image has 1..16 load
 * segments inside the file, each no larger on disk than in memory; a
 * loaded one lands in guest RAM above 1 MiB with its file bytes where its
 * physical address says (unless a later segment overlaps it) and its
 * start info, memory map and command line in place; an initrd lies between
 * the kernel's end and the top of low RAM.
 */
#include <errno.h>
#include <string.h>

#include "boot/elf.h"
#include "boot/pvh.h"
#include "core/vm.h"
#include "fuzz.h"
#include "loader_opts.h"

static struct vm *vm;

static void check_image(const struct elf_image *img, size_t size)
{
	FUZZ_CHECK(img->nload >= 1 && img->nload <= ELF_MAX_LOAD, "%u load segments", img->nload);
	for (unsigned i = 0; i < img->nload; i++) {
		const struct elf_load *l = &img->load[i];

		FUZZ_CHECK(l->offset <= size && l->filesz <= size - l->offset,
			   "segment %u outside the file", i);
		FUZZ_CHECK(l->filesz <= l->memsz, "segment %u: file bytes > memory bytes", i);
		FUZZ_CHECK(l->paddr + l->memsz >= l->paddr, "segment %u wraps", i);
		FUZZ_CHECK(l->paddr >= img->lowest && l->paddr + l->memsz <= img->highest,
			   "segment %u outside [lowest, highest)", i);
	}
}

static bool overlapped_later(const struct elf_image *img, unsigned i)
{
	const struct elf_load *a = &img->load[i];

	for (unsigned k = i + 1; k < img->nload; k++) {
		const struct elf_load *b = &img->load[k];
		if (b->paddr < a->paddr + a->memsz && a->paddr < b->paddr + b->memsz)
			return true;
	}
	return false;
}

static void check_loaded(const struct elf_image *img, const uint8_t *file,
			 const struct pvh_boot *b, const struct loader_opts *o)
{
	const struct hvm_start_info *si;
	const char *cmd;
	uint64_t low_top = vm->mem.regions[0].gpa + vm->mem.regions[0].size;

	FUZZ_CHECK(b->entry == img->pvh_entry && b->kernel_start == img->lowest &&
		   b->kernel_end == img->highest, "boot info does not match the image");
	for (unsigned i = 0; i < img->nload; i++) {
		const struct elf_load *l = &img->load[i];
		const uint8_t *dst = mem_gpa_to_hva(&vm->mem, l->paddr, l->memsz);

		FUZZ_CHECK(l->paddr >= PVH_KERNEL_MIN && dst, "segment %u loaded outside RAM", i);
		if (!overlapped_later(img, i))
			FUZZ_CHECK(!memcmp(dst, file + l->offset, l->filesz),
				   "segment %u does not hold its file bytes", i);
		FUZZ_CHECK(mem_test_dirty(&vm->mem, l->paddr), "segment %u not marked dirty", i);
	}
	si = mem_gpa_to_hva(&vm->mem, b->start_info, sizeof(*si));
	FUZZ_CHECK(si && si->magic == HVM_START_MAGIC && si->memmap_entries >= 1 &&
		   si->memmap_entries <= PVH_MAX_MEMMAP, "start info not in place");
	cmd = mem_gpa_to_hva(&vm->mem, si->cmdline_paddr, PVH_CMDLINE_MAX);
	FUZZ_CHECK(cmd && !strcmp(cmd, o->cmdline ? o->cmdline : ""), "command line not in place");
	if (o->initrd)
		FUZZ_CHECK(b->initrd_size == o->isize && b->initrd_gpa >= b->kernel_end &&
			   b->initrd_gpa >= PVH_KERNEL_MIN && b->initrd_gpa + o->isize <= low_top &&
			   !(b->initrd_gpa & (MEM_PAGE_SIZE - 1)),
			   "initrd at 0x%llx+%zu, kernel ends at 0x%llx",
			   (unsigned long long)b->initrd_gpa, o->isize,
			   (unsigned long long)b->kernel_end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_image img;
	struct pvh_boot b;
	struct loader_opts o;
	struct kv_err err = { "" };
	int r;

	if (!vm)
		vm = fuzz_vm_new(FUZZ_MEM_SMALL, FUZZ_VM_BARE);
	if (size < 1)
		return 0;
	loader_opts(data[size - 1], &o);
	size--;

	r = elf_parse(data, size, &img, &err);
	FUZZ_CHECK(r == 0 || (r == -ENOEXEC && err.msg[0]), "elf_parse: %d (%s)", r, err.msg);
	if (!r)
		check_image(&img, size);

	err.msg[0] = '\0';
	r = pvh_load(&vm->mem, data, size, o.initrd, o.isize, o.cmdline, &b, &err);
	FUZZ_CHECK(r <= 0 && r > -4096 && (r == 0 || err.msg[0]), "pvh_load: %d", r);
	if (!r)
		check_loaded(&img, data, &b, &o);
	fuzz_mem_reset(&vm->mem);
	return 0;
}
