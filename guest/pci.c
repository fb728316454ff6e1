/*
 * pci.c - see pci.h. Port 0xcf8 takes the address (enable bit, bus,
 * device, function, dword register), 0xcfc-0xcff the data; narrower
 * accesses use the byte lanes of the addressed dword.
 */
#include "pci.h"

#include "lib.h"
#include "x86.h"

#define CONFIG_ADDRESS 0xcf8
#define CONFIG_DATA 0xcfc
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define CMD_MEMORY 0x0002
#define CMD_MASTER 0x0004
#define CMD_INTX_DISABLE 0x0400
#define STATUS_CAP_LIST 0x0010


static void select_reg(const struct pci_fn *f, uint8_t off)
{
	outl(CONFIG_ADDRESS, 0x80000000u | (uint32_t)f->bus << 16 | (uint32_t)f->dev << 11 |
				     (uint32_t)f->fn << 8 | (off & 0xfcu));
}

uint8_t pci_read8(const struct pci_fn *f, uint8_t off)
{
	select_reg(f, off);
	return inb((uint16_t)(CONFIG_DATA + (off & 3)));
}

uint16_t pci_read16(const struct pci_fn *f, uint8_t off)
{
	select_reg(f, off);
	return inw((uint16_t)(CONFIG_DATA + (off & 2)));
}

uint32_t pci_read32(const struct pci_fn *f, uint8_t off)
{
	select_reg(f, off);
	return inl(CONFIG_DATA);
}

void pci_write16(const struct pci_fn *f, uint8_t off, uint16_t v)
{
	select_reg(f, off);
	outw((uint16_t)(CONFIG_DATA + (off & 2)), v);
}

static bool probe(struct pci_fn *f, uint8_t dev, uint8_t fn)
{
	uint32_t id;

	f->bus = 0;
	f->dev = dev;
	f->fn = fn;
	id = pci_read32(f, 0);
	if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
		return false;
	f->vendor = (uint16_t)id;
	f->device = (uint16_t)(id >> 16);
	snprintf(f->bdf, sizeof(f->bdf), "%02x:%02x.%u", f->bus, dev, fn);
	return true;
}

unsigned pci_scan(struct pci_fn *out, unsigned max)
{
	unsigned n = 0;

	for (uint8_t dev = 0; dev < 32; dev++) {
		struct pci_fn f;
		unsigned nfn;

		if (!probe(&f, dev, 0))
			continue;
		/* header type bit 7: a multi-function device */
		nfn = (pci_read8(&f, PCI_HEADER_TYPE) & 0x80) ? 8 : 1;
		if (n < max)
			out[n++] = f;
		for (uint8_t fn = 1; fn < nfn; fn++)
			if (probe(&f, dev, fn) && n < max)
				out[n++] = f;
	}
	return n;
}

enum pci_bar_status pci_bar(const struct pci_fn *f, unsigned bar, uint64_t *addr)
{
	uint32_t lo, hi = 0;

	if (bar > 5)
		return BAR_BAD;
	lo = pci_read32(f, (uint8_t)(PCI_BAR0 + 4 * bar));
	if (lo & 1)
		return BAR_IO;
	switch ((lo >> 1) & 3) {
	case 0:		/* 32-bit */
		break;
	case 2:		/* 64-bit: the next BAR holds the high half */
		if (bar == 5)
			return BAR_BAD;
		hi = pci_read32(f, (uint8_t)(PCI_BAR0 + 4 * (bar + 1)));
		break;
	default:
		return BAR_BAD;
	}
	*addr = (uint64_t)hi << 32 | (lo & ~0xfu);
	return *addr ? BAR_OK : BAR_UNASSIGNED;
}

uint8_t pci_cap_first(const struct pci_fn *f)
{
	if (!(pci_read16(f, PCI_STATUS) & STATUS_CAP_LIST))
		return 0;
	return pci_read8(f, PCI_CAP_PTR) & 0xfc;
}

uint8_t pci_cap_next(const struct pci_fn *f, uint8_t cap)
{
	/* offsets below 0x40 are the header: the end of a broken list */
	uint8_t next = pci_read8(f, (uint8_t)(cap + 1)) & 0xfc;
	return next >= 0x40 ? next : 0;
}

void pci_enable(const struct pci_fn *f)
{
	uint16_t cmd = pci_read16(f, PCI_COMMAND);

	/* 16-bit write: a dword write would also clear status bits (RW1C) */
	pci_write16(f, PCI_COMMAND, cmd | CMD_MEMORY | CMD_MASTER | CMD_INTX_DISABLE);
}
