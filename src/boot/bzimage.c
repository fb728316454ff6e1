#include "boot/bzimage.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "boot/pvh.h"

/* Setup header fields (offsets in the file and in the zero page). */
#define OFF_SETUP_SECTS 0x1f1
#define OFF_SYSSIZE 0x1f4
#define OFF_BOOT_FLAG 0x1fe
#define OFF_JUMP 0x200
#define OFF_MAGIC 0x202
#define OFF_VERSION 0x206
#define OFF_TYPE_OF_LOADER 0x210
#define OFF_LOADFLAGS 0x211
#define OFF_CODE32_START 0x214
#define OFF_RAMDISK_IMAGE 0x218
#define OFF_RAMDISK_SIZE 0x21c
#define OFF_CMD_LINE_PTR 0x228
#define OFF_INITRD_ADDR_MAX 0x22c
#define OFF_KERNEL_ALIGNMENT 0x230
#define OFF_RELOCATABLE 0x234
#define OFF_XLOADFLAGS 0x236
#define OFF_CMDLINE_SIZE 0x238
#define OFF_PREF_ADDRESS 0x258
#define OFF_INIT_SIZE 0x260
#define HDR_AREA_END 0x290		/* boot_params reserves 0x1f1..0x290 for it */
#define HDR_MIN_END 0x264		/* a 2.12 header reaches at least init_size */

#define TYPE_OF_LOADER_UNDEFINED 0xff

/* Page-table entry bits. */
#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void wr64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

bool bzimage_detect(const uint8_t *buf, size_t size)
{
	return size >= OFF_MAGIC + 4 && memcmp(buf + OFF_MAGIC, "HdrS", 4) == 0;
}

int bzimage_parse(const uint8_t *buf, size_t size, struct bz_header *h,
		  struct kv_err *err)
{
	uint64_t setup_bytes;

	memset(h, 0, sizeof(*h));
	if (!bzimage_detect(buf, size))
		return kv_errf(err, ENOEXEC, "not a bzImage (no \"HdrS\" at 0x202)");
	/* The header's length is in the jump instruction at 0x200 (boot.rst:
	 * "0x0202 + byte value at offset 0x0201"); the rest of the checks need
	 * the fields up to init_size. */
	h->hdr_end = OFF_MAGIC + buf[OFF_JUMP + 1];
	if (h->hdr_end < HDR_MIN_END || h->hdr_end > HDR_AREA_END)
		return kv_errf(err, ENOEXEC, "bzImage setup header ends at 0x%x (expected "
			       "0x%x..0x%x)", h->hdr_end, HDR_MIN_END, HDR_AREA_END);
	if (size < h->hdr_end)
		return kv_errf(err, ENOEXEC, "bzImage truncated inside its setup header");
	if (rd16(buf + OFF_BOOT_FLAG) != 0xaa55)
		return kv_errf(err, ENOEXEC, "bzImage boot flag is 0x%04x, not 0xaa55",
			       rd16(buf + OFF_BOOT_FLAG));
	h->version = rd16(buf + OFF_VERSION);
	if (h->version < BZ_MIN_VERSION)
		return kv_errf(err, ENOEXEC, "boot protocol %u.%02u is too old: the 64-bit "
			       "entry needs 2.12 or later", h->version >> 8, h->version & 0xff);
	h->setup_sects = buf[OFF_SETUP_SECTS] ? buf[OFF_SETUP_SECTS] : 4;
	h->loadflags = buf[OFF_LOADFLAGS];
	h->code32_start = rd32(buf + OFF_CODE32_START);
	h->initrd_addr_max = rd32(buf + OFF_INITRD_ADDR_MAX);
	h->kernel_alignment = rd32(buf + OFF_KERNEL_ALIGNMENT);
	h->relocatable = buf[OFF_RELOCATABLE];
	h->xloadflags = rd16(buf + OFF_XLOADFLAGS);
	h->cmdline_size = rd32(buf + OFF_CMDLINE_SIZE);
	h->pref_address = rd64(buf + OFF_PREF_ADDRESS);
	h->init_size = rd32(buf + OFF_INIT_SIZE);

	if (!(h->xloadflags & BZ_XLF_KERNEL_64))
		return kv_errf(err, ENOEXEC, "bzImage has no 64-bit entry point "
			       "(XLF_KERNEL_64 not set in xloadflags)");
	if (!(h->loadflags & BZ_LOADED_HIGH))
		return kv_errf(err, ENOEXEC, "bzImage is a zImage (not LOADED_HIGH)");
	setup_bytes = ((uint64_t)h->setup_sects + 1) * 512;
	if (setup_bytes >= size)
		return kv_errf(err, ENOEXEC, "bzImage has %u setup sectors but only %zu "
			       "bytes", h->setup_sects, size);
	h->kernel_offset = setup_bytes;
	h->kernel_size = size - setup_bytes;
	if (h->kernel_size <= BZ_ENTRY64_OFFSET)
		return kv_errf(err, ENOEXEC, "bzImage protected-mode kernel is only %" PRIu64
			       " bytes", h->kernel_size);
	/* The kernel needs init_size bytes from where it decompresses to (its
	 * load address, or pref_address if that is higher), so init_size
	 * covers at least the image itself. */
	if (h->init_size < h->kernel_size)
		return kv_errf(err, ENOEXEC, "bzImage init_size 0x%x is smaller than the "
			       "kernel (0x%" PRIx64 " bytes)", h->init_size, h->kernel_size);
	if (h->pref_address >= MEM_4G)
		return kv_errf(err, ENOEXEC, "bzImage pref_address 0x%" PRIx64 " is above "
			       "4 GiB", h->pref_address);
	if (h->kernel_alignment & (h->kernel_alignment - 1))
		return kv_errf(err, ENOEXEC, "bzImage kernel_alignment 0x%x is not a power "
			       "of two", h->kernel_alignment);
	if (!h->cmdline_size)
		return kv_errf(err, ENOEXEC, "bzImage cmdline_size is 0");
	return 0;
}

static int write_e820(const struct guest_mem *mem, uint8_t *zp, struct kv_err *err)
{
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	int n = pvh_build_memmap(mem, map, PVH_MAX_MEMMAP, err);

	if (n < 0)
		return n;
	_Static_assert(PVH_MAX_MEMMAP <= BZ_E820_MAX, "e820 table fits");
	zp[BZ_E820_ENTRIES] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		uint8_t *e = zp + BZ_E820_TABLE + 20 * i;
		wr64(e, map[i].addr);
		wr64(e + 8, map[i].size);
		wr32(e + 16, map[i].type);
	}
	return 0;
}

/* Identity map of the first 4 GiB with 2 MiB pages; and the GDT. */
static int write_tables(struct guest_mem *mem, struct bz_boot *out, struct kv_err *err)
{
	static const uint64_t gdt[4] = {
		0,
		0,
		0x00af9a000000ffffULL,	/* 0x10: 64-bit code, execute/read, DPL 0 */
		0x00cf92000000ffffULL,	/* 0x18: flat 4 GiB data, read/write */
	};
	uint8_t pml4[4096] = { 0 }, pdpt[4096] = { 0 }, pd[4][4096];
	int r;

	memset(pd, 0, sizeof(pd));
	wr64(pml4, BZ_PDPT_GPA | PTE_P | PTE_RW);
	for (unsigned g = 0; g < 4; g++) {
		wr64(pdpt + 8 * g, (BZ_PD_GPA + 4096 * g) | PTE_P | PTE_RW);
		for (unsigned i = 0; i < 512; i++)
			wr64(pd[g] + 8 * i, ((uint64_t)g << 30 | (uint64_t)i << 21) |
				  PTE_P | PTE_RW | PTE_PS);
	}
	if ((r = mem_write(mem, BZ_PML4_GPA, pml4, sizeof(pml4), err)) ||
	    (r = mem_write(mem, BZ_PDPT_GPA, pdpt, sizeof(pdpt), err)) ||
	    (r = mem_write(mem, BZ_PD_GPA, pd, sizeof(pd), err)) ||
	    (r = mem_write(mem, BZ_GDT_GPA, gdt, sizeof(gdt), err)))
		return r;
	out->cr3 = BZ_PML4_GPA;
	out->gdt_base = BZ_GDT_GPA;
	out->gdt_limit = sizeof(gdt) - 1;
	return 0;
}

int bzimage_load(struct guest_mem *mem, const uint8_t *kernel, size_t ksize,
		 const uint8_t *initrd, size_t isize, const char *cmdline,
		 struct bz_boot *out, struct kv_err *err)
{
	const struct mem_region *low = &mem->regions[0];
	uint64_t low_end = low->gpa + low->size;
	size_t cmdlen = cmdline ? strlen(cmdline) : 0;
	uint8_t zp[BZ_ZERO_PAGE_SIZE];
	struct bz_header h;
	uint64_t dest;
	int r;

	memset(out, 0, sizeof(*out));
	r = bzimage_parse(kernel, ksize, &h, err);
	if (r)
		return r;
	if (cmdlen > h.cmdline_size || cmdlen >= BZ_CMDLINE_MAX)
		return kv_errf(err, E2BIG, "command line is %zu bytes; this kernel takes %u",
			       cmdlen, h.cmdline_size < BZ_CMDLINE_MAX - 1 ?
					h.cmdline_size : BZ_CMDLINE_MAX - 1);
	/* Where the kernel decompresses itself: pref_address (LOAD_PHYSICAL_ADDR)
	 * or higher; it needs init_size bytes there. */
	dest = h.pref_address > BZ_LOAD_GPA ? h.pref_address : BZ_LOAD_GPA;
	out->kernel_end = dest + h.init_size;
	if (out->kernel_end > low_end || BZ_LOAD_GPA + h.kernel_size > low_end)
		return kv_errf(err, ENOSPC, "the kernel needs RAM up to 0x%" PRIx64
			       "; the VM has %" PRIu64 " MiB below 3 GiB",
			       out->kernel_end, low_end >> 20);
	if ((r = mem_write(mem, BZ_LOAD_GPA, kernel + h.kernel_offset, h.kernel_size, err)))
		return r;

	memset(zp, 0, sizeof(zp));
	memcpy(zp + BZ_HDR_OFFSET, kernel + BZ_HDR_OFFSET, h.hdr_end - BZ_HDR_OFFSET);
	zp[OFF_TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED;
	wr32(zp + OFF_CMD_LINE_PTR, (uint32_t)BZ_CMDLINE_GPA);
	if ((r = write_e820(mem, zp, err)))
		return r;

	if (initrd) {
		/* Highest page-aligned spot below initrd_addr_max that clears the
		 * kernel's decompression area. */
		uint64_t top = low_end;
		uint64_t gpa;

		if ((uint64_t)h.initrd_addr_max + 1 < top)
			top = (uint64_t)h.initrd_addr_max + 1;
		gpa = isize <= top ? (top - isize) & ~(MEM_PAGE_SIZE - 1) : 0;
		if (!isize || isize > top || gpa < out->kernel_end)
			return kv_errf(err, ENOSPC, "initrd (%zu bytes) does not fit between the "
				       "kernel (up to 0x%" PRIx64 ") and 0x%" PRIx64, isize,
				       out->kernel_end, top);
		if ((r = mem_write(mem, gpa, initrd, isize, err)))
			return r;
		wr32(zp + OFF_RAMDISK_IMAGE, (uint32_t)gpa);
		wr32(zp + OFF_RAMDISK_SIZE, (uint32_t)isize);
		out->initrd_gpa = gpa;
		out->initrd_size = isize;
	}

	if ((r = mem_write(mem, BZ_CMDLINE_GPA, cmdline ? cmdline : "", cmdlen + 1, err)) ||
	    (r = mem_write(mem, BZ_ZERO_PAGE_GPA, zp, sizeof(zp), err)) ||
	    (r = write_tables(mem, out, err)))
		return r;
	out->entry = BZ_LOAD_GPA + BZ_ENTRY64_OFFSET;
	out->zero_page = BZ_ZERO_PAGE_GPA;
	return 0;
}
