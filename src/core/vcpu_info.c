/*
 * vcpu_info.c - a debugging summary of a vCPU (where it is, in which mode),
 * read on the vCPU's own thread while the VM is paused.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vm.h"
#include "core/vcpu_info.h"

static int read_summary(struct vcpu *v, int fd, void *arg)
{
	struct vcpu_summary *s = arg;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_mp_state mp;

	if (ioctl(fd, KVM_GET_REGS, &regs) < 0 || ioctl(fd, KVM_GET_SREGS, &sregs) < 0 ||
	    ioctl(fd, KVM_GET_MP_STATE, &mp) < 0)
		return -errno;
	s->rip = regs.rip;
	s->rsp = regs.rsp;
	s->rflags = regs.rflags;
	s->cr0 = sregs.cr0;
	s->cr3 = sregs.cr3;
	s->cr4 = sregs.cr4;
	s->efer = sregs.efer;
	s->cpl = sregs.cs.selector & 3;
	s->mp_state = mp.mp_state;
	s->have_regs = true;
	return 0;
}

int vcpu_get_summary(struct vm *vm, unsigned idx, struct vcpu_summary *s,
		     struct kv_err *err)
{
	int r;

	memset(s, 0, sizeof(*s));
	if (idx >= vm->nvcpus)
		return kv_errf(err, EINVAL, "no vCPU %u", idx);
	s->exits = vcpu_exit_count(vm->vcpus[idx]);
	/* registers only while paused (no stale snapshots), and never while
	 * a VM is being built or torn down by another thread */
	if (vm_get_state(vm) != VM_STATE_PAUSED)
		return 0;
	r = vm_run_on_vcpu(vm, idx, read_summary, s, err);
	if (r < 0 && err && !err->msg[0])
		kv_errf_sys(err, r, "vCPU %u: reading registers", idx);
	return r;
}

const char *vcpu_mp_state_name(uint32_t st)
{
	switch (st) {
	case KVM_MP_STATE_RUNNABLE: return "runnable";
	case KVM_MP_STATE_UNINITIALIZED: return "uninitialized";
	case KVM_MP_STATE_INIT_RECEIVED: return "init-received";
	case KVM_MP_STATE_HALTED: return "halted";
	case KVM_MP_STATE_SIPI_RECEIVED: return "sipi-received";
	}
	return "other";
}
