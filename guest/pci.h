/*
 * pci.h - PCI configuration mechanism #1 (ports 0xcf8/0xcfc) on bus 0:
 * finding functions, reading memory BARs as firmware or the VMM assigned
 * them, walking capability lists, enabling memory decoding and bus
 * mastering. Each configuration access costs two port exits. CPU 0 only.
 */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_MAX_FNS 32

struct pci_fn {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	char bdf[8];		/* "bb:dd.f" */
};

#define PCI_CAP_PTR 0x34
#define PCI_CAP_ID_VNDR 0x09
#define PCI_MAX_CAPS 48		/* walk no further: a looping list must not hang us */

uint8_t pci_read8(const struct pci_fn *f, uint8_t off);
uint16_t pci_read16(const struct pci_fn *f, uint8_t off);
uint32_t pci_read32(const struct pci_fn *f, uint8_t off);
void pci_write16(const struct pci_fn *f, uint8_t off, uint16_t v);

/* Every function on bus 0 (all slots and functions); returns how many. */
unsigned pci_scan(struct pci_fn *out, unsigned max);

enum pci_bar_status { BAR_OK, BAR_UNASSIGNED, BAR_IO, BAR_BAD };
/* Base address of memory BAR `bar` (32- or 64-bit). */
enum pci_bar_status pci_bar(const struct pci_fn *f, unsigned bar, uint64_t *addr);

/* Capability list: first (0 = none) and next capability offsets. */
uint8_t pci_cap_first(const struct pci_fn *f);
uint8_t pci_cap_next(const struct pci_fn *f, uint8_t cap);

/* Command register: memory space, bus master, INTx off (we poll). */
void pci_enable(const struct pci_fn *f);

#endif
