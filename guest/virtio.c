/*
 * virtio.c - see virtio.h. Structure of the transport (virtio 1.x,
 * "Virtio Over PCI Bus"): vendor-specific PCI capabilities name a BAR,
 * an offset and a length for each configuration structure; the common
 * structure holds feature bits, device status and the queue registers
 * (for the queue picked by queue_select); a queue is notified by a
 * 16-bit write of its index at notify + queue_notify_off * multiplier.
 */
#include "virtio.h"

#include "lib.h"
#include "mmio.h"
#include "x86.h"

/* virtio_pci_cap.cfg_type */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4

/* struct virtio_pci_common_cfg */
#define C_DFSELECT 0x00
#define C_DF 0x04
#define C_GFSELECT 0x08
#define C_GF 0x0c
#define C_STATUS 0x14
#define C_CFGGEN 0x15
#define C_Q_SELECT 0x16
#define C_Q_SIZE 0x18
#define C_Q_ENABLE 0x1c
#define C_Q_NOFF 0x1e
#define C_Q_DESCLO 0x20
#define C_Q_DESCHI 0x24
#define C_Q_AVAILLO 0x28
#define C_Q_AVAILHI 0x2c
#define C_Q_USEDLO 0x30
#define C_Q_USEDHI 0x34
#define COMMON_LEN 0x38

/* device status */
#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_FAILED 128

#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

struct cap {
	bool found;
	uint8_t bar;
	uint32_t off, len, mult;
};

static bool failf(char *why, size_t n, const char *msg)
{
	snprintf(why, n, "%s", msg);
	return false;
}

static void read_caps(const struct pci_fn *f, struct cap caps[5])
{
	uint8_t c = pci_cap_first(f);

	for (unsigned k = 0; c && k < PCI_MAX_CAPS; k++, c = pci_cap_next(f, c)) {
		uint32_t w0 = pci_read32(f, c);	/* id, next, cap_len, cfg_type */
		uint8_t type = (uint8_t)(w0 >> 24), len = (uint8_t)(w0 >> 16);

		if ((w0 & 0xff) != PCI_CAP_ID_VNDR || type < CAP_COMMON || type > CAP_DEVICE)
			continue;
		if (caps[type].found || len < 16 || (type == CAP_NOTIFY && len < 20))
			continue;	/* the first usable one of each type wins */
		caps[type].bar = pci_read8(f, (uint8_t)(c + 4));
		caps[type].off = pci_read32(f, (uint8_t)(c + 8));
		caps[type].len = pci_read32(f, (uint8_t)(c + 12));
		caps[type].mult = type == CAP_NOTIFY ? pci_read32(f, (uint8_t)(c + 16)) : 0;
		caps[type].found = caps[type].bar <= 5;
	}
}

static volatile uint8_t *map_cap(const struct pci_fn *f, const struct cap *c, char *why,
				 size_t n)
{
	uint64_t base;
	volatile void *p;

	switch (pci_bar(f, c->bar, &base)) {
	case BAR_OK:
		break;
	case BAR_UNASSIGNED:
		failf(why, n, "BAR unassigned");
		return NULL;
	case BAR_IO:
		snprintf(why, n, "BAR%u is an I/O BAR (not supported)", c->bar);
		return NULL;
	default:
		snprintf(why, n, "BAR%u is not a memory BAR", c->bar);
		return NULL;
	}
	p = mmio_map(base + c->off, c->len);
	if (!p)
		snprintf(why, n, "cannot map BAR%u 0x%lx+0x%x", c->bar, base + c->off, c->len);
	return (volatile uint8_t *)p;
}

bool virtio_probe(const struct pci_fn *f, struct virtio_dev *d, char *why, size_t n)
{
	struct cap caps[5] = { 0 };

	memset(d, 0, sizeof(*d));
	d->pci = *f;
	read_caps(f, caps);
	if (!caps[CAP_COMMON].found || !caps[CAP_NOTIFY].found || !caps[CAP_DEVICE].found)
		return failf(why, n, "no virtio common/notify/device capability");
	if (caps[CAP_COMMON].len < COMMON_LEN)
		return failf(why, n, "virtio common configuration too short");
	if (!(d->common = map_cap(f, &caps[CAP_COMMON], why, n)) ||
	    !(d->notify = map_cap(f, &caps[CAP_NOTIFY], why, n)) ||
	    !(d->devcfg = map_cap(f, &caps[CAP_DEVICE], why, n)))
		return false;
	d->notify_len = caps[CAP_NOTIFY].len;
	d->notify_mult = caps[CAP_NOTIFY].mult;
	d->devcfg_len = caps[CAP_DEVICE].len;
	pci_enable(f);
	return true;
}

static void set_status(struct virtio_dev *d, uint8_t bits)
{
	mmio_w8(d->common + C_STATUS, (uint8_t)(mmio_r8(d->common + C_STATUS) | bits));
}

bool virtio_negotiate(struct virtio_dev *d, uint64_t wanted, char *why, size_t n)
{
	uint64_t offered;
	unsigned spins = 0;

	mmio_w8(d->common + C_STATUS, 0);	/* reset: done when it reads back 0 */
	while (mmio_r8(d->common + C_STATUS) != 0)
		if (++spins > 100000)
			return failf(why, n, "device does not finish its reset");
	set_status(d, S_ACKNOWLEDGE);
	set_status(d, S_DRIVER);
	mmio_w32(d->common + C_DFSELECT, 0);
	offered = mmio_r32(d->common + C_DF);
	mmio_w32(d->common + C_DFSELECT, 1);
	offered |= (uint64_t)mmio_r32(d->common + C_DF) << 32;
	if (!(offered & VIRTIO_F_VERSION_1)) {
		virtio_fail(d);
		return failf(why, n, "device does not offer VIRTIO_F_VERSION_1");
	}
	d->features = offered & (wanted | VIRTIO_F_VERSION_1);
	mmio_w32(d->common + C_GFSELECT, 0);
	mmio_w32(d->common + C_GF, (uint32_t)d->features);
	mmio_w32(d->common + C_GFSELECT, 1);
	mmio_w32(d->common + C_GF, (uint32_t)(d->features >> 32));
	set_status(d, S_FEATURES_OK);
	if (!(mmio_r8(d->common + C_STATUS) & S_FEATURES_OK)) {
		virtio_fail(d);
		snprintf(why, n, "features 0x%lx not accepted (FEATURES_OK did not stick)",
			 d->features);
		return false;
	}
	return true;
}

bool virtio_vq_setup(struct virtio_dev *d, struct vq *q, uint16_t index, void *mem,
		     uint16_t max, char *why, size_t n)
{
	volatile uint8_t *c = d->common;
	uint8_t *m = mem;
	uint16_t devmax, size = 1;
	uint64_t noff;

	mmio_w16(c + C_Q_SELECT, index);
	devmax = mmio_r16(c + C_Q_SIZE);
	if (!devmax) {
		snprintf(why, n, "queue %u not available", index);
		return false;
	}
	while (size * 2 <= MIN(MIN(devmax, max), VQ_MAX_SIZE))
		size *= 2;	/* split rings: a power of two */
	noff = (uint64_t)mmio_r16(c + C_Q_NOFF) * d->notify_mult;
	if (noff + 2 > d->notify_len) {
		snprintf(why, n, "queue %u notify offset 0x%lx outside the notify region", index,
			 noff);
		return false;
	}
	memset(mem, 0, VQ_MEM_BYTES);
	memset(q, 0, sizeof(*q));
	q->index = index;
	q->size = size;
	q->desc = (volatile struct vq_desc *)m;
	q->avail = (volatile struct vq_avail *)(m + 4096);
	q->used = (volatile struct vq_used *)(m + 8192);
	q->notify = (volatile uint16_t *)(d->notify + noff);
	q->avail->flags = AVAIL_F_NO_INTERRUPT;	/* we poll */
	mmio_w16(c + C_Q_SIZE, size);
	mmio_w32(c + C_Q_DESCLO, (uint32_t)(uintptr_t)q->desc);
	mmio_w32(c + C_Q_DESCHI, (uint32_t)((uintptr_t)q->desc >> 32));
	mmio_w32(c + C_Q_AVAILLO, (uint32_t)(uintptr_t)q->avail);
	mmio_w32(c + C_Q_AVAILHI, (uint32_t)((uintptr_t)q->avail >> 32));
	mmio_w32(c + C_Q_USEDLO, (uint32_t)(uintptr_t)q->used);
	mmio_w32(c + C_Q_USEDHI, (uint32_t)((uintptr_t)q->used >> 32));
	mmio_w16(c + C_Q_ENABLE, 1);
	return true;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	set_status(d, S_DRIVER_OK);
}

uint8_t virtio_status(struct virtio_dev *d)
{
	return mmio_r8(d->common + C_STATUS);
}

void virtio_fail(struct virtio_dev *d)
{
	set_status(d, S_FAILED);
}

uint8_t virtio_cfg_gen(struct virtio_dev *d)
{
	return mmio_r8(d->common + C_CFGGEN);
}

uint8_t virtio_cfg8(struct virtio_dev *d, uint32_t off)
{
	return off + 1 <= d->devcfg_len ? mmio_r8(d->devcfg + off) : 0;
}

uint16_t virtio_cfg16(struct virtio_dev *d, uint32_t off)
{
	return off + 2 <= d->devcfg_len ? mmio_r16(d->devcfg + off) : 0;
}

uint32_t virtio_cfg32(struct virtio_dev *d, uint32_t off)
{
	return off + 4 <= d->devcfg_len ? mmio_r32(d->devcfg + off) : 0;
}

void vq_submit(struct vq *q, uint16_t head)
{
	q->avail->ring[q->avail_idx & (q->size - 1)] = head;
	barrier();	/* x86 keeps stores in order; the compiler must too */
	q->avail->idx = ++q->avail_idx;
	q->kick_pending = true;
}

void vq_kick(struct vq *q)
{
	if (!q->kick_pending)
		return;
	q->kick_pending = false;
	mfence();	/* our avail->idx store before the flags load */
	if (!(q->used->flags & USED_F_NO_NOTIFY))
		mmio_w16(q->notify, q->index);
}

struct vq_used_elem vq_used_take(struct vq *q)
{
	struct vq_used_elem e;

	barrier();	/* read the entry only after the idx that covers it */
	e.id = q->used->ring[q->last_used & (q->size - 1)].id;
	e.len = q->used->ring[q->last_used & (q->size - 1)].len;
	q->last_used++;
	return e;
}
