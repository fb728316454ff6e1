/* PCI configuration space through mechanism #1, BAR sizing and decoding,
 * capability lists, and accesses a guest should not be able to make count. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/vm.h"
#include "devices/pci.h"

struct fx {
	struct vm *vm;
	struct pci_host *host;
	struct pci_dev dev;
	uint8_t cfg[PCI_CFG_SIZE];
	uint64_t last_off;
	int accesses;
};

static void bar_fn(struct pci_dev *pd, unsigned bar, uint64_t off, bool is_write,
		   uint8_t *data, unsigned size)
{
	struct fx *g = pd->owner;

	g->last_off = off;
	g->accesses++;
	if (!is_write)
		memset(data, 0xab, size);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct kv_err err;

	f->vm = calloc(1, sizeof(*f->vm));
	f->vm->vm_fd = -1;	/* INTx ioctls fail harmlessly */
	bus_init(&f->vm->pio_bus, "pio", true);
	bus_init(&f->vm->mmio_bus, "mmio", false);
	if (pci_host_create(&f->host, f->vm, &err))
		return -1;
	pci_dev_init(&f->dev, f->cfg, 0x1af4, 0x1042, 0x018000, 0x1af4, 2);
	f->dev.owner = f;
	pci_dev_add_bar(&f->dev, 0, 0x4000, bar_fn);
	pci_dev_add_cap(&f->dev, PCI_CAP_ID_MSIX, 12);
	pci_dev_add_cap(&f->dev, PCI_CAP_ID_VNDR, 16);
	if (pci_host_add(f->host, &f->dev, &err))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	for (unsigned i = 0; i < f->vm->ndevices; i++)
		f->vm->devices[i]->ops->destroy(f->vm->devices[i]);
	free(f->vm);
	free(f);
	return 0;
}

static void cfg_addr(struct fx *f, unsigned slot, unsigned fn, unsigned reg)
{
	uint8_t d[4];
	pci_put32(d, 0x80000000u | slot << 11 | fn << 8 | reg);
	assert_true(bus_access(&f->vm->pio_bus, 0xcf8, true, d, 4));
}

static uint32_t rd(struct fx *f, unsigned slot, unsigned reg, unsigned size)
{
	uint8_t d[4] = { 0 };
	cfg_addr(f, slot, 0, reg & ~3u);
	assert_true(bus_access(&f->vm->pio_bus, 0xcfc + (reg & 3), false, d, size));
	return size == 1 ? d[0] : size == 2 ? pci_get16(d) : pci_get32(d);
}

static void wr(struct fx *f, unsigned slot, unsigned reg, uint32_t v, unsigned size)
{
	uint8_t d[4];
	pci_put32(d, v);
	cfg_addr(f, slot, 0, reg & ~3u);
	assert_true(bus_access(&f->vm->pio_bus, 0xcfc + (reg & 3), true, d, size));
}

static void test_ids_and_empty_slots(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd(f, 0, 0, 2), 0x8086);		/* host bridge */
	assert_int_equal(rd(f, 0, 0x0a, 2), 0x0600);
	assert_int_equal(rd(f, 1, 0, 4), 0x10421af4);		/* our device in slot 1 */
	assert_int_equal(rd(f, 1, 2, 2), 0x1042);		/* word at offset 2 */
	assert_int_equal(rd(f, 7, 0, 4), 0xffffffff);		/* empty slot */
	cfg_addr(f, 1, 3, 0);					/* function 3: absent */
	{
		uint8_t d[4];
		bus_access(&f->vm->pio_bus, 0xcfc, false, d, 4);
		assert_int_equal(pci_get32(d), 0xffffffff);
	}
	/* config disabled (bit 31 clear): all ones */
	{
		uint8_t d[4];
		pci_put32(d, 1 << 11);
		bus_access(&f->vm->pio_bus, 0xcf8, true, d, 4);
		bus_access(&f->vm->pio_bus, 0xcfc, false, d, 4);
		assert_int_equal(pci_get32(d), 0xffffffff);
	}
}

static void test_read_only_fields(void **state)
{
	struct fx *f = *state;

	wr(f, 1, 0, 0xdeadbeef, 4);		/* ids are read-only */
	assert_int_equal(rd(f, 1, 0, 4), 0x10421af4);
	wr(f, 1, 0x0a, 0xffff, 2);		/* class too */
	assert_int_equal(rd(f, 1, 0x0a, 2), 0x0180);
	wr(f, 1, PCI_INTERRUPT_LINE, 0x33, 1);	/* interrupt line is writable */
	assert_int_equal(rd(f, 1, PCI_INTERRUPT_LINE, 1), 0x33);
	assert_int_equal(rd(f, 1, PCI_INTERRUPT_PIN, 1), 1);
}

static void test_bar_sizing_and_decoding(void **state)
{
	struct fx *f = *state;
	uint32_t bar = rd(f, 1, PCI_BAR0, 4);
	uint8_t d[4];

	assert_true(bar >= PCI_MMIO_BASE && bar < PCI_MMIO_END);
	assert_int_equal(bar & 0x3fff, 0);			/* aligned to its size */
	/* the guest sizes it: all ones in, the size mask out */
	wr(f, 1, PCI_BAR0, 0xffffffff, 4);
	assert_int_equal(rd(f, 1, PCI_BAR0, 4), 0xffffc000);
	wr(f, 1, PCI_BAR0, bar, 4);
	assert_int_equal(rd(f, 1, PCI_BAR0, 4), bar);
	/* BAR1 does not exist: stays zero */
	wr(f, 1, PCI_BAR0 + 4, 0xffffffff, 4);
	assert_int_equal(rd(f, 1, PCI_BAR0 + 4, 4), 0);
	/* decoding */
	assert_true(bus_access(&f->vm->mmio_bus, bar + 0x10, false, d, 4));
	assert_int_equal(f->accesses, 1);
	assert_int_equal(f->last_off, 0x10);
	/* an access straddling the end of the BAR is nobody's */
	bus_access(&f->vm->mmio_bus, bar + 0x3ffe, false, d, 4);
	assert_int_equal(f->accesses, 1);
	/* memory decoding off: the BAR answers nothing */
	wr(f, 1, PCI_COMMAND, 0, 2);
	bus_access(&f->vm->mmio_bus, bar + 0x10, false, d, 4);
	assert_int_equal(f->accesses, 1);
	assert_int_equal(pci_get32(d), 0xffffffff);
	/* the guest moves the BAR: decoding follows */
	wr(f, 1, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	wr(f, 1, PCI_BAR0, (uint32_t)PCI_MMIO_BASE + 0x100000, 4);
	bus_access(&f->vm->mmio_bus, PCI_MMIO_BASE + 0x100004, true, d, 4);
	assert_int_equal(f->accesses, 2);
	assert_int_equal(f->last_off, 4);
}

static void test_capabilities(void **state)
{
	struct fx *f = *state;
	unsigned off, n = 0;
	uint8_t ids[8];

	assert_true(rd(f, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (off = rd(f, 1, PCI_CAP_PTR, 1); off && n < 8; off = rd(f, 1, off + 1, 1))
		ids[n++] = (uint8_t)rd(f, 1, off, 1);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], PCI_CAP_ID_MSIX);
	assert_int_equal(ids[1], PCI_CAP_ID_VNDR);
}

static void test_odd_port_accesses(void **state)
{
	struct fx *f = *state;
	uint8_t d[4] = { 1, 2, 3, 4 };

	/* byte access to 0xcf8..0xcfb is not CONFIG_ADDRESS (0xcf9 is a chipset
	 * reset register on real boards): ignored */
	cfg_addr(f, 1, 0, 0);
	bus_access(&f->vm->pio_bus, 0xcf9, true, d, 1);
	assert_int_equal(rd(f, 1, 0, 2), 0x1af4);
	/* high config-space offsets read as zero / ones, never past the array */
	assert_int_equal(rd(f, 1, 0xfc, 4), 0);
}

static void test_restored_cfg_checked(void **state)
{
	struct fx *f = *state;
	uint8_t cfg[PCI_CFG_SIZE];
	struct kv_err err;

	memcpy(cfg, f->cfg, sizeof(cfg));
	assert_int_equal(pci_dev_validate_cfg(&f->dev, cfg, &err), 0);
	cfg[0] ^= 1;	/* another vendor */
	assert_int_equal(pci_dev_validate_cfg(&f->dev, cfg, &err), -EINVAL);
	memcpy(cfg, f->cfg, sizeof(cfg));
	pci_put32(cfg + PCI_BAR0, (uint32_t)PCI_MMIO_BASE + 0x1000);	/* misaligned BAR */
	assert_int_equal(pci_dev_validate_cfg(&f->dev, cfg, &err), -EINVAL);
}

/* A load writes the config space where it lives (the device's migratable
 * state, which pd->cfg points into) and checks it there: the check must
 * not compare the bytes with themselves. */
static void test_restored_cfg_in_place(void **state)
{
	struct fx *f = *state;
	uint8_t was[PCI_CFG_SIZE];
	struct kv_err err;

	memcpy(was, f->cfg, sizeof(was));
	/* what a guest can change, and the interrupt status the device sets */
	pci_put16(f->cfg + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	f->cfg[PCI_INTERRUPT_LINE] = 5;
	pci_put32(f->cfg + PCI_BAR0, (uint32_t)PCI_MMIO_BASE + 0x8000);
	f->cfg[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
	assert_int_equal(pci_dev_validate_cfg(&f->dev, f->cfg, &err), 0);

	/* what it cannot: ids, the capability list, a capability's contents,
	 * the BAR's size bits */
	static const unsigned ro[] = { 0x00, 0x02, 0x0e, PCI_CAP_PTR, 0x41, 0x44, 0x4c, 0x10 };
	for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
		memcpy(f->cfg, was, sizeof(was));
		f->cfg[ro[i]] ^= ro[i] == 0x10 ? 0x10 : 0x01;
		err.msg[0] = '\0';
		if (pci_dev_validate_cfg(&f->dev, f->cfg, &err) != -EINVAL)
			fail_msg("config byte 0x%02x changed in place was accepted", ro[i]);
		assert_non_null(strstr(err.msg, "config space byte"));
	}
	memcpy(f->cfg, was, sizeof(was));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ids_and_empty_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing_and_decoding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_port_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restored_cfg_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restored_cfg_in_place, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
