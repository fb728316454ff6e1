/*
 * vblk.c - see vblk.h. A request is the chain header (16 bytes: type,
 * reserved, sector; device-readable), data (device-writable for a read,
 * readable for a write; none for a flush) and one status byte
 * (device-writable). Tag t owns descriptors 3t, 3t+1, 3t+2.
 */
#include "vblk.h"

#include "lib.h"
#include "virtio.h"

#define BLK_F_RO (1ULL << 5)
#define BLK_F_FLUSH (1ULL << 9)
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define CFG_CAPACITY 0

struct req_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct {
	uint8_t q[VQ_MEM_BYTES];
	struct req_hdr hdr[VBLK_MAX_TAGS];
	uint8_t status[VBLK_MAX_TAGS];
} mem __attribute__((section(".noinit"), aligned(4096)));

static struct {
	struct virtio_dev dev;
	struct vq q;
	unsigned ntags, inflight, next;
	bool busy[VBLK_MAX_TAGS];
} B;

static uint64_t read_capacity(void)
{
	uint32_t lo, hi;
	uint8_t gen;

	do {	/* two 32-bit halves: make sure no change came in between */
		gen = virtio_cfg_gen(&B.dev);
		lo = virtio_cfg32(&B.dev, CFG_CAPACITY);
		hi = virtio_cfg32(&B.dev, CFG_CAPACITY + 4);
	} while (gen != virtio_cfg_gen(&B.dev));
	return (uint64_t)hi << 32 | lo;
}

bool vblk_init(const struct pci_fn *f, struct vblk_info *info, char *why, size_t n)
{
	memset(&B, 0, sizeof(B));
	memset(info, 0, sizeof(*info));
	if (!virtio_probe(f, &B.dev, why, n) ||
	    !virtio_negotiate(&B.dev, BLK_F_FLUSH | BLK_F_RO, why, n))
		return false;
	if (!virtio_vq_setup(&B.dev, &B.q, 0, mem.q, VQ_MAX_SIZE, why, n)) {
		virtio_fail(&B.dev);
		return false;
	}
	B.ntags = MIN(B.q.size / 3u, (unsigned)VBLK_MAX_TAGS);
	if (!B.ntags) {
		virtio_fail(&B.dev);
		snprintf(why, n, "queue of %u entries is too small", B.q.size);
		return false;
	}
	info->capacity = read_capacity();
	info->flush = (B.dev.features & BLK_F_FLUSH) != 0;
	info->read_only = (B.dev.features & BLK_F_RO) != 0;
	info->tags = B.ntags;
	virtio_driver_ok(&B.dev);
	return true;
}

int vblk_submit(enum vblk_op op, uint64_t sector, void *buf, uint32_t len)
{
	unsigned t = B.next;
	uint16_t d;

	if (B.inflight >= B.ntags)
		return -1;
	while (B.busy[t])
		t = (t + 1) % B.ntags;
	B.next = (t + 1) % B.ntags;
	d = (uint16_t)(3 * t);
	mem.hdr[t].type = op == VBLK_READ ? T_IN : op == VBLK_WRITE ? T_OUT : T_FLUSH;
	mem.hdr[t].reserved = 0;
	mem.hdr[t].sector = op == VBLK_FLUSH ? 0 : sector;
	mem.status[t] = 0xff;	/* stays so if the device never answers */
	vq_set_desc(&B.q, d, &mem.hdr[t], sizeof(mem.hdr[t]), VQ_DESC_F_NEXT, (uint16_t)(d + 1));
	if (op == VBLK_FLUSH) {
		vq_set_desc(&B.q, (uint16_t)(d + 1), &mem.status[t], 1, VQ_DESC_F_WRITE, 0);
	} else {
		vq_set_desc(&B.q, (uint16_t)(d + 1), buf, len,
			    (uint16_t)(VQ_DESC_F_NEXT | (op == VBLK_READ ? VQ_DESC_F_WRITE : 0)),
			    (uint16_t)(d + 2));
		vq_set_desc(&B.q, (uint16_t)(d + 2), &mem.status[t], 1, VQ_DESC_F_WRITE, 0);
	}
	B.busy[t] = true;
	B.inflight++;
	vq_submit(&B.q, d);
	return (int)t;
}

uint8_t vblk_device_status(void)
{
	return virtio_status(&B.dev);
}

void vblk_kick(void)
{
	vq_kick(&B.q);
}

enum vblk_event vblk_next(struct vblk_done *d)
{
	struct vq_used_elem e;
	unsigned t;

	if (!B.ntags || !vq_used_ready(&B.q))
		return VBLK_NONE;
	e = vq_used_take(&B.q);
	d->id = e.id;
	d->len = e.len;
	d->tag = -1;
	t = e.id / 3;
	if (e.id % 3 || t >= B.ntags || !B.busy[t])
		return VBLK_BOGUS;
	B.busy[t] = false;
	B.inflight--;
	d->tag = (int)t;
	d->status = READ_ONCE(mem.status[t]);
	return VBLK_DONE;
}
