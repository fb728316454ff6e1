/*
 * virtio_blk.h - a virtio block device backed by a raw image file.
 *
 * The image is held with an open-file-description write lock (read lock
 * for read-only disks), so two VMMs can never write it at once; a
 * migration hands the lock over (released on the source after the pause
 * and flush, taken by the destination before it resumes).  Requests are
 * served synchronously on the vCPU thread that kicked the queue, so when
 * the VM is paused no request is in flight.
 */
#ifndef KVMOVE_DEVICES_VIRTIO_BLK_H
#define KVMOVE_DEVICES_VIRTIO_BLK_H

#include <stdbool.h>

#include "common/err.h"

struct vm;
struct pci_host;
struct device;

/* take_lock: lock the image now (false on a migration destination). */
/* fd: the image already opened (it is taken over), or -1 to open path. */
int virtio_blk_create(struct device **out, struct vm *vm, struct pci_host *host,
		      const char *name, const char *path, int fd, bool readonly, bool take_lock,
		      struct kv_err *err);

#endif
