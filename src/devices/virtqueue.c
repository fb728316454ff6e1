#include "devices/virtqueue.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "core/mem.h"

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Resolve a whole ring (it must be RAM from end to end). */
static void *ring(struct guest_mem *mem, uint64_t gpa, uint64_t len, const char *what,
		  struct kv_err *err)
{
	void *p = mem_gpa_to_hva(mem, gpa, len);

	if (!p)
		kv_errf(err, EIO, "virtqueue %s ring at 0x%" PRIx64 " (+%" PRIu64 ") is not in "
			"guest RAM", what, gpa, len);
	return p;
}

int vq_validate(const struct vq_state *vq, uint16_t max_size, struct kv_err *err)
{
	if (vq->size > max_size || (vq->size & (vq->size - 1)))
		return kv_errf(err, EINVAL, "queue size %u (max %u, power of two)", vq->size,
			       max_size);
	if (vq->enabled > 1)
		return kv_errf(err, EINVAL, "queue enable %u", vq->enabled);
	if (vq->enabled && !vq->size)
		return kv_errf(err, EINVAL, "enabled queue without a size");
	if ((vq->desc & 15) || (vq->avail & 1) || (vq->used & 3))
		return kv_errf(err, EINVAL, "misaligned queue rings");
	return 0;
}

int vq_pop(struct guest_mem *mem, struct vq_state *vq, struct vq_elem *e, struct kv_err *err)
{
	uint16_t n = vq->size, avail_idx, head, i;
	struct virtq_desc *desc;
	uint16_t *avail;
	unsigned steps = 0;

	if (!vq->enabled || !n)
		return 0;
	desc = ring(mem, vq->desc, 16ULL * n, "descriptor", err);
	avail = ring(mem, vq->avail, 6 + 2ULL * n, "available", err);
	if (!desc || !avail)
		return -EIO;
	avail_idx = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
	if (avail_idx == vq->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail) > n)
		return kv_errf(err, EIO, "available index moved by %u in a queue of %u",
			       (uint16_t)(avail_idx - vq->last_avail), n);
	head = avail[2 + vq->last_avail % n];
	if (head >= n)
		return kv_errf(err, EIO, "available ring names descriptor %u of %u", head, n);

	e->head = head;
	e->nout = e->nin = 0;
	e->out_bytes = e->in_bytes = 0;
	for (i = head;; i = desc[i].next) {
		struct virtq_desc d = desc[i];	/* one read: the guest may change it */
		struct vq_seg *seg;

		if (++steps > n)
			return kv_errf(err, EIO, "descriptor chain from %u loops", head);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return kv_errf(err, EIO, "indirect descriptor (not offered)");
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			if (e->nin >= VQ_MAX_SEGS)
				return kv_errf(err, EIO, "chain has more than %d segments", VQ_MAX_SEGS);
			seg = &e->in[e->nin++];
			e->in_bytes += d.len;
		} else {
			if (e->nin)
				return kv_errf(err, EIO, "readable descriptor after a writable one");
			if (e->nout >= VQ_MAX_SEGS)
				return kv_errf(err, EIO, "chain has more than %d segments", VQ_MAX_SEGS);
			seg = &e->out[e->nout++];
			e->out_bytes += d.len;
		}
		if (e->in_bytes + e->out_bytes > VQ_MAX_CHAIN_BYTES)
			return kv_errf(err, EIO, "chain larger than %u bytes", VQ_MAX_CHAIN_BYTES);
		seg->hva = d.len ? mem_gpa_to_hva(mem, d.addr, d.len) : NULL;
		if (d.len && !seg->hva)
			return kv_errf(err, EIO, "buffer 0x%" PRIx64 "+%u is not in guest RAM",
				       d.addr, d.len);
		seg->gpa = d.addr;
		seg->len = d.len;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= n)
			return kv_errf(err, EIO, "descriptor %u points to %u of %u", i, d.next, n);
	}
	vq->last_avail++;
	return 1;
}

int vq_push(struct guest_mem *mem, struct vq_state *vq, const struct vq_elem *e,
	    uint32_t written, struct kv_err *err)
{
	uint16_t n = vq->size;
	uint8_t *used = ring(mem, vq->used, 6 + 8ULL * n, "used", err);
	uint64_t elem_gpa;

	if (!used)
		return -EIO;
	elem_gpa = vq->used + 4 + 8ULL * (vq->used_idx % n);
	{
		uint32_t id = e->head;
		memcpy(used + 4 + 8 * (vq->used_idx % n), &id, 4);
		memcpy(used + 8 + 8 * (vq->used_idx % n), &written, 4);
	}
	vq->used_idx++;
	/* the element must be visible before the index that publishes it */
	__atomic_store_n((uint16_t *)(used + 2), vq->used_idx, __ATOMIC_RELEASE);
	mem_mark_dirty(mem, elem_gpa, 8);
	mem_mark_dirty(mem, vq->used + 2, 2);
	return 0;
}

bool vq_wants_interrupt(struct guest_mem *mem, const struct vq_state *vq)
{
	uint16_t *avail = mem_gpa_to_hva(mem, vq->avail, 6 + 2ULL * vq->size);

	return !avail || !(__atomic_load_n(&avail[0], __ATOMIC_ACQUIRE) &
			   VIRTQ_AVAIL_F_NO_INTERRUPT);
}

size_t vq_copy_from_out(const struct vq_elem *e, size_t skip, void *dst, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < e->nout && done < len; i++) {
		size_t sl = e->out[i].len, c;
		if (skip >= sl) {
			skip -= sl;
			continue;
		}
		c = sl - skip < len - done ? sl - skip : len - done;
		memcpy((uint8_t *)dst + done, e->out[i].hva + skip, c);
		done += c;
		skip = 0;
	}
	return done;
}

size_t vq_copy_to_in(struct guest_mem *mem, const struct vq_elem *e, size_t skip,
		     const void *src, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < e->nin && done < len; i++) {
		size_t sl = e->in[i].len, c;
		if (skip >= sl) {
			skip -= sl;
			continue;
		}
		c = sl - skip < len - done ? sl - skip : len - done;
		memcpy(e->in[i].hva + skip, (const uint8_t *)src + done, c);
		mem_mark_dirty(mem, e->in[i].gpa + skip, c);
		done += c;
		skip = 0;
	}
	return done;
}
