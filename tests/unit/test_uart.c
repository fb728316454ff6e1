/* 16550A UART register model and the I/O bus. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/bus.h"
#include "devices/uart8250.h"

struct fixture {
	struct uart8250 *u;
	struct device *dev;
	int pipe[2];
	int irq_level, irq_changes;
};

static void on_irq(void *opaque, int level)
{
	struct fixture *f = opaque;
	f->irq_level = level;
	f->irq_changes++;
}

static int setup(void **state)
{
	static struct fixture f;
	struct kv_err err;

	memset(&f, 0, sizeof(f));
	if (pipe2(f.pipe, O_NONBLOCK))
		return -1;
	if (uart_create(&f.u, "serial0", f.pipe[1], on_irq, &f, &err))
		return -1;
	f.dev = uart_device(f.u);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	f->dev->ops->destroy(f->dev);
	close(f->pipe[0]);
	close(f->pipe[1]);
	return 0;
}

static void wr(struct fixture *f, unsigned reg, uint8_t v)
{
	f->dev->ops->pio(f->dev, reg, true, &v, 1);
}

static uint8_t rd(struct fixture *f, unsigned reg)
{
	uint8_t v = 0;
	f->dev->ops->pio(f->dev, reg, false, &v, 1);
	return v;
}

static void test_output_line_buffered(void **state)
{
	struct fixture *f = *state;
	char buf[64];

	assert_true(rd(f, 5) & 0x20);	/* THRE */
	wr(f, 0, 'h');
	wr(f, 0, 'i');
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), -1);	/* not yet: no newline */
	wr(f, 0, '\n');
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "hi\n", 3);
	wr(f, 0, 'x');
	uart_flush(f->u);	/* pause flushes partial lines */
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), 1);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;
	char buf[8];

	wr(f, 3, 0x80);	/* DLAB */
	wr(f, 0, 0x01);
	wr(f, 1, 0x02);
	assert_int_equal(rd(f, 0), 0x01);
	assert_int_equal(rd(f, 1), 0x02);
	wr(f, 3, 0x03);	/* 8N1 */
	assert_int_equal(rd(f, 1), 0);	/* IER again */
	uart_flush(f->u);
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), -1);	/* DLL writes are not output */
}

static void test_input_and_irq(void **state)
{
	struct fixture *f = *state;
	uint8_t in[100];

	memset(in, 'a', sizeof(in));
	assert_int_equal(f->irq_level, 0);
	wr(f, 4, 0x08);		/* OUT2: IRQ line enabled */
	wr(f, 1, 0x01);		/* IER: receive data available */
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(uart_input(f->u, in, sizeof(in)), UART_RX_SIZE);	/* FIFO bound */
	assert_int_equal(f->irq_level, 1);
	assert_true(rd(f, 5) & 0x01);	/* DR */
	assert_int_equal(rd(f, 2) & 0x0f, 0x04);	/* IIR: RDA */
	for (int i = 0; i < UART_RX_SIZE; i++)
		assert_int_equal(rd(f, 0), 'a');
	assert_false(rd(f, 5) & 0x01);
	assert_int_equal(f->irq_level, 0);
	assert_int_equal(rd(f, 2) & 0x0f, 0x01);	/* no interrupt */
}

static void test_thre_irq(void **state)
{
	struct fixture *f = *state;

	wr(f, 4, 0x08);
	wr(f, 1, 0x02);		/* THRI: raised at once, THR is empty */
	assert_int_equal(f->irq_level, 1);
	assert_int_equal(rd(f, 2) & 0x0f, 0x02);	/* reading IIR acknowledges */
	assert_int_equal(f->irq_level, 0);
	wr(f, 0, 'z');		/* sending raises it again */
	assert_int_equal(f->irq_level, 1);
	wr(f, 4, 0x00);		/* OUT2 off gates the line */
	assert_int_equal(f->irq_level, 0);
}

static void test_loopback_and_scratch(void **state)
{
	struct fixture *f = *state;
	char buf[8];

	wr(f, 7, 0x5a);
	assert_int_equal(rd(f, 7), 0x5a);
	wr(f, 4, 0x10 | 0x02);	/* loopback + RTS */
	assert_int_equal(rd(f, 6) & 0x10, 0x10);	/* CTS follows RTS */
	wr(f, 0, 'Q');
	assert_int_equal(rd(f, 0), 'Q');
	uart_flush(f->u);
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), -1);	/* nothing left the port */
}

static void test_odd_accesses(void **state)
{
	struct fixture *f = *state;
	uint8_t d[4] = { 1, 2, 3, 4 };

	/* a 4-byte access at the last register must not run past the device */
	f->dev->ops->pio(f->dev, 7, true, d, 4);
	f->dev->ops->pio(f->dev, 7, false, d, 4);
	f->dev->ops->pio(f->dev, 100, false, d, 1);
	assert_int_equal(rd(f, 7), 1);
}

static void test_bus(void **state)
{
	struct fixture *f = *state;
	struct bus bus;
	struct kv_err err;
	uint8_t v = 0;
	uint8_t w[4];
	char buf[8];

	bus_init(&bus, "pio", true);
	assert_int_equal(bus_register(&bus, 0x3f8, 8, f->dev, &err), 0);
	assert_int_equal(bus_register(&bus, 0x3fc, 8, f->dev, &err), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x3f0, 8, f->dev, &err), 0);
	assert_int_equal(bus_register(&bus, 0, 0, f->dev, &err), -EINVAL);
	assert_true(bus_access(&bus, 0x3ff, false, &v, 1));
	assert_false(bus_access(&bus, 0x1234, false, w, 4));
	assert_int_equal(w[0] & w[1] & w[2] & w[3], 0xff);	/* unclaimed reads are ~0 */
	assert_false(bus_access(&bus, 0x3fe, false, w, 4));	/* straddles the end */
	assert_int_equal(bus.unclaimed, 2);
	v = '\n';
	assert_true(bus_access(&bus, 0x3f8, true, &v, 1));
	assert_int_equal(read(f->pipe[0], buf, sizeof(buf)), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_output_line_buffered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_input_and_irq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_irq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback_and_scratch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bus, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
