#include "devices/uart8250.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Register offsets and bits (8250/16550A datasheet). */
enum { R_RBR_THR = 0, R_IER = 1, R_IIR_FCR = 2, R_LCR = 3, R_MCR = 4, R_LSR = 5,
       R_MSR = 6, R_SCR = 7 };
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

#define OUT_BUF 512

struct uart8250 {
	struct device dev;
	pthread_mutex_t lock;	/* vCPU threads and the main loop both come here */
	struct uart_state st;
	int out_fd;
	size_t outlen;
	char outbuf[OUT_BUF];
	uart_irq_fn set_irq;
	void *irq_opaque;
	int irq_level;
};

static const struct vmstate_field uart_fields[] = {
	VMS_FIELD(struct uart_state, ier, 1),
	VMS_FIELD(struct uart_state, lcr, 1),
	VMS_FIELD(struct uart_state, mcr, 1),
	VMS_FIELD(struct uart_state, scr, 1),
	VMS_FIELD(struct uart_state, dll, 1),
	VMS_FIELD(struct uart_state, dlm, 1),
	VMS_FIELD(struct uart_state, fcr, 1),
	VMS_FIELD(struct uart_state, thri_pending, 1),
	VMS_FIELD(struct uart_state, rx_head, 1),
	VMS_FIELD(struct uart_state, rx_count, 1),
	VMS_ARRAY(struct uart_state, rx, 1),
};
/* Loaded state is untrusted: the FIFO indices must stay inside the FIFO. */
static int uart_validate(const void *state, struct kv_err *err)
{
	const struct uart_state *s = state;

	if (s->rx_head >= UART_RX_SIZE || s->rx_count > UART_RX_SIZE)
		return kv_errf(err, ERANGE, "receive FIFO head %u / count %u out of range",
			       s->rx_head, s->rx_count);
	return 0;
}

static const struct vmstate_desc uart_vmstate =
	VMS_DESC("uart8250", struct uart_state, 1, uart_fields, uart_validate);

struct uart8250 *uart_from_device(struct device *dev)
{
	return (struct uart8250 *)((char *)dev - offsetof(struct uart8250, dev));
}

struct device *uart_device(struct uart8250 *u)
{
	return &u->dev;
}

static void flush_locked(struct uart8250 *u)
{
	size_t off = 0;

	while (off < u->outlen) {
		ssize_t n = write(u->out_fd, u->outbuf + off, u->outlen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;	/* console gone: drop output, never stall the vCPU */
		off += (size_t)n;
	}
	u->outlen = 0;
}

/* Which interrupt the IIR reports now (highest priority first). */
static uint8_t iir_locked(const struct uart8250 *u)
{
	if ((u->st.ier & IER_RDI) && u->st.rx_count)
		return IIR_RDI;
	if ((u->st.ier & IER_THRI) && u->st.thri_pending)
		return IIR_THRI;
	return IIR_NONE;
}

static void update_irq_locked(struct uart8250 *u)
{
	/* On a PC the UART's interrupt line is gated by OUT2. */
	int level = iir_locked(u) != IIR_NONE && (u->st.mcr & MCR_OUT2);

	if (level != u->irq_level && u->set_irq) {
		u->irq_level = level;
		u->set_irq(u->irq_opaque, level);
	}
}

static bool rx_push_locked(struct uart8250 *u, uint8_t c)
{
	if (u->st.rx_count >= UART_RX_SIZE)
		return false;
	u->st.rx[(u->st.rx_head + u->st.rx_count) % UART_RX_SIZE] = c;
	u->st.rx_count++;
	return true;
}

static uint8_t rx_pop_locked(struct uart8250 *u)
{
	uint8_t c;

	if (!u->st.rx_count)
		return 0;
	c = u->st.rx[u->st.rx_head % UART_RX_SIZE];
	u->st.rx_head = (uint8_t)((u->st.rx_head + 1) % UART_RX_SIZE);
	u->st.rx_count--;
	return c;
}

static void transmit_locked(struct uart8250 *u, uint8_t c)
{
	if (u->st.mcr & MCR_LOOP) {
		rx_push_locked(u, c);
	} else {
		u->outbuf[u->outlen++] = (char)c;
		if (c == '\n' || u->outlen == OUT_BUF)
			flush_locked(u);
	}
	/* The byte left at once: THR is empty again. */
	u->st.thri_pending = 1;
}

static uint8_t reg_read_locked(struct uart8250 *u, unsigned reg)
{
	struct uart_state *s = &u->st;
	uint8_t v;

	switch (reg) {
	case R_RBR_THR:
		return (s->lcr & LCR_DLAB) ? s->dll : rx_pop_locked(u);
	case R_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case R_IIR_FCR:
		v = iir_locked(u);
		if (v == IIR_THRI)	/* reading IIR acknowledges THRE */
			s->thri_pending = 0;
		return v | ((s->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
	case R_LCR:
		return s->lcr;
	case R_MCR:
		return s->mcr;
	case R_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
	case R_MSR:
		if (s->mcr & MCR_LOOP)
			return (uint8_t)(((s->mcr & MCR_DTR) ? MSR_DSR : 0) |
					 ((s->mcr & MCR_RTS) ? MSR_CTS : 0) |
					 ((s->mcr & MCR_OUT1) ? MSR_RI : 0) |
					 ((s->mcr & MCR_OUT2) ? MSR_DCD : 0));
		return MSR_DCD | MSR_DSR | MSR_CTS;
	case R_SCR:
		return s->scr;
	}
	return 0xff;
}

static void reg_write_locked(struct uart8250 *u, unsigned reg, uint8_t v)
{
	struct uart_state *s = &u->st;

	switch (reg) {
	case R_RBR_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			transmit_locked(u, v);
		break;
	case R_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			/* Enabling THRI while THR is empty raises it at once. */
			if ((v & IER_THRI) && !(s->ier & IER_THRI))
				s->thri_pending = 1;
			s->ier = v & 0x0f;
		}
		break;
	case R_IIR_FCR:
		s->fcr = v & 0xc9;
		if (v & FCR_CLEAR_RX) {
			s->rx_head = 0;
			s->rx_count = 0;
		}
		break;
	case R_LCR:
		s->lcr = v;
		break;
	case R_MCR:
		s->mcr = v & 0x1f;
		break;
	case R_LSR:
	case R_MSR:
		break;	/* read-only */
	case R_SCR:
		s->scr = v;
		break;
	}
}

static void uart_pio(struct device *dev, uint64_t offset, bool is_write,
		     uint8_t *data, unsigned size)
{
	struct uart8250 *u = uart_from_device(dev);

	pthread_mutex_lock(&u->lock);
	/* Wider accesses touch consecutive registers, byte by byte. */
	for (unsigned i = 0; i < size && offset + i < UART_NREGS; i++) {
		if (is_write)
			reg_write_locked(u, (unsigned)offset + i, data[i]);
		else
			data[i] = reg_read_locked(u, (unsigned)offset + i);
	}
	update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
}

size_t uart_input(struct uart8250 *u, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	while (n < len && rx_push_locked(u, buf[n]))
		n++;
	update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

void uart_flush(struct uart8250 *u)
{
	pthread_mutex_lock(&u->lock);
	flush_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void uart_reset(struct device *dev)
{
	struct uart8250 *u = uart_from_device(dev);

	pthread_mutex_lock(&u->lock);
	memset(&u->st, 0, sizeof(u->st));
	update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void uart_pause(struct device *dev)
{
	uart_flush(uart_from_device(dev));
}

static void uart_destroy(struct device *dev)
{
	struct uart8250 *u = uart_from_device(dev);

	uart_flush(u);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

static void *uart_state_ptr(struct device *dev)
{
	return &uart_from_device(dev)->st;
}

const struct dev_ops uart8250_ops = {
	.type = "uart8250",
	.pio = uart_pio,
	.reset = uart_reset,
	.pause = uart_pause,
	.destroy = uart_destroy,
	.state = &uart_vmstate,
	.state_ptr = uart_state_ptr,
};

int uart_create(struct uart8250 **out, const char *name, int out_fd,
		uart_irq_fn set_irq, void *irq_opaque, struct kv_err *err)
{
	struct uart8250 *u = calloc(1, sizeof(*u));

	if (!u)
		return kv_errf(err, ENOMEM, "allocating %s", name);
	u->dev.ops = &uart8250_ops;
	snprintf(u->dev.name, sizeof(u->dev.name), "%s", name);
	pthread_mutex_init(&u->lock, NULL);
	u->out_fd = out_fd;
	u->set_irq = set_irq;
	u->irq_opaque = irq_opaque;
	*out = u;
	return 0;
}
