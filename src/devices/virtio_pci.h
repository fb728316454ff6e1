/*
 * virtio_pci.h - the virtio 1.x PCI transport ("modern", non-transitional).
 *
 * BAR0 (16 KiB): common config at 0x0000, ISR at 0x1000, device config at
 * 0x2000, queue notifications at 0x3000 + 4 * queue.  BAR1 (4 KiB): MSI-X
 * table at 0x000, pending bits at 0x800.  INTx (pin A) when MSI-X is off.
 *
 * A device (virtio_blk.c, virtio_net.c) gives a struct virtio_ops and keeps
 * its own migratable bytes in st.dev[]; everything migratable lives in
 * struct virtio_state, described by one table (virtio_state_fields).
 */
#ifndef KVMOVE_DEVICES_VIRTIO_PCI_H
#define KVMOVE_DEVICES_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtqueue.h"
#include "state/vmstate.h"

#define VIRTIO_MAX_QUEUES 3
#define VIRTIO_MSIX_VECTORS 4
#define VIRTIO_NO_VECTOR 0xffff
#define VIRTIO_DEV_STATE 64

#define VIRTIO_F_VERSION_1 (1ULL << 32)

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

struct virtio_state {
	uint8_t pci_cfg[PCI_CFG_SIZE];
	uint64_t driver_features;
	uint32_t device_feature_select, driver_feature_select;
	uint8_t status, isr, config_generation, pad0;
	uint16_t queue_select, msix_config;
	uint32_t msix_pending;
	uint32_t msix[VIRTIO_MSIX_VECTORS * 4];	/* addr lo, addr hi, data, control */
	struct vq_state q[VIRTIO_MAX_QUEUES];
	uint8_t dev[VIRTIO_DEV_STATE];		/* the device type's own state */
};

struct virtio_dev;

struct virtio_ops {
	uint16_t device_id;		/* virtio id: 1 net, 2 block */
	uint32_t pci_class;
	uint64_t features;		/* offered, besides VERSION_1 */
	unsigned nqueues;
	uint16_t queue_max;
	unsigned cfg_size;
	/* all called with vd->lock held */
	void (*cfg_read)(struct virtio_dev *vd, unsigned off, uint8_t *data, unsigned size);
	void (*cfg_write)(struct virtio_dev *vd, unsigned off, const uint8_t *data,
			  unsigned size);
	void (*notify)(struct virtio_dev *vd, unsigned queue);
	void (*reset)(struct virtio_dev *vd);
};

struct virtio_dev {
	struct device dev;
	struct pci_dev pci;
	struct virtio_state st;
	const struct virtio_ops *vops;
	pthread_mutex_t lock;
	bool broken_logged;
	void *priv;			/* the device type's private data */
};

/* Initialise vd (embedded in the device) and plug it into the PCI bus. */
int virtio_pci_init(struct virtio_dev *vd, struct vm *vm, struct pci_host *host,
		    const char *name, const struct dev_ops *ops, const struct virtio_ops *vops,
		    struct kv_err *err);
void virtio_pci_fini(struct virtio_dev *vd);
struct virtio_dev *virtio_from_device(struct device *dev);

/* Interrupts: a used buffer on queue q, or a config change. Lock held. */
void virtio_notify_queue(struct virtio_dev *vd, unsigned q);
void virtio_notify_config(struct virtio_dev *vd);
/* The guest broke a ring: flag NEEDS_RESET, say so once.  Lock held. */
void virtio_set_broken(struct virtio_dev *vd, const char *why);
bool virtio_driver_ok(const struct virtio_dev *vd);

/*
 * Serve every chain the driver made available on queue q: fn handles one
 * and says how many bytes it wrote into the chain's writable part (or
 * returns a negative errno if the chain is unusable: the device is marked
 * broken).  Each chain is returned to the used ring; one interrupt at the
 * end if the driver wants it.  Lock held.
 */
typedef int (*virtio_chain_fn)(struct virtio_dev *vd, struct vq_elem *e, uint32_t *written);
void virtio_serve_queue(struct virtio_dev *vd, unsigned q, virtio_chain_fn fn);

/* Shared by every virtio device's dev_ops */
extern const struct vmstate_desc virtio_vmstate;
void *virtio_state_ptr(struct device *dev);
int virtio_post_load(struct device *dev, struct kv_err *err);

#endif
