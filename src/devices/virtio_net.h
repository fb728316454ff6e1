/*
 * virtio_net.h - a virtio network device backed by a TAP interface.
 *
 * Transmit runs on the vCPU thread that kicks the queue; receive on a
 * thread of the device's own, which stops writing guest memory while the
 * VM is paused (so a migration's last dirty-page pass sees everything).
 * After a migration, the destination announces the guest's MAC: RARP frames
 * sent from the host side (several rounds with backoff, like QEMU's
 * announce), and the guest is asked to announce itself where its driver
 * negotiated VIRTIO_NET_F_GUEST_ANNOUNCE.
 */
#ifndef KVMOVE_DEVICES_VIRTIO_NET_H
#define KVMOVE_DEVICES_VIRTIO_NET_H

#include <stdint.h>

#include "common/err.h"

struct vm;
struct pci_host;
struct device;

/* tapfd: a TAP fd handed over by the previous VMM on this host (a dup is
 * kept; it must be attached to the TAP named tap), or -1 to attach tap
 * here. */
int virtio_net_create(struct device **out, struct vm *vm, struct pci_host *host,
		      const char *name, const char *tap, const uint8_t mac[6], int tapfd,
		      struct kv_err *err);

/* Build one RARP announce frame for mac (60 bytes); for tests. */
void virtio_net_rarp_frame(const uint8_t mac[6], uint8_t frame[60]);

#endif
