/* emulate.c's pure parts: which instructions it finishes, the advice it
 * gives for the others, and gva.c's page walk against hostile tables. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/emulate.h"

#define B(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static void test_classify(void **state)
{
	assert_int_equal(emu_classify(B(0xcc)), EMU_INSN_INT3);
	assert_int_equal(emu_classify(B(0xcc, 0x90)), EMU_INSN_INT3);
	assert_int_equal(emu_classify(B(0x9b)), EMU_INSN_FWAIT);
	assert_int_equal(emu_classify(B(0x9b, 0xdb, 0xe3)), EMU_INSN_FWAIT);	/* fwait; fninit */
	assert_int_equal(emu_classify(B(0xcd, 0x03)), EMU_INSN_OTHER);	/* int $3 is not int3 */
	assert_int_equal(emu_classify(B(0x66, 0xcc)), EMU_INSN_OTHER);
	assert_int_equal(emu_classify(B(0x48, 0x0f, 0xc7, 0x0e)), EMU_INSN_OTHER);
	assert_int_equal(emu_classify(NULL, 0), EMU_INSN_OTHER);
}

static void hint_has(const uint8_t *b, unsigned n, const char *needle)
{
	const char *h = emu_hint(b, n);

	if (!needle) {
		if (h)
			fail_msg("unexpected hint '%s'", h);
		return;
	}
	if (!h || !strstr(h, needle))
		fail_msg("hint '%s' does not mention '%s'", h ? h : "(none)", needle);
}

static void test_hints(void **state)
{
	hint_has(B(0x48, 0x0f, 0xc7, 0x0e), "clearcpuid=cx16");	/* cmpxchg16b (%rsi) */
	hint_has(B(0xf0, 0x48, 0x0f, 0xc7, 0x0f), "clearcpuid=cx16");	/* lock prefix */
	hint_has(B(0x0f, 0xc7, 0x0e), "cmpxchg8b");
	hint_has(B(0x48, 0x0f, 0xae, 0x2f), "noxsave");		/* xrstor64 (%rdi) */
	hint_has(B(0x48, 0x0f, 0xc7, 0x1f), "noxsave");		/* xrstors64 (%rdi) */
	hint_has(B(0x0f, 0x01, 0xca), "clearcpuid=smap");		/* clac */
	hint_has(B(0x0f, 0x01, 0xcb), "clearcpuid=smap");		/* stac */
	hint_has(B(0xf3, 0x48, 0x0f, 0xb8, 0xc7), "clearcpuid=popcnt");
	hint_has(B(0x48, 0x0f, 0xb8, 0xc7), NULL);			/* no F3: not popcnt */
	hint_has(B(0x0f, 0x0b), "ud2");
	hint_has(B(0x48, 0xcf), "iret");
	hint_has(B(0xcc), "int3");
	hint_has(B(0x90), NULL);
	hint_has(B(0x0f), NULL);				/* truncated */
	hint_has(B(0xf3, 0xf3, 0xf3), NULL);			/* prefixes only */
	hint_has(B(0x0f, 0xae, 0xf0), NULL);			/* mfence-like, reg 6 mod 3 */
	hint_has(B(0x0f, 0xae, 0x54, 0x24, 0x04), "ldmxcsr");	/* kernel_fpu_begin_mask() */
	hint_has(B(0xdb, 0xe3), "fninit");
	hint_has(B(0xc5, 0xf9, 0x6f, 0x06), "AVX");
}

static void test_format(void **state)
{
	const uint8_t b[15] = { 0x0f, 0xae, 0x54, 0x24, 0x04, 0xff, 0, 1, 2, 3, 4, 5, 6, 7, 0xab };
	char out[EMU_BYTES_STR];
	char small[9];

	emu_format_bytes(b, 5, out, sizeof(out));
	assert_string_equal(out, "0f ae 54 24 04");
	emu_format_bytes(b, 15, out, sizeof(out));
	assert_string_equal(out, "0f ae 54 24 04 ff 00 01 02 03 04 05 06 07 ab");
	emu_format_bytes(b, 0, out, sizeof(out));
	assert_string_equal(out, "");
	emu_format_bytes(b, 15, small, sizeof(small));	/* whole bytes only */
	assert_string_equal(small, "0f ae 54");
}

/* Page tables in a 16 MiB guest: PML4 0x1000, PDPT 0x2000, PD 0x3000,
 * PT 0x4000.  gva 0xffffffff81000000 -> 4K pages at 0x100000.. */
#define GVA_4K 0xffffffff81000000ULL
#define GVA_2M 0xffffffff81200000ULL
#define GVA_1G 0x0000004000000000ULL	/* PML4 0, PDPT 256: a 1 GiB page at 0 */

static void wpte(struct guest_mem *m, uint64_t gpa, uint64_t v)
{
	struct kv_err err;

	assert_int_equal(mem_write(m, gpa, &v, 8, &err), 0);
}

static void build(struct guest_mem *m, struct kvm_sregs *s)
{
	struct kv_err err;

	assert_int_equal(mem_init(m, 16ULL << 20, MEM_BACKEND_MEMFD, &err), 0);
	memset(s, 0, sizeof(*s));
	s->cr0 = 0x80000011;
	s->cr4 = 0x20;
	s->efer = 0x500;
	s->cr3 = 0x1000;
	s->cs.l = 1;
	wpte(m, 0x1000 + 8 * 511, 0x2000 | 3);		/* PML4[511] */
	wpte(m, 0x1000 + 8 * 0, 0x5000 | 3);		/* PML4[0] */
	wpte(m, 0x5000 + 8 * 256, 0x0 | 0x83);		/* 1 GiB page at 0 */
	wpte(m, 0x2000 + 8 * 510, 0x3000 | 3);		/* PDPT[510] */
	wpte(m, 0x3000 + 8 * 8, 0x4000 | 3);		/* PD[8] -> PT */
	wpte(m, 0x3000 + 8 * 9, 0x400000 | 0x83);	/* PD[9]: 2 MiB page at 4 MiB */
	wpte(m, 0x4000 + 8 * 0, 0x100000 | 3);		/* PT[0] */
	wpte(m, 0x4000 + 8 * 1, 0x300000 | 3);		/* PT[1]: not contiguous */
	wpte(m, 0x4000 + 8 * 2, 0xfff000 | 0);		/* PT[2]: not present */
	wpte(m, 0x4000 + 8 * 3, 0x7fffffff000ULL | 3);	/* PT[3]: outside RAM */
	assert_int_equal(mem_write(m, 0x100ff8, "ABCDEFGH", 8, &err), 0);
	assert_int_equal(mem_write(m, 0x300000, "IJKLMNOP", 8, &err), 0);
	assert_int_equal(mem_write(m, 0x400123, "2M", 2, &err), 0);
	assert_int_equal(mem_write(m, 0x789, "1G", 2, &err), 0);
}

static void test_walk(void **state)
{
	struct guest_mem m;
	struct kvm_sregs s;
	uint8_t buf[16];

	build(&m, &s);
	/* across a 4K boundary onto a different physical page */
	assert_int_equal(gva_read(&m, &s, GVA_4K + 0xff8, buf, 15), 15);
	assert_memory_equal(buf, "ABCDEFGHIJKLMNO", 15);
	assert_int_equal(gva_read(&m, &s, GVA_2M + 0x123, buf, 2), 2);
	assert_memory_equal(buf, "2M", 2);
	assert_int_equal(gva_read(&m, &s, GVA_1G + 0x789, buf, 2), 2);
	assert_memory_equal(buf, "1G", 2);
	/* short read when the next page is not present; -EFAULT at once */
	assert_int_equal(gva_read(&m, &s, GVA_4K + 0x1ffc, buf, 8), 4);
	assert_int_equal(gva_read(&m, &s, GVA_4K + 0x2000, buf, 8), -EFAULT);
	/* a PTE pointing outside RAM, an unmapped PML4 slot */
	assert_int_equal(gva_read(&m, &s, GVA_4K + 0x3000, buf, 8), -EFAULT);
	assert_int_equal(gva_read(&m, &s, 0xffff800000000000ULL, buf, 8), -EFAULT);
	/* a CR3 outside RAM */
	s.cr3 = 0x7fff0000000ULL;
	assert_int_equal(gva_read(&m, &s, GVA_4K, buf, 8), -EFAULT);
	/* paging off: physical; 32-bit paging and LA57 are not walked */
	s.cr0 = 0x11;
	assert_int_equal(gva_read(&m, &s, 0x300000, buf, 8), 8);
	assert_memory_equal(buf, "IJKLMNOP", 8);
	s.cr0 = 0x80000011;
	s.cr4 = 0;
	assert_int_equal(gva_read(&m, &s, GVA_4K, buf, 8), -ENOTSUP);
	s.cr4 = 0x20 | 0x1000;
	assert_int_equal(gva_read(&m, &s, GVA_4K, buf, 8), -ENOTSUP);
	mem_destroy(&m);
}

/* A self-referencing table must not loop: the walk is 4 levels, always. */
static void test_walk_loop(void **state)
{
	struct guest_mem m;
	struct kvm_sregs s;
	uint8_t buf[8];

	build(&m, &s);
	for (unsigned i = 0; i < 512; i++)
		wpte(&m, 0x1000 + 8 * i, 0x1000 | 3);
	assert_int_equal(gva_read(&m, &s, 0x1234, buf, 8), 8);
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_hints),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_walk_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
