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
	for (unsigned id = 0; id < DEVICE_NR; id++)
		assert_int_equal(st.devs[id] != NULL, device_table[id]->vmsd != NULL);
	assert_memory_equal(st.devs[DEVICE_SERIAL], &busy, sizeof(busy));

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
	assert_memory_equal(st2.devs[DEVICE_SERIAL], &busy, sizeof(busy));
	assert_memory_equal(&st2.vcpus[1].regs, &st.vcpus[1].regs, sizeof(st.vcpus[1].regs));

	machine_state_free(&st2);
	machine_state_free(&st);
	vmstate_buf_free(&again);
	vmstate_buf_free(&buf);
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
	for (unsigned id = 0; id < DEVICE_NR; id++)
		assert_null(st.devs[id]);
	vmstate_buf_free(&buf);
	t_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_through_registry),
		cmocka_unit_test(test_missing_device_record),
	};
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: cannot open /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	close(fd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
