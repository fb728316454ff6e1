/*
 * uart8250.h - a 16550A-compatible UART (the PC's COM1 at 0x3f8, IRQ 4).
 *
 * Output goes to a file descriptor, a line at a time (flushed on '\n', when
 * the buffer fills, when the VM pauses, and by the VMM's main loop every
 * 100 ms so partial lines such as prompts appear).  Input is pushed in by the VMM's
 * main loop with uart_input().  Registers follow the 8250/16550A datasheet;
 * transmission is instantaneous, so THR is always empty.
 */
#ifndef KVMOVE_DEVICES_UART8250_H
#define KVMOVE_DEVICES_UART8250_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "devices/device.h"

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ 4
#define UART_NREGS 8
#define UART_RX_SIZE 64

/* Migratable register state (described by uart_vmstate). */
struct uart_state {
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t thri_pending;	/* THR-empty interrupt not yet acknowledged */
	uint8_t rx_head, rx_count;
	uint8_t rx[UART_RX_SIZE];
};

typedef void (*uart_irq_fn)(void *opaque, int level);

struct uart8250;

/* out_fd is borrowed (not closed).  set_irq may be NULL (no interrupts). */
int uart_create(struct uart8250 **out, const char *name, int out_fd,
		uart_irq_fn set_irq, void *irq_opaque, struct kv_err *err);
struct device *uart_device(struct uart8250 *u);
struct uart8250 *uart_from_device(struct device *dev);

/* Queue received bytes; returns how many fit in the receive FIFO. */
size_t uart_input(struct uart8250 *u, const uint8_t *buf, size_t len);
/* Write out any partial output line. */
void uart_flush(struct uart8250 *u);

extern const struct dev_ops uart8250_ops;

#endif
