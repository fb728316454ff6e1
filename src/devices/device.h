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

#include "common/err.h"
#include "state/vmstate.h"

struct device;
struct vm;

/*
 * What it takes to create a device again elsewhere: filled by the command
 * line at boot, carried in a migration's CONFIG, used by the destination
 * to build the same devices.
 */
struct dev_spec {
	char type[32];		/* "virtio-blk", "virtio-net", ... */
	char name[32];		/* instance name: "blk0", "net0" */
	char path[256];		/* virtio-blk: image on shared storage */
	bool readonly;
	char tap[16];		/* virtio-net: TAP interface on this host */
	uint8_t mac[6];
};

/* A disk's counters since the VMM started (query-blockstats). */
struct dev_blockstats {
	uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops, flush_ops, failed_ops;
};

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
	/* Called with the VM paused (e.g. flush buffered output, stop writing
	 * guest memory from other threads) and when it runs again. */
	void (*pause)(struct device *dev);
	void (*resume)(struct device *dev);
	/* Optional: write out what the device buffers on the host (a disk's
	 * dirty page cache) while the VM still runs.  A switchover calls it
	 * just before the pause, so that pause()'s own flush, which is
	 * downtime, finds little left. */
	void (*flush)(struct device *dev);
	/* After a migration loaded this device's state (optional). */
	int (*post_load)(struct device *dev, struct kv_err *err);
	/* Shared resources (a disk image lock): held by whoever runs the VM.
	 * A migration source releases them after pausing, before GO; the
	 * destination acquires them before it resumes.  Optional. */
	int (*acquire)(struct device *dev, struct kv_err *err);
	void (*release)(struct device *dev);
	/* Describe the device for re-creation (type and name are filled in
	 * already).  Optional: devices every VM has need none. */
	void (*spec)(struct device *dev, struct dev_spec *out);
	/* Disks only (optional). */
	void (*blockstats)(struct device *dev, struct dev_blockstats *out);
	/* A same-host hand-over (kvmove migrate --to unix:PATH): the host fd
	 * the next VMM takes over instead of opening the resource again (a
	 * TAP, which one process at a time may attach).  Optional. */
	int (*handover_fd)(struct device *dev);
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
