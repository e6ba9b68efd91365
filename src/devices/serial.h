/*
 * 16550A-compatible UART (8250 family) at a port base, as on a PC's COM1:
 * transmit, receive FIFO, divisor latch, IER/IIR interrupts, LSR, MCR
 * loopback and MSR — enough for Linux's 8250 driver.
 */
#ifndef FERRY_DEVICES_SERIAL_H
#define FERRY_DEVICES_SERIAL_H

#include <pthread.h>
#include <stdint.h>

#include "devices/chardev.h"
#include "devices/device.h"
#include "util/vmstate.h"
#include "vmm/iobus.h"

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ  4
#define SERIAL_FIFO_SIZE 16

/* Register state: everything a migration must carry. */
struct serial_regs {
	uint8_t dll, dlm;	/* divisor latch */
	uint8_t ier, fcr, lcr, mcr, lsr, msr, scr;
	uint8_t thr_ipending;	/* THR-empty interrupt latched, not yet read in IIR */
	uint8_t rx_head, rx_count;
	uint8_t rx_fifo[SERIAL_FIFO_SIZE];
};

/* The one description of serial_regs, for save, load and migration. */
extern const struct vmstate_desc serial_vmsd;

typedef void serial_irq_fn(void *opaque, int level);

struct serial {
	/*
	 * Guards regs and irq_level; taken by vCPU threads and the chardev
	 * thread (input).  Held across chardev_write, which never blocks.
	 */
	pthread_mutex_t lock;
	struct serial_regs regs;
	struct chardev *chr;	/* output/input; may be NULL (output dropped) */
	serial_irq_fn *set_irq;
	void *irq_opaque;
	int irq_level;		/* last level driven on the line */
};

void serial_init(struct serial *s, struct chardev *chr, serial_irq_fn *set_irq, void *opaque);
void serial_destroy(struct serial *s);

/* Register access at `offset` 0..7.  Called by the I/O bus. */
uint8_t serial_read(struct serial *s, unsigned offset);
void serial_write(struct serial *s, unsigned offset, uint8_t value);

/* Queue received bytes; those beyond the FIFO set the overrun error. */
void serial_receive(struct serial *s, const uint8_t *buf, size_t len);

/* Copy the registers out / in (e.g. for migration); set re-drives the IRQ. */
void serial_get_regs(struct serial *s, struct serial_regs *out);
void serial_set_regs(struct serial *s, const struct serial_regs *in);

/* The I/O bus ops for a serial port (opaque = struct serial *). */
extern const struct iobus_ops serial_iobus_ops;

/* Its registry entry (dev = struct serial *, state = struct serial_regs). */
extern const struct device_ops serial_device_ops;

#endif
