/* The MP table read back the way Linux's mpparse reads it: floating pointer,
 * checksums, entry order and count, CPUs, buses, IOAPIC, interrupt routes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "boot/mptable.h"
#include "devices/pci.h"

static uint16_t r16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t r32(const uint8_t *p) { return r16(p) | (uint32_t)r16(p + 2) << 16; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

struct parsed {
	unsigned cpus, bsp, buses, ioapics, ioints, lints;
	int pci_bus, isa_bus, ioapic_id;
	int isa_pin[16];		/* -1: no entry */
	int pci_pin[32];
	int lint_type[2];
};

/* Walk the table like Linux's smp_read_mpc(): fails the test on anything
 * Linux would refuse. */
static void parse(const uint8_t *b, size_t len, uint32_t gpa, struct parsed *p)
{
	const uint8_t *t, *e, *end;
	uint32_t table_gpa;
	uint16_t tlen, count;
	unsigned n = 0, last_type = 0;

	memset(p, 0, sizeof(*p));
	p->pci_bus = p->isa_bus = p->ioapic_id = -1;
	memset(p->isa_pin, 0xff, sizeof(p->isa_pin));
	memset(p->pci_pin, 0xff, sizeof(p->pci_pin));
	memset(p->lint_type, 0xff, sizeof(p->lint_type));

	assert_memory_equal(b, "_MP_", 4);
	assert_int_equal(b[8], 1);
	assert_true(b[9] == 1 || b[9] == 4);
	assert_int_equal(sum(b, 16), 0);
	assert_int_equal(b[11], 0);		/* a table, not a default config */
	table_gpa = r32(b + 4);
	assert_true(table_gpa >= gpa && table_gpa - gpa < len);
	t = b + (table_gpa - gpa);
	assert_memory_equal(t, "PCMP", 4);
	tlen = r16(t + 4);
	assert_true((size_t)(t - b) + tlen <= len);
	assert_int_equal(sum(t, tlen), 0);
	assert_int_equal(t[6], 4);
	assert_int_equal(r32(t + 36), MPTABLE_LAPIC_GPA);
	count = r16(t + 34);
	e = t + 44;
	end = t + tlen;
	while (e < end) {
		unsigned type = e[0];

		assert_true(type >= last_type);	/* entries sorted by type */
		last_type = type;
		switch (type) {
		case 0:
			p->cpus++;
			assert_int_equal(e[1], p->cpus - 1);	/* APIC id = vCPU index */
			assert_true(e[3] & 1);
			if (e[3] & 2)
				p->bsp++;
			e += 20;
			break;
		case 1:
			p->buses++;
			if (!memcmp(e + 2, "PCI   ", 6))
				p->pci_bus = e[1];
			if (!memcmp(e + 2, "ISA   ", 6))
				p->isa_bus = e[1];
			e += 8;
			break;
		case 2:
			p->ioapics++;
			p->ioapic_id = e[1];
			assert_true(e[3] & 1);
			assert_int_equal(r32(e + 4), MPTABLE_IOAPIC_GPA);
			e += 8;
			break;
		case 3:
			p->ioints++;
			assert_int_equal(e[1], 0);		/* INT */
			assert_int_equal(e[6], p->ioapic_id);
			if (e[4] == p->isa_bus) {
				assert_true(e[5] < 16);
				p->isa_pin[e[5]] = e[7];
			} else {
				assert_int_equal(e[4], p->pci_bus);
				assert_int_equal(e[5] & 3, 0);	/* INTA# */
				assert_int_equal(r16(e + 2), 0xd);	/* level, active high */
				p->pci_pin[e[5] >> 2] = e[7];
			}
			e += 8;
			break;
		case 4:
			p->lints++;
			assert_int_equal(e[6], 0xff);
			assert_true(e[7] < 2);
			p->lint_type[e[7]] = e[1];
			e += 8;
			break;
		default:
			fail_msg("unknown entry type %u", type);
		}
		n++;
	}
	assert_ptr_equal(e, end);
	assert_int_equal(n, count);
}

static void test_table(void **state)
{
	static const unsigned counts[] = { 1, 2, 8, 64 };
	uint8_t buf[MPTABLE_MAX_SIZE];
	struct kv_err err;
	struct parsed p;

	for (unsigned c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		unsigned ncpus = counts[c];
		int n = mptable_build(buf, sizeof(buf), MPTABLE_GPA, ncpus, &err);

		assert_true(n > 0);
		parse(buf, (size_t)n, MPTABLE_GPA, &p);
		assert_int_equal(p.cpus, ncpus);
		assert_int_equal(p.bsp, 1);
		assert_int_equal(p.buses, 2);
		assert_int_equal(p.ioapics, 1);
		assert_int_equal(p.ioapic_id, ncpus);
		for (int irq = 0; irq < 16; irq++)
			assert_int_equal(p.isa_pin[irq], irq == 2 ? -1 : irq);
		for (int slot = 0; slot < 32; slot++)
			assert_int_equal(p.pci_pin[slot], PCI_GSI_BASE + slot % 8);
		assert_int_equal(p.lints, 2);
		assert_int_equal(p.lint_type[0], 3);	/* ExtINT */
		assert_int_equal(p.lint_type[1], 1);	/* NMI */
	}
}

static void test_limits(void **state)
{
	uint8_t buf[MPTABLE_MAX_SIZE];
	struct kv_err err;

	assert_int_equal(mptable_build(buf, sizeof(buf), MPTABLE_GPA, 0, &err), -EINVAL);
	assert_int_equal(mptable_build(buf, sizeof(buf), MPTABLE_GPA, 255, &err), -EINVAL);
	assert_int_equal(mptable_build(buf, sizeof(buf), MPTABLE_GPA + 4, 1, &err), -EINVAL);
	assert_int_equal(mptable_build(buf, 100, MPTABLE_GPA, 2, &err), -ENOSPC);
}

static void test_write(void **state)
{
	struct guest_mem m;
	struct kv_err err;
	struct parsed p;

	assert_int_equal(mem_init(&m, 16ULL << 20, MEM_BACKEND_MEMFD, &err), 0);
	assert_int_equal(mptable_write(&m, 2, &err), 0);
	parse(mem_gpa_to_hva(&m, MPTABLE_GPA, MPTABLE_MAX_SIZE), MPTABLE_MAX_SIZE,
	      MPTABLE_GPA, &p);
	assert_int_equal(p.cpus, 2);
	assert_true(mem_test_dirty(&m, MPTABLE_GPA));
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
