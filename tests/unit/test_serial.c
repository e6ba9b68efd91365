/* The 8250 UART's registers, as Linux's driver and the probe guest use them. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/serial.h"

static struct serial uart;
static struct chardev chr;
static int pipefd[2];
static int irq_level, irq_changes;

static void record_irq(void *opaque, int level)
{
	irq_level = level;
	irq_changes++;
}

static int setup(void **state)
{
	if (pipe2(pipefd, O_NONBLOCK) < 0)
		return -1;
	memset(&chr, 0, sizeof(chr));
	pthread_mutex_init(&chr.lock, NULL);
	chr.out_fd = pipefd[1];
	chr.in_fd = chr.listen_fd = -1;
	serial_init(&uart, &chr, record_irq, NULL);
	irq_level = irq_changes = 0;
	return 0;
}

static int teardown(void **state)
{
	serial_destroy(&uart);
	pthread_mutex_destroy(&chr.lock);
	close(pipefd[0]);
	close(pipefd[1]);
	return 0;
}

static void test_reset_state(void **state)
{
	assert_int_equal(serial_read(&uart, 5), 0x60);	/* LSR: THR empty, idle */
	assert_int_equal(serial_read(&uart, 2), 0x01);	/* IIR: nothing pending */
	assert_int_equal(serial_read(&uart, 6), 0xb0);	/* MSR: DCD DSR CTS */
	assert_int_equal(irq_level, 0);
}

static void test_transmit(void **state)
{
	char out[8] = "";

	serial_write(&uart, 0, 'h');
	serial_write(&uart, 0, 'i');
	assert_int_equal(read(pipefd[0], out, sizeof(out)), 2);
	assert_memory_equal(out, "hi", 2);
	assert_int_equal(serial_read(&uart, 5) & 0x60, 0x60);
}

static void test_divisor_latch(void **state)
{
	serial_write(&uart, 1, 0x00);
	serial_write(&uart, 3, 0x83);	/* DLAB, 8N1 */
	serial_write(&uart, 0, 0x01);	/* 115200 baud */
	serial_write(&uart, 1, 0x00);
	assert_int_equal(serial_read(&uart, 0), 0x01);
	assert_int_equal(serial_read(&uart, 1), 0x00);
	serial_write(&uart, 3, 0x03);
	/* With DLAB off the same offsets are THR and IER again. */
	serial_write(&uart, 1, 0x05);
	assert_int_equal(serial_read(&uart, 1), 0x05);
	serial_write(&uart, 3, 0x83);
	assert_int_equal(serial_read(&uart, 0), 0x01);
	assert_int_equal(serial_read(&uart, 3), 0x83);
	char out[4];
	assert_int_equal(read(pipefd[0], out, sizeof(out)), -1);	/* nothing sent */
}

static void test_thr_interrupt(void **state)
{
	serial_write(&uart, 1, 0x02);	/* enable THRI: THR is empty, so it fires */
	assert_int_equal(irq_level, 1);
	assert_int_equal(serial_read(&uart, 2) & 0x0f, 0x02);
	/* Reading IIR acknowledged it. */
	assert_int_equal(irq_level, 0);
	assert_int_equal(serial_read(&uart, 2) & 0x0f, 0x01);
	serial_write(&uart, 0, 'x');	/* transmit completes: fires again */
	assert_int_equal(irq_level, 1);
	serial_write(&uart, 1, 0x00);	/* masking it lowers the line */
	assert_int_equal(irq_level, 0);
}

static void test_receive(void **state)
{
	serial_write(&uart, 1, 0x01);	/* enable RDI */
	serial_receive(&uart, (const uint8_t *)"ok", 2);
	assert_int_equal(irq_level, 1);
	assert_int_equal(serial_read(&uart, 2) & 0x0f, 0x04);
	assert_int_equal(serial_read(&uart, 5) & 0x01, 0x01);
	assert_int_equal(serial_read(&uart, 0), 'o');
	assert_int_equal(serial_read(&uart, 0), 'k');
	assert_int_equal(serial_read(&uart, 5) & 0x01, 0x00);
	assert_int_equal(irq_level, 0);
}

static void test_overrun(void **state)
{
	uint8_t many[SERIAL_FIFO_SIZE + 4];

	memset(many, 'z', sizeof(many));
	serial_receive(&uart, many, sizeof(many));
	assert_int_equal(serial_read(&uart, 5) & 0x03, 0x03);	/* DR | OE */
	assert_int_equal(serial_read(&uart, 5) & 0x02, 0x00);	/* OE clears on read */
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(serial_read(&uart, 0), 'z');
	assert_int_equal(serial_read(&uart, 5) & 0x01, 0);
}

static void test_fifo_control(void **state)
{
	serial_write(&uart, 2, 0x07);	/* enable and clear FIFOs */
	assert_int_equal(serial_read(&uart, 2), 0xc1);
	serial_receive(&uart, (const uint8_t *)"abc", 3);
	serial_write(&uart, 2, 0x03);	/* clear RX */
	assert_int_equal(serial_read(&uart, 5) & 0x01, 0);
}

static void test_loopback(void **state)
{
	char out[4];

	serial_write(&uart, 4, 0x1f);	/* loop, OUT2, OUT1, RTS, DTR */
	assert_int_equal(serial_read(&uart, 6) & 0xf0, 0xf0);
	serial_write(&uart, 4, 0x10);
	assert_int_equal(serial_read(&uart, 6) & 0xf0, 0x00);
	serial_write(&uart, 0, 'L');
	assert_int_equal(serial_read(&uart, 0), 'L');
	assert_int_equal(read(pipefd[0], out, sizeof(out)), -1);	/* not sent out */
	serial_write(&uart, 4, 0x0b);
	assert_int_equal(serial_read(&uart, 6), 0xb0);
}

static void test_scratch_and_bus(void **state)
{
	uint8_t v = 0x5a, r = 0;

	serial_iobus_ops.write(&uart, 7, &v, 1);
	serial_iobus_ops.read(&uart, 7, &r, 1);
	assert_int_equal(r, 0x5a);
	/* Offsets past the 8 registers read as all ones and write nowhere. */
	serial_iobus_ops.read(&uart, 9, &r, 1);
	assert_int_equal(r, 0xff);
}

static void test_state_round_trip(void **state)
{
	struct serial_regs saved, loaded, back;
	struct vmstate_buf buf;
	struct vmstate_error err;
	struct serial other;

	serial_write(&uart, 3, 0x83);
	serial_write(&uart, 0, 0x03);
	serial_write(&uart, 3, 0x03);
	serial_write(&uart, 1, 0x03);
	serial_write(&uart, 7, 0x42);
	serial_receive(&uart, (const uint8_t *)"xyz", 3);
	(void)serial_read(&uart, 0);
	serial_get_regs(&uart, &saved);

	vmstate_buf_init(&buf);
	assert_int_equal(vmstate_save(&serial_vmsd, &saved, &buf), 0);
	memset(&loaded, 0, sizeof(loaded));
	assert_int_equal(vmstate_load(&serial_vmsd, &loaded, buf.data, buf.len, &err), 0);
	assert_memory_equal(&loaded, &saved, sizeof(saved));

	/* A second UART given this state behaves like the first, IRQ included. */
	irq_level = 0;
	serial_init(&other, NULL, record_irq, NULL);
	serial_set_regs(&other, &loaded);
	assert_int_equal(irq_level, 1);			/* RX data with RDI on */
	assert_int_equal(serial_read(&other, 0), 'y');
	assert_int_equal(serial_read(&other, 0), 'z');
	serial_get_regs(&other, &back);
	assert_int_equal(back.scr, 0x42);
	assert_int_equal(back.dll, 0x03);
	serial_destroy(&other);

	/* Out-of-range and inconsistent state is refused with a reason. */
	struct serial_regs bad = saved;
	bad.rx_head = SERIAL_FIFO_SIZE;
	vmstate_buf_free(&buf);
	vmstate_buf_init(&buf);
	assert_int_not_equal(vmstate_save(&serial_vmsd, &bad, &buf), 0);
	size_t ier_at = 0;
	assert_int_equal(vmstate_save(&serial_vmsd, &saved, &buf), 0);
	/* Find the IER byte by encoding a copy that differs only there. */
	struct vmstate_buf b2;
	struct serial_regs probe = saved;
	probe.ier ^= 0x08;
	vmstate_buf_init(&b2);
	assert_int_equal(vmstate_save(&serial_vmsd, &probe, &b2), 0);
	assert_int_equal(b2.len, buf.len);
	for (size_t i = 0; i < buf.len; i++)
		if (buf.data[i] != b2.data[i])
			ier_at = i;
	buf.data[ier_at] = 0x80;
	memset(&loaded, 0x77, sizeof(loaded));
	struct serial_regs before = loaded;
	assert_int_equal(vmstate_load(&serial_vmsd, &loaded, buf.data, buf.len, &err), -ERANGE);
	assert_non_null(strstr(err.msg, "ier"));
	assert_memory_equal(&loaded, &before, sizeof(loaded));	/* untouched */
	vmstate_buf_free(&b2);
	vmstate_buf_free(&buf);

	bad = saved;
	bad.lsr &= (uint8_t)~0x01;				/* DR off, bytes queued */
	vmstate_buf_init(&buf);
	assert_int_equal(vmstate_save(&serial_vmsd, &bad, &buf), 0);
	assert_int_equal(vmstate_load(&serial_vmsd, &loaded, buf.data, buf.len, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "data-ready"));
	vmstate_buf_free(&buf);
}

/*
 * A reader that connected and stopped reading must not stall the vCPU that
 * transmits: the output is queued (bounded) and the rest dropped, and the
 * bytes that do arrive are the guest's, in order.  alarm() turns a blocked
 * write into a failure instead of a hung test.
 */
static void test_stalled_reader(void **state)
{
	struct chardev sc;
	struct serial su;
	int sv[2];
	char got[256];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);	/* blocking */
	memset(&sc, 0, sizeof(sc));
	pthread_mutex_init(&sc.lock, NULL);
	sc.out_fd = sv[0];
	sc.in_fd = sc.listen_fd = -1;
	serial_init(&su, &sc, record_irq, NULL);
	alarm(10);
	for (int i = 0; i < 1 << 20; i++)
		serial_write(&su, 0, (uint8_t)('a' + i % 26));
	alarm(0);
	assert_int_equal(serial_read(&su, 5) & 0x60, 0x60);	/* THR empty: never stuck */
	assert_true(chardev_dropped(&sc) > 0);

	/*
	 * The reader comes back: it gets what was sent and queued, in order,
	 * then new output (which first pushes the queue out).  Only the tail
	 * that did not fit was lost.
	 */
	size_t total = 0;
	bool seen_new = false;
	while (!seen_new) {
		ssize_t n = recv(sv[1], got, sizeof(got), MSG_DONTWAIT);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			serial_write(&su, 0, 'Z');
			continue;
		}
		for (ssize_t i = 0; i < n && !seen_new; i++, total++) {
			if (got[i] == 'Z')
				seen_new = true;
			else
				assert_int_equal(got[i], 'a' + total % 26);
		}
	}
	assert_true(total - 1 >= CHARDEV_OUT_QUEUE);
	assert_int_equal(total - 1 + chardev_dropped(&sc), 1 << 20);
	serial_destroy(&su);
	pthread_mutex_destroy(&sc.lock);
	close(sv[0]);
	close(sv[1]);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_reset_state), T(test_transmit), T(test_divisor_latch),
		T(test_thr_interrupt), T(test_receive), T(test_overrun),
		T(test_fifo_control), T(test_loopback), T(test_scratch_and_bus),
		T(test_state_round_trip), T(test_stalled_reader),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
