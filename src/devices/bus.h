/*
 * bus.h - dispatch of guest port-I/O and MMIO accesses to devices.
 *
 * A bus is a sorted table of non-overlapping [base, base+len) ranges, each
 * owned by one device.  Accesses nobody claims are harmless: writes are
 * dropped, reads return all ones, and each unclaimed port is logged once.
 */
#ifndef KVMOVE_DEVICES_BUS_H
#define KVMOVE_DEVICES_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct device;

#define BUS_MAX_RANGES 64

struct bus_range {
	uint64_t base, len;
	struct device *dev;
};

struct bus {
	const char *name;	/* "pio" or "mmio", for messages */
	unsigned nranges;
	struct bus_range ranges[BUS_MAX_RANGES];
	bool is_pio;
	/* Unclaimed-port log-once bitmap (port I/O only: 64 Ki ports). */
	uint64_t logged[65536 / 64];
	uint64_t unclaimed;	/* count of unclaimed accesses */
};

void bus_init(struct bus *bus, const char *name, bool is_pio);

/* Claim [base, base+len) for dev; -EEXIST if it overlaps another range. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, struct device *dev,
		 struct kv_err *err);

/* Dispatch one access. Returns true if a device claimed it. */
bool bus_access(struct bus *bus, uint64_t addr, bool is_write, uint8_t *data,
		unsigned size);

#endif
