/*
 * cpu_state.h - everything KVM holds about a running guest that is not in
 * its RAM: per vCPU (registers, system registers, FPU/XSAVE, XCRs, every MSR
 * KVM lists, LAPIC, pending events, debug registers, MP state) and per VM
 * (PIC, IOAPIC, PIT, kvmclock).  Saved and loaded on the vCPU's own thread
 * while paused; described by state tables so the migration stream carries
 * them through the one generic walker.
 */
#ifndef KVMOVE_CORE_CPU_STATE_H
#define KVMOVE_CORE_CPU_STATE_H

#include <linux/kvm.h>
#include <stdint.h>

#include "common/err.h"
#include "state/vmstate.h"

#define CPU_MAX_MSRS 128

struct vm;

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs2 sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_mp_state mp_state;
	uint32_t nmsrs;
	uint32_t msr_index[CPU_MAX_MSRS];
	uint64_t msr_data[CPU_MAX_MSRS];
};

struct vm_arch_state {
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

extern const struct vmstate_desc vcpu_state_vmstate;
extern const struct vmstate_desc vm_arch_vmstate;

/* Which MSRs this host's KVM can save for this VM (probed once). */
int cpu_probe_msrs(struct vm *vm, struct kv_err *err);

int vcpu_state_save(struct vm *vm, unsigned idx, struct vcpu_state *st, struct kv_err *err);
int vcpu_state_load(struct vm *vm, unsigned idx, const struct vcpu_state *st,
		    struct kv_err *err);
int vm_arch_state_save(struct vm *vm, struct vm_arch_state *st, struct kv_err *err);
int vm_arch_state_load(struct vm *vm, const struct vm_arch_state *st, struct kv_err *err);

#endif
