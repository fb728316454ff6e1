/*
 * device.h - what every emulated device looks like to the rest of the VMM.
 *
 * One struct dev_ops per device type: I/O handlers, reset, destroy, and the
 * description of its migratable state.  The bus dispatches guest accesses to
 * the handlers and knows nothing else; migration walks vm->devices and asks
 * each one for its state through dev_ops.state / state_ptr, never touching
 * device internals.
 */
#ifndef KVMOVE_DEVICES_DEVICE_H
#define KVMOVE_DEVICES_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "state/vmstate.h"

struct device;
struct vm;

struct dev_ops {
	const char *type;
	/*
	 * A guest access of size 1, 2 or 4 (8 for MMIO) at offset into the
	 * range the device registered.  For reads fill data.  Must never fail
	 * in a way that hurts the VMM: bad accesses are ignored / read as ~0.
	 */
	void (*pio)(struct device *dev, uint64_t offset, bool is_write,
		    uint8_t *data, unsigned size);
	void (*mmio)(struct device *dev, uint64_t offset, bool is_write,
		     uint8_t *data, unsigned size);
	void (*reset)(struct device *dev);
	/* Called with the VM paused (e.g. flush buffered output). */
	void (*pause)(struct device *dev);
	void (*destroy)(struct device *dev);
	/* Migratable state: described by *state, stored at state_ptr(dev). */
	const struct vmstate_desc *state;
	void *(*state_ptr)(struct device *dev);
};

struct device {
	const struct dev_ops *ops;
	struct vm *vm;		/* owner: raise IRQs, request shutdown */
	char name[32];		/* instance name, e.g. "serial0" */
};

#endif
