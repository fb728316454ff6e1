/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share: a VM without
 * KVM (real guest memory on a memfd, real devices, no vCPUs), a way to put
 * its memory back as it was before an input, and a check that stops the
 * run with a message when a target's own invariant breaks.
 *
 * libFuzzer calls LLVMFuzzerTestOneInput() with nothing but the bytes, so
 * the VM lives in a static of each target, made once and reused: building
 * it per input would cost more than the code under test.  Every input
 * leaves it as it found it (fuzz_mem_reset(), fresh receiver bookkeeping),
 * which keeps the targets deterministic.
 */
#ifndef KVMOVE_FUZZ_FUZZ_H
#define KVMOVE_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct guest_mem;

/* Guest RAM sizes: the smallest VM, and one with RAM on both sides of the
 * PCI hole (3 GiB + 16 MiB: the memfd is sparse, only touched pages cost). */
#define FUZZ_MEM_SMALL (16ULL << 20)
#define FUZZ_MEM_SPLIT ((3ULL << 30) + (16ULL << 20))

/* What the fake VM carries besides memory. */
enum fuzz_vm_devices {
	FUZZ_VM_BARE,		/* memory only */
	FUZZ_VM_DEVICES,	/* serial0, debug-exit, pci0, blk0 (a memfd disk) */
};

/*
 * A VM as vm_create() builds it, minus KVM: no kvm or vm fd (-1, so a
 * stray ioctl fails with EBADF instead of reaching another file), no vCPUs
 * (struct vcpu needs a KVM vCPU fd; vCPU state is fuzzed through its state
 * table instead).  Aborts on failure: a target cannot run without it.
 */
struct vm *fuzz_vm_new(uint64_t mem_size, enum fuzz_vm_devices devices);

/* Drop every page of guest memory (a hole again, as after mem_init) and
 * clear the VMM dirty bitmap. */
void fuzz_mem_reset(struct guest_mem *mem);

/* An invariant of the code under test broke: say which, then abort (a
 * crash for libFuzzer, which saves the input). */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define FUZZ_CHECK(cond, ...) do { if (!(cond)) fuzz_fail(__VA_ARGS__); } while (0)

/* libFuzzer's entry point, declared for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
