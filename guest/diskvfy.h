/*
 * diskvfy.h - the disk verifier: keeps a pattern on the first blocks of
 * a virtio-blk disk, rewrites blocks at a set rate, re-reads and checks
 * them continuously and before each overwrite. The expected generation
 * of every block lives in guest RAM, so it migrates with the VM; a disk
 * write lost or replayed by the VMM, a stale read, or a lost or repeated
 * completion is reported. See README.md ("The disk verifier"). CPU 0 only.
 */
#ifndef GUEST_DISKVFY_H
#define GUEST_DISKVFY_H

#include <stdint.h>

#include "cmdline.h"
#include "vblk.h"

/* The device is up: choose the blocks (WARN lines) and start the format. */
void dvfy_init(const struct vblk_info *info, const struct config *cfg);

/* One bounded slice of work: completions, checks, new requests, a kick. */
void dvfy_step(uint64_t now_us);

/* DISK OK / DISK BAD line (nothing before the disk is ready, unless failing). */
void dvfy_print_stats(void);

#endif
