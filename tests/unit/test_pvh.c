/* ELF parsing and PVH loading: good images, every truncation, hostile fields. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "boot/elf.h"
#include "boot/pvh.h"

/* A minimal ELF64: header, 2 phdrs (LOAD + NOTE), 16 code bytes, a Xen note. */
#define LOAD_PADDR 0x200000ULL
#define ENTRY 0x200000u
#define CODE_OFF 0x100
#define CODE_LEN 16
#define NOTE_OFF 0x120
#define BSS 0x3000

struct img {
	uint8_t b[0x200];
	size_t len;
};

static Elf64_Phdr *phdr(struct img *im, int i)
{
	return (Elf64_Phdr *)(im->b + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static void make_elf(struct img *im, uint32_t note_descsz)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)im->b;
	uint32_t *note = (uint32_t *)(im->b + NOTE_OFF);

	memset(im, 0, sizeof(*im));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = ENTRY;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;
	*phdr(im, 0) = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = CODE_OFF,
				     .p_paddr = LOAD_PADDR, .p_vaddr = LOAD_PADDR,
				     .p_filesz = CODE_LEN, .p_memsz = BSS };
	*phdr(im, 1) = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = NOTE_OFF,
				     .p_filesz = 12 + 4 + note_descsz };
	memset(im->b + CODE_OFF, 0x90, CODE_LEN);
	note[0] = 4;
	note[1] = note_descsz;
	note[2] = XEN_ELFNOTE_PHYS32_ENTRY;
	memcpy(&note[3], "Xen", 4);
	note[4] = ENTRY;
	note[5] = 0;
	im->len = NOTE_OFF + 12 + 4 + note_descsz;
}

static void test_parse_good(void **state)
{
	struct img im;
	struct elf_image e;
	struct kv_err err;

	make_elf(&im, 4);
	assert_int_equal(elf_parse(im.b, im.len, &e, &err), 0);
	assert_true(e.has_pvh);
	assert_int_equal(e.pvh_entry, ENTRY);
	assert_int_equal(e.nload, 1);
	assert_int_equal(e.lowest, LOAD_PADDR);
	assert_int_equal(e.highest, LOAD_PADDR + BSS);

	make_elf(&im, 8);	/* Linux's vmlinux uses an 8-byte desc */
	assert_int_equal(elf_parse(im.b, im.len, &e, &err), 0);
	assert_int_equal(e.pvh_entry, ENTRY);
}

/* Every prefix of a valid image must be rejected cleanly or parsed fully
 * within bounds (run under ASan in CI: no read past the buffer). */
static void test_truncation_every_offset(void **state)
{
	struct img im;
	struct elf_image e;
	struct kv_err err;

	make_elf(&im, 4);
	for (size_t n = 0; n < im.len; n++) {
		uint8_t *copy = malloc(n ? n : 1);	/* exact size so ASan sees overreads */
		memcpy(copy, im.b, n);
		assert_true(elf_parse(copy, n, &e, &err) < 0);
		free(copy);
	}
}

static void expect_reject(struct img *im, const char *why)
{
	struct elf_image e;
	struct kv_err err = { "" };
	int r = elf_parse(im->b, im->len, &e, &err);

	if (r >= 0)
		fail_msg("accepted hostile ELF: %s", why);
	assert_true(err.msg[0] != '\0');
}

static void test_hostile(void **state)
{
	struct img im;

	make_elf(&im, 4); im.b[0] = 0;                                   expect_reject(&im, "magic");
	make_elf(&im, 4); im.b[EI_CLASS] = 7;                            expect_reject(&im, "class");
	make_elf(&im, 4); im.b[EI_DATA] = ELFDATA2MSB;                   expect_reject(&im, "endianness");
	make_elf(&im, 4); ((Elf64_Ehdr *)im.b)->e_machine = EM_AARCH64;  expect_reject(&im, "machine");
	make_elf(&im, 4); ((Elf64_Ehdr *)im.b)->e_type = ET_REL;         expect_reject(&im, "type");
	make_elf(&im, 4); ((Elf64_Ehdr *)im.b)->e_phoff = 0x1000;        expect_reject(&im, "phoff past end");
	make_elf(&im, 4); ((Elf64_Ehdr *)im.b)->e_phoff = UINT64_MAX - 8; expect_reject(&im, "phoff wraps");
	make_elf(&im, 4); ((Elf64_Ehdr *)im.b)->e_phnum = 0xffff;        expect_reject(&im, "phnum huge");
	make_elf(&im, 4); ((Elf64_Ehdr *)im.b)->e_phnum = 0;             expect_reject(&im, "no phdrs");
	make_elf(&im, 4); ((Elf64_Ehdr *)im.b)->e_phentsize = 8;         expect_reject(&im, "phentsize");
	make_elf(&im, 4); phdr(&im, 0)->p_offset = 0x10000;              expect_reject(&im, "segment past file");
	make_elf(&im, 4); phdr(&im, 0)->p_offset = UINT64_MAX;           expect_reject(&im, "segment offset wraps");
	make_elf(&im, 4); phdr(&im, 0)->p_filesz = 0x4000;               expect_reject(&im, "filesz > memsz / past file");
	make_elf(&im, 4); phdr(&im, 0)->p_filesz = BSS + 1; phdr(&im, 0)->p_offset = 0; expect_reject(&im, "filesz > memsz");
	make_elf(&im, 4); phdr(&im, 0)->p_paddr = UINT64_MAX - 4;        expect_reject(&im, "paddr wraps");
	make_elf(&im, 4); phdr(&im, 0)->p_type = PT_NULL;                expect_reject(&im, "no load segment");
	make_elf(&im, 4); phdr(&im, 1)->p_filesz = 0x1000;               expect_reject(&im, "note segment past file");
	make_elf(&im, 4); ((uint32_t *)(im.b + NOTE_OFF))[0] = 0xfffffff0; expect_reject(&im, "note namesz huge");
	make_elf(&im, 4); ((uint32_t *)(im.b + NOTE_OFF))[1] = 0x7fffffff; expect_reject(&im, "note descsz huge");
	make_elf(&im, 8); ((uint32_t *)(im.b + NOTE_OFF))[5] = 1;        expect_reject(&im, "entry above 4G");
	make_elf(&im, 4); ((uint32_t *)(im.b + NOTE_OFF))[1] = 2; phdr(&im, 1)->p_filesz = 20; expect_reject(&im, "desc size 2");
}

static void test_pvh_load(void **state)
{
	struct guest_mem m;
	struct kv_err err;
	struct img im;
	struct pvh_boot boot;
	struct hvm_start_info si;
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	struct hvm_modlist_entry mod;
	char cmd[64];
	uint8_t initrd[5000];

	memset(initrd, 0xab, sizeof(initrd));
	make_elf(&im, 4);
	assert_int_equal(mem_init(&m, 64ULL << 20, MEM_BACKEND_MEMFD, &err), 0);
	/* stale bytes where the BSS goes must be zeroed by the loader */
	memset(mem_gpa_to_hva(&m, LOAD_PADDR, BSS), 0x55, BSS);
	assert_int_equal(pvh_load(&m, im.b, im.len, initrd, sizeof(initrd), "wss=1M hb=10",
				  &boot, &err), 0);
	assert_int_equal(boot.entry, ENTRY);
	assert_int_equal(boot.start_info, PVH_START_INFO_GPA);
	assert_int_equal(mem_read(&m, PVH_START_INFO_GPA, &si, sizeof(si), &err), 0);
	assert_int_equal(si.magic, HVM_START_MAGIC);
	assert_int_equal(si.version, 1);
	assert_int_equal(mem_read(&m, si.cmdline_paddr, cmd, sizeof(cmd), &err), 0);
	assert_string_equal(cmd, "wss=1M hb=10");
	assert_int_equal(si.memmap_entries, 4);
	assert_int_equal(mem_read(&m, si.memmap_paddr, map, sizeof(map[0]) * 4, &err), 0);
	assert_int_equal(map[3].addr, 0x100000);
	assert_int_equal(map[3].addr + map[3].size, 64ULL << 20);
	assert_int_equal(map[3].type, E820_RAM);
	assert_int_equal(si.nr_modules, 1);
	assert_int_equal(mem_read(&m, si.modlist_paddr, &mod, sizeof(mod), &err), 0);
	assert_int_equal(mod.size, sizeof(initrd));
	assert_int_equal(mod.paddr % 4096, 0);
	assert_true(mod.paddr + mod.size <= (64ULL << 20));
	assert_true(mod.paddr >= boot.kernel_end);
	assert_memory_equal(mem_gpa_to_hva(&m, mod.paddr, sizeof(initrd)), initrd, sizeof(initrd));
	/* code copied, BSS zeroed, and every page the loader wrote is dirty */
	assert_memory_equal(mem_gpa_to_hva(&m, LOAD_PADDR, CODE_LEN), im.b + CODE_OFF, CODE_LEN);
	assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&m, LOAD_PADDR + BSS - 1, 1), 0);
	assert_true(mem_test_dirty(&m, LOAD_PADDR));
	assert_true(mem_test_dirty(&m, LOAD_PADDR + BSS - 1));
	assert_true(mem_test_dirty(&m, PVH_START_INFO_GPA));
	assert_true(mem_test_dirty(&m, mod.paddr));
	mem_destroy(&m);
}

static void test_pvh_memmap_high(void **state)
{
	struct guest_mem m;
	struct kv_err err;
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	int n;

	assert_int_equal(mem_init(&m, 8ULL << 30, MEM_BACKEND_MEMFD, &err), 0);
	n = pvh_build_memmap(&m, map, PVH_MAX_MEMMAP, &err);
	assert_int_equal(n, 5);
	assert_int_equal(map[3].addr + map[3].size, MEM_HOLE_START);
	assert_int_equal(map[4].addr, MEM_4G);
	assert_int_equal(map[4].size, (8ULL << 30) - MEM_HOLE_START);
	assert_int_equal(pvh_build_memmap(&m, map, 3, &err), -ENOSPC);
	mem_destroy(&m);
}

static void test_pvh_reject(void **state)
{
	struct guest_mem m;
	struct kv_err err;
	struct img im;
	struct pvh_boot boot;
	char *longcmd = malloc(PVH_CMDLINE_MAX + 1);

	assert_int_equal(mem_init(&m, 16ULL << 20, MEM_BACKEND_MEMFD, &err), 0);
	memset(longcmd, 'x', PVH_CMDLINE_MAX);
	longcmd[PVH_CMDLINE_MAX] = 0;
	make_elf(&im, 4);
	assert_int_equal(pvh_load(&m, im.b, im.len, NULL, 0, longcmd, &boot, &err), -E2BIG);
	make_elf(&im, 4); phdr(&im, 0)->p_paddr = 0x1000;	/* would clobber boot info */
	assert_int_equal(pvh_load(&m, im.b, im.len, NULL, 0, "", &boot, &err), -ENOEXEC);
	make_elf(&im, 4); phdr(&im, 0)->p_paddr = (16ULL << 20) - 0x1000;	/* runs past 16 MiB */
	assert_int_equal(pvh_load(&m, im.b, im.len, NULL, 0, "", &boot, &err), -ENOEXEC);
	make_elf(&im, 4); phdr(&im, 0)->p_paddr = MEM_HOLE_START;
	assert_int_equal(pvh_load(&m, im.b, im.len, NULL, 0, "", &boot, &err), -ENOEXEC);
	make_elf(&im, 4); ((uint32_t *)(im.b + NOTE_OFF))[2] = 99;	/* no PVH note */
	assert_int_equal(pvh_load(&m, im.b, im.len, NULL, 0, "", &boot, &err), -ENOEXEC);
	make_elf(&im, 4);	/* initrd larger than RAM */
	assert_int_equal(pvh_load(&m, im.b, im.len, (uint8_t *)longcmd, 32ULL << 20, "", &boot, &err),
			 -ENOSPC);
	free(longcmd);
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_truncation_every_offset),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_pvh_load),
		cmocka_unit_test(test_pvh_memmap_high),
		cmocka_unit_test(test_pvh_reject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
