/*
 * emulate.h - what the VMM does when KVM gives up on an instruction
 * (KVM_EXIT_INTERNAL_ERROR, KVM_INTERNAL_ERROR_EMULATION).
 *
 * On VMX/SVM hardware guest code runs natively and this path is only ever
 * a real failure.  On a PVM host (nested KVM without hardware
 * virtualisation) a stock kernel's CPL-0 code runs in KVM's instruction
 * emulator, which refuses a handful of instructions.  For two of them the
 * hardware behaviour is trivial and is finished here:
 *   INT3  (0xCC): the guest takes #BP, as a trap: RIP past the 0xCC, the
 *                 exception injected through KVM_SET_VCPU_EVENTS.
 *   FWAIT (0x9B): with no unmasked x87 exception pending and not (CR0.TS and
 *                 CR0.MP), a no-op: RIP + 1.
 * Anything else stops the VM with a report: vCPU, RIP, CPL, mode, the
 * instruction bytes (from KVM's exit data, or read from guest memory
 * through the guest's page tables) and, for instructions known to fail on
 * PVM, the command-line option that avoids them.  docs/linux-guests.md
 * has the background.  This is deliberately not an emulator.
 */
#ifndef KVMOVE_CORE_EMULATE_H
#define KVMOVE_CORE_EMULATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "core/mem.h"

#define EMU_MAX_INSN 15

/* Counters per VM (struct vm), updated with atomics by vCPU threads. */
struct emu_stats {
	uint64_t int3;		/* #BP delivered for an INT3 KVM could not emulate */
	uint64_t fwait;		/* FWAIT completed as a no-op */
	uint64_t failures;	/* emulation failures that stopped the VM */
};

enum emu_insn {
	EMU_INSN_OTHER,
	EMU_INSN_INT3,
	EMU_INSN_FWAIT,
};

/* What the bytes at RIP are, as far as this file cares (pure). */
enum emu_insn emu_classify(const uint8_t *bytes, unsigned n);

/* "0f ae 54" (pure); out holds at least EMU_BYTES_STR for 15 bytes, and a
 * shorter buffer gets as many whole bytes as fit. */
#define EMU_BYTES_STR (3 * EMU_MAX_INSN)
void emu_format_bytes(const uint8_t *bytes, unsigned n, char *out, size_t size);

/* A short name and advice for instructions known to fail in KVM's
 * emulator on PVM hosts, or NULL (pure). */
const char *emu_hint(const uint8_t *bytes, unsigned n);

/*
 * Read len bytes at guest-virtual address gva as the CPU would fetch them:
 * paging off -> physical; long mode 4-level paging (CR4.PAE, EFER.LMA,
 * no LA57) -> walk CR3.  Other modes, non-present entries, reserved-size
 * pages and addresses outside RAM give -EFAULT / -ENOTSUP; every entry
 * read is bounds-checked against guest RAM.  Returns bytes read (may be
 * short at an unmapped page) or -errno.
 */
int gva_read(const struct guest_mem *mem, const struct kvm_sregs *sregs, uint64_t gva,
	     uint8_t *buf, unsigned len);

struct vm;

/*
 * Called on the vCPU's own thread for KVM_EXIT_INTERNAL_ERROR.  Returns
 * true if the instruction was completed and the vCPU may run on; false
 * after it has asked the VM to shut down with a clear message.
 */
bool emu_internal_error(struct vm *vm, unsigned vcpu_id, int vcpu_fd, struct kvm_run *run);

/* A consistent-enough snapshot of the VM's counters. */
void emu_stats_get(struct vm *vm, struct emu_stats *out);

#endif
