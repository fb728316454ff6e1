/*
 * vblk.h - polled virtio-blk driver (virtio 1.x over PCI): asynchronous
 * read, write and flush requests identified by tags, completions found
 * in the used ring in memory. The disk verifier (diskvfy.h) drives it.
 * CPU 0 only.
 *
 * A tag owns three descriptors (header, data, status). Tags are handed
 * out round robin, so a stale or repeated completion from a broken
 * device names a tag that is idle (or busy with a much later request)
 * and is reported, not mistaken for the current request's.
 */
#ifndef GUEST_VBLK_H
#define GUEST_VBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pci.h"

#define VBLK_MAX_TAGS 64
#define VBLK_SECTOR 512

enum vblk_op { VBLK_READ, VBLK_WRITE, VBLK_FLUSH };

/* Status byte values (VIRTIO_BLK_S_*); 0xff: the device never wrote it. */
#define VBLK_S_OK 0

struct vblk_info {
	uint64_t capacity;	/* 512-byte sectors */
	bool flush;		/* VIRTIO_BLK_F_FLUSH negotiated */
	bool read_only;		/* VIRTIO_BLK_F_RO offered */
	unsigned tags;		/* how many requests may be in flight at most */
};

/* Bring the device up. false: why says why not. */
bool vblk_init(const struct pci_fn *f, struct vblk_info *info, char *why, size_t whylen);

/* Queue a request (buf/len unused for a flush). Returns its tag, or -1 if none is free. */
int vblk_submit(enum vblk_op op, uint64_t sector, void *buf, uint32_t len);

/* The device status register, for diagnostics (one exit). */
uint8_t vblk_device_status(void);

/* Notify the device of everything submitted (if it wants notifications). */
void vblk_kick(void);

enum vblk_event {
	VBLK_NONE,	/* nothing completed */
	VBLK_DONE,	/* tag completed with status */
	VBLK_BOGUS,	/* a used entry that is not a request in flight (id) */
};

struct vblk_done {
	int tag;
	uint8_t status;
	uint32_t id, len;	/* the used entry */
};

/* The next completion, if any. */
enum vblk_event vblk_next(struct vblk_done *d);

#endif
