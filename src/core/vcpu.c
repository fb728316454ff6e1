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
 *
 * Auto-converge throttling is a duty cycle each vCPU enforces on itself:
 * after running for VM_THROTTLE_RUN_NS (a one-shot per-vCPU timer makes sure
 * the guest exits then), it sleeps for the time it *actually* ran times
 * p/(1-p).  A late signal only makes the run and the sleep longer together,
 * so the ratio holds whatever the host's signal latency.  The sleep waits
 * on vm->cond, so a pause or a stop wakes it at once.
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
#include "core/dirty.h"
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
	/* Throttle (thread-private): one-shot timer, start of the current
	 * run slice (0 = not throttled). */
	timer_t timer;
	bool have_timer;
	int64_t run_start_ns;
	int tid;		/* its thread's id, once started (atomic) */
};

/* The running vCPU's kvm_run, for the kick handler (thread-local). */
static __thread struct kvm_run *tls_run;

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
	(void)sig;
	/* KVM_RUN returns -EINTR; if the signal lands just before it, the
	 * flag makes it return at once (the throttle timer relies on this). */
	if (tls_run)
		__atomic_store_n(&tls_run->immediate_exit, 1, __ATOMIC_SEQ_CST);
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

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void arm_timer(struct vcpu *v, int64_t ns)
{
	struct itimerspec its = { .it_value = { ns / 1000000000LL, ns % 1000000000LL } };

	if (v->have_timer)
		timer_settime(v->timer, 0, &its, NULL);
}

/* Sleep until `until` (CLOCK_MONOTONIC ns), or less if the VM is to pause
 * or stop, or the throttle was lifted. */
static void throttle_sleep(struct vcpu *v, int64_t until)
{
	struct vm *vm = v->vm;
	struct timespec ts = { until / 1000000000LL, until % 1000000000LL };

	pthread_mutex_lock(&vm->lock);
	while (!vm->pause_req && !vm->exit_req &&
	       __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED) &&
	       pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&vm->lock);
}

/* Called between KVM_RUNs: start, keep or end the duty cycle. */
static void throttle_point(struct vcpu *v)
{
	unsigned pct = __atomic_load_n(&v->vm->throttle_pct, __ATOMIC_RELAXED);
	int64_t now, ran;

	if (!pct) {
		if (v->run_start_ns) {
			arm_timer(v, 0);
			v->run_start_ns = 0;
		}
		return;
	}
	now = mono_ns();
	if (!v->run_start_ns) {
		v->run_start_ns = now;
		arm_timer(v, VM_THROTTLE_RUN_NS);
		return;
	}
	ran = now - v->run_start_ns;
	if (ran < VM_THROTTLE_RUN_NS)
		return;
	throttle_sleep(v, now + vm_throttle_sleep_ns(ran, pct));
	v->run_start_ns = mono_ns();
	arm_timer(v, VM_THROTTLE_RUN_NS);
}

static void create_timer(struct vcpu *v)
{
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID,
				.sigev_signo = VCPU_KICK_SIGNAL };

	sev._sigev_un._tid = gettid();	/* sigev_notify_thread_id: glibc 2.36 lacks the name */
	/* Without it, throttling still happens at the guest's own exits. */
	v->have_timer = timer_create(CLOCK_MONOTONIC, &sev, &v->timer) == 0;
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
	tls_run = v->run;
	__atomic_store_n(&v->tid, (int)gettid(), __ATOMIC_RELEASE);
	create_timer(v);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		int r;

		/* Clear first, then look at the flags (see top of file). */
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		throttle_point(v);
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
				if (v->have_timer)
					timer_delete(v->timer);
				tls_run = NULL;
				return NULL;
			}
			/* time parked is not time run: a new slice after */
			v->run_start_ns = 0;
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
			if (errno == EINTR || errno == EAGAIN)
				continue;
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

int vcpu_thread_id(const struct vcpu *v)
{
	return __atomic_load_n(&v->tid, __ATOMIC_ACQUIRE);
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
