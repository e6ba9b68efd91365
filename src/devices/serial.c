#include "devices/serial.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/iobus.h"

enum {
	UART_RX = 0, UART_TX = 0, UART_DLL = 0,
	UART_IER = 1, UART_DLM = 1,
	UART_IIR = 2, UART_FCR = 2,
	UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};

#define UART_IER_RDI	0x01
#define UART_IER_THRI	0x02
#define UART_IER_RLSI	0x04
#define UART_IER_MSI	0x08
#define UART_IIR_NO_INT	0x01
#define UART_IIR_THRI	0x02
#define UART_IIR_RDI	0x04
#define UART_IIR_RLSI	0x06
#define UART_IIR_FIFO	0xc0
#define UART_FCR_ENABLE	0x01
#define UART_FCR_CLR_RX	0x02
#define UART_LCR_DLAB	0x80
#define UART_MCR_DTR	0x01
#define UART_MCR_RTS	0x02
#define UART_MCR_OUT1	0x04
#define UART_MCR_OUT2	0x08
#define UART_MCR_LOOP	0x10
#define UART_LSR_DR	0x01
#define UART_LSR_OE	0x02
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40
#define UART_LSR_ERRS	0x1e
#define UART_MSR_CTS	0x10
#define UART_MSR_DSR	0x20
#define UART_MSR_RI	0x40
#define UART_MSR_DCD	0x80

static void serial_reset(struct serial_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	r->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	r->dll = 12;		/* 9600 baud, as firmware leaves it */
}

void serial_init(struct serial *s, struct chardev *chr, serial_irq_fn *set_irq, void *opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	serial_reset(&s->regs);
	s->chr = chr;
	s->set_irq = set_irq;
	s->irq_opaque = opaque;
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

/* The highest-priority pending interrupt, as IIR reports it. */
static uint8_t serial_iir(const struct serial_regs *r)
{
	uint8_t fifo = (r->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0;

	if ((r->ier & UART_IER_RLSI) && (r->lsr & UART_LSR_ERRS))
		return UART_IIR_RLSI | fifo;
	if ((r->ier & UART_IER_RDI) && r->rx_count)
		return UART_IIR_RDI | fifo;
	if ((r->ier & UART_IER_THRI) && r->thr_ipending)
		return UART_IIR_THRI | fifo;
	return UART_IIR_NO_INT | fifo;
}

/* Drive the IRQ line to match the registers.  Caller holds s->lock. */
static void serial_update_irq(struct serial *s)
{
	int level = !(serial_iir(&s->regs) & UART_IIR_NO_INT);

	if (level != s->irq_level && s->set_irq) {
		s->irq_level = level;
		s->set_irq(s->irq_opaque, level);
	}
}

static void serial_push_rx(struct serial_regs *r, uint8_t byte)
{
	if (r->rx_count == SERIAL_FIFO_SIZE) {
		r->lsr |= UART_LSR_OE;
		return;
	}
	r->rx_fifo[(r->rx_head + r->rx_count) % SERIAL_FIFO_SIZE] = byte;
	r->rx_count++;
	r->lsr |= UART_LSR_DR;
}

static uint8_t serial_pop_rx(struct serial_regs *r)
{
	uint8_t byte = 0;

	if (r->rx_count) {
		byte = r->rx_fifo[r->rx_head];
		r->rx_head = (r->rx_head + 1) % SERIAL_FIFO_SIZE;
		r->rx_count--;
	}
	if (!r->rx_count)
		r->lsr &= ~UART_LSR_DR;
	return byte;
}

static uint8_t serial_msr(const struct serial_regs *r)
{
	if (!(r->mcr & UART_MCR_LOOP))
		return r->msr;
	/* Loopback wires the modem outputs back to the inputs. */
	return (uint8_t)(((r->mcr & UART_MCR_RTS) ? UART_MSR_CTS : 0) |
			 ((r->mcr & UART_MCR_DTR) ? UART_MSR_DSR : 0) |
			 ((r->mcr & UART_MCR_OUT1) ? UART_MSR_RI : 0) |
			 ((r->mcr & UART_MCR_OUT2) ? UART_MSR_DCD : 0));
}

uint8_t serial_read(struct serial *s, unsigned offset)
{
	struct serial_regs *r = &s->regs;
	uint8_t v = 0xff;

	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_RX:
		v = (r->lcr & UART_LCR_DLAB) ? r->dll : serial_pop_rx(r);
		break;
	case UART_IER:
		v = (r->lcr & UART_LCR_DLAB) ? r->dlm : r->ier;
		break;
	case UART_IIR:
		v = serial_iir(r);
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if ((v & 0x0f) == UART_IIR_THRI)
			r->thr_ipending = 0;
		break;
	case UART_LCR:
		v = r->lcr;
		break;
	case UART_MCR:
		v = r->mcr;
		break;
	case UART_LSR:
		v = r->lsr;
		/* Error bits clear on read. */
		r->lsr &= (uint8_t)~(UART_LSR_OE | UART_LSR_ERRS);
		break;
	case UART_MSR:
		v = serial_msr(r);
		break;
	case UART_SCR:
		v = r->scr;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void serial_transmit(struct serial *s, uint8_t byte)
{
	struct serial_regs *r = &s->regs;

	if (r->mcr & UART_MCR_LOOP)
		serial_push_rx(r, byte);
	else if (s->chr)
		chardev_write(s->chr, &byte, 1);
	/* Transmission is instant: THR is empty again at once. */
	r->lsr |= UART_LSR_THRE | UART_LSR_TEMT;
	r->thr_ipending = 1;
}

void serial_write(struct serial *s, unsigned offset, uint8_t value)
{
	struct serial_regs *r = &s->regs;

	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case UART_TX:
		if (r->lcr & UART_LCR_DLAB) {
			r->dll = value;
		} else {
			r->thr_ipending = 0;
			serial_transmit(s, value);
		}
		break;
	case UART_IER:
		if (r->lcr & UART_LCR_DLAB) {
			r->dlm = value;
		} else {
			/* Enabling THRI with THR empty raises the interrupt at once. */
			if (!(r->ier & UART_IER_THRI) && (value & UART_IER_THRI))
				r->thr_ipending = 1;
			r->ier = value & 0x0f;
		}
		break;
	case UART_FCR:
		r->fcr = value & 0xc9;
		if (value & UART_FCR_CLR_RX) {
			r->rx_count = 0;
			r->lsr &= ~UART_LSR_DR;
		}
		break;
	case UART_LCR:
		r->lcr = value;
		break;
	case UART_MCR:
		r->mcr = value & 0x1f;
		break;
	case UART_SCR:
		r->scr = value;
		break;
	default:
		break;	/* LSR and MSR are read-only */
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	if (!(s->regs.mcr & UART_MCR_LOOP))
		for (size_t i = 0; i < len; i++)
			serial_push_rx(&s->regs, buf[i]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_bus_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	uint8_t *d = data;

	for (unsigned i = 0; i < len; i++)
		d[i] = offset + i < 8 ? serial_read(opaque, (unsigned)(offset + i)) : 0xff;
}

static void serial_bus_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	const uint8_t *d = data;

	for (unsigned i = 0; i < len; i++)
		if (offset + i < 8)
			serial_write(opaque, (unsigned)(offset + i), d[i]);
}

const struct iobus_ops serial_iobus_ops = {
	.read = serial_bus_read,
	.write = serial_bus_write,
};

void serial_get_regs(struct serial *s, struct serial_regs *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->regs;
	pthread_mutex_unlock(&s->lock);
}

void serial_set_regs(struct serial *s, const struct serial_regs *in)
{
	pthread_mutex_lock(&s->lock);
	s->regs = *in;
	s->irq_level = -1;	/* force the line to be driven to the new level */
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* Registers whose bits must agree with each other after a load. */
static int serial_post_load(void *obj, char *why, size_t whylen)
{
	const struct serial_regs *r = obj;

	if (r->fcr & ~0xc9) {
		snprintf(why, whylen, "fcr 0x%02x has reserved bits set", r->fcr);
		return -EINVAL;
	}
	if (!!(r->lsr & UART_LSR_DR) != !!r->rx_count) {
		snprintf(why, whylen, "lsr data-ready bit disagrees with %u queued bytes",
			 r->rx_count);
		return -EINVAL;
	}
	return 0;
}

static const struct vmstate_field serial_fields[] = {
	VMSTATE_U8(struct serial_regs, dll),
	VMSTATE_U8(struct serial_regs, dlm),
	VMSTATE_U8_RANGE(struct serial_regs, ier, 0, 0x0f),
	VMSTATE_U8(struct serial_regs, fcr),
	VMSTATE_U8(struct serial_regs, lcr),
	VMSTATE_U8_RANGE(struct serial_regs, mcr, 0, 0x1f),
	VMSTATE_U8(struct serial_regs, lsr),
	VMSTATE_U8(struct serial_regs, msr),
	VMSTATE_U8(struct serial_regs, scr),
	VMSTATE_U8_RANGE(struct serial_regs, thr_ipending, 0, 1),
	VMSTATE_U8_RANGE(struct serial_regs, rx_head, 0, SERIAL_FIFO_SIZE - 1),
	VMSTATE_U8_RANGE(struct serial_regs, rx_count, 0, SERIAL_FIFO_SIZE),
	VMSTATE_U8_ARRAY(struct serial_regs, rx_fifo),
	VMSTATE_END,
};

const struct vmstate_desc serial_vmsd = {
	.name = "serial-8250",
	.version = 1,
	.size = sizeof(struct serial_regs),
	.fields = serial_fields,
	.post_load = serial_post_load,
};

static int serial_dev_save(void *dev, void *state)
{
	serial_get_regs(dev, state);
	return 0;
}

static int serial_dev_load(void *dev, const void *state)
{
	serial_set_regs(dev, state);
	return 0;
}

/*
 * Nothing in flight to drain: a transmitted byte goes to the chardev at
 * once (its queue is the host side's, not guest state) and received
 * bytes are already in the FIFO that the registers carry.
 */
static int serial_dev_quiesce(void *dev)
{
	return 0;
}

const struct device_ops serial_device_ops = {
	.name = "serial",
	.vmsd = &serial_vmsd,
	.save = serial_dev_save,
	.load = serial_dev_load,
	.quiesce = serial_dev_quiesce,
};
