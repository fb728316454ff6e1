/*
 * emulate.c - the two instructions the VMM completes when KVM's emulator
 * refuses them (INT3, FWAIT), and the report for every other emulation
 * failure.  See emulate.h for why this exists and what it will not do.
 *
 * Never reached on VMX/SVM hosts for these instructions: there the guest
 * executes them natively and KVM never exits to us.
 */
#include "core/emulate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vm.h"

#define BP_VECTOR 3
#define CR0_MP (1ULL << 1)
#define CR0_TS (1ULL << 3)
#define FSW_ES 0x80			/* x87 exception summary: one is pending */

/* Skip legacy prefixes and REX; sets *rep if F3 was among them. */
static unsigned skip_prefixes(const uint8_t *b, unsigned n, bool *rep, bool *rex_w)
{
	unsigned i = 0;

	*rep = *rex_w = false;
	for (; i < n; i++) {
		switch (b[i]) {
		case 0xf3: *rep = true; continue;
		case 0x66: case 0x67: case 0xf0: case 0xf2:
		case 0x2e: case 0x36: case 0x3e: case 0x26: case 0x64: case 0x65:
			continue;
		}
		break;
	}
	if (i < n && (b[i] & 0xf0) == 0x40) {
		*rex_w = b[i] & 0x8;
		i++;
	}
	return i;
}

enum emu_insn emu_classify(const uint8_t *b, unsigned n)
{
	/* Exactly the one-byte forms: a prefixed 0xCC or 0x9B is not what
	 * the kernel emits and is left to the failure path. */
	if (n >= 1 && b[0] == 0xcc)
		return EMU_INSN_INT3;
	if (n >= 1 && b[0] == 0x9b)
		return EMU_INSN_FWAIT;
	return EMU_INSN_OTHER;
}

const char *emu_hint(const uint8_t *b, unsigned n)
{
	bool rep, rex_w;
	unsigned i = skip_prefixes(b, n, &rep, &rex_w);
	unsigned reg;

	if (i >= n)
		return NULL;
	switch (b[i]) {
	case 0xcc:
		return "int3";
	case 0x9b:
		return "fwait with an x87 exception pending or CR0.TS|MP set";
	case 0xcf:
		return "iret (KVM's emulator has no protected-mode IRET)";
	case 0xdb:
		return i + 1 < n && b[i + 1] == 0xe3 ? "fninit (kernel_fpu_begin())" : NULL;
	case 0xc4:
	case 0xc5:
		return "a VEX-encoded (AVX) instruction";
	case 0x0f:
		break;
	default:
		return NULL;
	}
	if (i + 1 >= n)
		return NULL;
	i++;
	reg = i + 1 < n ? (b[i + 1] >> 3) & 7 : 8;
	switch (b[i]) {
	case 0x0b:
		return "ud2 (a BUG() or WARN() in the guest kernel)";
	case 0xb8:
		return rep ? "popcnt (boot with clearcpuid=popcnt)" : NULL;
	case 0x01:
		if (i + 1 < n && (b[i + 1] == 0xca || b[i + 1] == 0xcb))
			return "clac/stac (boot with clearcpuid=smap)";
		if (i + 1 < n && (b[i + 1] == 0xd0 || b[i + 1] == 0xd1))
			return "xgetbv/xsetbv (boot with noxsave)";
		return NULL;
	case 0xae:	/* memory forms only: mod 3 is lfence/mfence/sfence */
		if (i + 1 < n && (b[i + 1] >> 6) != 3 && (reg == 2 || reg == 3))
			return "ldmxcsr/stmxcsr (kernel_fpu_begin(): the kernel is about to use "
			       "SIMD; clearcpuid=ssse3 keeps blake2s off it)";
		if (i + 1 < n && (b[i + 1] >> 6) != 3 && (reg == 4 || reg == 5 || reg == 6))
			return "xsave/xrstor/xsaveopt (boot with noxsave)";
		return NULL;
	case 0xc7:
		if (reg == 1)
			return rex_w ? "cmpxchg16b (boot with clearcpuid=cx16)" : "cmpxchg8b";
		if (reg >= 3 && reg <= 5)
			return "xrstors/xsavec/xsaves (boot with noxsave)";
		return NULL;
	default:
		return NULL;
	}
}

/* The instruction bytes: what KVM says it fetched (it may stop after the
 * first byte it could not decode) and, where the guest's page tables
 * allow, the full 15 bytes from guest memory; the longer of the two when
 * they agree, KVM's when they do not (the code changed under us).
 * Returns the count (0: none). */
static unsigned fetch(struct vm *vm, const struct kvm_run *run, const struct kvm_regs *regs,
		      const struct kvm_sregs *sregs, uint8_t *out)
{
	uint8_t mem[EMU_MAX_INSN];
	unsigned nkvm = 0;
	uint64_t linear;
	int n;

	if ((run->emulation_failure.ndata >= 3) &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		nkvm = run->emulation_failure.insn_size;
		if (nkvm > EMU_MAX_INSN)
			nkvm = EMU_MAX_INSN;
		memcpy(out, run->emulation_failure.insn_bytes, nkvm);
	}
	linear = sregs->cs.l ? regs->rip : sregs->cs.base + (uint32_t)regs->rip;
	n = gva_read(&vm->mem, sregs, linear, mem, EMU_MAX_INSN);
	if (n > (int)nkvm && !memcmp(mem, out, nkvm)) {
		memcpy(out, mem, (size_t)n);
		return (unsigned)n;
	}
	return nkvm;
}

static int set_rip(int fd, struct kvm_regs *regs, uint64_t len)
{
	regs->rip += len;
	return ioctl(fd, KVM_SET_REGS, regs) < 0 ? -errno : 0;
}

/* INT3 as the CPU executes it: a trap, so the #BP frame's RIP is the byte
 * after the 0xCC; the exception goes in as if the instruction had raised
 * it (the hypervisor delivers it through the guest's IDT on entry). */
static int do_int3(int fd, struct kvm_regs *regs)
{
	struct kvm_vcpu_events ev;
	int r;

	if (ioctl(fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	if (ev.exception.injected || ev.exception.pending)
		return -EBUSY;	/* an exception already on its way: not ours to stack */
	if ((r = set_rip(fd, regs, 1)))
		return r;
	ev.exception.injected = 1;
	ev.exception.nr = BP_VECTOR;
	ev.exception.has_error_code = 0;
	ev.exception.error_code = 0;
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
		    KVM_VCPUEVENT_VALID_SHADOW;
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &ev) < 0) {
		r = -errno;
		regs->rip -= 1;
		ioctl(fd, KVM_SET_REGS, regs);	/* best effort: leave it as found */
		return r;
	}
	return 0;
}

/* FWAIT checks for pending x87 exceptions (#MF) and CR0.TS with CR0.MP
 * (#NM); with neither it does nothing. */
static int do_fwait(int fd, struct kvm_regs *regs, const struct kvm_sregs *sregs)
{
	struct kvm_fpu fpu;

	if ((sregs->cr0 & (CR0_TS | CR0_MP)) == (CR0_TS | CR0_MP))
		return -ENOTSUP;
	if (ioctl(fd, KVM_GET_FPU, &fpu) < 0)
		return -errno;
	if (fpu.fsw & FSW_ES)
		return -ENOTSUP;
	return set_rip(fd, regs, 1);
}

void emu_format_bytes(const uint8_t *b, unsigned n, char *out, size_t size)
{
	size_t off = 0;

	if (size)
		out[0] = '\0';
	for (unsigned i = 0; i < n && off + 3 < size; i++)
		off += (size_t)snprintf(out + off, size - off, "%s%02x", i ? " " : "", b[i]);
}

static const char *mode_name(const struct kvm_sregs *s)
{
	if (!(s->cr0 & 1))
		return "real mode";
	if (s->cs.l)
		return "64-bit mode";
	return s->cs.db ? "32-bit protected mode" : "16-bit protected mode";
}

static void report(struct vm *vm, unsigned id, const struct kvm_run *run, bool have_regs,
		   const struct kvm_regs *regs, const struct kvm_sregs *sregs,
		   const uint8_t *b, unsigned n, const char *why)
{
	char bytes[EMU_BYTES_STR];
	const char *hint = n ? emu_hint(b, n) : NULL;

	emu_format_bytes(b, n, bytes, sizeof(bytes));
	__atomic_fetch_add(&vm->emu.failures, 1, __ATOMIC_RELAXED);
	if (!have_regs) {
		vm_request_shutdown(vm, VM_SHUTDOWN_ERROR, 1,
				    "vCPU %u: KVM internal error, suberror %u (registers "
				    "unreadable)", id, run->internal.suberror);
		return;
	}
	vm_request_shutdown(vm, VM_SHUTDOWN_ERROR, 1,
			    "vCPU %u: KVM could not emulate the instruction at rip 0x%" PRIx64
			    " (cpl %u, %s): bytes [%s]%s%s%s%s",
			    id, (uint64_t)regs->rip, sregs->cs.selector & 3, mode_name(sregs),
			    n ? bytes : "unreadable", hint ? " = " : "", hint ? hint : "",
			    why ? "; " : "", why ? why : "");
}

bool emu_internal_error(struct vm *vm, unsigned id, int fd, struct kvm_run *run)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint8_t b[EMU_MAX_INSN];
	unsigned n = 0;
	int r = 0;
	const char *why = NULL;

	if (ioctl(fd, KVM_GET_REGS, &regs) < 0 || ioctl(fd, KVM_GET_SREGS, &sregs) < 0) {
		report(vm, id, run, false, NULL, NULL, NULL, 0, NULL);
		return false;
	}
	if (run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION) {
		__atomic_fetch_add(&vm->emu.failures, 1, __ATOMIC_RELAXED);
		vm_request_shutdown(vm, VM_SHUTDOWN_ERROR, 1,
				    "vCPU %u: KVM internal error, suberror %u, at rip 0x%" PRIx64
				    " (cpl %u, %s)", id, run->internal.suberror, (uint64_t)regs.rip,
				    sregs.cs.selector & 3, mode_name(&sregs));
		return false;
	}
	n = fetch(vm, run, &regs, &sregs, b);
	switch (emu_classify(b, n)) {
	case EMU_INSN_INT3:
		if (!(sregs.cr0 & 1))
			break;		/* real mode: KVM does INT3 itself; not ours */
		if (!(r = do_int3(fd, &regs))) {
			__atomic_fetch_add(&vm->emu.int3, 1, __ATOMIC_RELAXED);
			return true;
		}
		why = r == -EBUSY ? "an exception was already pending" :
				    "injecting #BP failed";
		break;
	case EMU_INSN_FWAIT:
		if (!(r = do_fwait(fd, &regs, &sregs))) {
			__atomic_fetch_add(&vm->emu.fwait, 1, __ATOMIC_RELAXED);
			return true;
		}
		why = r == -ENOTSUP ? NULL : "reading the FPU state failed";
		break;
	case EMU_INSN_OTHER:
		break;
	}
	report(vm, id, run, true, &regs, &sregs, b, n, why);
	return false;
}

void emu_stats_get(struct vm *vm, struct emu_stats *out)
{
	out->int3 = __atomic_load_n(&vm->emu.int3, __ATOMIC_RELAXED);
	out->fwait = __atomic_load_n(&vm->emu.fwait, __ATOMIC_RELAXED);
	out->failures = __atomic_load_n(&vm->emu.failures, __ATOMIC_RELAXED);
}
