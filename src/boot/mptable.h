/*
 * mptable.h - the Intel MultiProcessor Specification 1.4 tables through
 * which Linux finds the VM's CPUs and interrupt controllers (no ACPI):
 * a floating pointer in the BIOS area (which the e820 map reserves) and a
 * configuration table with
 *   - one processor entry per vCPU (local APIC id = vCPU index, vCPU 0 the
 *     bootstrap processor),
 *   - buses PCI (id 0) and ISA (id 1),
 *   - the IOAPIC (id = ncpus, 0xfec00000: KVM's in-kernel IOAPIC),
 *   - I/O interrupt entries for ISA IRQs 0, 1, 3..15 -> IOAPIC pin = IRQ,
 *     edge/active-high, and for INTA# of PCI slots 0..31 -> pin 16 + slot % 8,
 *     level/active-high (devices/pci.h),
 *   - local interrupt entries: LINT0 ExtINT (the 8259), LINT1 NMI.
 *
 * ISA IRQ 0 goes to pin 0, not pin 2 as on PC firmware: kvmove keeps KVM's
 * default GSI routing, where the in-kernel PIT raises GSI 0 = IOAPIC pin 0
 * (QEMU reroutes GSI 0 to pin 2 and describes that with an override).
 * Polarity is moot for KVM's IOAPIC: a line at level 1 is asserted.
 */
#ifndef KVMOVE_BOOT_MPTABLE_H
#define KVMOVE_BOOT_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "core/mem.h"

#define MPTABLE_GPA 0xf0000ULL		/* floating pointer; the table follows */
#define MPTABLE_MAX_SIZE 0x1000		/* room reserved for both */
#define MPTABLE_IOAPIC_GPA 0xfec00000u
#define MPTABLE_LAPIC_GPA 0xfee00000u
#define MPTABLE_BUS_PCI 0
#define MPTABLE_BUS_ISA 1
#define MPTABLE_PCI_SLOTS 32

/* Build floating pointer + configuration table for a load at gpa into buf
 * (pure).  Returns the byte count or -errno. */
int mptable_build(uint8_t *buf, size_t cap, uint32_t gpa, unsigned ncpus,
		  struct kv_err *err);

/* Build it and write it to MPTABLE_GPA (dirty-marked). */
int mptable_write(struct guest_mem *mem, unsigned ncpus, struct kv_err *err);

#endif
