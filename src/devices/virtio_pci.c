#include "devices/virtio_pci.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"

#define BAR0_SIZE 0x4000
#define BAR1_SIZE 0x1000
#define COMMON_OFF 0x0000
#define COMMON_LEN 0x38
#define ISR_OFF 0x1000
#define DEVCFG_OFF 0x2000
#define NOTIFY_OFF 0x3000
#define NOTIFY_MULT 4
#define MSIX_PBA_OFF 0x800

enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4 };

static const struct vmstate_field virtio_fields[] = {
	VMS_ARRAY(struct virtio_state, pci_cfg, 1),
	VMS_FIELD(struct virtio_state, driver_features, 1),
	VMS_FIELD(struct virtio_state, device_feature_select, 1),
	VMS_FIELD(struct virtio_state, driver_feature_select, 1),
	VMS_FIELD(struct virtio_state, status, 1),
	VMS_FIELD(struct virtio_state, isr, 1),
	VMS_FIELD(struct virtio_state, config_generation, 1),
	VMS_FIELD(struct virtio_state, queue_select, 1),
	VMS_FIELD(struct virtio_state, msix_config, 1),
	VMS_FIELD(struct virtio_state, msix_pending, 1),
	VMS_ARRAY(struct virtio_state, msix, 1),
	VMS_BLOB(struct virtio_state, q, 1),
	VMS_ARRAY(struct virtio_state, dev, 1),
};

static int virtio_validate(const void *p, struct kv_err *err)
{
	const struct virtio_state *st = p;

	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		int r = vq_validate(&st->q[i], VQ_MAX_SIZE, err);
		if (r)
			return kv_err_prefix(err, r, "queue %u", i);
		if (st->q[i].msix_vector != VIRTIO_NO_VECTOR &&
		    st->q[i].msix_vector >= VIRTIO_MSIX_VECTORS)
			return kv_errf(err, ERANGE, "queue %u MSI-X vector %u", i,
				       st->q[i].msix_vector);
	}
	if (st->msix_config != VIRTIO_NO_VECTOR && st->msix_config >= VIRTIO_MSIX_VECTORS)
		return kv_errf(err, ERANGE, "config MSI-X vector %u", st->msix_config);
	return 0;
}

const struct vmstate_desc virtio_vmstate =
	VMS_DESC("virtio-pci", struct virtio_state, 1, virtio_fields, virtio_validate);

struct virtio_dev *virtio_from_device(struct device *dev)
{
	return (struct virtio_dev *)((char *)dev - offsetof(struct virtio_dev, dev));
}

void *virtio_state_ptr(struct device *dev)
{
	return &virtio_from_device(dev)->st;
}

int virtio_post_load(struct device *dev, struct kv_err *err)
{
	struct virtio_dev *vd = virtio_from_device(dev);

	/* the queue count is the device type's, not the stream's */
	for (unsigned i = vd->vops->nqueues; i < VIRTIO_MAX_QUEUES; i++)
		if (vd->st.q[i].size || vd->st.q[i].enabled)
			return kv_errf(err, EINVAL, "state for queue %u, the device has %u", i,
				       vd->vops->nqueues);
	return pci_dev_validate_cfg(&vd->pci, vd->st.pci_cfg, err);
}

bool virtio_driver_ok(const struct virtio_dev *vd)
{
	return (vd->st.status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vd->st.status & VIRTIO_STATUS_NEEDS_RESET);
}

static uint64_t device_features(const struct virtio_dev *vd)
{
	return vd->vops->features | VIRTIO_F_VERSION_1;
}

static bool msix_enabled(const struct virtio_dev *vd, bool *masked_all)
{
	uint8_t cap = vd->pci.cfg[PCI_CAP_PTR];	/* MSI-X is our first capability */
	uint16_t ctrl = pci_get16(vd->pci.cfg + cap + 2);

	*masked_all = ctrl & 0x4000;
	return ctrl & 0x8000;
}

static void fire_vector(struct virtio_dev *vd, uint16_t vector)
{
	const uint32_t *e;

	if (vector >= VIRTIO_MSIX_VECTORS)
		return;
	e = &vd->st.msix[vector * 4];
	bool all;
	msix_enabled(vd, &all);
	if (all || (e[3] & 1)) {
		vd->st.msix_pending |= 1u << vector;
		return;
	}
	vm_signal_msi(vd->dev.vm, (uint64_t)e[1] << 32 | e[0], e[2]);
}

static void interrupt(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	bool all;

	if (msix_enabled(vd, &all)) {
		fire_vector(vd, vector);
		return;
	}
	vd->st.isr |= isr_bit;
	pci_set_irq(&vd->pci, 1);
}

void virtio_notify_queue(struct virtio_dev *vd, unsigned q)
{
	interrupt(vd, vd->st.q[q].msix_vector, 1);
}

void virtio_notify_config(struct virtio_dev *vd)
{
	vd->st.config_generation++;
	interrupt(vd, vd->st.msix_config, 2);
}

void virtio_set_broken(struct virtio_dev *vd, const char *why)
{
	if (!vd->broken_logged)
		fprintf(stderr, "kvmove: %s: %s; the device stops until the guest resets it\n",
			vd->dev.name, why);
	vd->broken_logged = true;
	if (vd->st.status & VIRTIO_STATUS_DRIVER_OK) {
		vd->st.status |= VIRTIO_STATUS_NEEDS_RESET;
		virtio_notify_config(vd);
	}
}

void virtio_serve_queue(struct virtio_dev *vd, unsigned q, virtio_chain_fn fn)
{
	struct guest_mem *mem = &vd->dev.vm->mem;
	struct vq_state *vq = &vd->st.q[q];
	struct vq_elem *e = malloc(sizeof(*e));	/* ~2 KiB: not on a vCPU's stack */
	struct kv_err err;
	bool any = false;
	int r;

	if (!e)
		return;
	while ((r = vq_pop(mem, vq, e, &err)) == 1) {
		uint32_t written = 0;

		if ((r = fn(vd, e, &written)) < 0) {
			kv_errf(&err, -r, "unusable request on queue %u", q);
			break;
		}
		if ((r = vq_push(mem, vq, e, written, &err)) < 0)
			break;
		any = true;
	}
	if (r < 0)
		virtio_set_broken(vd, err.msg);
	if (any && vq_wants_interrupt(mem, vq))
		virtio_notify_queue(vd, q);
	free(e);
}

static void reset(struct virtio_dev *vd)
{
	struct virtio_state *st = &vd->st;

	st->status = 0;
	st->isr = 0;
	st->driver_features = 0;
	st->device_feature_select = st->driver_feature_select = 0;
	st->queue_select = 0;
	st->msix_config = VIRTIO_NO_VECTOR;
	memset(st->q, 0, sizeof(st->q));
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		st->q[i].msix_vector = VIRTIO_NO_VECTOR;
		st->q[i].size = i < vd->vops->nqueues ? vd->vops->queue_max : 0;
	}
	vd->broken_logged = false;
	pci_set_irq(&vd->pci, 0);
	if (vd->vops->reset)
		vd->vops->reset(vd);
}

/* ---- common configuration: an image of the registers, byte-addressable ---- */

static void common_image(struct virtio_dev *vd, uint8_t *img)
{
	const struct virtio_state *st = &vd->st;
	const struct vq_state *q = st->queue_select < vd->vops->nqueues ? &st->q[st->queue_select]
								      : NULL;
	uint64_t f = device_features(vd);

	memset(img, 0, COMMON_LEN);
	pci_put32(img + 0x00, st->device_feature_select);
	pci_put32(img + 0x04, st->device_feature_select == 0 ? (uint32_t)f :
			      st->device_feature_select == 1 ? (uint32_t)(f >> 32) : 0);
	pci_put32(img + 0x08, st->driver_feature_select);
	pci_put32(img + 0x0c, st->driver_feature_select == 0 ? (uint32_t)st->driver_features :
			      st->driver_feature_select == 1 ? (uint32_t)(st->driver_features >> 32) : 0);
	pci_put16(img + 0x10, st->msix_config);
	pci_put16(img + 0x12, (uint16_t)vd->vops->nqueues);
	img[0x14] = st->status;
	img[0x15] = st->config_generation;
	pci_put16(img + 0x16, st->queue_select);
	if (q) {
		pci_put16(img + 0x18, q->size);
		pci_put16(img + 0x1a, q->msix_vector);
		pci_put16(img + 0x1c, q->enabled);
		pci_put16(img + 0x1e, st->queue_select);	/* notify_off = queue index */
		pci_put32(img + 0x20, (uint32_t)q->desc);
		pci_put32(img + 0x24, (uint32_t)(q->desc >> 32));
		pci_put32(img + 0x28, (uint32_t)q->avail);
		pci_put32(img + 0x2c, (uint32_t)(q->avail >> 32));
		pci_put32(img + 0x30, (uint32_t)q->used);
		pci_put32(img + 0x34, (uint32_t)(q->used >> 32));
	}
}

static void set_status(struct virtio_dev *vd, uint8_t v)
{
	struct virtio_state *st = &vd->st;

	if (v == 0) {
		reset(vd);
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(st->status & VIRTIO_STATUS_FEATURES_OK)) {
		/* refuse features we did not offer, and legacy drivers */
		if ((st->driver_features & ~device_features(vd)) ||
		    !(st->driver_features & VIRTIO_F_VERSION_1))
			v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	st->status = (uint8_t)(v | (st->status & VIRTIO_STATUS_NEEDS_RESET));
}

static void common_write(struct virtio_dev *vd, unsigned off, const uint8_t *data,
			 unsigned size)
{
	struct virtio_state *st = &vd->st;
	uint8_t img[COMMON_LEN];
	struct vq_state *q;

	common_image(vd, img);
	memcpy(img + off, data, size);
	q = st->queue_select < vd->vops->nqueues ? &st->q[st->queue_select] : NULL;
	switch (off & ~3u) {
	case 0x00: st->device_feature_select = pci_get32(img + 0x00); break;
	case 0x08: st->driver_feature_select = pci_get32(img + 0x08); break;
	case 0x0c:
		if (st->status & VIRTIO_STATUS_FEATURES_OK)
			break;	/* frozen once accepted */
		if (st->driver_feature_select == 0)
			st->driver_features = (st->driver_features & ~0xffffffffULL) |
					      pci_get32(img + 0x0c);
		else if (st->driver_feature_select == 1)
			st->driver_features = (st->driver_features & 0xffffffffULL) |
					      (uint64_t)pci_get32(img + 0x0c) << 32;
		break;
	case 0x10:
		st->msix_config = pci_get16(img + 0x10);
		if (st->msix_config >= VIRTIO_MSIX_VECTORS)
			st->msix_config = VIRTIO_NO_VECTOR;
		break;
	case 0x14:	/* device_status (and config_generation, read-only) */
		if (off == 0x14)
			set_status(vd, img[0x14]);
		if (off <= 0x16 && off + size > 0x16)	/* a wide write reaching queue_select */
			st->queue_select = pci_get16(img + 0x16);
		break;
	case 0x18:
		if (!q || q->enabled)
			break;	/* queue setup is frozen while enabled */
		if (off < 0x1a) {
			uint16_t sz = pci_get16(img + 0x18);
			if (sz && sz <= vd->vops->queue_max && !(sz & (sz - 1)))
				q->size = sz;
		}
		if (off + size > 0x1a) {
			uint16_t v = pci_get16(img + 0x1a);
			q->msix_vector = v < VIRTIO_MSIX_VECTORS ? v : VIRTIO_NO_VECTOR;
		}
		break;
	case 0x1c:
		if (q && off == 0x1c && pci_get16(img + 0x1c) == 1 && !q->enabled) {
			struct kv_err err;
			q->enabled = 1;
			q->last_avail = q->used_idx = 0;
			if (vq_validate(q, vd->vops->queue_max, &err)) {
				q->enabled = 0;
				virtio_set_broken(vd, err.msg);
			}
		}
		break;
	case 0x20: case 0x24: case 0x28: case 0x2c: case 0x30: case 0x34:
		if (!q || q->enabled)
			break;
		q->desc = (uint64_t)pci_get32(img + 0x24) << 32 | pci_get32(img + 0x20);
		q->avail = (uint64_t)pci_get32(img + 0x2c) << 32 | pci_get32(img + 0x28);
		q->used = (uint64_t)pci_get32(img + 0x34) << 32 | pci_get32(img + 0x30);
		break;
	}
}

static void bar0_access(struct pci_dev *pd, unsigned bar, uint64_t off, bool is_write,
			uint8_t *data, unsigned size)
{
	struct virtio_dev *vd = pd->owner;

	pthread_mutex_lock(&vd->lock);
	if (off + size <= COMMON_LEN) {
		if (is_write) {
			common_write(vd, (unsigned)off, data, size);
		} else {
			uint8_t img[COMMON_LEN];
			common_image(vd, img);
			memcpy(data, img + off, size);
		}
	} else if (off >= ISR_OFF && off < ISR_OFF + 4) {
		if (!is_write) {
			memset(data, 0, size);
			data[0] = vd->st.isr;	/* reading clears and deasserts */
			vd->st.isr = 0;
			pci_set_irq(&vd->pci, 0);
		}
	} else if (off >= DEVCFG_OFF && off + size <= DEVCFG_OFF + vd->vops->cfg_size) {
		if (is_write) {
			if (vd->vops->cfg_write)
				vd->vops->cfg_write(vd, (unsigned)(off - DEVCFG_OFF), data, size);
		} else {
			vd->vops->cfg_read(vd, (unsigned)(off - DEVCFG_OFF), data, size);
		}
	} else if (off >= NOTIFY_OFF && off < NOTIFY_OFF + NOTIFY_MULT * vd->vops->nqueues) {
		unsigned q = (unsigned)(off - NOTIFY_OFF) / NOTIFY_MULT;
		if (is_write && virtio_driver_ok(vd) && vd->st.q[q].enabled)
			vd->vops->notify(vd, q);
		else if (!is_write)
			memset(data, 0, size);
	} else if (!is_write) {
		memset(data, 0, size);
	}
	pthread_mutex_unlock(&vd->lock);
}

static void bar1_access(struct pci_dev *pd, unsigned bar, uint64_t off, bool is_write,
			uint8_t *data, unsigned size)
{
	struct virtio_dev *vd = pd->owner;

	pthread_mutex_lock(&vd->lock);
	if (off + size <= VIRTIO_MSIX_VECTORS * 16 && size == 4) {
		unsigned idx = (unsigned)off / 4;
		if (is_write) {
			uint32_t was = vd->st.msix[idx];
			vd->st.msix[idx] = pci_get32(data);
			/* unmasking a vector with a pending message delivers it */
			if (idx % 4 == 3 && (was & 1) && !(vd->st.msix[idx] & 1) &&
			    (vd->st.msix_pending & (1u << (idx / 4)))) {
				vd->st.msix_pending &= ~(1u << (idx / 4));
				fire_vector(vd, (uint16_t)(idx / 4));
			}
		} else {
			pci_put32(data, vd->st.msix[idx]);
		}
	} else if (!is_write && off >= MSIX_PBA_OFF && off + size <= MSIX_PBA_OFF + 8) {
		uint64_t pba = vd->st.msix_pending;
		memcpy(data, (uint8_t *)&pba + (off - MSIX_PBA_OFF), size);
	} else if (!is_write) {
		memset(data, 0, size);
	}
	pthread_mutex_unlock(&vd->lock);
}

static void add_virtio_cap(struct pci_dev *pd, uint8_t type, uint32_t off, uint32_t len,
			   bool notify)
{
	uint8_t c = pci_dev_add_cap(pd, PCI_CAP_ID_VNDR, notify ? 20 : 16);

	pd->cfg[c + 2] = notify ? 20 : 16;	/* cap_len */
	pd->cfg[c + 3] = type;
	pd->cfg[c + 4] = 0;			/* BAR0 */
	pci_put32(pd->cfg + c + 8, off);
	pci_put32(pd->cfg + c + 12, len);
	if (notify)
		pci_put32(pd->cfg + c + 16, NOTIFY_MULT);
}

static void msix_cfg_written(struct pci_dev *pd, unsigned off, unsigned size)
{
	struct virtio_dev *vd = pd->owner;
	bool all;

	/* enabling MSI-X (or unmasking the function) flushes pending vectors */
	if (msix_enabled(vd, &all) && !all)
		for (uint16_t v = 0; v < VIRTIO_MSIX_VECTORS; v++)
			if ((vd->st.msix_pending & (1u << v)) && !(vd->st.msix[v * 4 + 3] & 1)) {
				vd->st.msix_pending &= ~(1u << v);
				fire_vector(vd, v);
			}
}

int virtio_pci_init(struct virtio_dev *vd, struct vm *vm, struct pci_host *host,
		    const char *name, const struct dev_ops *ops, const struct virtio_ops *vops,
		    struct kv_err *err)
{
	struct pci_dev *pd = &vd->pci;
	uint8_t msix;
	int r;

	vd->dev.ops = ops;
	snprintf(vd->dev.name, sizeof(vd->dev.name), "%s", name);
	vd->vops = vops;
	pthread_mutex_init(&vd->lock, NULL);
	pci_dev_init(pd, vd->st.pci_cfg, 0x1af4, (uint16_t)(0x1040 + vops->device_id),
		     vops->pci_class, 0x1af4, vops->device_id);
	pd->owner = vd;
	pd->vm = vm;	/* reset() below may touch the IRQ line */
	pd->cfg_written = msix_cfg_written;
	pci_dev_add_bar(pd, 0, BAR0_SIZE, bar0_access);
	pci_dev_add_bar(pd, 1, BAR1_SIZE, bar1_access);
	/* MSI-X first (msix_enabled() relies on it), then the virtio caps */
	msix = pci_dev_add_cap(pd, PCI_CAP_ID_MSIX, 12);
	pci_put16(pd->cfg + msix + 2, VIRTIO_MSIX_VECTORS - 1);
	pci_put16(pd->wmask + msix + 2, 0xc000);		/* enable, function mask */
	pci_put32(pd->cfg + msix + 4, 1);			/* table: BAR1 + 0 */
	pci_put32(pd->cfg + msix + 8, MSIX_PBA_OFF | 1);	/* PBA: BAR1 + 0x800 */
	add_virtio_cap(pd, CAP_COMMON, COMMON_OFF, COMMON_LEN, false);
	add_virtio_cap(pd, CAP_ISR, ISR_OFF, 4, false);
	add_virtio_cap(pd, CAP_DEVICE, DEVCFG_OFF, vops->cfg_size, false);
	add_virtio_cap(pd, CAP_NOTIFY, NOTIFY_OFF, NOTIFY_MULT * vops->nqueues, true);
	for (unsigned v = 0; v < VIRTIO_MSIX_VECTORS; v++)
		vd->st.msix[v * 4 + 3] = 1;	/* vectors start masked */
	reset(vd);
	r = vm_add_device(vm, &vd->dev, err);
	if (r)
		return r;
	return pci_host_add(host, pd, err);
}

void virtio_pci_fini(struct virtio_dev *vd)
{
	pthread_mutex_destroy(&vd->lock);
}
