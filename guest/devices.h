/*
 * devices.h - the guest's PCI devices: find the virtio-net and virtio-blk
 * functions on bus 0, bring them up, and give them time in CPU 0's work
 * loop. CPU 0 only.
 */
#ifndef GUEST_DEVICES_H
#define GUEST_DEVICES_H

#include <stdint.h>

#include "cmdline.h"

/* Scan, print PCI lines, start the drivers (before READY). */
void devices_init(const struct config *cfg);

/* One bounded slice of device work (network, then disk). */
void devices_poll(uint64_t now_us);

/* NET STATS and DISK OK/BAD lines, with the VERIFY cadence. */
void devices_print_stats(void);

#endif
