/*
 * Machine state through the device registry: a real (never-run) machine's
 * state is saved as x86_vm, x86_vcpu and one record per device with state
 * in registry order, decodes into per-device state, and applied to a
 * second machine gives every device the state of the first.  Skips (77)
 * without /dev/kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "board/machine.h"
#include "board/machine_state.h"
#include "devices/device.h"
#include "devices/serial.h"
#include "util/vmstate.h"

static char t_img[2][64];

/*
 * A machine with the first nr_disks of t_img as disks; incoming: opened
 * as a migration's destination does, without the image locks.
 */
static struct machine *t_make_disks(unsigned vcpus, unsigned nr_disks, bool incoming)
{
	struct machine *m = calloc(1, sizeof(*m));
	struct block_config disks[2];
	struct machine_config mc = {
		.memory = 16 << 20, .vcpus = vcpus, .serial = "file:/dev/null",
		.disks = disks, .nr_disks = nr_disks, .incoming = incoming,
	};
	char why[128], spec[128];

	for (unsigned i = 0; i < nr_disks; i++) {
		snprintf(spec, sizeof(spec), "path=%s", t_img[i]);
		assert_int_equal(block_config_parse(spec, &disks[i], why, sizeof(why)), 0);
	}
	assert_non_null(m);
	assert_int_equal(machine_create(m, &mc), 0);
	m->vm.state = VM_STATE_PAUSED;
	return m;
}

static struct machine *t_make(unsigned vcpus)
{
	struct machine *m = calloc(1, sizeof(*m));
	struct machine_config mc = { .memory = 16 << 20, .vcpus = vcpus, .serial = "file:/dev/null" };

	assert_non_null(m);
	assert_int_equal(machine_create(m, &mc), 0);
	/* Never started: nothing to pause, but save insists on PAUSED. */
	m->vm.state = VM_STATE_PAUSED;
	return m;
}

static void t_free(struct machine *m)
{
	m->vm.state = VM_STATE_CREATED;
	machine_destroy(m);
	free(m);
}

/* COM1 in a state no reset leaves it in: two bytes queued, odd registers. */
static void t_serial_busy(struct serial_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->dll = 1;
	r->dlm = 0;
	r->ier = 0x05;
	r->fcr = 0x01;
	r->lcr = 0x03;
	r->mcr = 0x0b;
	r->lsr = 0x61;		/* THRE | TEMT | DR */
	r->msr = 0xb0;
	r->scr = 0x5a;
	r->rx_head = 14;
	r->rx_count = 2;
	r->rx_fifo[14] = 'o';
	r->rx_fifo[15] = 'k';
}

/* The names of the records in buf, in order, joined by spaces. */
static void t_record_names(const struct vmstate_buf *buf, char *out, size_t outlen)
{
	size_t off = 0, used = 0;

	out[0] = '\0';
	while (off < buf->len) {
		char name[64];
		uint32_t version;
		size_t rlen;
		assert_int_equal(vmstate_peek(buf->data + off, buf->len - off, name, sizeof(name),
					      &version, &rlen), 0);
		used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? " " : "", name);
		assert_true(used < outlen);
		off += rlen;
	}
}

static void test_roundtrip_through_registry(void **state)
{
	struct machine *a = t_make(2), *b = t_make(2);
	struct serial_regs busy, got;
	struct machine_state st;
	struct vmstate_error verr;
	struct vmstate_buf buf;
	char names[256];

	t_serial_busy(&busy);
	serial_set_regs(&a->com1, &busy);
	vmstate_buf_init(&buf);
	assert_int_equal(machine_state_save(a, &buf), 0);

	/* The wire order: VM, each vCPU, then the registry's devices with state. */
	t_record_names(&buf, names, sizeof(names));
	assert_string_equal(names, "x86_vm x86_vcpu x86_vcpu serial-8250");

	assert_int_equal(machine_state_decode(buf.data, buf.len, 2, &st, &verr), 0);
	/* One record per instance with state: COM1 only (no disks here). */
	assert_int_equal(st.nr_devs, 1);
	assert_null(machine_state_dev(&st, DEVICE_DEBUG_EXIT, 0));
	assert_null(machine_state_dev(&st, DEVICE_VIRTIO_BLK, 0));
	assert_memory_equal(machine_state_dev(&st, DEVICE_SERIAL, 0), &busy, sizeof(busy));

	/* Another machine takes it all; its COM1 now holds the queued bytes. */
	serial_get_regs(&b->com1, &got);
	assert_memory_not_equal(&got, &busy, sizeof(got));
	assert_int_equal(machine_state_apply(b, &st), 0);
	serial_get_regs(&b->com1, &got);
	assert_memory_equal(&got, &busy, sizeof(got));
	assert_int_equal(serial_read(&b->com1, 0), 'o');
	assert_int_equal(serial_read(&b->com1, 0), 'k');

	/* And saves it back the same, but for what time changed. */
	struct vmstate_buf again;
	vmstate_buf_init(&again);
	serial_set_regs(&b->com1, &busy);
	assert_int_equal(machine_state_save(b, &again), 0);
	t_record_names(&again, names, sizeof(names));
	assert_string_equal(names, "x86_vm x86_vcpu x86_vcpu serial-8250");
	struct machine_state st2;
	assert_int_equal(machine_state_decode(again.data, again.len, 2, &st2, &verr), 0);
	assert_memory_equal(machine_state_dev(&st2, DEVICE_SERIAL, 0), &busy, sizeof(busy));
	assert_memory_equal(&st2.vcpus[1].regs, &st.vcpus[1].regs, sizeof(st.vcpus[1].regs));

	machine_state_free(&st2);
	machine_state_free(&st);
	vmstate_buf_free(&again);
	vmstate_buf_free(&buf);
	t_free(a);
	t_free(b);
}

/*
 * --verify's state digest: a state loaded into another machine and read
 * back digests the same (what KVM moves by itself is left out), and a
 * field that did not survive is named with both values.
 */
static void test_state_digest(void **state)
{
	struct machine *a = t_make(2), *b = t_make(2);
	struct machine_state sent, back;
	struct vmstate_error verr;
	struct vmstate_buf buf, again;
	struct serial_regs busy;
	uint64_t d_sent, d_back;
	char why[160];

	t_serial_busy(&busy);
	serial_set_regs(&a->com1, &busy);
	vmstate_buf_init(&buf);
	vmstate_buf_init(&again);
	assert_int_equal(machine_state_save(a, &buf), 0);
	assert_int_equal(machine_state_decode(buf.data, buf.len, 2, &sent, &verr), 0);
	assert_int_equal(machine_state_digest(&sent, &d_sent), 0);
	assert_int_equal(machine_state_apply(b, &sent), 0);
	usleep(20000);		/* the clock and the TSC move on meanwhile */
	assert_int_equal(machine_state_encode(b, &again), 0);
	assert_int_equal(machine_state_decode(again.data, again.len, 2, &back, &verr), 0);
	assert_int_equal(machine_state_digest(&back, &d_back), 0);
	assert_false(machine_state_diff(&sent, &back, why, sizeof(why)));
	assert_true(d_sent == d_back);
	/* ... though the bytes differ: the clock is in them. */
	assert_true(buf.len != again.len || memcmp(buf.data, again.data, buf.len));

	/* One register that did not load as it came: another digest, and its name. */
	struct serial_regs *r = machine_state_dev(&back, DEVICE_SERIAL, 0);
	r->scr ^= 0x10;
	assert_int_equal(machine_state_digest(&back, &d_back), 0);
	assert_true(d_sent != d_back);
	assert_true(machine_state_diff(&sent, &back, why, sizeof(why)));
	assert_string_equal(why, "serial-8250 field scr (0x5a, 0x4a)");
	r->scr ^= 0x10;
	/* A vCPU register too, by vCPU. */
	back.vcpus[1].regs.rbx += 1;
	assert_true(machine_state_diff(&sent, &back, why, sizeof(why)));
	assert_non_null(strstr(why, "x86_vcpu[1] field regs.rbx"));

	machine_state_free(&sent);
	machine_state_free(&back);
	vmstate_buf_free(&buf);
	vmstate_buf_free(&again);
	t_free(a);
	t_free(b);
}

static void test_missing_device_record(void **state)
{
	struct machine *a = t_make(1);
	struct machine_state st;
	struct vmstate_error verr;
	struct vmstate_buf buf;
	char name[64];
	uint32_t version;
	size_t off = 0, rlen;

	vmstate_buf_init(&buf);
	assert_int_equal(machine_state_save(a, &buf), 0);
	/* Cut the last record (serial-8250) off. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(vmstate_peek(buf.data + off, buf.len - off, name, sizeof(name),
					      &version, &rlen), 0);
		off += rlen;
	}
	assert_int_equal(machine_state_decode(buf.data, off, 1, &st, &verr), -EINVAL);
	assert_non_null(strstr(verr.msg, "where 'serial-8250' was due"));
	assert_null(st.vcpus);
	assert_int_equal(st.nr_devs, 0);
	vmstate_buf_free(&buf);
	t_free(a);
}

/* Disks: one record each, named by number; the destination must have the same ones. */
static void test_disks(void **state)
{
	struct machine *a = t_make_disks(1, 2, false), *same = t_make_disks(1, 2, true);
	struct machine *fewer = t_make_disks(1, 1, true), *none = t_make(1);
	struct machine_state st;
	struct vmstate_error verr;
	struct vmstate_buf buf;
	char names[256];

	/* The kernel learns of them on its command line. */
	char cmdline[256] = "console=ttyS0";
	assert_int_equal(machine_virtio_cmdline(a, cmdline, sizeof(cmdline)), 0);
	assert_string_equal(cmdline, "console=ttyS0 virtio_mmio.device=512@0xfeb00000:5 "
			    "virtio_mmio.device=512@0xfeb00200:6");

	vmstate_buf_init(&buf);
	assert_int_equal(machine_state_save(a, &buf), 0);
	t_record_names(&buf, names, sizeof(names));
	assert_string_equal(names, "x86_vm x86_vcpu serial-8250 virtio-blk.0 virtio-blk.1");
	assert_int_equal(machine_state_decode(buf.data, buf.len, 1, &st, &verr), 0);
	assert_int_equal(st.nr_devs, 3);
	assert_non_null(machine_state_dev(&st, DEVICE_VIRTIO_BLK, 1));

	assert_int_equal(machine_state_match(same, &st, &verr), 0);
	assert_int_equal(machine_state_apply(same, &st), 0);
	/* The disks' locks move with the guest: only once the source let go. */
	char why[512];
	assert_int_equal(machine_activate(same, why, sizeof(why)), -EBUSY);
	assert_non_null(strstr(why, "is in use by another process"));
	assert_int_equal(machine_inactivate(a), 0);
	assert_int_equal(machine_activate(same, why, sizeof(why)), 0);
	assert_int_equal(machine_activate(a, why, sizeof(why)), -EBUSY);
	assert_int_equal(machine_inactivate(same), 0);
	assert_int_equal(machine_activate(a, why, sizeof(why)), 0);
	assert_int_equal(machine_state_match(fewer, &st, &verr), -EINVAL);
	assert_non_null(strstr(verr.msg, "virtio-blk.1, which this destination lacks"));
	assert_int_equal(machine_state_apply(none, &st), -EINVAL);
	machine_state_free(&st);

	/* The other way round: a destination disk the source does not have. */
	vmstate_buf_free(&buf);
	vmstate_buf_init(&buf);
	assert_int_equal(machine_state_save(fewer, &buf), 0);
	assert_int_equal(machine_state_decode(buf.data, buf.len, 1, &st, &verr), 0);
	assert_int_equal(machine_state_match(a, &st, &verr), -EINVAL);
	assert_non_null(strstr(verr.msg, "virtio-blk.1, which the source lacks"));
	machine_state_free(&st);
	/* A record for a disk number out of order is refused by the decoder. */
	vmstate_buf_free(&buf);
	vmstate_buf_init(&buf);
	assert_int_equal(machine_state_save(a, &buf), 0);
	size_t off = 0, rlen = 0;
	char name[64];
	uint32_t version;
	for (int i = 0; i < 4; i++) {	/* x86_vm, x86_vcpu, serial, virtio-blk.0 */
		assert_int_equal(vmstate_peek(buf.data + off, buf.len - off, name, sizeof(name),
					      &version, &rlen), 0);
		off += rlen;
	}
	memmove(buf.data + off - rlen, buf.data + off, buf.len - off);	/* drop disk 0 */
	buf.len -= rlen;
	assert_int_equal(machine_state_decode(buf.data, buf.len, 1, &st, &verr), -EINVAL);
	assert_non_null(strstr(verr.msg, "'virtio-blk.1' where none was due"));

	vmstate_buf_free(&buf);
	t_free(a);
	t_free(same);
	t_free(fewer);
	t_free(none);
}

static int t_images(void **state)
{
	for (int i = 0; i < 2; i++) {
		snprintf(t_img[i], sizeof(t_img[i]), "/tmp/ferry-ms-disk%d-XXXXXX", i);
		int fd = mkstemp(t_img[i]);
		if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
			return -1;
		close(fd);
	}
	return 0;
}

static int t_images_rm(void **state)
{
	for (int i = 0; i < 2; i++)
		unlink(t_img[i]);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_through_registry),
		cmocka_unit_test(test_state_digest),
		cmocka_unit_test(test_missing_device_record),
		cmocka_unit_test_setup_teardown(test_disks, t_images, t_images_rm),
	};
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: cannot open /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	close(fd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
