/*
 * fuzz_bzimage - a Linux bzImage through bzimage_detect(), bzimage_parse()
 * and bzimage_load() (src/boot/bzimage.c) into a 16 MiB guest.
 *
 * Input: the file, then one byte of loader options (loader_opts.h).
 * Checks: 0 or -errno with a message; a parsed header keeps the promises
 * bzimage.h makes (a 2.12+ header of a 64-bit, loaded-high kernel with a
 * protected-mode part inside the file); a loaded kernel sits at 1 MiB with
 * its bytes, the zero page carries the file's setup header, the e820 map
 * and the command line pointer, the command line is in place, and an
 * initrd lies page-aligned between the kernel's end and initrd_addr_max.
 */
#include <errno.h>
#include <string.h>

#include "boot/bzimage.h"
#include "core/vm.h"
#include "fuzz.h"
#include "loader_opts.h"

static struct vm *vm;

static void check_header(const struct bz_header *h, size_t size)
{
	FUZZ_CHECK(h->version >= BZ_MIN_VERSION && (h->xloadflags & BZ_XLF_KERNEL_64) &&
		   (h->loadflags & BZ_LOADED_HIGH), "header accepted without its flags");
	FUZZ_CHECK(h->hdr_end <= size && h->hdr_end > BZ_HDR_OFFSET, "header ends at 0x%x of %zu",
		   h->hdr_end, size);
	FUZZ_CHECK(h->kernel_offset < size && h->kernel_size == size - h->kernel_offset &&
		   h->kernel_size > BZ_ENTRY64_OFFSET, "kernel at %llu+%llu of %zu",
		   (unsigned long long)h->kernel_offset, (unsigned long long)h->kernel_size, size);
	FUZZ_CHECK(h->init_size >= h->kernel_size && h->cmdline_size, "init/cmdline size");
}

static void check_loaded(const uint8_t *file, const struct bz_header *h, const struct bz_boot *b,
			 const struct loader_opts *o)
{
	uint64_t low_top = vm->mem.regions[0].gpa + vm->mem.regions[0].size, top;
	const uint8_t *k = mem_gpa_to_hva(&vm->mem, BZ_LOAD_GPA, h->kernel_size);
	const uint8_t *zp = mem_gpa_to_hva(&vm->mem, b->zero_page, BZ_ZERO_PAGE_SIZE);
	const char *cmd = mem_gpa_to_hva(&vm->mem, BZ_CMDLINE_GPA, BZ_CMDLINE_MAX);

	FUZZ_CHECK(b->entry == BZ_LOAD_GPA + BZ_ENTRY64_OFFSET, "entry 0x%llx",
		   (unsigned long long)b->entry);
	FUZZ_CHECK(k && !memcmp(k, file + h->kernel_offset, h->kernel_size),
		   "kernel not at 1 MiB");
	FUZZ_CHECK(b->kernel_end <= low_top, "kernel ends past low RAM");
	FUZZ_CHECK(zp && !memcmp(zp + BZ_HDR_OFFSET + 0xf, file + BZ_HDR_OFFSET + 0xf, 8),
		   "zero page without the setup header");
	FUZZ_CHECK(zp[BZ_E820_ENTRIES] >= 1 && zp[BZ_E820_ENTRIES] <= BZ_E820_MAX, "e820 entries");
	FUZZ_CHECK(cmd && !strcmp(cmd, o->cmdline ? o->cmdline : ""), "command line not in place");
	if (!o->initrd)
		return;
	top = (uint64_t)h->initrd_addr_max + 1 < low_top ? (uint64_t)h->initrd_addr_max + 1 : low_top;
	FUZZ_CHECK(b->initrd_size == o->isize && b->initrd_gpa >= b->kernel_end &&
		   b->initrd_gpa + o->isize <= top && !(b->initrd_gpa & (MEM_PAGE_SIZE - 1)),
		   "initrd at 0x%llx+%zu, kernel ends at 0x%llx, top 0x%llx",
		   (unsigned long long)b->initrd_gpa, o->isize, (unsigned long long)b->kernel_end,
		   (unsigned long long)top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bz_header h;
	struct bz_boot b;
	struct loader_opts o;
	struct kv_err err = { "" };
	int r;

	if (!vm)
		vm = fuzz_vm_new(FUZZ_MEM_SMALL, FUZZ_VM_BARE);
	if (size < 1)
		return 0;
	loader_opts(data[size - 1], &o);
	size--;

	(void)bzimage_detect(data, size);
	r = bzimage_parse(data, size, &h, &err);
	FUZZ_CHECK(r == 0 || (r == -ENOEXEC && err.msg[0]), "bzimage_parse: %d (%s)", r, err.msg);
	if (!r)
		check_header(&h, size);

	err.msg[0] = '\0';
	r = bzimage_load(&vm->mem, data, size, o.initrd, o.isize, o.cmdline, &b, &err);
	FUZZ_CHECK(r <= 0 && r > -4096 && (r == 0 || err.msg[0]), "bzimage_load: %d", r);
	if (!r)
		check_loaded(data, &h, &b, &o);
	fuzz_mem_reset(&vm->mem);
	return 0;
}
