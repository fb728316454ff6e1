/*
 * virtqueue.h - the device side of a virtio 1.x split virtqueue.
 *
 * Everything in the rings is written by the guest and is untrusted: ring
 * addresses are re-resolved (and bounds-checked) on every use, descriptor
 * indices must be inside the ring, a chain longer than the ring is a loop,
 * every buffer must lie entirely in guest RAM, indirect descriptors are not
 * offered and so are refused.  A bad ring makes vq_pop() return -EIO with a
 * message: the device then marks itself broken (DEVICE_NEEDS_RESET); the VMM
 * never crashes and never touches memory outside the guest.
 *
 * Every byte the device writes into guest memory (buffers, the used ring) is
 * marked dirty for migration.
 */
#ifndef KVMOVE_DEVICES_VIRTQUEUE_H
#define KVMOVE_DEVICES_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct guest_mem;

#define VQ_MAX_SIZE 256
#define VQ_MAX_SEGS 64
#define VQ_MAX_CHAIN_BYTES (64u << 20)

/* Migratable per-queue state (part of the device's state table). */
struct vq_state {
	uint16_t size;		/* 0 = not set up */
	uint16_t enabled;
	uint16_t msix_vector;
	uint16_t last_avail;	/* next avail entry the device will take */
	uint16_t used_idx;	/* the device's copy of used->idx */
	uint16_t pad[3];
	uint64_t desc, avail, used;	/* guest-physical ring addresses */
};

struct vq_seg {
	uint8_t *hva;
	uint64_t gpa;
	uint32_t len;
};

/* One descriptor chain: readable (out) segments, then writable (in). */
struct vq_elem {
	uint16_t head;
	unsigned nout, nin;
	struct vq_seg out[VQ_MAX_SEGS], in[VQ_MAX_SEGS];
	uint64_t out_bytes, in_bytes;
};

/* 1 = elem filled, 0 = ring empty, -EIO = the guest broke the ring (err says how). */
int vq_pop(struct guest_mem *mem, struct vq_state *vq, struct vq_elem *elem,
	   struct kv_err *err);
/* Return a chain; written = bytes the device wrote into its in segments. */
int vq_push(struct guest_mem *mem, struct vq_state *vq, const struct vq_elem *elem,
	    uint32_t written, struct kv_err *err);
/* Does the driver want an interrupt now? (VIRTQ_AVAIL_F_NO_INTERRUPT) */
bool vq_wants_interrupt(struct guest_mem *mem, const struct vq_state *vq);

/* Copy helpers across segments; they mark what they write dirty. */
size_t vq_copy_from_out(const struct vq_elem *e, size_t skip, void *dst, size_t len);
size_t vq_copy_to_in(struct guest_mem *mem, const struct vq_elem *e, size_t skip,
		     const void *src, size_t len);

/* A queue configuration from a peer or the guest: sane? */
int vq_validate(const struct vq_state *vq, uint16_t max_size, struct kv_err *err);

#endif
