/*
 * devstate.h - CPU, irqchip and device state through the stream, each as a
 * vmstate section (the generic walker), so nothing here knows what is
 * inside a device.
 *   VM_ARCH: section
 *   VCPU:    u32 index, section
 *   DEVICE:  u8 name length, name, section
 */
#ifndef KVMOVE_MIGRATION_DEVSTATE_H
#define KVMOVE_MIGRATION_DEVSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "core/vm.h"

struct stream;

int devstate_send_all(struct vm *vm, struct stream *s, struct kv_err *err);

/* Receiver bookkeeping: which blocks arrived (each exactly once). */
struct devstate_rx {
	bool arch;
	bool vcpu[VM_MAX_VCPUS];
	bool device[VM_MAX_DEVICES];
};

int devstate_apply(struct vm *vm, struct devstate_rx *rx, uint16_t type,
		   const uint8_t *p, uint32_t len, struct kv_err *err);
/* After STATE_END: everything that must have arrived did. */
int devstate_complete(struct vm *vm, const struct devstate_rx *rx, struct kv_err *err);

#endif
