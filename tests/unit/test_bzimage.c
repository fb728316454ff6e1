/* bzImage setup header parsing and loading: a good image, every truncation,
 * hostile header fields, and what lands in guest memory (zero page, e820,
 * command line, initrd, page tables, GDT). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "boot/bzimage.h"
#include "boot/pvh.h"

#define SETUP_SECTS 4
#define KERNEL_OFF ((SETUP_SECTS + 1) * 512)
#define KERNEL_LEN 0x1000
#define IMG_LEN (KERNEL_OFF + KERNEL_LEN)
#define INIT_SIZE 0x400000u
#define PREF_ADDR 0x1000000ULL

static void w16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void w32(uint8_t *p, uint32_t v) { w16(p, (uint16_t)v); w16(p + 2, (uint16_t)(v >> 16)); }
static void w64(uint8_t *p, uint64_t v) { w32(p, (uint32_t)v); w32(p + 4, (uint32_t)(v >> 32)); }
static uint32_t r32(const uint8_t *p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t r64(const uint8_t *p) { return r32(p) | (uint64_t)r32(p + 4) << 32; }

/* A bzImage as Linux's build emits it (boot protocol 2.15), with a
 * recognisable protected-mode kernel. */
static uint8_t *make_image(void)
{
	uint8_t *b = calloc(1, IMG_LEN);

	assert_non_null(b);
	b[0x1f1] = SETUP_SECTS;
	w16(b + 0x1fe, 0xaa55);
	b[0x200] = 0xeb;		/* jmp short: header length in the next byte */
	b[0x201] = 0x6a;		/* header ends at 0x26c */
	memcpy(b + 0x202, "HdrS", 4);
	w16(b + 0x206, 0x020f);
	b[0x211] = 0x01;		/* LOADED_HIGH */
	w32(b + 0x214, 0x100000);
	w32(b + 0x22c, 0x7fffffff);	/* initrd_addr_max */
	w32(b + 0x230, 0x200000);	/* kernel_alignment */
	b[0x234] = 1;
	w16(b + 0x236, 0x7f);		/* xloadflags: KERNEL_64 and friends */
	w32(b + 0x238, 2047);		/* cmdline_size */
	w64(b + 0x258, PREF_ADDR);
	w32(b + 0x260, INIT_SIZE);
	for (unsigned i = 0; i < KERNEL_LEN; i++)
		b[KERNEL_OFF + i] = (uint8_t)(i * 7 + 1);
	return b;
}

static void test_parse_good(void **state)
{
	uint8_t *b = make_image();
	struct bz_header h;
	struct kv_err err;

	assert_true(bzimage_detect(b, IMG_LEN));
	assert_int_equal(bzimage_parse(b, IMG_LEN, &h, &err), 0);
	assert_int_equal(h.version, 0x020f);
	assert_int_equal(h.setup_sects, SETUP_SECTS);
	assert_int_equal(h.kernel_offset, KERNEL_OFF);
	assert_int_equal(h.kernel_size, KERNEL_LEN);
	assert_int_equal(h.hdr_end, 0x26c);
	assert_int_equal(h.init_size, INIT_SIZE);
	assert_int_equal(h.pref_address, PREF_ADDR);
	assert_int_equal(h.cmdline_size, 2047);

	b[0x1f1] = 0;			/* 0 setup sectors means 4 */
	assert_int_equal(bzimage_parse(b, IMG_LEN, &h, &err), 0);
	assert_int_equal(h.setup_sects, 4);
	free(b);
}

/* Every prefix of a valid image is refused cleanly (never read past it). */
static void test_truncation_every_offset(void **state)
{
	uint8_t *b = make_image();
	struct bz_header h;
	struct kv_err err;

	for (size_t len = 0; len <= KERNEL_OFF + BZ_ENTRY64_OFFSET; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		assert_non_null(copy);
		memcpy(copy, b, len);
		assert_int_equal(bzimage_parse(copy, len, &h, &err), -ENOEXEC);
		free(copy);
	}
	assert_false(bzimage_detect(b, 0x205));
	free(b);
}

static void expect_refused(void (*mutate)(uint8_t *b), const char *what)
{
	uint8_t *b = make_image();
	struct bz_header h;
	struct kv_err err;

	mutate(b);
	if (bzimage_parse(b, IMG_LEN, &h, &err) != -ENOEXEC)
		fail_msg("%s was accepted", what);
	free(b);
}

static void bad_magic(uint8_t *b) { b[0x205] = 'T'; }
static void bad_flag(uint8_t *b) { w16(b + 0x1fe, 0x55aa); }
static void old_version(uint8_t *b) { w16(b + 0x206, 0x020b); }
static void no_64bit(uint8_t *b) { w16(b + 0x236, 0x7e); }
static void zimage(uint8_t *b) { b[0x211] = 0; }
static void header_too_short(uint8_t *b) { b[0x201] = 0x40; }
static void header_too_long(uint8_t *b) { b[0x201] = 0xff; }
static void setup_past_end(uint8_t *b) { b[0x1f1] = 0xff; }
static void init_size_small(uint8_t *b) { w32(b + 0x260, KERNEL_LEN - 1); }
static void pref_high(uint8_t *b) { w64(b + 0x258, 1ULL << 40); }
static void align_not_pow2(uint8_t *b) { w32(b + 0x230, 0x300000); }
static void cmdline_zero(uint8_t *b) { w32(b + 0x238, 0); }

static void test_hostile(void **state)
{
	expect_refused(bad_magic, "a wrong magic");
	expect_refused(bad_flag, "a wrong boot flag");
	expect_refused(old_version, "protocol 2.11");
	expect_refused(no_64bit, "no XLF_KERNEL_64");
	expect_refused(zimage, "a zImage");
	expect_refused(header_too_short, "a header shorter than 2.12's");
	expect_refused(header_too_long, "a header past 0x290");
	expect_refused(setup_past_end, "setup sectors past the end of the file");
	expect_refused(init_size_small, "init_size smaller than the kernel");
	expect_refused(pref_high, "pref_address above 4 GiB");
	expect_refused(align_not_pow2, "kernel_alignment not a power of two");
	expect_refused(cmdline_zero, "cmdline_size 0");
}

static void test_load(void **state)
{
	uint8_t *b = make_image();
	uint8_t initrd[5000];
	struct guest_mem m;
	struct bz_boot boot;
	struct kv_err err;
	const uint8_t *zp, *pd;
	const char *cmd = "console=ttyS0 quiet";
	uint64_t low_end;

	memset(initrd, 0xab, sizeof(initrd));
	assert_int_equal(mem_init(&m, 64ULL << 20, MEM_BACKEND_MEMFD, &err), 0);
	low_end = m.regions[0].size;
	assert_int_equal(bzimage_load(&m, b, IMG_LEN, initrd, sizeof(initrd), cmd, &boot,
				      &err), 0);
	assert_int_equal(boot.entry, BZ_LOAD_GPA + 0x200);
	assert_int_equal(boot.zero_page, BZ_ZERO_PAGE_GPA);
	assert_int_equal(boot.kernel_end, PREF_ADDR + INIT_SIZE);
	/* kernel bytes at 1 MiB */
	assert_memory_equal(mem_gpa_to_hva(&m, BZ_LOAD_GPA, KERNEL_LEN), b + KERNEL_OFF,
			    KERNEL_LEN);
	/* zero page: header copied, loader type, command line, initrd, e820 */
	zp = mem_gpa_to_hva(&m, BZ_ZERO_PAGE_GPA, 4096);
	assert_memory_equal(zp + 0x202, "HdrS", 4);
	assert_int_equal(zp[0x210], 0xff);
	assert_int_equal(r32(zp + 0x228), BZ_CMDLINE_GPA);
	assert_string_equal((const char *)mem_gpa_to_hva(&m, BZ_CMDLINE_GPA, 64), cmd);
	assert_int_equal(r32(zp + 0x218), boot.initrd_gpa);
	assert_int_equal(r32(zp + 0x21c), sizeof(initrd));
	assert_true(boot.initrd_gpa >= boot.kernel_end);
	assert_true(boot.initrd_gpa + sizeof(initrd) <= low_end);
	assert_int_equal(boot.initrd_gpa % 4096, 0);
	assert_memory_equal(mem_gpa_to_hva(&m, boot.initrd_gpa, sizeof(initrd)), initrd,
			    sizeof(initrd));
	assert_int_equal(zp[0x1e8], 4);	/* RAM, EBDA, BIOS, RAM */
	assert_int_equal(r64(zp + 0x2d0 + 3 * 20), 0x100000);
	assert_int_equal(r64(zp + 0x2d0 + 3 * 20 + 8), low_end - 0x100000);
	assert_int_equal(r32(zp + 0x2d0 + 3 * 20 + 16), E820_RAM);
	assert_int_equal(r32(zp + 0x2d0 + 1 * 20 + 16), E820_RESERVED);
	/* identity map: PML4 -> PDPT -> PDs of 2 MiB pages */
	assert_int_equal(boot.cr3, BZ_PML4_GPA);
	assert_int_equal(r64(mem_gpa_to_hva(&m, BZ_PML4_GPA, 8)) & ~0xfffULL, BZ_PDPT_GPA);
	assert_int_equal(r64(mem_gpa_to_hva(&m, BZ_PDPT_GPA + 24, 8)) & ~0xfffULL,
			 BZ_PD_GPA + 3 * 4096);
	pd = mem_gpa_to_hva(&m, BZ_PD_GPA + 3 * 4096, 4096);
	assert_int_equal(r64(pd + 8 * 511), (3ULL << 30 | 511ULL << 21) | 0x83);
	/* GDT: __BOOT_CS is 64-bit code, __BOOT_DS flat data */
	assert_int_equal(boot.gdt_base, BZ_GDT_GPA);
	assert_int_equal(boot.gdt_limit, 31);
	assert_int_equal(r64(mem_gpa_to_hva(&m, BZ_GDT_GPA + BZ_BOOT_CS, 8)), 0x00af9a000000ffffULL);
	assert_int_equal(r64(mem_gpa_to_hva(&m, BZ_GDT_GPA + BZ_BOOT_DS, 8)), 0x00cf92000000ffffULL);
	/* everything the VMM wrote is dirty for migration */
	assert_true(mem_test_dirty(&m, BZ_ZERO_PAGE_GPA));
	assert_true(mem_test_dirty(&m, BZ_LOAD_GPA));
	assert_true(mem_test_dirty(&m, boot.initrd_gpa));
	assert_true(mem_test_dirty(&m, BZ_PD_GPA + 3 * 4096));
	mem_destroy(&m);
	free(b);
}

static void test_load_reject(void **state)
{
	uint8_t *b = make_image();
	char longcmd[3000];
	struct guest_mem m;
	struct bz_boot boot;
	struct kv_err err;
	static uint8_t big_initrd[48 << 20];

	memset(longcmd, 'x', sizeof(longcmd) - 1);
	longcmd[sizeof(longcmd) - 1] = 0;
	assert_int_equal(mem_init(&m, 64ULL << 20, MEM_BACKEND_MEMFD, &err), 0);
	/* longer than the kernel's cmdline_size */
	assert_int_equal(bzimage_load(&m, b, IMG_LEN, NULL, 0, longcmd, &boot, &err), -E2BIG);
	/* an initrd that would overlap the kernel's decompression area */
	assert_int_equal(bzimage_load(&m, b, IMG_LEN, big_initrd, sizeof(big_initrd), "",
				      &boot, &err), -ENOSPC);
	/* initrd_addr_max below the kernel */
	w32(b + 0x22c, 0x800000);
	assert_int_equal(bzimage_load(&m, b, IMG_LEN, big_initrd, 4096, "", &boot, &err),
			 -ENOSPC);
	mem_destroy(&m);
	/* RAM too small for init_size at pref_address */
	w32(b + 0x260, 0x2000000);
	assert_int_equal(mem_init(&m, 16ULL << 20, MEM_BACKEND_MEMFD, &err), 0);
	assert_int_equal(bzimage_load(&m, b, IMG_LEN, NULL, 0, "", &boot, &err), -ENOSPC);
	mem_destroy(&m);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_truncation_every_offset),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_reject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
