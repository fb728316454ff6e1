/*
 * pci.h - a PCI host bridge on bus 0: configuration mechanism #1 (ports
 * 0xcf8/0xcfc), 32 slots, memory BARs placed in the MMIO window below the
 * IOAPIC, capability lists.  Devices own a struct pci_dev (their config
 * space and BAR handlers); the bridge dispatches config cycles and BAR
 * accesses to them and knows nothing else about them.
 */
#ifndef KVMOVE_DEVICES_PCI_H
#define KVMOVE_DEVICES_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "devices/device.h"

#define PCI_CONFIG_ADDR 0xcf8
#define PCI_CONFIG_PORTS 8
#define PCI_MMIO_BASE 0xC0000000ULL	/* the hole starts here (core/mem.h) */
#define PCI_MMIO_END 0xFEC00000ULL	/* IOAPIC above */
#define PCI_MAX_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_CFG_SIZE 256
#define PCI_GSI_BASE 16			/* INTx of slot s -> GSI 16 + s % 8 */

struct pci_dev;

typedef void (*pci_bar_fn)(struct pci_dev *pd, unsigned bar, uint64_t off, bool is_write,
			   uint8_t *data, unsigned size);

struct pci_bar {
	uint32_t size;		/* power of two >= 4096; 0 = no BAR */
	pci_bar_fn access;
};

struct pci_dev {
	uint8_t *cfg;			/* config space, PCI_CFG_SIZE bytes, kept in
					 * the owner's migratable state */
	uint8_t wmask[PCI_CFG_SIZE];	/* which bits the guest may write */
	/* The config space as built and placed on the bus (pci_host_add()):
	 * what a restored one must match outside wmask.  Not cfg itself: a
	 * load overwrites cfg before it is checked. */
	uint8_t built[PCI_CFG_SIZE];
	struct pci_bar bars[PCI_NUM_BARS];
	unsigned slot;
	uint8_t next_cap;		/* where the next capability goes */
	struct vm *vm;
	void *owner;			/* the device embedding this */
	/* optional: after the guest wrote config space (e.g. MSI-X enable) */
	void (*cfg_written)(struct pci_dev *pd, unsigned off, unsigned size);
};

struct pci_host;

int pci_host_create(struct pci_host **out, struct vm *vm, struct kv_err *err);
struct device *pci_host_device(struct pci_host *h);

/* Set up a type-0 header in cfg (PCI_CFG_SIZE bytes of the owner's state);
 * the caller then adds BARs and capabilities. */
void pci_dev_init(struct pci_dev *pd, uint8_t *cfg, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint16_t subsys_vendor, uint16_t subsys_id);
/* Declare a 32-bit memory BAR; pci_host_add() gives it an address. */
void pci_dev_add_bar(struct pci_dev *pd, unsigned bar, uint32_t size, pci_bar_fn fn);
/* Reserve a capability of len bytes with id; returns its offset (0 = full). */
uint8_t pci_dev_add_cap(struct pci_dev *pd, uint8_t id, uint8_t len);
/* Plug into the next free slot (or -ENOSPC), placing its BARs. */
int pci_host_add(struct pci_host *h, struct pci_dev *pd, struct kv_err *err);

/* Level of INTx pin A. */
void pci_set_irq(struct pci_dev *pd, int level);
/* Guest-physical address of a BAR as programmed now (0 if unset). */
uint64_t pci_bar_addr(const struct pci_dev *pd, unsigned bar);
/* Restored config space: only the bits the guest can write (and the
 * interrupt status the device sets) may differ from the device as built:
 * ids, header type, capability list, BAR sizes are ours, not the stream's. */
int pci_dev_validate_cfg(const struct pci_dev *pd, const uint8_t *cfg, struct kv_err *err);

static inline uint16_t pci_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pci_get32(const uint8_t *p) { return pci_get16(p) | (uint32_t)pci_get16(p + 2) << 16; }
static inline void pci_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void pci_put32(uint8_t *p, uint32_t v) { pci_put16(p, (uint16_t)v); pci_put16(p + 2, (uint16_t)(v >> 16)); }

#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS 0x06
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_STATUS_INTERRUPT 0x08
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11

#endif
