/*
 * vcpu.c - vCPU threads: the KVM_RUN loop, exit dispatch, and the park
 * handshake that makes pause/resume/stop safe.
 *
 * Only the vCPU's own thread touches its fd.  To stop it, another thread
 * sets vm->pause_req (or exit_req) under vm->lock, then "kicks" it: sets
 * run->immediate_exit and sends SIGUSR1.  The signal knocks the thread out
 * of guest mode; immediate_exit covers the window where the thread has
 * checked the flags but not yet entered KVM_RUN.  The thread clears
 * immediate_exit *before* checking the flags, so no request is lost.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/vm.h"
#include "devices/bus.h"

#define VCPU_KICK_SIGNAL SIGUSR1

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	bool parked;		/* guarded by vm->lock */
	bool dead;		/* hit an exit it cannot continue from */
	bool need_completion;	/* last exit was PIO/MMIO: KVM must finish it */
	uint64_t exits;
	/* A request to run on this thread while parked (guarded by vm->lock). */
	vcpu_work_fn work_fn;
	void *work_arg;
	int work_result;
	bool work_done;
};

int vcpu_fd(const struct vcpu *vcpu)
{
	return vcpu->fd;
}

static int setup_cpuid(struct vcpu *v, struct kv_err *err)
{
	const struct kvm_cpuid2 *tmpl = v->vm->cpuid;
	size_t sz = sizeof(*tmpl) + tmpl->nent * sizeof(tmpl->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int r = 0;

	if (!c)
		return kv_errf(err, ENOMEM, "allocating CPUID");
	memcpy(c, tmpl, sz);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			/* initial APIC id; logical processor count */
			e->ebx = (e->ebx & 0x0000ffff) | (v->id << 24) |
				 ((v->vm->cfg.ncpus & 0xff) << 16);
			break;
		case 0xb:
		case 0x1f:
			e->edx = v->id;	/* x2APIC id */
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		r = kv_errf_sys(err, errno, "KVM_SET_CPUID2");
	free(c);
	return r;
}

/* LINT0 = ExtINT (legacy PIC), LINT1 = NMI, as firmware leaves them. */
static int setup_lapic(struct vcpu *v, struct kv_err *err)
{
	struct kvm_lapic_state lapic;
	uint32_t *lvt0 = (uint32_t *)&lapic.regs[0x350];
	uint32_t *lvt1 = (uint32_t *)&lapic.regs[0x360];

	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return kv_errf_sys(err, errno, "KVM_GET_LAPIC");
	*lvt0 = (*lvt0 & ~0x700u) | (7u << 8);
	*lvt1 = (*lvt1 & ~0x700u) | (4u << 8);
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_LAPIC");
	return 0;
}

static int setup_fpu(struct vcpu *v, struct kv_err *err)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_FPU");
	return 0;
}

int vcpu_create(struct vm *vm, unsigned id, struct vcpu **out, struct kv_err *err)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return kv_errf(err, ENOMEM, "allocating vCPU");
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		r = kv_errf_sys(err, errno, "KVM_CREATE_VCPU");
		free(v);
		return r;
	}
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		r = kv_errf_sys(err, errno, "mmap kvm_run");
		v->run = NULL;
		goto fail;
	}
	if ((r = setup_cpuid(v, err)) || (r = setup_lapic(v, err)) ||
	    (r = setup_fpu(v, err)))
		goto fail;
	*out = v;
	return 0;
fail:
	vcpu_destroy(v);
	return r;
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	if (v->run)
		munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v);
}

static void kick_handler(int sig)
{
	(void)sig;	/* only here to make KVM_RUN return -EINTR */
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->started)
		return;
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *v)
{
	if (v->started) {
		pthread_join(v->thread, NULL);
		v->started = false;
	}
}

/* Let KVM finish a PIO/MMIO read it handed to us (the data must land in the
 * guest's register) without running guest code: immediate_exit makes
 * KVM_RUN return -EINTR right after completing it. */
static void complete_pending_io(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	ioctl(v->fd, KVM_RUN, 0);
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	v->need_completion = false;
}

/* Handle one exit.  Returns false if the vCPU cannot go on. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;

	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		unsigned size = run->io.size;
		/* data_offset/size/count come from the kernel; stay in the page */
		if (size == 0 || size > 4 ||
		    run->io.data_offset + (uint64_t)size * run->io.count >
			    (uint64_t)vm->vcpu_mmap_size)
			break;
		for (uint32_t i = 0; i < run->io.count; i++)
			bus_access(&vm->pio_bus, run->io.port,
				   run->io.direction == KVM_EXIT_IO_OUT, data + i * size, size);
		v->need_completion = true;
		return true;
	}
	case KVM_EXIT_MMIO:
		if (run->mmio.len <= 8)
			bus_access(&vm->mmio_bus, run->mmio.phys_addr, run->mmio.is_write,
				   run->mmio.data, run->mmio.len);
		v->need_completion = true;
		return true;
	case KVM_EXIT_HLT:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		vm_request_shutdown(vm, VM_SHUTDOWN_GUEST_RESET, 1,
				    "vCPU %u: guest triple fault (KVM_EXIT_SHUTDOWN)", v->id);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_request_shutdown(vm, VM_SHUTDOWN_GUEST, 0,
				    "vCPU %u: guest system event %u", v->id,
				    run->system_event.type);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		/* emulate.c finishes INT3/FWAIT that a PVM host's emulator
		 * refuses, and reports (and stops the VM on) anything else. */
		return emu_internal_error(vm, v->id, v->fd, run);
	case KVM_EXIT_FAIL_ENTRY:
		vm_request_shutdown(vm, VM_SHUTDOWN_ERROR, 1,
				    "vCPU %u: VM entry failed, reason 0x%llx", v->id,
				    (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	default:
		break;
	}
	vm_request_shutdown(vm, VM_SHUTDOWN_ERROR, 1, "vCPU %u: unexpected KVM exit %u",
			    v->id, run->exit_reason);
	return false;
}

/* Auto-converge: the throttle thread kicks us every VM_THROTTLE_SLICE_US;
 * sitting out pct% of each slice keeps the guest from dirtying memory
 * faster than the migration can send it. */
static void throttle(struct vcpu *v)
{
	unsigned pct = __atomic_load_n(&v->vm->throttle_pct, __ATOMIC_RELAXED);

	if (pct && !__atomic_load_n(&v->vm->pause_req, __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&v->vm->exit_req, __ATOMIC_RELAXED)) {
		struct timespec ts = { 0, (long)pct * VM_THROTTLE_SLICE_US * 10L };
		nanosleep(&ts, NULL);
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t set;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		int r;

		/* Clear first, then look at the flags (see top of file). */
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&vm->lock);
		while (vm->pause_req || vm->exit_req || v->dead) {
			if (v->work_fn && !vm->exit_req) {
				vcpu_work_fn fn = v->work_fn;
				pthread_mutex_unlock(&vm->lock);
				v->work_result = fn(v, v->fd, v->work_arg);
				pthread_mutex_lock(&vm->lock);
				v->work_fn = NULL;
				v->work_done = true;
				pthread_cond_broadcast(&vm->cond);
				continue;
			}
			if (v->need_completion && !v->dead) {
				pthread_mutex_unlock(&vm->lock);
				complete_pending_io(v);
				pthread_mutex_lock(&vm->lock);
				continue;
			}
			if (vm->exit_req) {
				pthread_mutex_unlock(&vm->lock);
				return NULL;
			}
			if (!v->parked) {
				v->parked = true;
				vm->parked++;
				pthread_cond_broadcast(&vm->cond);
			}
			pthread_cond_wait(&vm->cond, &vm->lock);
		}
		if (v->parked) {
			v->parked = false;
			vm->parked--;
		}
		pthread_mutex_unlock(&vm->lock);

		r = ioctl(v->fd, KVM_RUN, 0);
		v->need_completion = false;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				throttle(v);
				continue;
			}
			vm_request_shutdown(vm, VM_SHUTDOWN_ERROR, 1, "vCPU %u: KVM_RUN: %s",
					    v->id, strerror(errno));
			v->dead = true;
			continue;
		}
		__atomic_fetch_add(&v->exits, 1, __ATOMIC_RELAXED);
		if (!handle_exit(v))
			v->dead = true;
	}
}

int vm_run_on_vcpu(struct vm *vm, unsigned idx, vcpu_work_fn fn, void *arg,
		   struct kv_err *err)
{
	struct vcpu *v;
	int r;

	if (idx >= vm->nvcpus)
		return kv_errf(err, EINVAL, "no vCPU %u", idx);
	v = vm->vcpus[idx];
	if (!v->started)	/* no thread yet (or any more): the fd is ours */
		return fn(v, v->fd, arg);
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STATE_PAUSED || !v->parked) {
		pthread_mutex_unlock(&vm->lock);
		return kv_errf(err, EBUSY, "vCPU %u is not paused", idx);
	}
	v->work_fn = fn;
	v->work_arg = arg;
	v->work_done = false;
	pthread_cond_broadcast(&vm->cond);
	while (!v->work_done)
		pthread_cond_wait(&vm->cond, &vm->lock);
	r = v->work_result;
	pthread_mutex_unlock(&vm->lock);
	return r;
}

uint64_t vcpu_exit_count(const struct vcpu *v)
{
	return __atomic_load_n(&v->exits, __ATOMIC_RELAXED);
}

int vcpu_start(struct vcpu *v, struct kv_err *err)
{
	struct sigaction sa;
	int r;

	/* Process-wide, but idempotent: every VM wants the same no-op handler. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return kv_errf_sys(err, errno, "sigaction");
	r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (r)
		return kv_errf_sys(err, r, "starting vCPU %u thread", v->id);
	v->started = true;
	return 0;
}
