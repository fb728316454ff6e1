/*
 * vm.h - one KVM virtual machine: its memory, vCPUs, in-kernel irqchip and
 * PIT, I/O buses and device table.  Only src/core/ issues KVM ioctls.
 *
 * Lifecycle:  vm_create() -> add devices -> load a kernel -> vm_start()
 *             -> vm_pause()/vm_resume() ... -> vm_stop() -> vm_destroy().
 * Threads: one per vCPU.  Only a vCPU's own thread touches its fd; other
 * threads ask it to pause (request + immediate_exit + signal) and wait for
 * the answer.  Anything may call vm_request_shutdown(); the owner (main
 * loop) sees it through vm_shutdown_fd() and then calls vm_stop().
 */
#ifndef KVMOVE_CORE_VM_H
#define KVMOVE_CORE_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "core/cpu_state.h"
#include "core/emulate.h"
#include "core/mem.h"
#include "devices/bus.h"

#define VM_MAX_VCPUS 64
#define VM_MAX_DEVICES 32
#define VM_NAME_MAX 64
/* Auto-converge: a throttled vCPU runs this long, then sleeps in proportion
 * (QEMU's CPU_THROTTLE_TIMESLICE_NS is the same 10 ms). */
#define VM_THROTTLE_RUN_NS 10000000LL

struct device;
struct vcpu;

struct vm_config {
	char name[VM_NAME_MAX];
	uint64_t mem_size;
	unsigned ncpus;
	/* CPUID to give the guest; NULL = everything KVM supports.  A migration
	 * destination passes the source's, so the guest's CPU never changes
	 * under it (preflight has checked this host supports it). */
	const struct kvm_cpuid2 *cpuid;
	/* The CPU model that CPUID was made from ("" = host), which travels
	 * with the VM (core/cpumodel.h). */
	char cpu_model[256];
	/* Same-host hand-over (has_memfd): guest RAM is this memfd, whose
	 * pages the previous VMM filled (a dup is kept; the caller keeps
	 * memfd), instead of a new, empty one. */
	bool has_memfd;
	int memfd;
	/* Otherwise guest RAM is new, on this backend (core/mem.h). */
	enum mem_backend mem_backend;
};

enum vm_state {
	VM_STATE_CREATED,	/* built, vCPUs not started */
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_SHUTDOWN,	/* vCPU threads stopped for good */
};

enum vm_shutdown_reason {
	VM_SHUTDOWN_NONE,
	VM_SHUTDOWN_HOST,	/* quit command */
	VM_SHUTDOWN_SIGNAL,	/* SIGINT, SIGTERM, SIGHUP */
	VM_SHUTDOWN_GUEST,	/* guest asked (debug-exit port) */
	VM_SHUTDOWN_GUEST_RESET,	/* triple fault */
	VM_SHUTDOWN_ERROR,	/* KVM reported an error we cannot continue from */
	VM_SHUTDOWN_MIGRATED,	/* the VM now lives elsewhere (or in a saved file) */
};

/* Events the VM reports to whoever embeds it (the control socket). */
enum vm_event { VM_EVENT_STOP, VM_EVENT_RESUME };
typedef void (*vm_event_fn)(void *opaque, enum vm_event ev);

struct vm {
	struct vm_config cfg;
	int kvm_fd, vm_fd;
	int vcpu_mmap_size;
	struct guest_mem mem;
	struct kvm_cpuid2 *cpuid;	/* supported CPUID, template for vCPUs */
	uint32_t nmsrs;			/* MSRs KVM can save for this VM */
	uint32_t msr_index[CPU_MAX_MSRS];

	struct vcpu *vcpus[VM_MAX_VCPUS];
	unsigned nvcpus;

	struct bus pio_bus, mmio_bus;
	struct device *devices[VM_MAX_DEVICES];
	unsigned ndevices;

	/* Run state; all below guarded by lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_req;		/* vCPUs should park */
	bool exit_req;		/* vCPU threads should end */
	bool had_threads;	/* vm_stop_begin() found threads to join */
	unsigned parked;	/* vCPUs currently parked */
	struct timespec started;

	/* Shutdown request (first one wins). */
	enum vm_shutdown_reason shutdown_reason;
	int shutdown_code;
	char shutdown_msg[KV_ERR_MAX];
	int shutdown_efd;	/* eventfd, readable once shutdown is requested */

	vm_event_fn on_event;
	void *event_opaque;

	/* Migration support (dirty.c). */
	bool manual_dirty_protect;
	uint64_t *slot_dirty;	/* scratch for KVM_GET_DIRTY_LOG, memfd-page order */
	unsigned throttle_pct;	/* auto-converge: read by vCPU threads */

	struct emu_stats emu;	/* emulate.c: instructions finished for KVM */
};

/* What this host's KVM can offer a guest (malloc'ed; free it). */
int kvm_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, struct kv_err *err);
/* The same from /dev/kvm, less the features in hide (may be NULL). */
struct cpu_feats;
int kvm_host_cpuid(const struct cpu_feats *hide, struct kvm_cpuid2 **out, struct kv_err *err);

int vm_create(struct vm **out, const struct vm_config *cfg, struct kv_err *err);
void vm_destroy(struct vm *vm);

/* Hand a device to the VM (it destroys it). */
int vm_add_device(struct vm *vm, struct device *dev, struct kv_err *err);

/* Put the boot vCPU at a 32-bit PVH entry point with EBX = start_info. */
int vm_setup_pvh_boot(struct vm *vm, uint32_t entry, uint32_t start_info,
		      struct kv_err *err);

/* Put the boot vCPU at a 64-bit entry (Linux's 64-bit boot protocol):
 * long mode with paging on (cr3: identity map set up by the loader), the
 * loader's GDT with a 64-bit code segment at cs and flat data at ds,
 * interrupts off, RSI = rsi. */
struct vm_boot64 {
	uint64_t rip, rsi, cr3, gdt_base;
	uint16_t gdt_limit, cs, ds;
};
int vm_setup_boot64(struct vm *vm, const struct vm_boot64 *b, struct kv_err *err);

int vm_start(struct vm *vm, struct kv_err *err);
/* Start the vCPU threads, parked (paused: a paused VM that migrated stays
 * paused; vm_resume() lets it run) or running. */
int vm_start_as(struct vm *vm, bool paused, struct kv_err *err);
/* Park every vCPU outside KVM_RUN (pending I/O completed). Idempotent. */
int vm_pause(struct vm *vm, struct kv_err *err);
int vm_resume(struct vm *vm, struct kv_err *err);
/* End every vCPU thread for good (the VM can't run again). */
void vm_stop(struct vm *vm);
/* Its first half: tell every vCPU to end, without waiting (then release
 * whatever they may be blocked on, then vm_stop()). */
void vm_stop_begin(struct vm *vm);
/* Post-copy without a connection: ask the vCPUs to park and hold them,
 * without waiting (one blocked on a missing page cannot park until the
 * page comes); on=false lets them go.  The VM's state does not change. */
void vm_hold(struct vm *vm, bool on);

void vm_request_shutdown(struct vm *vm, enum vm_shutdown_reason reason, int code,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int vm_shutdown_fd(const struct vm *vm);
enum vm_state vm_get_state(struct vm *vm);
const char *vm_state_name(enum vm_state st);
const char *vm_shutdown_reason_name(enum vm_shutdown_reason r);

/* Shared resources of the devices (disk image locks): all or nothing.
 * Whoever holds them may run the VM. */
int vm_acquire_resources(struct vm *vm, struct kv_err *err);
/* Each device writes out what it buffers on the host (dev_ops.flush), the
 * VM running on: before a pause whose own flush is downtime. */
void vm_flush_devices(struct vm *vm);
void vm_release_resources(struct vm *vm);
bool vm_has_resources(const struct vm *vm);

/* Kick every vCPU out of KVM_RUN once (they go straight back in unless
 * asked to park). */
void vm_kick_all(struct vm *vm);

/* Assert (level=1) or deassert an ISA IRQ line on the in-kernel PIC/IOAPIC. */
int vm_irq_line(struct vm *vm, unsigned irq, int level);

/* Deliver an MSI (from a device's MSI-X table) through the in-kernel LAPICs. */
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);

uint64_t vm_uptime_ms(struct vm *vm);

/*
 * Run fn on vCPU idx's own thread (the only thread allowed to touch its fd)
 * and return its result.  The VM must be paused; before vm_start() and
 * after vm_stop() fn runs on the caller's thread.
 */
typedef int (*vcpu_work_fn)(struct vcpu *vcpu, int vcpu_fd, void *arg);
int vm_run_on_vcpu(struct vm *vm, unsigned idx, vcpu_work_fn fn, void *arg,
		   struct kv_err *err);
uint64_t vcpu_exit_count(const struct vcpu *vcpu);
/* The host thread id of a started vCPU (0 before), for query-cpus-fast. */
int vcpu_thread_id(const struct vcpu *vcpu);

/* ---- vcpu.c (internal to core) ---- */
int vcpu_create(struct vm *vm, unsigned id, struct vcpu **out, struct kv_err *err);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu, struct kv_err *err);
void vcpu_kick(struct vcpu *vcpu);
void vcpu_join(struct vcpu *vcpu);
int vcpu_fd(const struct vcpu *vcpu);

#endif
