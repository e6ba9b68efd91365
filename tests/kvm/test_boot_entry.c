/*
 * The boot entry states on a real KVM: a PVH entry drops to ring 3 with
 * IOPL=3 and writes a port there (the direct UART path the probe takes,
 * which kvm-pvm refuses with a TSS limit of 0x67), and the Linux 64-bit
 * entry runs in long mode on ferry's page tables.  Skips (77) without
 * /dev/kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/pvh.h"

#define T_MEM_SIZE (4ULL << 20)

static int t_kvm = -1;

struct t_vm {
	int vm, vcpu;
	uint8_t *mem;
	struct kvm_run *run;
	size_t run_size;
};

static void t_alarm(int sig)
{
	(void)sig;	/* only interrupts KVM_RUN */
}

static void t_vm_create(struct t_vm *v)
{
	v->vm = ioctl(t_kvm, KVM_CREATE_VM, 0);
	assert_true(v->vm >= 0);
	(void)ioctl(v->vm, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	assert_int_equal(ioctl(v->vm, KVM_CREATE_IRQCHIP, 0), 0);
	v->mem = mmap(NULL, T_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(v->mem != MAP_FAILED);
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = T_MEM_SIZE,
		.userspace_addr = (uintptr_t)v->mem,
	};
	assert_int_equal(ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	assert_true(v->vcpu >= 0);
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} c = { .hdr.nent = 256 };
	assert_int_equal(ioctl(t_kvm, KVM_GET_SUPPORTED_CPUID, &c), 0);
	assert_int_equal(ioctl(v->vcpu, KVM_SET_CPUID2, &c), 0);
	int sz = ioctl(t_kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	assert_true(sz > 0);
	v->run_size = (size_t)sz;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	assert_true(v->run != MAP_FAILED);
}

static void t_vm_destroy(struct t_vm *v)
{
	munmap(v->run, v->run_size);
	munmap(v->mem, T_MEM_SIZE);
	close(v->vcpu);
	close(v->vm);
}

/*
 * Run until the guest writes `port`; anything else (a fault: shutdown) fails,
 * but for a KVM that cannot emulate the iret to ring 3 where skip_iret.
 */
static void t_expect_out(struct t_vm *v, uint16_t port, uint8_t value, bool skip_iret)
{
	struct sigaction sa = { .sa_handler = t_alarm };

	sigaction(SIGALRM, &sa, NULL);		/* no SA_RESTART: KVM_RUN returns EINTR */
	alarm(20);
	int r = ioctl(v->vcpu, KVM_RUN, 0);
	alarm(0);
	if (r < 0)
		fail_msg("KVM_RUN: %s (the guest ran 20 s without an exit?)", strerror(errno));
	if (v->run->exit_reason != KVM_EXIT_IO) {
		struct kvm_regs regs;
		ioctl(v->vcpu, KVM_GET_REGS, &regs);
		/*
		 * Some kvm-pvm builds cannot emulate a 32-bit ring-0 iret at
		 * all (the probe enters ring 3 from long mode, with iretq, and
		 * boot_workloads covers that): nothing this test can judge.
		 */
		if (v->run->exit_reason == KVM_EXIT_INTERNAL_ERROR &&
		    v->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && skip_iret &&
		    regs.rip < T_MEM_SIZE && v->mem[regs.rip] == 0xcf) {
			printf("SKIP: this KVM cannot emulate the 32-bit iret to ring 3\n");
			t_vm_destroy(v);
			skip();
		}
		if (v->run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			fail_msg("KVM internal error %u (ndata %u: %llx %llx %llx %llx) at rip 0x%llx",
				 v->run->internal.suberror, v->run->internal.ndata,
				 (unsigned long long)v->run->internal.data[0],
				 (unsigned long long)v->run->internal.data[1],
				 (unsigned long long)v->run->internal.data[2],
				 (unsigned long long)v->run->internal.data[3],
				 (unsigned long long)regs.rip);
		fail_msg("exit reason %u at rip 0x%llx, wanted port I/O (8 = shutdown: a fault)",
			 v->run->exit_reason, (unsigned long long)regs.rip);
	}
	assert_int_equal(v->run->io.direction, KVM_EXIT_IO_OUT);
	assert_int_equal(v->run->io.port, port);
	assert_int_equal(*((uint8_t *)v->run + v->run->io.data_offset), value);
}

static void test_pvh_ring3_port_io(void **state)
{
	static const uint64_t gdt[6] = {
		0, 0,
		0x00cf9a000000ffffULL,		/* 0x10: code, DPL 0 */
		0x00cf92000000ffffULL,		/* 0x18: data, DPL 0 */
		0x00cffa000000ffffULL,		/* 0x20: code, DPL 3 */
		0x00cff2000000ffffULL,		/* 0x28: data, DPL 3 */
	};
	static const uint8_t gdtr[6] = { 0x2f, 0, 0x00, 0x08, 0, 0 };	/* 0x800 */
	static const uint8_t ring0[] = {
		0xbc, 0x00, 0x70, 0x00, 0x00,		/* mov $0x7000, %esp */
		0x0f, 0x01, 0x15, 0x00, 0x09, 0x00, 0x00,	/* lgdt 0x900 */
		0x6a, 0x2b,				/* push $0x2b (ss) */
		0x68, 0x00, 0x80, 0x00, 0x00,		/* push $0x8000 (esp) */
		0x68, 0x02, 0x30, 0x00, 0x00,		/* push $0x3002 (IOPL 3) */
		0x6a, 0x23,				/* push $0x23 (cs) */
		0x68, 0x00, 0x11, 0x00, 0x00,		/* push $0x1100 (eip) */
		0xcf,					/* iret: to ring 3 */
	};
	static const uint8_t ring3[] = {
		0xb0, 0x42,				/* mov $0x42, %al */
		0xe6, 0x80,				/* out %al, $0x80 */
		0xeb, 0xfe,				/* jmp . */
	};
	struct t_vm v;

	(void)state;
	t_vm_create(&v);
	memcpy(v.mem + 0x800, gdt, sizeof(gdt));
	memcpy(v.mem + 0x900, gdtr, sizeof(gdtr));
	memcpy(v.mem + 0x1000, ring0, sizeof(ring0));
	memcpy(v.mem + 0x1100, ring3, sizeof(ring3));
	assert_int_equal(x86_boot_pvh(v.vcpu, 0x1000, 0x6000), 0);
	struct kvm_sregs s;
	assert_int_equal(ioctl(v.vcpu, KVM_GET_SREGS, &s), 0);
	assert_int_equal(s.tr.limit, 0xffff);		/* KVM kept QEMU's TR */
	assert_int_equal(s.tr.type, 0xb);
	assert_int_equal(s.ldt.limit, 0xffff);
	t_expect_out(&v, 0x80, 0x42, true);
	t_vm_destroy(&v);
}

static void test_linux64_entry(void **state)
{
	static const uint8_t code[] = {
		0x48, 0x89, 0xf0,			/* mov %rsi, %rax */
		0xe6, 0x80,				/* out %al, $0x80 */
		0xeb, 0xfe,				/* jmp . */
	};
	struct pvh_ram ram;
	struct t_vm v;

	(void)state;
	t_vm_create(&v);
	ram = (struct pvh_ram){ .nr = 1, .block = { { 0, T_MEM_SIZE, v.mem } } };
	assert_int_equal(x86_boot_linux64_tables(&ram), 0);
	memcpy(v.mem + 0x200200, code, sizeof(code));
	assert_int_equal(x86_boot_linux64(v.vcpu, 0x200200, 0x7055), 0);
	struct kvm_sregs s;
	assert_int_equal(ioctl(v.vcpu, KVM_GET_SREGS, &s), 0);
	assert_int_equal(s.efer & 0x500, 0x500);	/* long mode active */
	assert_int_equal(s.cs.l, 1);
	t_expect_out(&v, 0x80, 0x55, false);			/* RSI reached the guest */
	t_vm_destroy(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pvh_ring3_port_io),
		cmocka_unit_test(test_linux64_entry),
	};

	t_kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (t_kvm < 0) {
		printf("SKIP: cannot open /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
