/*
 * vnet.h - polled virtio-net driver (virtio 1.x over PCI) for the guest's
 * tiny IPv4 host (netproto.h): receives and answers frames, sends a
 * gratuitous ARP at start and whenever the device asks for an announce
 * (VIRTIO_NET_S_ANNOUNCE, set by a VMM after a live migration), which it
 * then acknowledges on the control queue. CPU 0 only.
 */
#ifndef GUEST_VNET_H
#define GUEST_VNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pci.h"

/* Bring the device up; prints NET <mac> ip=<ip>. false: why says why not. */
bool vnet_init(const struct pci_fn *f, const uint8_t ip[4], bool have_ip, char *why,
	       size_t whylen);

/* One bounded slice of work: completions, a few frames, the announce check. */
void vnet_poll(uint64_t now_us);

/* NET STATS line (nothing if the device is not up). */
void vnet_print_stats(void);

#endif
