#include "devices/bus.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "devices/device.h"

void bus_init(struct bus *bus, const char *name, bool is_pio)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	bus->is_pio = is_pio;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, struct device *dev,
		 struct kv_err *err)
{
	unsigned i;

	if (!len || base + len < base)
		return kv_errf(err, EINVAL, "%s bus: bad range 0x%" PRIx64 "+0x%" PRIx64,
			       bus->name, base, len);
	if (bus->nranges >= BUS_MAX_RANGES)
		return kv_errf(err, ENOSPC, "%s bus: too many ranges", bus->name);
	for (i = 0; i < bus->nranges; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return kv_errf(err, EEXIST,
				       "%s bus: %s at 0x%" PRIx64 " overlaps %s at 0x%" PRIx64,
				       bus->name, dev->name, base, r->dev->name, r->base);
	}
	/* keep sorted by base for the binary search */
	for (i = bus->nranges; i > 0 && bus->ranges[i - 1].base > base; i--)
		bus->ranges[i] = bus->ranges[i - 1];
	bus->ranges[i] = (struct bus_range){ .base = base, .len = len, .dev = dev };
	bus->nranges++;
	return 0;
}

static const struct bus_range *bus_find(const struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nranges;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_access(struct bus *bus, uint64_t addr, bool is_write, uint8_t *data,
		unsigned size)
{
	const struct bus_range *r = bus_find(bus, addr);
	struct device *dev;

	if (r && size <= r->len - (addr - r->base)) {
		dev = r->dev;
		if (bus->is_pio && dev->ops->pio) {
			dev->ops->pio(dev, addr - r->base, is_write, data, size);
			return true;
		}
		if (!bus->is_pio && dev->ops->mmio) {
			dev->ops->mmio(dev, addr - r->base, is_write, data, size);
			return true;
		}
	}

	__atomic_fetch_add(&bus->unclaimed, 1, __ATOMIC_RELAXED);
	if (!is_write)
		memset(data, 0xff, size);
	if (bus->is_pio && addr < 65536) {
		uint64_t bit = 1ULL << (addr % 64);
		uint64_t old = __atomic_fetch_or(&bus->logged[addr / 64], bit,
						 __ATOMIC_RELAXED);
		/* Port 0x80 is the classic POST/delay port: expected, silent. */
		if (!(old & bit) && addr != 0x80)
			fprintf(stderr, "kvmove: guest %s unclaimed port 0x%" PRIx64
				" (size %u); ignored (logged once)\n",
				is_write ? "wrote" : "read", addr, size);
	}
	return false;
}
