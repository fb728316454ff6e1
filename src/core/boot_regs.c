/*
 * boot_regs.c - initial register state for the boot vCPU.
 *
 * PVH entry (Xen's PVH boot ABI, as Linux and QEMU use it): 32-bit protected
 * mode, paging off, CS a flat 32-bit read/execute segment, DS/ES/SS flat
 * read/write, EBX = physical address of struct hvm_start_info, everything
 * else unspecified.  The other vCPUs stay in wait-for-SIPI (the in-kernel
 * LAPIC's reset state) until the guest starts them.  Called before the vCPU
 * threads exist, so touching the fd from here is safe.  vm_setup_boot64()
 * (below) is the 64-bit variant for Linux's bzImage entry.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vm.h"

static struct kvm_segment flat_seg(uint16_t sel, uint8_t type, uint8_t s)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = s, .l = 0, .g = 1,
	};
}

int vm_setup_pvh_boot(struct vm *vm, uint32_t entry, uint32_t start_info,
		      struct kv_err *err)
{
	int fd = vcpu_fd(vm->vcpus[0]);
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return kv_errf_sys(err, errno, "KVM_GET_SREGS");
	sregs.cs = flat_seg(0x10, 0xb, 1);	/* execute/read, accessed */
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_seg(0x18, 0x3, 1);
	sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = 0x20,
					 .type = 0xb, .present = 1, .s = 0 };
	sregs.ldt = (struct kvm_segment){ .selector = 0, .type = 0x2, .present = 1,
					  .unusable = 1 };
	sregs.cr0 = 0x11;	/* PE | ET */
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_SREGS");

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = entry;
	regs.rbx = start_info;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_REGS");
	return 0;
}

/*
 * 64-bit entry (Linux boot.rst, "64-bit Boot Protocol"): CR0.PE|PG, CR4.PAE,
 * EFER.LME|LMA, CS a 64-bit code segment and DS/ES/SS flat data segments
 * matching the GDT the loader wrote, IF clear, RSI = boot_params.
 */
int vm_setup_boot64(struct vm *vm, const struct vm_boot64 *b, struct kv_err *err)
{
	int fd = vcpu_fd(vm->vcpus[0]);
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return kv_errf_sys(err, errno, "KVM_GET_SREGS");
	sregs.cs = flat_seg(b->cs, 0xb, 1);
	sregs.cs.l = 1;
	sregs.cs.db = 0;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_seg(b->ds, 0x3, 1);
	sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = 0,
					 .type = 0xb, .present = 1, .s = 0 };
	sregs.ldt = (struct kvm_segment){ .selector = 0, .type = 0x2, .present = 1,
					  .unusable = 1 };
	sregs.gdt.base = b->gdt_base;
	sregs.gdt.limit = b->gdt_limit;
	sregs.cr0 = 0x80000011;	/* PG | ET | PE */
	sregs.cr3 = b->cr3;
	sregs.cr4 = 0x20;	/* PAE */
	sregs.efer = 0x500;	/* LMA | LME */
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_SREGS");

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = b->rip;
	regs.rsi = b->rsi;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return kv_errf_sys(err, errno, "KVM_SET_REGS");
	return 0;
}
