/*
 * virtio.h - the virtio 1.x PCI transport ("modern", non-transitional)
 * and split virtqueues, polled: no interrupts, no MSI-X.
 *
 * Register accesses are VM exits, ring accesses are plain memory: drivers
 * find completions by watching used->idx in RAM and touch the device only
 * to kick a queue (and then only if the device has not set NO_NOTIFY).
 * Ring memory is guest RAM at identity addresses (guest-physical =
 * virtual), so it is part of what a migration carries.
 */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pci.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_DEV_NET 0x1041
#define VIRTIO_DEV_BLK 0x1042

#define VIRTIO_F_VERSION_1 (1ULL << 32)

/* descriptor flags */
#define VQ_DESC_F_NEXT 1
#define VQ_DESC_F_WRITE 2

#define VQ_MAX_SIZE 256
#define VQ_MEM_BYTES (3 * 4096)	/* desc table, avail ring, used ring: a page each */

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vq_avail {
	uint16_t flags, idx;
	uint16_t ring[VQ_MAX_SIZE];
};

struct vq_used_elem {
	uint32_t id, len;
};

struct vq_used {
	uint16_t flags, idx;
	struct vq_used_elem ring[VQ_MAX_SIZE];
};

struct vq {
	volatile struct vq_desc *desc;
	volatile struct vq_avail *avail;
	volatile struct vq_used *used;
	volatile uint16_t *notify;
	uint16_t index, size;
	uint16_t avail_idx;	/* our copy of avail->idx */
	uint16_t last_used;	/* used entries consumed */
	bool kick_pending;	/* published since the last kick */
};

struct virtio_dev {
	struct pci_fn pci;
	volatile uint8_t *common, *notify, *devcfg;
	uint32_t notify_len, notify_mult, devcfg_len;
	uint64_t features;	/* negotiated */
};

/*
 * Find the common/notify/device configuration structures, map them,
 * enable the function. false: `why` says what is missing.
 */
bool virtio_probe(const struct pci_fn *f, struct virtio_dev *d, char *why, size_t whylen);

/*
 * Reset, ACKNOWLEDGE, DRIVER, negotiate (VERSION_1 is required, the rest
 * of `wanted` is taken where offered), FEATURES_OK, check it stuck.
 */
bool virtio_negotiate(struct virtio_dev *d, uint64_t wanted, char *why, size_t whylen);

/* Set up queue `index` in `mem` (VQ_MEM_BYTES, page aligned), at most max entries. */
bool virtio_vq_setup(struct virtio_dev *d, struct vq *q, uint16_t index, void *mem,
		     uint16_t max, char *why, size_t whylen);

void virtio_driver_ok(struct virtio_dev *d);
/* The device status register (DEVICE_NEEDS_RESET is 0x40). One exit. */
uint8_t virtio_status(struct virtio_dev *d);
void virtio_fail(struct virtio_dev *d);	/* FAILED: the driver gave up */

/* Device-specific configuration (0 past its end). */
uint8_t virtio_cfg_gen(struct virtio_dev *d);
uint8_t virtio_cfg8(struct virtio_dev *d, uint32_t off);
uint16_t virtio_cfg16(struct virtio_dev *d, uint32_t off);
uint32_t virtio_cfg32(struct virtio_dev *d, uint32_t off);

/* ---- split virtqueue, driver side (memory only, but vq_kick) ---- */

static inline void vq_set_desc(struct vq *q, uint16_t i, const void *buf, uint32_t len,
			       uint16_t flags, uint16_t next)
{
	q->desc[i].addr = (uint64_t)(uintptr_t)buf;
	q->desc[i].len = len;
	q->desc[i].flags = flags;
	q->desc[i].next = next;
}

/* Make the chain starting at descriptor `head` available. */
void vq_submit(struct vq *q, uint16_t head);
/* Notify the device if anything was submitted and it wants notifications. */
void vq_kick(struct vq *q);
/* Used entries not consumed yet (more than q->size means a broken device). */
static inline uint16_t vq_used_ready(const struct vq *q)
{
	return (uint16_t)(q->used->idx - q->last_used);
}
/* Consume the next used entry (only after vq_used_ready() said there is one). */
struct vq_used_elem vq_used_take(struct vq *q);

#endif
