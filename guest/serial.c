/*
 * serial.c - 8250 UART output, a tiny printf, and the exit port.
 *
 * Callable from ring 0 (exception reports) and ring 3 (everything else).
 * Ring 3 is entered with IOPL=3; where its port I/O faults all the same
 * (kvm-pvm with a TSS that has no I/O bitmap), ring 3 does its port I/O
 * through one syscall per line.  Compiled with
 * -mgeneral-regs-only.  Every pr() call formats whole lines into a buffer
 * and writes them under a spinlock, so lines from several vCPUs never
 * interleave; ring 3 spins natively, ring 0 only writes.
 */
#include <stdarg.h>
#include "probe.h"

#define COM1        0x3f8
#define COM1_LSR    (COM1 + 5)
#define LSR_THRE    0x20
#define EXIT_PORT   0xf4

static volatile u32 serial_lock;

void serial_init(void)
{
	outb(COM1 + 1, 0x00);   /* no UART interrupts */
	outb(COM1 + 3, 0x80);   /* DLAB: 115200 baud */
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);   /* 8N1 */
}

static void serial_putc(char c)
{
	/* Bounded wait: a UART that never reports ready must not hang us. */
	for (int i = 0; i < 100000 && !(inb(COM1_LSR) & LSR_THRE); i++)
		;
	outb(COM1, (u8)c);
}

/*
 * IOPL=3 is not always enough (pushf claims IOPL=3 even where kvm-pvm
 * faults the port I/O), so main.c tries one "in" at boot and records
 * whether it worked.
 */
static bool user_io_allowed(void)
{
	return kinfo.user_io;
}

/* Ring 0: write straight to the UART. */
void serial_write(const char *s, size_t n)
{
	while (n--)
		serial_putc(*s++);
}

static void lock(bool ring0)
{
	/* Ring 0 is emulated and may have interrupted the lock holder, so it
	 * only waits a bounded time before printing anyway. */
	u64 spins = ring0 ? 20000 : ~0UL;

	while (__atomic_exchange_n(&serial_lock, 1, __ATOMIC_ACQUIRE))
		while (serial_lock)
			if (!--spins)
				return;
			else
				cpu_relax();
}

static void unlock(void)
{
	__atomic_store_n(&serial_lock, 0, __ATOMIC_RELEASE);
}

struct buf {
	char s[256];
	u32 n;
};

static void put(struct buf *b, char c)
{
	if (b->n < sizeof(b->s))
		b->s[b->n++] = c;
}

static void put_num(struct buf *b, u64 v, u32 base, int width, char pad, bool neg)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (width-- > n)
		put(b, pad);
	while (n)
		put(b, tmp[--n]);
}

static void format(struct buf *b, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		int width = 0, lng = 0;
		char pad = ' ';

		if (*fmt != '%') {
			put(b, *fmt);
			continue;
		}
		if (*++fmt == '0')
			pad = '0';
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			lng++, fmt++;
		switch (*fmt) {
		case 'd': {
			s64 v = lng ? va_arg(ap, s64) : va_arg(ap, int);

			put_num(b, v < 0 ? -(u64)v : (u64)v, 10, width, pad, v < 0);
			break;
		}
		case 'u':
			put_num(b, lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, pad, false);
			break;
		case 'x':
			put_num(b, lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad, false);
			break;
		case 's':
			for (const char *s = va_arg(ap, const char *); *s; s++)
				put(b, *s);
			break;
		case 'c':
			put(b, (char)va_arg(ap, int));
			break;
		case '%':
			put(b, '%');
			break;
		default:
			return;
		}
	}
}

static void vpr(bool ring0, const char *fmt, va_list ap)
{
	struct buf b;

	b.n = 0;
	format(&b, fmt, ap);
	lock(ring0);
	if (ring0 || user_io_allowed())
		serial_write(b.s, b.n);
	else
		syscall2(SYS_WRITE, (u64)b.s, b.n);
	unlock();
}

void pr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpr(false, fmt, ap);
	va_end(ap);
}

void kpr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vpr(true, fmt, ap);
	va_end(ap);
}

noreturn void kexit(u32 code)
{
	outl(EXIT_PORT, code);
	for (;;)
		__asm__ volatile("cli; hlt");
}

noreturn void probe_exit(u32 code)
{
	/* ferry: the value is the exit status; QEMU isa-debug-exit: the
	 * process exits with (value << 1) | 1. */
	if (user_io_allowed())
		outl(EXIT_PORT, code);
	else
		syscall1(SYS_EXIT, code);
	syscall1(SYS_HALT, 0);
	for (;;)
		cpu_relax();
}
