#include "boot/mptable.h"

#include <errno.h>
#include <string.h>

#include "devices/pci.h"

/* Entry types and sizes (MP spec 1.4, chapter 4). */
#define MP_PROCESSOR 0
#define MP_BUS 1
#define MP_IOAPIC 2
#define MP_IOINTR 3
#define MP_LOCALINTR 4
#define FLOAT_SIZE 16
#define HEADER_SIZE 44
#define PROC_SIZE 20
#define SMALL_SIZE 8

#define MP_SPEC_REV 4			/* 1.4 */
#define LAPIC_VERSION 0x14
#define IOAPIC_VERSION 0x11		/* what KVM's IOAPIC reports */
#define CPU_ENABLED 0x1
#define CPU_BSP 0x2
#define CPU_SIGNATURE 0x600		/* family 6; informational only */
#define CPU_FEATURES 0x201		/* FPU | APIC */

#define INT_TYPE_INT 0
#define INT_TYPE_NMI 1
#define INT_TYPE_EXTINT 3
#define IRQFLAG_CONFORMING 0x0
#define IRQFLAG_LEVEL_HIGH 0xd		/* trigger level (3 << 2) | polarity high (1) */

struct writer {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct writer *w, const void *src, size_t n)
{
	if (w->len + n <= w->cap)
		memcpy(w->p + w->len, src, n);
	w->len += n;	/* past cap: counted, not written; checked by the caller */
}

static void put8(struct writer *w, uint8_t v) { put(w, &v, 1); }
static void put16(struct writer *w, uint16_t v) { put8(w, (uint8_t)v); put8(w, (uint8_t)(v >> 8)); }
static void put32(struct writer *w, uint32_t v) { put16(w, (uint16_t)v); put16(w, (uint16_t)(v >> 16)); }

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)(0x100 - sum);
}

static void io_intr(struct writer *w, uint8_t type, uint16_t flags, uint8_t bus,
		    uint8_t bus_irq, uint8_t ioapic, uint8_t pin)
{
	put8(w, MP_IOINTR);
	put8(w, type);
	put16(w, flags);
	put8(w, bus);
	put8(w, bus_irq);
	put8(w, ioapic);
	put8(w, pin);
}

static void local_intr(struct writer *w, uint8_t type, uint8_t lint)
{
	put8(w, MP_LOCALINTR);
	put8(w, type);
	put16(w, IRQFLAG_CONFORMING);
	put8(w, MPTABLE_BUS_ISA);
	put8(w, 0);
	put8(w, 0xff);			/* every local APIC */
	put8(w, lint);
}

int mptable_build(uint8_t *buf, size_t cap, uint32_t gpa, unsigned ncpus,
		  struct kv_err *err)
{
	struct writer w = { .p = buf, .cap = cap };
	const uint8_t ioapic_id = (uint8_t)ncpus;
	size_t table;
	uint16_t count = 0;

	/* APIC ids are 8 bits here, and the IOAPIC takes the id after the CPUs. */
	if (ncpus == 0 || ncpus > 254)
		return kv_errf(err, EINVAL, "an MP table describes 1..254 CPUs, not %u", ncpus);
	if (gpa & 0xf)
		return kv_errf(err, EINVAL, "the MP floating pointer must be 16-byte aligned");

	/* Floating pointer: the configuration table follows it directly. */
	put(&w, "_MP_", 4);
	put32(&w, gpa + FLOAT_SIZE);
	put8(&w, 1);			/* length in 16-byte units */
	put8(&w, MP_SPEC_REV);
	put8(&w, 0);			/* checksum, below */
	put8(&w, 0);			/* feature 1: a configuration table exists */
	put8(&w, 0);			/* feature 2: no IMCR, virtual wire mode */
	put8(&w, 0); put8(&w, 0); put8(&w, 0);

	table = w.len;
	put(&w, "PCMP", 4);
	put16(&w, 0);			/* base table length, below */
	put8(&w, MP_SPEC_REV);
	put8(&w, 0);			/* checksum, below */
	put(&w, "KVMOVE  ", 8);
	put(&w, "KVMOVE VM   ", 12);
	put32(&w, 0);			/* no OEM table */
	put16(&w, 0);
	put16(&w, 0);			/* entry count, below */
	put32(&w, MPTABLE_LAPIC_GPA);
	put16(&w, 0);			/* no extended table */
	put8(&w, 0);
	put8(&w, 0);

	for (unsigned i = 0; i < ncpus; i++, count++) {
		put8(&w, MP_PROCESSOR);
		put8(&w, (uint8_t)i);
		put8(&w, LAPIC_VERSION);
		put8(&w, CPU_ENABLED | (i == 0 ? CPU_BSP : 0));
		put32(&w, CPU_SIGNATURE);
		put32(&w, CPU_FEATURES);
		put32(&w, 0);
		put32(&w, 0);
	}
	put8(&w, MP_BUS); put8(&w, MPTABLE_BUS_PCI); put(&w, "PCI   ", 6); count++;
	put8(&w, MP_BUS); put8(&w, MPTABLE_BUS_ISA); put(&w, "ISA   ", 6); count++;

	put8(&w, MP_IOAPIC);
	put8(&w, ioapic_id);
	put8(&w, IOAPIC_VERSION);
	put8(&w, 1);			/* enabled */
	put32(&w, MPTABLE_IOAPIC_GPA);
	count++;

	for (uint8_t irq = 0; irq < 16; irq++) {
		if (irq == 2)		/* the 8259 cascade, never a device */
			continue;
		io_intr(&w, INT_TYPE_INT, IRQFLAG_CONFORMING, MPTABLE_BUS_ISA, irq,
			ioapic_id, irq);
		count++;
	}
	for (uint8_t slot = 0; slot < MPTABLE_PCI_SLOTS; slot++, count++)
		io_intr(&w, INT_TYPE_INT, IRQFLAG_LEVEL_HIGH, MPTABLE_BUS_PCI,
			(uint8_t)(slot << 2),	/* device << 2 | INTA# */
			ioapic_id, (uint8_t)(PCI_GSI_BASE + slot % 8));

	local_intr(&w, INT_TYPE_EXTINT, 0);
	local_intr(&w, INT_TYPE_NMI, 1);
	count += 2;

	if (w.len > cap)
		return kv_errf(err, ENOSPC, "the MP table needs %zu bytes, %zu available",
			       w.len, cap);
	buf[table + 4] = (uint8_t)(w.len - table);
	buf[table + 5] = (uint8_t)((w.len - table) >> 8);
	buf[table + 34] = (uint8_t)count;
	buf[table + 35] = (uint8_t)(count >> 8);
	buf[table + 7] = checksum(buf + table, w.len - table);
	buf[10] = checksum(buf, FLOAT_SIZE);
	return (int)w.len;
}

int mptable_write(struct guest_mem *mem, unsigned ncpus, struct kv_err *err)
{
	uint8_t buf[MPTABLE_MAX_SIZE];
	int n = mptable_build(buf, sizeof(buf), (uint32_t)MPTABLE_GPA, ncpus, err);

	if (n < 0)
		return n;
	return mem_write(mem, MPTABLE_GPA, buf, (uint64_t)n, err);
}
