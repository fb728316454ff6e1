/*
 * cpu_state.c - get and set the whole architectural state of vCPUs and of
 * the in-kernel irqchip, PIT and kvmclock.
 *
 * Order matters on restore (it is the order QEMU learned the hard way):
 * system registers before general registers (the mode decides how RIP is
 * read), MSRs after XSAVE, vCPU events after MSRs, the LAPIC after the MP
 * state, and the TSC-deadline MSR only once the LAPIC is in place (it is
 * armed relative to the LAPIC timer mode).
 */
#include "core/cpu_state.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vm.h"

#define MSR_IA32_TSC_DEADLINE 0x6e0

static const struct vmstate_field vcpu_fields[] = {
	VMS_BLOB(struct vcpu_state, regs, 1),
	VMS_BLOB(struct vcpu_state, sregs, 1),
	VMS_BLOB(struct vcpu_state, xsave, 1),
	VMS_BLOB(struct vcpu_state, xcrs, 1),
	VMS_BLOB(struct vcpu_state, lapic, 1),
	VMS_BLOB(struct vcpu_state, events, 1),
	VMS_BLOB(struct vcpu_state, debugregs, 1),
	VMS_BLOB(struct vcpu_state, mp_state, 1),
	VMS_FIELD(struct vcpu_state, nmsrs, 1),
	VMS_ARRAY(struct vcpu_state, msr_index, 1),
	VMS_ARRAY(struct vcpu_state, msr_data, 1),
};

static int vcpu_validate(const void *p, struct kv_err *err)
{
	const struct vcpu_state *st = p;

	if (st->nmsrs > CPU_MAX_MSRS)
		return kv_errf(err, ERANGE, "%u MSRs, at most %d", st->nmsrs, CPU_MAX_MSRS);
	if (st->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return kv_errf(err, ERANGE, "%u XCRs, at most %d", st->xcrs.nr_xcrs, KVM_MAX_XCRS);
	if (st->xcrs.flags)
		return kv_errf(err, ERANGE, "XCR flags 0x%x", st->xcrs.flags);
	for (uint32_t i = 0; i < st->xcrs.nr_xcrs; i++) {
		uint64_t v = st->xcrs.xcrs[i].value;
		/* only XCR0 exists on x86; its architectural rules (SDM 13.3):
		 * x87 always, AVX needs SSE, the AVX-512 trio all or none */
		if (st->xcrs.xcrs[i].xcr != 0)
			return kv_errf(err, ERANGE, "XCR%u does not exist", st->xcrs.xcrs[i].xcr);
		if (!(v & 1) || ((v & 4) && !(v & 2)) ||
		    ((v & 0xe0) && ((v & 0xe0) != 0xe0 || !(v & 4))))
			return kv_errf(err, ERANGE, "XCR0 0x%llx is not a valid state mask",
				       (unsigned long long)v);
	}
	switch (st->mp_state.mp_state) {
	case KVM_MP_STATE_RUNNABLE:
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED:
	case KVM_MP_STATE_HALTED:
	case KVM_MP_STATE_SIPI_RECEIVED:
		return 0;	/* the x86 states (the others are s390's or SEV's) */
	default:
		return kv_errf(err, ERANGE, "MP state %u is not an x86 vCPU state",
			       st->mp_state.mp_state);
	}
}

const struct vmstate_desc vcpu_state_vmstate =
	VMS_DESC("vcpu", struct vcpu_state, 1, vcpu_fields, vcpu_validate);

static const struct vmstate_field arch_fields[] = {
	VMS_BLOB(struct vm_arch_state, pic_master, 1),
	VMS_BLOB(struct vm_arch_state, pic_slave, 1),
	VMS_BLOB(struct vm_arch_state, ioapic, 1),
	VMS_BLOB(struct vm_arch_state, pit, 1),
	VMS_BLOB(struct vm_arch_state, clock, 1),
};

static int arch_validate(const void *p, struct kv_err *err)
{
	const struct vm_arch_state *st = p;

	if (st->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
	    st->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
	    st->ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
		return kv_errf(err, EINVAL, "irqchip ids do not match their slots");
	return 0;
}

const struct vmstate_desc vm_arch_vmstate =
	VMS_DESC("vm-arch", struct vm_arch_state, 1, arch_fields, arch_validate);

/* ---- MSRs ---- */

struct msr_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[CPU_MAX_MSRS];
};

static int probe_on_vcpu(struct vcpu *v, int fd, void *arg)
{
	struct vm *vm = arg;
	struct msr_buf *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	/* KVM_GET_MSRS stops at the first MSR it cannot read: drop it, retry. */
	for (;;) {
		b->hdr.nmsrs = vm->nmsrs;
		for (uint32_t i = 0; i < vm->nmsrs; i++)
			b->e[i] = (struct kvm_msr_entry){ .index = vm->msr_index[i] };
		r = ioctl(fd, KVM_GET_MSRS, b);
		if (r < 0) {
			r = -errno;
			break;
		}
		if ((uint32_t)r >= vm->nmsrs) {
			r = 0;
			break;
		}
		memmove(&vm->msr_index[r], &vm->msr_index[r + 1],
			(vm->nmsrs - (uint32_t)r - 1) * sizeof(uint32_t));
		vm->nmsrs--;
	}
	free(b);
	return r;
}

int cpu_probe_msrs(struct vm *vm, struct kv_err *err)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	struct kvm_msr_list *list;
	int r;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return kv_errf_sys(err, errno, "KVM_GET_MSR_INDEX_LIST");
	if (probe.nmsrs > CPU_MAX_MSRS)
		return kv_errf(err, ENOSPC, "KVM lists %u MSRs to save; kvmove handles %d",
			       probe.nmsrs, CPU_MAX_MSRS);
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return kv_errf(err, ENOMEM, "MSR list");
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		r = kv_errf_sys(err, errno, "KVM_GET_MSR_INDEX_LIST");
		free(list);
		return r;
	}
	vm->nmsrs = list->nmsrs;
	memcpy(vm->msr_index, list->indices, list->nmsrs * sizeof(uint32_t));
	free(list);
	r = vm_run_on_vcpu(vm, 0, probe_on_vcpu, vm, err);
	if (r)
		return kv_errf_sys(err, r, "probing MSRs");
	return 0;
}

static bool msr_allowed(const struct vm *vm, uint32_t index)
{
	for (uint32_t i = 0; i < vm->nmsrs; i++)
		if (vm->msr_index[i] == index)
			return true;
	return false;
}

/* Set the MSRs of st for which want(index) holds; all must be accepted. */
static int set_msrs(int fd, const struct vcpu_state *st, bool deadline_only)
{
	struct msr_buf *b = calloc(1, sizeof(*b));
	uint32_t n = 0;
	int r;

	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		if ((st->msr_index[i] == MSR_IA32_TSC_DEADLINE) != deadline_only)
			continue;
		b->e[n++] = (struct kvm_msr_entry){ .index = st->msr_index[i],
						    .data = st->msr_data[i] };
	}
	b->hdr.nmsrs = n;
	r = n ? ioctl(fd, KVM_SET_MSRS, b) : 0;
	if (r < 0)
		r = -errno;
	else if ((uint32_t)r != n)
		r = -EINVAL;	/* KVM refused entry r */
	else
		r = 0;
	free(b);
	return r;
}

/* ---- per vCPU ---- */

struct work {
	struct vm *vm;
	struct vcpu_state *st;
	const struct vcpu_state *cst;
	const char *failed;	/* which ioctl, for the message */
};

#define TRY(call, what) do { if ((call) < 0) { w->failed = what; return -errno; } } while (0)

static int save_on_vcpu(struct vcpu *v, int fd, void *arg)
{
	struct work *w = arg;
	struct vcpu_state *st = w->st;
	struct msr_buf *b;
	int r;

	memset(st, 0, sizeof(*st));
	TRY(ioctl(fd, KVM_GET_REGS, &st->regs), "KVM_GET_REGS");
	TRY(ioctl(fd, KVM_GET_SREGS2, &st->sregs), "KVM_GET_SREGS2");
	TRY(ioctl(fd, KVM_GET_XSAVE, &st->xsave), "KVM_GET_XSAVE");
	TRY(ioctl(fd, KVM_GET_XCRS, &st->xcrs), "KVM_GET_XCRS");
	TRY(ioctl(fd, KVM_GET_LAPIC, &st->lapic), "KVM_GET_LAPIC");
	TRY(ioctl(fd, KVM_GET_VCPU_EVENTS, &st->events), "KVM_GET_VCPU_EVENTS");
	TRY(ioctl(fd, KVM_GET_DEBUGREGS, &st->debugregs), "KVM_GET_DEBUGREGS");
	TRY(ioctl(fd, KVM_GET_MP_STATE, &st->mp_state), "KVM_GET_MP_STATE");

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->hdr.nmsrs = w->vm->nmsrs;
	for (uint32_t i = 0; i < w->vm->nmsrs; i++)
		b->e[i].index = w->vm->msr_index[i];
	r = ioctl(fd, KVM_GET_MSRS, b);
	if (r < 0 || (uint32_t)r != w->vm->nmsrs) {
		w->failed = "KVM_GET_MSRS";
		free(b);
		return r < 0 ? -errno : -EIO;
	}
	st->nmsrs = w->vm->nmsrs;
	for (uint32_t i = 0; i < st->nmsrs; i++) {
		st->msr_index[i] = b->e[i].index;
		st->msr_data[i] = b->e[i].data;
	}
	free(b);
	return 0;
}

static int load_on_vcpu(struct vcpu *v, int fd, void *arg)
{
	struct work *w = arg;
	const struct vcpu_state *st = w->cst;
	struct kvm_vcpu_events ev = st->events;
	int r;

	TRY(ioctl(fd, KVM_SET_SREGS2, &st->sregs), "KVM_SET_SREGS2");
	TRY(ioctl(fd, KVM_SET_REGS, &st->regs), "KVM_SET_REGS");
	TRY(ioctl(fd, KVM_SET_XSAVE, &st->xsave), "KVM_SET_XSAVE");
	TRY(ioctl(fd, KVM_SET_XCRS, &st->xcrs), "KVM_SET_XCRS");
	r = set_msrs(fd, st, false);
	if (r) {
		w->failed = "KVM_SET_MSRS";
		return r;
	}
	/* Everything the source saved is valid: say so, so KVM takes NMI,
	 * SIPI vector and SMM state too. */
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
		    KVM_VCPUEVENT_VALID_SHADOW;
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
		    KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM |
		    KVM_VCPUEVENT_VALID_PAYLOAD;
	TRY(ioctl(fd, KVM_SET_VCPU_EVENTS, &ev), "KVM_SET_VCPU_EVENTS");
	TRY(ioctl(fd, KVM_SET_MP_STATE, &st->mp_state), "KVM_SET_MP_STATE");
	TRY(ioctl(fd, KVM_SET_LAPIC, &st->lapic), "KVM_SET_LAPIC");
	r = set_msrs(fd, st, true);
	if (r) {
		w->failed = "KVM_SET_MSRS (TSC deadline)";
		return r;
	}
	TRY(ioctl(fd, KVM_SET_DEBUGREGS, &st->debugregs), "KVM_SET_DEBUGREGS");
	return 0;
}

int vcpu_state_save(struct vm *vm, unsigned idx, struct vcpu_state *st, struct kv_err *err)
{
	struct work w = { .vm = vm, .st = st };
	int r;

	kv_err_clear(err);
	r = vm_run_on_vcpu(vm, idx, save_on_vcpu, &w, err);
	if (r && w.failed)
		return kv_errf_sys(err, r, "vCPU %u: %s", idx, w.failed);
	return r;
}

int vcpu_state_load(struct vm *vm, unsigned idx, const struct vcpu_state *st,
		    struct kv_err *err)
{
	struct work w = { .vm = vm, .cst = st };
	int r;

	/* The stream is untrusted: only MSRs this VM could have saved. */
	r = vcpu_validate(st, err);
	if (r)
		return r;
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (!msr_allowed(vm, st->msr_index[i]))
			return kv_errf(err, EPERM, "vCPU %u: MSR 0x%x is not one this host "
				       "saves", idx, st->msr_index[i]);
	kv_err_clear(err);
	r = vm_run_on_vcpu(vm, idx, load_on_vcpu, &w, err);
	if (r && w.failed)
		return kv_errf_sys(err, r, "vCPU %u: %s", idx, w.failed);
	return r;
}

/* ---- per VM ---- */

int vm_arch_state_save(struct vm *vm, struct vm_arch_state *st, struct kv_err *err)
{
	memset(st, 0, sizeof(*st));
	st->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &st->pic_master) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &st->pic_slave) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &st->ioapic) < 0)
		return kv_errf_sys(err, errno, "KVM_GET_IRQCHIP");
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &st->pit) < 0)
		return kv_errf_sys(err, errno, "KVM_GET_PIT2");
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &st->clock) < 0)
		return kv_errf_sys(err, errno, "KVM_GET_CLOCK");
	return 0;
}

int vm_arch_state_load(struct vm *vm, const struct vm_arch_state *st, struct kv_err *err)
{
	struct kvm_clock_data clock = { .clock = st->clock.clock };
	int r = arch_validate(st, err);

	if (r)
		return r;
	if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &st->pic_master) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &st->pic_slave) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &st->ioapic) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_IRQCHIP");
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &st->pit) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_PIT2");
	/* The guest's clock continues from the value it had at the pause (no
	 * KVM_CLOCK_REALTIME: the time the VM was stopped does not count). */
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_CLOCK");
	return 0;
}
