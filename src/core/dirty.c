#include "core/dirty.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "core/vm.h"

static int set_slot_flags(struct vm *vm, uint32_t flags, struct kv_err *err)
{
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region region = {
			.slot = i,
			.flags = flags,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)(vm->mem.host + r->offset),
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			return kv_errf_sys(err, errno, "memory slot %u: setting dirty logging", i);
	}
	return 0;
}

int dirty_log_start(struct vm *vm, struct kv_err *err)
{
	int r;

	if (!vm->manual_dirty_protect) {
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
		};
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0)
			return kv_errf(err, ENOTSUP, "KVM lacks manual dirty-log protection "
				       "(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, Linux 5.8+)");
		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			return kv_errf_sys(err, errno, "enabling manual dirty-log protection");
		vm->manual_dirty_protect = true;
	}
	/* The first pass sends every page with data, so what the VMM wrote
	 * before (an incoming migration's load, the kernel loader) is covered:
	 * start its bitmap afresh, or all of it would be sent twice. */
	for (uint64_t w = 0; w < (vm->mem.npages + 63) / 64; w++)
		__atomic_store_n(&vm->mem.vmm_dirty[w], 0, __ATOMIC_RELAXED);
	r = set_slot_flags(vm, KVM_MEM_LOG_DIRTY_PAGES, err);
	if (r)
		return r;
	if (!vm->slot_dirty) {
		vm->slot_dirty = calloc((vm->mem.npages + 63) / 64, sizeof(uint64_t));
		if (!vm->slot_dirty) {
			set_slot_flags(vm, 0, NULL);
			return kv_errf(err, ENOMEM, "dirty bitmap");
		}
	}
	return 0;
}

void dirty_log_stop(struct vm *vm)
{
	set_slot_flags(vm, 0, NULL);
	free(vm->slot_dirty);
	vm->slot_dirty = NULL;
}

int64_t dirty_sync(struct vm *vm, uint64_t *bitmap, struct kv_err *err)
{
	int64_t newly = 0;
	uint64_t nwords = (vm->mem.npages + 63) / 64;

	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		uint64_t first = r->offset >> MEM_PAGE_SHIFT;	/* multiple of 64 */
		uint64_t npages = r->size >> MEM_PAGE_SHIFT;
		uint64_t *slot = vm->slot_dirty + first / 64;
		struct kvm_dirty_log log = { .slot = i, .dirty_bitmap = slot };
		struct kvm_clear_dirty_log clear = {
			.slot = i, .first_page = 0, .num_pages = (uint32_t)npages,
			.dirty_bitmap = slot,
		};

		memset(slot, 0, ((npages + 63) / 64) * sizeof(uint64_t));
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return kv_errf_sys(err, errno, "slot %u: KVM_GET_DIRTY_LOG", i);
		/* Clear exactly what we read: pages written after the GET stay
		 * logged for the next round. */
		if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0)
			return kv_errf_sys(err, errno, "slot %u: KVM_CLEAR_DIRTY_LOG", i);
	}
	for (uint64_t w = 0; w < nwords; w++) {
		uint64_t add = vm->slot_dirty[w] |
			       __atomic_exchange_n(&vm->mem.vmm_dirty[w], 0, __ATOMIC_ACQ_REL);
		newly += __builtin_popcountll(add & ~bitmap[w]);
		bitmap[w] |= add;
	}
	return newly;
}

int64_t dirty_peek(struct vm *vm, struct kv_err *err)
{
	uint64_t nwords = (vm->mem.npages + 63) / 64;
	int64_t n = 0;

	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		uint64_t *slot = vm->slot_dirty + (r->offset >> MEM_PAGE_SHIFT) / 64;
		struct kvm_dirty_log log = { .slot = i, .dirty_bitmap = slot };

		memset(slot, 0, (((r->size >> MEM_PAGE_SHIFT) + 63) / 64) * sizeof(uint64_t));
		/* with manual protect, GET neither clears nor re-protects */
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return kv_errf_sys(err, errno, "slot %u: KVM_GET_DIRTY_LOG", i);
	}
	for (uint64_t w = 0; w < nwords; w++)
		n += __builtin_popcountll(vm->slot_dirty[w] |
					  __atomic_load_n(&vm->mem.vmm_dirty[w], __ATOMIC_RELAXED));
	return n;
}

int64_t vm_throttle_sleep_ns(int64_t ran_ns, unsigned pct)
{
	if (pct > 99)
		pct = 99;
	return ran_ns * (int64_t)pct / (int64_t)(100 - pct);
}

int vm_set_throttle(struct vm *vm, unsigned pct, struct kv_err *err)
{
	if (pct > 99)
		return kv_errf(err, EINVAL, "throttle %u%% out of range (0..99)", pct);
	pthread_mutex_lock(&vm->lock);
	__atomic_store_n(&vm->throttle_pct, pct, __ATOMIC_RELAXED);
	/* sleeping vCPUs recompute (or stop) their sleep */
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

unsigned vm_get_throttle(struct vm *vm)
{
	return __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED);
}
