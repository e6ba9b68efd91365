/* The MP table, read back as a kernel's MP parser reads it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86/mptable.h"

#define RAM_SIZE (2ULL << 20)

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static void check_table(unsigned ncpus)
{
	uint8_t *host = calloc(1, RAM_SIZE);
	struct pvh_ram ram = { .nr = 1, .block = { { 0, RAM_SIZE, host } } };

	assert_non_null(host);
	int len = x86_mptable_write(&ram, ncpus);
	assert_true(len > 0);
	/* The floating pointer: signature, 16 bytes summing to 0, version 1.4. */
	const uint8_t *mpf = host + MPTABLE_GPA;
	assert_memory_equal(mpf, "_MP_", 4);
	assert_int_equal(mpf[8], 1);
	assert_int_equal(mpf[9], 4);
	assert_int_equal(sum(mpf, 16), 0);
	/* The table it points at. */
	uint32_t phys = get32(mpf + 4);
	assert_true(phys > MPTABLE_GPA && phys < MPTABLE_GPA + 0x10000);
	const uint8_t *t = host + phys;
	assert_memory_equal(t, "PCMP", 4);
	uint16_t tlen = get16(t + 4), count = get16(t + 34);
	assert_int_equal(sum(t, tlen), 0);
	assert_int_equal(get32(t + 36), MPTABLE_LAPIC_GPA);
	assert_int_equal(count, ncpus + 2 + MPTABLE_IRQS + 2);
	/* Walk the entries by type, as Linux's smp_read_mpc() does. */
	unsigned cpus = 0, bsp = 0, ioapics = 0, intsrc = 0, lint = 0, buses = 0;
	const uint8_t *e = t + 44, *end = t + tlen;
	uint8_t ioapic_id = 0;
	for (unsigned i = 0; i < count; i++) {
		assert_true(e < end);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], cpus);		/* APIC id = vCPU index */
			assert_true(e[3] & 1);			/* enabled */
			bsp += (e[3] & 2) ? 1 : 0;
			if (e[3] & 2)
				assert_int_equal(e[1], 0);
			cpus++;
			e += 20;
			break;
		case 1:
			assert_memory_equal(e + 2, "ISA   ", 6);
			buses++;
			e += 8;
			break;
		case 2:
			ioapic_id = e[1];
			assert_int_equal(e[3], 1);		/* usable */
			assert_int_equal(get32(e + 4), MPTABLE_IOAPIC_GPA);
			ioapics++;
			e += 8;
			break;
		case 3:
			assert_int_equal(e[6], ioapic_id);
			assert_int_equal(e[5], intsrc);		/* ISA IRQ n on pin n */
			assert_int_equal(e[7], intsrc);
			intsrc++;
			e += 8;
			break;
		case 4:
			lint++;
			e += 8;
			break;
		default:
			fail_msg("entry type %u", e[0]);
		}
	}
	assert_ptr_equal(e, end);
	assert_int_equal(cpus, ncpus);
	assert_int_equal(bsp, 1);
	assert_int_equal(buses, 1);
	assert_int_equal(ioapics, 1);
	assert_true(ioapic_id >= ncpus);			/* clear of every CPU's id */
	assert_int_equal(intsrc, MPTABLE_IRQS);
	assert_int_equal(lint, 2);
	assert_int_equal(len, 16 + tlen);
	free(host);
}

static void test_one_cpu(void **state) { (void)state; check_table(1); }
static void test_sixteen_cpus(void **state) { (void)state; check_table(16); }
static void test_most_cpus(void **state) { (void)state; check_table(MPTABLE_MAX_CPUS); }

static void test_bad(void **state)
{
	uint8_t *host = calloc(1, RAM_SIZE);
	struct pvh_ram ram = { .nr = 1, .block = { { 0, RAM_SIZE, host } } };
	struct pvh_ram small = { .nr = 1, .block = { { 0, 0xa0000, host } } };

	(void)state;
	assert_int_equal(x86_mptable_write(&ram, 0), -EINVAL);
	assert_int_equal(x86_mptable_write(&ram, MPTABLE_MAX_CPUS + 1), -EINVAL);
	assert_int_equal(x86_mptable_write(&small, 1), -ERANGE);
	free(host);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_cpu),
		cmocka_unit_test(test_sixteen_cpus),
		cmocka_unit_test(test_most_cpus),
		cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
