/*
 * console.c - 8250 UART output. Every port access is a VM exit (and on
 * nested hosts a slow one), so: poll LSR.THRE once, then push a whole
 * FIFO's worth (16 bytes) with one `rep outsb`, which KVM forwards to the
 * VMM as a single exit carrying all the bytes.
 */
#include "console.h"

#include <stdbool.h>

#include "lib.h"
#include "x86.h"

#define COM1 0x3f8
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20
#define FIFO_BYTES 16
#define LINE_MAX 256

static uint32_t con_lock_word;

void con_init(void)
{
	outb(COM1 + UART_IER, 0x00);	/* polled: no interrupts */
	outb(COM1 + UART_LCR, 0x80);	/* DLAB on: divisor follows */
	outb(COM1 + UART_THR, 0x01);	/* 115200 baud */
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x03);	/* 8N1, DLAB off */
	outb(COM1 + UART_FCR, 0xc7);	/* FIFO on, both cleared */
	outb(COM1 + UART_MCR, 0x03);	/* DTR, RTS; OUT2 off keeps the IRQ line quiet */
}

static void uart_write(const char *s, uint64_t n)
{
	while (n) {
		uint64_t chunk = MIN(n, FIFO_BYTES);
		/* Bounded, so a missing or wedged UART can't hang the guest. */
		for (unsigned spin = 0; spin < 100000; spin++)
			if (inb(COM1 + UART_LSR) & LSR_THRE)
				break;
		outsb(COM1 + UART_THR, s, chunk);
		s += chunk;
		n -= chunk;
	}
}

static uint64_t format_line(char *buf, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, LINE_MAX - 1, fmt, ap);
	uint64_t len = n < LINE_MAX - 2 ? (uint64_t)n : LINE_MAX - 2;

	buf[len++] = '\n';
	return len;
}

static bool try_lock(void)
{
	return __atomic_exchange_n(&con_lock_word, 1, __ATOMIC_ACQUIRE) == 0;
}

static void unlock(void)
{
	__atomic_store_n(&con_lock_word, 0, __ATOMIC_RELEASE);
}

void con_line(const char *fmt, ...)
{
	char buf[LINE_MAX];
	va_list ap;
	uint64_t len;

	va_start(ap, fmt);
	len = format_line(buf, fmt, ap);	/* format outside the lock */
	va_end(ap);
	while (!try_lock())
		while (READ_ONCE(con_lock_word))
			cpu_relax();
	uart_write(buf, len);
	unlock();
}

void con_line_unlocked_after_timeout(const char *fmt, ...)
{
	char buf[LINE_MAX];
	va_list ap;
	uint64_t len;
	bool locked = false;

	va_start(ap, fmt);
	len = format_line(buf, fmt, ap);
	va_end(ap);
	/* This runs at CPL 0, which may be emulated: keep the spin short. */
	for (unsigned i = 0; i < 20000 && !(locked = try_lock()); i++)
		cpu_relax();
	uart_write(buf, len);
	if (locked)
		unlock();
}
