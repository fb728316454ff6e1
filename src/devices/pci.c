#include "devices/pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"

struct pci_host {
	struct device dev;
	pthread_mutex_t lock;	/* config address and slot table */
	uint32_t config_addr;
	struct pci_dev *slots[PCI_MAX_SLOTS];
	struct pci_dev bridge;	/* 00:00.0 */
	uint8_t bridge_cfg[PCI_CFG_SIZE];
	uint64_t next_mmio;	/* BAR placement */
};

static struct pci_host *host_of(struct device *d)
{
	return (struct pci_host *)((char *)d - offsetof(struct pci_host, dev));
}

struct device *pci_host_device(struct pci_host *h)
{
	return &h->dev;
}

void pci_dev_init(struct pci_dev *pd, uint8_t *cfg, uint16_t vendor, uint16_t device,
		  uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id)
{
	pd->cfg = cfg;
	memset(pd->cfg, 0, PCI_CFG_SIZE);
	memset(pd->wmask, 0, sizeof(pd->wmask));
	memset(pd->bars, 0, sizeof(pd->bars));
	pci_put16(pd->cfg + 0x00, vendor);
	pci_put16(pd->cfg + 0x02, device);
	pd->cfg[0x08] = 1;	/* revision: modern virtio wants >= 1 */
	pd->cfg[0x09] = (uint8_t)class_code;
	pd->cfg[0x0a] = (uint8_t)(class_code >> 8);
	pd->cfg[0x0b] = (uint8_t)(class_code >> 16);
	pd->cfg[0x0e] = 0;	/* header type 0, single function */
	pci_put16(pd->cfg + 0x2c, subsys_vendor);
	pci_put16(pd->cfg + 0x2e, subsys_id);
	/* writable: command (I/O, memory, bus master, INTx disable),
	 * interrupt line, cache line, latency */
	pci_put16(pd->wmask + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
		  PCI_COMMAND_INTX_DISABLE | 0x1);
	pd->wmask[0x0c] = 0xff;
	pd->wmask[0x0d] = 0xff;
	pd->wmask[PCI_INTERRUPT_LINE] = 0xff;
	pd->next_cap = 0x40;
}

void pci_dev_add_bar(struct pci_dev *pd, unsigned bar, uint32_t size, pci_bar_fn fn)
{
	pd->bars[bar].size = size;
	pd->bars[bar].access = fn;
	/* 32-bit, non-prefetchable memory BAR: the low 4 bits read as 0 */
	pci_put32(pd->wmask + PCI_BAR0 + 4 * bar, ~(size - 1));
}

uint8_t pci_dev_add_cap(struct pci_dev *pd, uint8_t id, uint8_t len)
{
	uint8_t off = pd->next_cap, prev;

	if (!off || off + len > PCI_CFG_SIZE)
		return 0;
	pd->cfg[off] = id;
	pd->cfg[off + 1] = 0;
	if (!pd->cfg[PCI_CAP_PTR]) {
		pd->cfg[PCI_CAP_PTR] = off;
	} else {
		for (prev = pd->cfg[PCI_CAP_PTR]; pd->cfg[prev + 1]; prev = pd->cfg[prev + 1])
			;
		pd->cfg[prev + 1] = off;
	}
	pci_put16(pd->cfg + PCI_STATUS, pci_get16(pd->cfg + PCI_STATUS) | PCI_STATUS_CAP_LIST);
	pd->next_cap = (uint8_t)((off + len + 3) & ~3);
	if (pd->next_cap < off)	/* wrapped past 255 */
		pd->next_cap = 0;
	return off;
}

uint64_t pci_bar_addr(const struct pci_dev *pd, unsigned bar)
{
	return pci_get32(pd->cfg + PCI_BAR0 + 4 * bar) & ~0xfULL;
}

void pci_set_irq(struct pci_dev *pd, int level)
{
	unsigned gsi = PCI_GSI_BASE + pd->slot % 8;
	uint16_t st = pci_get16(pd->cfg + PCI_STATUS);

	pci_put16(pd->cfg + PCI_STATUS, level ? (st | PCI_STATUS_INTERRUPT)
					      : (st & ~PCI_STATUS_INTERRUPT));
	if (pci_get16(pd->cfg + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE)
		level = 0;
	vm_irq_line(pd->vm, gsi, level);
}

int pci_dev_validate_cfg(const struct pci_dev *pd, const uint8_t *cfg, struct kv_err *err)
{
	/*
	 * Compared with pd->built, never with pd->cfg: cfg usually is pd->cfg
	 * (the config space lives in the owner's migratable state, which the
	 * load has just overwritten), and a comparison with itself once let
	 * a stream change ids and the capability list (found by fuzzing,
	 * docs/FUZZING.md).  A destination builds its devices in the source's
	 * order, so the same slot and BARs: whatever the source's guest could
	 * not write is the same here.
	 */
	for (unsigned i = 0; i < PCI_CFG_SIZE; i++) {
		uint8_t ro = (uint8_t)~pd->wmask[i];

		if (i == PCI_STATUS)
			ro &= (uint8_t)~PCI_STATUS_INTERRUPT;
		if ((cfg[i] ^ pd->built[i]) & ro)
			return kv_errf(err, EINVAL, "PCI config space byte 0x%02x is 0x%02x, this "
				       "device's is 0x%02x (bits 0x%02x are not the guest's to change)",
				       i, cfg[i], pd->built[i], ro);
	}
	return 0;
}

int pci_host_add(struct pci_host *h, struct pci_dev *pd, struct kv_err *err)
{
	unsigned slot;

	pthread_mutex_lock(&h->lock);
	for (slot = 1; slot < PCI_MAX_SLOTS && h->slots[slot]; slot++)
		;
	if (slot == PCI_MAX_SLOTS) {
		pthread_mutex_unlock(&h->lock);
		return kv_errf(err, ENOSPC, "no free PCI slot");
	}
	for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
		uint32_t sz = pd->bars[b].size;
		uint64_t a;
		if (!sz)
			continue;
		a = (h->next_mmio + sz - 1) & ~((uint64_t)sz - 1);
		if (a + sz > PCI_MMIO_END) {
			pthread_mutex_unlock(&h->lock);
			return kv_errf(err, ENOSPC, "PCI MMIO window full");
		}
		/* firmware-style: BARs come pre-assigned, memory decoding on */
		pci_put32(pd->cfg + PCI_BAR0 + 4 * b, (uint32_t)a);
		h->next_mmio = a + sz;
	}
	pci_put16(pd->cfg + PCI_COMMAND, PCI_COMMAND_MEMORY);
	pd->cfg[PCI_INTERRUPT_PIN] = 1;
	pd->cfg[PCI_INTERRUPT_LINE] = (uint8_t)(PCI_GSI_BASE + slot % 8);
	pd->slot = slot;
	pd->vm = h->dev.vm;
	memcpy(pd->built, pd->cfg, PCI_CFG_SIZE);
	h->slots[slot] = pd;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

/* ---- config mechanism #1 ---- */

static struct pci_dev *addressed(struct pci_host *h, unsigned *reg)
{
	uint32_t a = h->config_addr;
	unsigned bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;

	*reg = a & 0xfc;
	if (!(a & 0x80000000u) || bus || fn)
		return NULL;
	return h->slots[slot];
}

static void cfg_write(struct pci_dev *pd, unsigned off, const uint8_t *data, unsigned size)
{
	for (unsigned i = 0; i < size && off + i < PCI_CFG_SIZE; i++) {
		uint8_t m = pd->wmask[off + i];
		pd->cfg[off + i] = (uint8_t)((pd->cfg[off + i] & ~m) | (data[i] & m));
	}
	if (pd->cfg_written)
		pd->cfg_written(pd, off, size);
}

static void host_pio(struct device *dev, uint64_t offset, bool is_write, uint8_t *data,
		     unsigned size)
{
	struct pci_host *h = host_of(dev);
	struct pci_dev *pd;
	unsigned reg;

	pthread_mutex_lock(&h->lock);
	if (offset < 4) {
		/* CONFIG_ADDRESS: 32-bit accesses only (byte access to 0xcf9+ is
		 * the reset control register on real chipsets: ignore) */
		if (offset == 0 && size == 4) {
			if (is_write)
				h->config_addr = pci_get32(data) & 0x80fffffcu;
			else
				pci_put32(data, h->config_addr);
		} else if (!is_write) {
			memset(data, 0xff, size);
		}
		goto out;
	}
	pd = addressed(h, &reg);
	reg += (unsigned)offset - 4;
	if (!pd) {
		if (!is_write)
			memset(data, 0xff, size);
		goto out;
	}
	if (is_write)
		cfg_write(pd, reg, data, size);
	else
		for (unsigned i = 0; i < size; i++)
			data[i] = reg + i < PCI_CFG_SIZE ? pd->cfg[reg + i] : 0xff;
out:
	pthread_mutex_unlock(&h->lock);
}

/* The whole MMIO window is ours; find the BAR that decodes addr. */
static void host_mmio(struct device *dev, uint64_t offset, bool is_write, uint8_t *data,
		      unsigned size)
{
	struct pci_host *h = host_of(dev);
	uint64_t addr = PCI_MMIO_BASE + offset;

	for (unsigned s = 1; s < PCI_MAX_SLOTS; s++) {
		struct pci_dev *pd = h->slots[s];
		if (!pd || !(pci_get16(pd->cfg + PCI_COMMAND) & PCI_COMMAND_MEMORY))
			continue;
		for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
			uint64_t base = pci_bar_addr(pd, b), sz = pd->bars[b].size;
			if (sz && base && addr >= base && addr - base + size <= sz) {
				pd->bars[b].access(pd, b, addr - base, is_write, data, size);
				return;
			}
		}
	}
	if (!is_write)
		memset(data, 0xff, size);
}

static void host_destroy(struct device *dev)
{
	struct pci_host *h = host_of(dev);

	pthread_mutex_destroy(&h->lock);
	free(h);
}

static const struct dev_ops pci_host_ops = {
	.type = "pci-host",
	.pio = host_pio,
	.mmio = host_mmio,
	.destroy = host_destroy,
	/* slot devices migrate their own config space; the bridge's is constant */
};

int pci_host_create(struct pci_host **out, struct vm *vm, struct kv_err *err)
{
	struct pci_host *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return kv_errf(err, ENOMEM, "PCI host");
	h->dev.ops = &pci_host_ops;
	snprintf(h->dev.name, sizeof(h->dev.name), "pci0");
	pthread_mutex_init(&h->lock, NULL);
	h->next_mmio = PCI_MMIO_BASE;
	pci_dev_init(&h->bridge, h->bridge_cfg, 0x8086, 0x1237, 0x060000, 0, 0);	/* host bridge */
	h->slots[0] = &h->bridge;
	h->bridge.vm = vm;
	r = vm_add_device(vm, &h->dev, err);
	if (r) {
		host_destroy(&h->dev);
		return r;
	}
	if ((r = bus_register(&vm->pio_bus, PCI_CONFIG_ADDR, PCI_CONFIG_PORTS, &h->dev, err)) ||
	    (r = bus_register(&vm->mmio_bus, PCI_MMIO_BASE, PCI_MMIO_END - PCI_MMIO_BASE, &h->dev,
			      err)))
		return r;	/* the VM owns (and frees) the device now */
	*out = h;
	return 0;
}
