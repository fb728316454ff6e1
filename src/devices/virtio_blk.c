#define _GNU_SOURCE
#include "devices/virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/vm.h"
#include "devices/virtio_pci.h"

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_F_RO (1ULL << 5)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define SECTOR 512
#define REQ_HDR 16
#define ID_BYTES 20

struct vblk {
	struct virtio_dev vd;
	struct dev_blockstats st;	/* updated atomically: any vCPU thread */
	int fd;
	bool readonly, locked;
	uint64_t sectors;
	char path[256];		/* as long as struct dev_spec carries */
};

static struct vblk *vblk_of(struct virtio_dev *vd)
{
	return (struct vblk *)vd;
}

static void blk_cfg_read(struct virtio_dev *vd, unsigned off, uint8_t *data, unsigned size)
{
	uint8_t cfg[16] = { 0 };

	memcpy(cfg, &vblk_of(vd)->sectors, 8);	/* capacity, little-endian on x86 */
	memcpy(data, cfg + off, size);
}

/* Read or write the data segments of a request at byte offset pos. */
static int do_io(struct vblk *b, const struct vq_elem *e, bool write, uint64_t pos,
		 uint64_t len, struct kv_err *err)
{
	struct iovec iov[VQ_MAX_SEGS];
	int n = 0;
	uint64_t left = len, skip = write ? REQ_HDR : 0;

	/* data: after the header in out (write), before the status byte in in (read) */
	const struct vq_seg *segs = write ? e->out : e->in;
	unsigned nseg = write ? e->nout : e->nin;

	for (unsigned i = 0; i < nseg && left; i++) {
		uint64_t sl = segs[i].len, c;
		if (skip >= sl) {
			skip -= sl;
			continue;
		}
		c = sl - skip < left ? sl - skip : left;
		iov[n].iov_base = segs[i].hva + skip;
		iov[n].iov_len = c;
		n++;
		left -= c;
		skip = 0;
	}
	while (len) {
		ssize_t r = write ? pwritev(b->fd, iov, n, (off_t)pos) : preadv(b->fd, iov, n, (off_t)pos);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return kv_errf_sys(err, r < 0 ? errno : EIO, "%s", b->path);
		/* short transfer: advance the iovecs */
		pos += (uint64_t)r;
		len -= (uint64_t)r;
		while (r > 0 && n) {
			if ((size_t)r >= iov[0].iov_len) {
				r -= (ssize_t)iov[0].iov_len;
				memmove(iov, iov + 1, (size_t)--n * sizeof(iov[0]));
			} else {
				iov[0].iov_base = (uint8_t *)iov[0].iov_base + r;
				iov[0].iov_len -= (size_t)r;
				r = 0;
			}
		}
	}
	return 0;
}

/* One request; returns the status byte and bytes written into guest buffers. */
static uint8_t handle(struct vblk *b, struct vq_elem *e, uint32_t *written)
{
	uint8_t hdr[REQ_HDR];
	uint32_t type;
	uint64_t sector, len;
	struct kv_err err;

	*written = 0;
	if (vq_copy_from_out(e, 0, hdr, REQ_HDR) != REQ_HDR)
		return VIRTIO_BLK_S_IOERR;
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool wr = type == VIRTIO_BLK_T_OUT;
		len = wr ? e->out_bytes - REQ_HDR : e->in_bytes - 1;
		if (wr && b->readonly)
			return VIRTIO_BLK_S_IOERR;
		if (len % SECTOR || sector > b->sectors || len / SECTOR > b->sectors - sector)
			return VIRTIO_BLK_S_IOERR;
		if (do_io(b, e, wr, sector * SECTOR, len, &err)) {
			__atomic_add_fetch(&b->st.failed_ops, 1, __ATOMIC_RELAXED);
			return VIRTIO_BLK_S_IOERR;
		}
		__atomic_add_fetch(wr ? &b->st.wr_ops : &b->st.rd_ops, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(wr ? &b->st.wr_bytes : &b->st.rd_bytes, len, __ATOMIC_RELAXED);
		if (!wr) {
			/* preadv wrote guest memory behind KVM's back */
			uint64_t left = len;
			for (unsigned i = 0; i < e->nin && left; i++) {
				uint64_t c = e->in[i].len < left ? e->in[i].len : left;
				mem_mark_dirty(&b->vd.dev.vm->mem, e->in[i].gpa, c);
				left -= c;
			}
			*written = (uint32_t)len;
		}
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_FLUSH:
		__atomic_add_fetch(&b->st.flush_ops, 1, __ATOMIC_RELAXED);
		return fdatasync(b->fd) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID: {
		char id[ID_BYTES] = { 0 };
		snprintf(id, sizeof(id), "kvmove-%.12s", b->vd.dev.name);
		if (e->in_bytes < 1)
			return VIRTIO_BLK_S_IOERR;
		*written = (uint32_t)vq_copy_to_in(&b->vd.dev.vm->mem, e, 0, id,
						   e->in_bytes - 1 < ID_BYTES ? e->in_bytes - 1 : ID_BYTES);
		return VIRTIO_BLK_S_OK;
	}
	}
	return VIRTIO_BLK_S_UNSUPP;
}

static int blk_request(struct virtio_dev *vd, struct vq_elem *e, uint32_t *written)
{
	uint8_t status;

	if (e->in_bytes < 1)
		return -EINVAL;	/* no room for the status byte */
	status = handle(vblk_of(vd), e, written);
	/* the status byte is the last byte of the writable part */
	vq_copy_to_in(&vd->dev.vm->mem, e, e->in_bytes - 1, &status, 1);
	*written += 1;
	return 0;
}

static void blk_notify(struct virtio_dev *vd, unsigned q)
{
	virtio_serve_queue(vd, q, blk_request);
}

static int blk_lock(struct vblk *b, struct kv_err *err)
{
	struct flock fl = { .l_type = b->readonly ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };

	if (b->locked)
		return 0;
	if (fcntl(b->fd, F_OFD_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			return kv_errf(err, EBUSY, "disk %s is in use by another VMM", b->path);
		return kv_errf_sys(err, errno, "locking disk %s", b->path);
	}
	b->locked = true;
	return 0;
}

static void blk_unlock(struct vblk *b)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };

	if (b->locked && fcntl(b->fd, F_OFD_SETLK, &fl) == 0)
		b->locked = false;
}

static void blk_pause(struct device *dev)
{
	struct vblk *b = vblk_of(virtio_from_device(dev));

	/* whatever the guest wrote is on the shared storage before anyone
	 * else may open the disk */
	if (!b->readonly)
		fdatasync(b->fd);
}

static void blk_flush(struct device *dev)
{
	struct vblk *b = vblk_of(virtio_from_device(dev));

	if (!b->readonly)
		fdatasync(b->fd);
}

static int blk_acquire(struct device *dev, struct kv_err *err)
{
	return blk_lock(vblk_of(virtio_from_device(dev)), err);
}

static void blk_release(struct device *dev)
{
	struct vblk *b = vblk_of(virtio_from_device(dev));

	if (!b->readonly)
		fdatasync(b->fd);
	blk_unlock(b);
}

static void blk_destroy(struct device *dev)
{
	struct vblk *b = vblk_of(virtio_from_device(dev));

	if (b->fd >= 0) {
		if (!b->readonly)
			fdatasync(b->fd);
		close(b->fd);	/* drops the lock */
	}
	virtio_pci_fini(&b->vd);
	free(b);
}

static const struct virtio_ops blk_vops = {
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x018000,	/* mass storage, other */
	.features = VIRTIO_BLK_F_FLUSH,
	.nqueues = 1,
	.queue_max = 128,
	.cfg_size = 16,
	.cfg_read = blk_cfg_read,
	.notify = blk_notify,
};

static const struct virtio_ops blk_vops_ro = {
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x018000,
	.features = VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO,
	.nqueues = 1,
	.queue_max = 128,
	.cfg_size = 16,
	.cfg_read = blk_cfg_read,
	.notify = blk_notify,
};

static void blk_spec(struct device *dev, struct dev_spec *out)
{
	struct vblk *b = vblk_of(virtio_from_device(dev));

	snprintf(out->path, sizeof(out->path), "%s", b->path);
	out->readonly = b->readonly;
}

static void blk_blockstats(struct device *dev, struct dev_blockstats *out)
{
	struct vblk *b = vblk_of(virtio_from_device(dev));

	out->rd_bytes = __atomic_load_n(&b->st.rd_bytes, __ATOMIC_RELAXED);
	out->wr_bytes = __atomic_load_n(&b->st.wr_bytes, __ATOMIC_RELAXED);
	out->rd_ops = __atomic_load_n(&b->st.rd_ops, __ATOMIC_RELAXED);
	out->wr_ops = __atomic_load_n(&b->st.wr_ops, __ATOMIC_RELAXED);
	out->flush_ops = __atomic_load_n(&b->st.flush_ops, __ATOMIC_RELAXED);
	out->failed_ops = __atomic_load_n(&b->st.failed_ops, __ATOMIC_RELAXED);
}

static const struct dev_ops blk_ops = {
	.type = "virtio-blk",
	.pause = blk_pause,
	.flush = blk_flush,
	.destroy = blk_destroy,
	.state = &virtio_vmstate,
	.state_ptr = virtio_state_ptr,
	.post_load = virtio_post_load,
	.acquire = blk_acquire,
	.release = blk_release,
	.spec = blk_spec,
	.blockstats = blk_blockstats,
};

int virtio_blk_create(struct device **out, struct vm *vm, struct pci_host *host,
		      const char *name, const char *path, int fd, bool readonly, bool take_lock,
		      struct kv_err *err)
{
	struct vblk *b = calloc(1, sizeof(*b));
	struct stat st;
	int r;

	if (!b) {
		if (fd >= 0)
			close(fd);
		return kv_errf(err, ENOMEM, "disk");
	}
	b->fd = fd;
	b->readonly = readonly;
	if (strlen(path) >= sizeof(b->path)) {
		r = kv_errf(err, ENAMETOOLONG, "disk path too long");
		goto fail;
	}
	strcpy(b->path, path);
	if (b->fd < 0)
		b->fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0 || fstat(b->fd, &st) < 0) {
		r = kv_errf_sys(err, errno, "disk %s", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		r = kv_errf(err, EINVAL, "disk %s is neither a file nor a block device", path);
		goto fail;
	}
	b->sectors = (uint64_t)st.st_size / SECTOR;
	if (take_lock && (r = blk_lock(b, err)))
		goto fail;
	r = virtio_pci_init(&b->vd, vm, host, name, &blk_ops, readonly ? &blk_vops_ro : &blk_vops,
			    err);
	if (r)
		return r;	/* added to the VM: it frees us */
	*out = &b->vd.dev;
	return 0;
fail:
	if (b->fd >= 0)
		close(b->fd);
	free(b);
	return r;
}
