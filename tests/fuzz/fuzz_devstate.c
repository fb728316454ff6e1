/*
 * fuzz_devstate - the state records of a stream (VM_ARCH, VCPU, DEVICE)
 * through devstate_apply() and then devstate_complete()
 * (src/migration/devstate.c) on a VM with the devices a VMM has: serial0
 * (16550A), debug-exit, pci0, and blk0 (virtio-blk on a memfd disk).
 *
 * Input: records in the stream's framing (u16 type, u16 flags, u32 length,
 * payload, u64 check), as they come out of a real stream; the check is not
 * looked at (fuzz_stream covers it), a record cut short ends the input.
 * Every record is applied, refused or not, as a receiver that kept going
 * would; the VM has no vCPUs, so VCPU records are refused by index (their
 * table is fuzzed in fuzz_vmstate), and a VM_ARCH section that passes its
 * checks fails at the ioctl (there is no KVM VM).
 * Checks: results are 0 or -errno with a message; a block counts as
 * received only when it was applied, and devstate_complete() agrees with
 * what was received; a refused DEVICE record leaves its device's state as
 * it was; a loaded PCI config space differs from the device's
 * own only where the guest can write; after a state is loaded, the guest
 * can use the device (every UART register; every virtio register, found
 * through the capabilities, and a kick of every queue) without harm (run
 * under ASan).
 * The devices' state is put back after every input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "devices/pci.h"
#include "devices/uart8250.h"
#include "devices/virtio_pci.h"
#include "fuzz.h"
#include "migration/devstate.h"
#include "migration/proto.h"
#include "state/stream.h"

#define MAX_RECORDS 64

static struct vm *vm;
static void *initial[VM_MAX_DEVICES];	/* each device's state as created */
static uint8_t *held;			/* a device's state before a record */

static void setup(void)
{
	size_t largest = 1;

	vm = fuzz_vm_new(FUZZ_MEM_SMALL, FUZZ_VM_DEVICES);
	for (unsigned i = 0; i < vm->ndevices; i++) {
		const struct device *d = vm->devices[i];

		if (!d->ops->state)
			continue;
		initial[i] = malloc(d->ops->state->struct_size);
		if (!initial[i])
			fuzz_fail("out of memory");
		memcpy(initial[i], d->ops->state_ptr(vm->devices[i]), d->ops->state->struct_size);
		if (d->ops->state->struct_size > largest)
			largest = d->ops->state->struct_size;
	}
	held = malloc(largest);
	if (!held)
		fuzz_fail("out of memory");
}

static void restore_devices(void)
{
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (initial[i])
			memcpy(vm->devices[i]->ops->state_ptr(vm->devices[i]), initial[i],
			       vm->devices[i]->ops->state->struct_size);
}

/*
 * What the guest cannot write in a PCI device's config space (identity,
 * header type, capability list, BAR sizes: the bits outside wmask) cannot
 * come from a stream either: the source's guest could not have changed
 * them.  Only the device sets the interrupt status bit.
 */
static void check_pci_cfg(unsigned i)
{
	struct device *d = vm->devices[i];
	struct virtio_dev *vd;
	const uint8_t *was;

	if (d->ops->state != &virtio_vmstate)
		return;
	vd = virtio_from_device(d);
	was = ((const struct virtio_state *)initial[i])->pci_cfg;
	for (unsigned k = 0; k < PCI_CFG_SIZE; k++) {
		uint8_t ro = (uint8_t)~vd->pci.wmask[k];

		if (k == PCI_STATUS)
			ro &= (uint8_t)~PCI_STATUS_INTERRUPT;
		FUZZ_CHECK(!((vd->st.pci_cfg[k] ^ was[k]) & ro),
			   "%s: read-only PCI config byte 0x%02x loaded as 0x%02x (was 0x%02x)",
			   d->name, k, vd->st.pci_cfg[k], was[k]);
	}
}

/*
 * The guest uses a virtio device whose state came in, the way its driver
 * finds the registers: through the capabilities in config space (virtio
 * 1.x: vendor capabilities naming a BAR, an offset and a length; MSI-X
 * naming its table and PBA).  It reads every register, acknowledges the
 * interrupt and kicks every queue (rings in guest memory, all zeros here).
 */
static void poke_virtio(struct virtio_dev *vd)
{
	struct pci_dev *pd = &vd->pci;
	uint8_t cap = pd->cfg[PCI_CAP_PTR], b[4];
	unsigned hops = 0;

	while (cap && cap <= PCI_CFG_SIZE - 16 && hops++ < 48) {
		const uint8_t *c = pd->cfg + cap;
		unsigned bar = c[4] & 7, type = c[3];
		uint32_t off = pci_get32(c + 8), len = pci_get32(c + 12);

		if (c[0] == PCI_CAP_ID_VNDR && bar < PCI_NUM_BARS && pd->bars[bar].access &&
		    len <= 0x1000) {
			for (uint32_t k = 0; k + 4 <= len; k += 4) {
				pd->bars[bar].access(pd, bar, off + k, false, b, 4);
				if (type == 4)	/* notify: kick the queue */
					pd->bars[bar].access(pd, bar, off + k, true, b, 2);
			}
			if (type == 3)	/* ISR */
				pd->bars[bar].access(pd, bar, off, false, b, 1);
		}
		if (c[0] == PCI_CAP_ID_MSIX) {
			uint32_t t = pci_get32(c + 4), pba = pci_get32(c + 8);

			for (uint32_t k = 0; (t & 7) < PCI_NUM_BARS && pd->bars[t & 7].access &&
					     k < 64; k += 4)
				pd->bars[t & 7].access(pd, t & 7, (t & ~7u) + k, false, b, 4);
			if ((pba & 7) < PCI_NUM_BARS && pd->bars[pba & 7].access)
				pd->bars[pba & 7].access(pd, pba & 7, pba & ~7u, false, b, 4);
		}
		cap = c[1];
	}
}

/* The guest touches every UART register after the state came in. */
static void poke_uart(void)
{
	uint8_t v;

	for (unsigned k = 0; k < 2 * UART_RX_SIZE + 8; k++) {
		v = 0;
		bus_access(&vm->pio_bus, UART_COM1_BASE + k % UART_NREGS, false, &v, 1);
	}
	v = 0x55;
	bus_access(&vm->pio_bus, UART_COM1_BASE + 7, true, &v, 1);	/* scratch */
}

/* The device a DEVICE record names, or -1. */
static int named_device(const uint8_t *p, uint32_t len)
{
	if (len < 1 || (size_t)p[0] + 1 > len)
		return -1;
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (strlen(vm->devices[i]->name) == p[0] && !memcmp(vm->devices[i]->name, p + 1, p[0]))
			return (int)i;
	return -1;
}

/* A DEVICE record was applied: check and use that device. */
static void loaded(unsigned i)
{
	struct device *d = vm->devices[i];

	check_pci_cfg(i);
	if (d->ops->state == &virtio_vmstate)
		poke_virtio(virtio_from_device(d));
	if (d->ops == &uart8250_ops)
		poke_uart();
}

static bool expect_complete(const struct devstate_rx *rx)
{
	if (!rx->arch)
		return false;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (!rx->vcpu[i])
			return false;
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->state && !rx->device[i])
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct devstate_rx *rx = calloc(1, sizeof(*rx));
	size_t pos = 0;
	int r;

	if (!rx)
		fuzz_fail("out of memory");
	if (!vm)
		setup();
	for (unsigned n = 0; n < MAX_RECORDS && size - pos >= STREAM_HDR_SIZE; n++) {
		uint16_t type = st_get16(data + pos);
		uint32_t len = st_get32(data + pos + 4);
		const uint8_t *p = data + pos + STREAM_HDR_SIZE;
		struct devstate_rx before = *rx;
		struct kv_err err = { "" };
		int dev = -1;

		if (len > size - pos - STREAM_HDR_SIZE)
			break;
		if (type == MIG_REC_DEVICE && (dev = named_device(p, len)) >= 0 &&
		    vm->devices[dev]->ops->state)
			memcpy(held, vm->devices[dev]->ops->state_ptr(vm->devices[dev]),
			       vm->devices[dev]->ops->state->struct_size);
		else
			dev = -1;
		r = devstate_apply(vm, rx, type, p, len, &err);
		FUZZ_CHECK(r <= 0 && r > -4096 && (r == 0 || err.msg[0]),
			   "devstate_apply: %d (%s)", r, err.msg);
		if (r)
			FUZZ_CHECK(!memcmp(&before, rx, sizeof(before)),
				   "a refused record (%s) counted as received", err.msg);
		else
			FUZZ_CHECK(memcmp(&before, rx, sizeof(before)),
				   "an applied record of type %u counted as nothing", type);
		if (r && dev >= 0)
			FUZZ_CHECK(!memcmp(held, vm->devices[dev]->ops->state_ptr(vm->devices[dev]),
					   vm->devices[dev]->ops->state->struct_size),
				   "a refused record (%s) changed %s's state", err.msg,
				   vm->devices[dev]->name);
		if (!r && dev >= 0)
			loaded((unsigned)dev);
		pos += STREAM_HDR_SIZE + len;
		pos += size - pos < STREAM_TRAILER_SIZE ? size - pos : STREAM_TRAILER_SIZE;
	}
	{
		struct kv_err err = { "" };

		r = devstate_complete(vm, rx, &err);
		FUZZ_CHECK((r == 0) == expect_complete(rx), "devstate_complete: %d (%s)", r,
			   err.msg);
		FUZZ_CHECK(r == 0 || (r == -EBADMSG && err.msg[0]), "devstate_complete: %d", r);
	}
	restore_devices();
	free(rx);
	return 0;
}
