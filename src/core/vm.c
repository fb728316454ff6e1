#define _GNU_SOURCE
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/cpumodel.h"
#include "core/dirty.h"
#include "devices/device.h"

/* Where KVM may put the real-mode TSS and identity map it needs on some
 * Intel hosts: three pages just below the IOAPIC, inside the MMIO hole. */
#define KVM_TSS_ADDR 0xfeffd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfeffc000ULL

static int check_cap(struct vm *vm, long cap, const char *name, struct kv_err *err)
{
	int r = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, cap);

	if (r <= 0)
		return kv_errf(err, ENOTSUP, "KVM lacks %s, which kvmove needs", name);
	return 0;
}

int kvm_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, struct kv_err *err)
{
	int nent = 64;

	for (;;) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)nent * sizeof(c->entries[0]));
		if (!c)
			return kv_errf(err, ENOMEM, "allocating CPUID table");
		c->nent = (uint32_t)nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG || nent >= 4096)
			return kv_errf_sys(err, errno, "KVM_GET_SUPPORTED_CPUID");
		nent *= 2;
	}
}

int kvm_host_cpuid(const struct cpu_feats *hide, struct kvm_cpuid2 **out, struct kv_err *err)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), r;

	if (kvm < 0)
		return kv_errf_sys(err, errno, "/dev/kvm");
	r = kvm_supported_cpuid(kvm, out, err);
	close(kvm);
	if (!r && hide)
		cpu_cpuid_hide(*out, hide);
	return r;
}

static int fetch_supported_cpuid(struct vm *vm, struct kv_err *err)
{
	return kvm_supported_cpuid(vm->kvm_fd, &vm->cpuid, err);
}

static int register_slots(struct vm *vm, struct kv_err *err)
{
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region region = {
			.slot = i,
			.flags = 0,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)(vm->mem.host + r->offset),
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			return kv_errf_sys(err, errno,
					   "memory slot %u (0x%" PRIx64 "+0x%" PRIx64
					   "): KVM_SET_USER_MEMORY_REGION", i, r->gpa, r->size);
	}
	return 0;
}

int vm_create(struct vm **out, const struct vm_config *cfg, struct kv_err *err)
{
	struct vm *vm;
	int r, api;

	if (cfg->ncpus < 1 || cfg->ncpus > VM_MAX_VCPUS)
		return kv_errf(err, EINVAL, "vCPU count %u out of range (1..%d)",
			       cfg->ncpus, VM_MAX_VCPUS);
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return kv_errf(err, ENOMEM, "allocating the VM");
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = vm->shutdown_efd = -1;
	vm->mem.memfd = -1;
	vm->mem.pagemap_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	{
		/* monotonic: throttle sleeps and pause waits must not follow
		 * wall-clock steps */
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&vm->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	bus_init(&vm->pio_bus, "pio", true);
	bus_init(&vm->mmio_bus, "mmio", false);

	vm->shutdown_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->shutdown_efd < 0) {
		r = kv_errf_sys(err, errno, "eventfd");
		goto fail;
	}

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = kv_errf_sys(err, errno,
				"/dev/kvm (is KVM available and are you allowed to use it?)");
		goto fail;
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		r = kv_errf(err, ENOTSUP, "KVM API version %d, expected %d", api,
			    KVM_API_VERSION);
		goto fail;
	}
	if ((r = check_cap(vm, KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", err)) ||
	    (r = check_cap(vm, KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", err)) ||
	    (r = check_cap(vm, KVM_CAP_PIT2, "KVM_CAP_PIT2", err)) ||
	    (r = check_cap(vm, KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", err)))
		goto fail;

	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		r = kv_errf_sys(err, errno, "KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = kv_errf_sys(err, errno, "KVM_CREATE_VM");
		goto fail;
	}
	/* Harmless where unneeded (EPT with unrestricted guest, PVM). */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0) {
		r = kv_errf_sys(err, errno, "KVM_SET_TSS_ADDR");
		goto fail;
	}
	{
		uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
		    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
			r = kv_errf_sys(err, errno, "KVM_SET_IDENTITY_MAP_ADDR");
			goto fail;
		}
	}
	/* The in-kernel PIC + IOAPIC (+ a LAPIC per vCPU) must exist before
	 * the vCPUs are created. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		r = kv_errf_sys(err, errno, "KVM_CREATE_IRQCHIP");
		goto fail;
	}
	{
		struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
		if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
			r = kv_errf_sys(err, errno, "KVM_CREATE_PIT2");
			goto fail;
		}
	}

	r = cfg->has_memfd ? mem_init_fd(&vm->mem, cfg->mem_size, cfg->memfd, err)
			   : mem_init(&vm->mem, cfg->mem_size, cfg->mem_backend, err);
	if (r)
		goto fail;
	r = register_slots(vm, err);
	if (r)
		goto fail;
	if (cfg->cpuid) {
		size_t sz = sizeof(*cfg->cpuid) + cfg->cpuid->nent * sizeof(cfg->cpuid->entries[0]);
		vm->cpuid = malloc(sz);
		if (!vm->cpuid) {
			r = kv_errf(err, ENOMEM, "CPUID table");
			goto fail;
		}
		memcpy(vm->cpuid, cfg->cpuid, sz);
	} else {
		r = fetch_supported_cpuid(vm, err);
		if (r)
			goto fail;
	}
	vm->cfg.cpuid = NULL;	/* the caller's copy may go away */

	for (unsigned i = 0; i < cfg->ncpus; i++) {
		r = vcpu_create(vm, i, &vm->vcpus[i], err);
		if (r) {
			kv_err_prefix(err, r, "vCPU %u", i);
			goto fail;
		}
		vm->nvcpus++;
	}
	r = cpu_probe_msrs(vm, err);
	if (r)
		goto fail;
	clock_gettime(CLOCK_MONOTONIC, &vm->started);
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return r;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_set_throttle(vm, 0, NULL);
	vm_stop(vm);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->destroy)
			vm->devices[i]->ops->destroy(vm->devices[i]);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->shutdown_efd >= 0)
		close(vm->shutdown_efd);
	mem_destroy(&vm->mem);
	free(vm->cpuid);
	free(vm->slot_dirty);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

int vm_add_device(struct vm *vm, struct device *dev, struct kv_err *err)
{
	if (vm->ndevices >= VM_MAX_DEVICES)
		return kv_errf(err, ENOSPC, "too many devices (max %d)", VM_MAX_DEVICES);
	dev->vm = vm;
	vm->devices[vm->ndevices++] = dev;
	return 0;
}

static void emit(struct vm *vm, enum vm_event ev);

int vm_start(struct vm *vm, struct kv_err *err)
{
	return vm_start_as(vm, false, err);
}

int vm_start_as(struct vm *vm, bool paused, struct kv_err *err)
{
	int r;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STATE_CREATED) {
		pthread_mutex_unlock(&vm->lock);
		return kv_errf(err, EINVAL, "VM already started");
	}
	/* paused: the threads park before their first KVM_RUN; cont resumes
	 * the devices and them */
	vm->state = paused ? VM_STATE_PAUSED : VM_STATE_RUNNING;
	vm->pause_req = paused;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; !paused && i < vm->ndevices; i++)
		if (vm->devices[i]->ops->resume)
			vm->devices[i]->ops->resume(vm->devices[i]);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		r = vcpu_start(vm->vcpus[i], err);
		if (r) {
			vm_stop(vm);
			return r;
		}
	}
	if (!paused)
		emit(vm, VM_EVENT_RESUME);	/* as QEMU: at every start of the vCPUs */
	return 0;
}

static void emit(struct vm *vm, enum vm_event ev)
{
	if (vm->on_event)
		vm->on_event(vm->event_opaque, ev);
}

static void kick_all_locked(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_kick(vm->vcpus[i]);
}

int vm_acquire_resources(struct vm *vm, struct kv_err *err)
{
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = vm->devices[i];
		int r = d->ops->acquire ? d->ops->acquire(d, err) : 0;
		if (r) {
			while (i--)
				if (vm->devices[i]->ops->release)
					vm->devices[i]->ops->release(vm->devices[i]);
			return r;
		}
	}
	return 0;
}

bool vm_has_resources(const struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->acquire)
			return true;
	return false;
}

void vm_flush_devices(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->flush)
			vm->devices[i]->ops->flush(vm->devices[i]);
}

void vm_release_resources(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->release)
			vm->devices[i]->ops->release(vm->devices[i]);
}

void vm_kick_all(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_RUNNING)
		kick_all_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

int vm_pause(struct vm *vm, struct kv_err *err)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_PAUSED) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	if (vm->state != VM_STATE_RUNNING) {
		enum vm_state st = vm->state;
		pthread_mutex_unlock(&vm->lock);
		return kv_errf(err, EINVAL, "cannot pause a VM that is %s", vm_state_name(st));
	}
	vm->pause_req = true;
	kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);	/* wakes throttled vCPUs */
	while (vm->parked < vm->nvcpus) {
		if (vm->exit_req) {	/* vm_stop() won the race: threads end, not park */
			pthread_mutex_unlock(&vm->lock);
			return kv_errf(err, ESHUTDOWN, "the VM is shutting down");
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		/* A kick can only be missed in theory (immediate_exit covers the
		 * window before KVM_RUN); re-kick rather than trust it. */
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT)
			kick_all_locked(vm);
	}
	vm->state = VM_STATE_PAUSED;
	pthread_mutex_unlock(&vm->lock);

	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->pause)
			vm->devices[i]->ops->pause(vm->devices[i]);
	emit(vm, VM_EVENT_STOP);
	return 0;
}

int vm_resume(struct vm *vm, struct kv_err *err)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_RUNNING) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	if (vm->state != VM_STATE_PAUSED) {
		enum vm_state st = vm->state;
		pthread_mutex_unlock(&vm->lock);
		return kv_errf(err, EINVAL, "cannot resume a VM that is %s", vm_state_name(st));
	}
	vm->pause_req = false;
	vm->state = VM_STATE_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	/* devices first (e.g. network receive), then the vCPUs */
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->resume)
			vm->devices[i]->ops->resume(vm->devices[i]);
	pthread_mutex_lock(&vm->lock);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	emit(vm, VM_EVENT_RESUME);
	return 0;
}

void vm_hold(struct vm *vm, bool on)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_RUNNING) {
		vm->pause_req = on;
		if (on)
			kick_all_locked(vm);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

void vm_stop_begin(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_RUNNING || vm->state == VM_STATE_PAUSED)
		vm->had_threads = true;
	vm->exit_req = true;
	vm->state = VM_STATE_SHUTDOWN;
	kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_stop(struct vm *vm)
{
	bool had_threads;

	vm_stop_begin(vm);
	pthread_mutex_lock(&vm->lock);
	had_threads = vm->had_threads;
	vm->had_threads = false;
	pthread_mutex_unlock(&vm->lock);
	if (!had_threads)
		return;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_join(vm->vcpus[i]);
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->pause)
			vm->devices[i]->ops->pause(vm->devices[i]);
}

void vm_request_shutdown(struct vm *vm, enum vm_shutdown_reason reason, int code,
			 const char *fmt, ...)
{
	uint64_t one = 1;
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (vm->shutdown_reason == VM_SHUTDOWN_NONE) {
		vm->shutdown_reason = reason;
		vm->shutdown_code = code;
		va_start(ap, fmt);
		vsnprintf(vm->shutdown_msg, sizeof(vm->shutdown_msg), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&vm->lock);
	if (write(vm->shutdown_efd, &one, sizeof(one)) < 0) {
		/* eventfd counter cannot overflow with 1s; nothing to do */
	}
}

int vm_shutdown_fd(const struct vm *vm)
{
	return vm->shutdown_efd;
}

enum vm_state vm_get_state(struct vm *vm)
{
	enum vm_state st;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return st;
}

const char *vm_state_name(enum vm_state st)
{
	switch (st) {
	case VM_STATE_CREATED: return "prelaunch";
	case VM_STATE_RUNNING: return "running";
	case VM_STATE_PAUSED: return "paused";
	case VM_STATE_SHUTDOWN: return "shutdown";
	}
	return "unknown";
}

const char *vm_shutdown_reason_name(enum vm_shutdown_reason r)
{
	switch (r) {
	case VM_SHUTDOWN_NONE: return "none";
	case VM_SHUTDOWN_HOST: return "host-qmp-quit";
	case VM_SHUTDOWN_SIGNAL: return "host-signal";
	case VM_SHUTDOWN_GUEST: return "guest-shutdown";
	case VM_SHUTDOWN_GUEST_RESET: return "guest-reset";
	case VM_SHUTDOWN_ERROR: return "host-error";
	case VM_SHUTDOWN_MIGRATED: return "migrated";	/* --exit-after-migration only */
	}
	return "unknown";
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
			       .data = data };

	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

int vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		return -errno;
	return 0;
}

uint64_t vm_uptime_ms(struct vm *vm)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - vm->started.tv_sec) * 1000 +
	       (uint64_t)((now.tv_nsec - vm->started.tv_nsec) / 1000000);
}
