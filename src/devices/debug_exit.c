#include "devices/debug_exit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"

static void debug_exit_pio(struct device *dev, uint64_t offset, bool is_write,
			   uint8_t *data, unsigned size)
{
	if (!is_write) {
		memset(data, 0xff, size);
		return;
	}
	vm_request_shutdown(dev->vm, VM_SHUTDOWN_GUEST, data[0],
			    "guest wrote %u to the debug-exit port", data[0]);
}

static void debug_exit_destroy(struct device *dev)
{
	free(dev);
}

static const struct dev_ops debug_exit_ops = {
	.type = "debug-exit",
	.pio = debug_exit_pio,
	.destroy = debug_exit_destroy,
	/* no state: nothing to migrate */
};

int debug_exit_create(struct device **out, struct kv_err *err)
{
	struct device *d = calloc(1, sizeof(*d));

	if (!d)
		return kv_errf(err, ENOMEM, "allocating debug-exit");
	d->ops = &debug_exit_ops;
	strcpy(d->name, "debug-exit");
	*out = d;
	return 0;
}
