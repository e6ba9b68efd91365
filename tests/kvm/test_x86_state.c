/*
 * x86 vCPU and VM state through vmstate, against real KVM (in the spirit of
 * the kernel's kvm selftest state_test): run a tiny real-mode guest, save
 * everything, encode, decode, restore into a brand-new VM, read it back and
 * compare field by field; then check corrupted encodings are refused.
 * Raw KVM ioctls only, no ferry VMM code.  Skips (77) without /dev/kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86/msr.h"
#include "arch/x86/vcpu_state.h"
#include "arch/x86/vm_state.h"
#include "util/vmstate.h"

#define T_MEM_SIZE	(1u << 20)
#define T_CODE_GPA	0x1000
#define T_KVMCLOCK_GPA	0x5000
#define T_PORT		0x10
#define T_APIC_TPR	0x80
#define T_APIC_SVR	0xf0
#define T_APIC_LVTT	0x320
#define T_APIC_TMCCT	0x390
#define T_XSAVE_XMM0	160
#define T_XSAVE_XSTATE_BV 512

/*
 * Real mode at 0x1000: program both PICs' ICWs and IMR, start PIT channel
 * 0 in mode 0 (count 0xffff), set bx, then count in ax and report it on
 * port 0x10 forever.  The PIC/PIT writes are handled inside KVM, so the
 * saved irqchip/PIT state is the guest's doing, not ours.
 */
static const uint8_t t_code[] = {
	0xb0, 0x11, 0xe6, 0x20,	/* mov al,0x11; out 0x20,al  ICW1 */
	0xb0, 0x20, 0xe6, 0x21,	/* ICW2: vectors 0x20.. */
	0xb0, 0x04, 0xe6, 0x21,	/* ICW3 */
	0xb0, 0x01, 0xe6, 0x21,	/* ICW4 */
	0xb0, 0xfb, 0xe6, 0x21,	/* IMR: all but IRQ2 masked */
	0xb0, 0x30, 0xe6, 0x43,	/* PIT ch0: lo/hi, mode 0 */
	0xb0, 0xff, 0xe6, 0x40,
	0xb0, 0xff, 0xe6, 0x40,
	0xbb, 0x34, 0x12,	/* mov bx,0x1234 */
	0x31, 0xc0,		/* xor ax,ax */
	0x40,			/* 1: inc ax */
	0xe6, T_PORT,		/* out 0x10,al */
	0xeb, 0xfb,		/* jmp 1b */
};

struct t_vm {
	int vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
};

/* Captured once from the source VM by t_setup(). */
static int t_kvm = -1;
static struct t_vm t_src;
static struct x86_vcpu_state t_vcpu;
static struct x86_vm_state t_vmst;
static struct vmstate_buf t_vcpu_buf, t_vm_buf;

/* KVM's supported CPUID, with leaf 0's vendor replaced unless vendor is NULL. */
static void t_set_cpuid_vendor(int vcpu, const char *vendor)
{
	struct kvm_cpuid2 *c;
	uint32_t n = 64;

	for (;;) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		assert_non_null(c);
		c->nent = n;
		if (ioctl(t_kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		assert_int_equal(errno, E2BIG);
		free(c);
		n *= 2;
	}
	for (uint32_t i = 0; vendor && i < c->nent; i++)
		if (c->entries[i].function == 0) {
			memcpy(&c->entries[i].ebx, vendor, 4);
			memcpy(&c->entries[i].edx, vendor + 4, 4);
			memcpy(&c->entries[i].ecx, vendor + 8, 4);
		}
	assert_int_equal(ioctl(vcpu, KVM_SET_CPUID2, c), 0);
	free(c);
}

static void t_set_cpuid(int vcpu)
{
	t_set_cpuid_vendor(vcpu, NULL);
}

static void t_vm_create(struct t_vm *v)
{
	struct kvm_pit_config pit = { .flags = 0 };

	v->vm = ioctl(t_kvm, KVM_CREATE_VM, 0);
	assert_true(v->vm >= 0);
	/* Needed for real mode on VMX without unrestricted guest; harmless. */
	assert_int_equal(ioctl(v->vm, KVM_SET_TSS_ADDR, 0xfffbd000UL), 0);
	assert_int_equal(ioctl(v->vm, KVM_CREATE_IRQCHIP, 0), 0);
	assert_int_equal(ioctl(v->vm, KVM_CREATE_PIT2, &pit), 0);
	v->mem = mmap(NULL, T_MEM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(v->mem != MAP_FAILED);
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = T_MEM_SIZE,
		.userspace_addr = (uintptr_t)v->mem,
	};
	assert_int_equal(ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	assert_true(v->vcpu >= 0);
	t_set_cpuid(v->vcpu);
	int sz = ioctl(t_kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	assert_true(sz > 0);
	v->run_size = (size_t)sz;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	assert_true(v->run != MAP_FAILED);
}

static void t_vm_destroy(struct t_vm *v)
{
	if (v->run && v->run != MAP_FAILED)
		munmap(v->run, v->run_size);
	if (v->mem && v->mem != MAP_FAILED)
		munmap(v->mem, T_MEM_SIZE);
	if (v->vcpu > 0)
		close(v->vcpu);
	if (v->vm > 0)
		close(v->vm);
	memset(v, 0, sizeof(*v));
}

static void t_msr_set(int vcpu, uint32_t index, uint64_t value)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e = { .index = index, .data = value } };

	if (!x86_msr_restorable(index))
		return;		/* not on this host: nothing to compare either */
	assert_int_equal(ioctl(vcpu, KVM_SET_MSRS, &m), 1);
}

static uint64_t t_msr_get(int vcpu, uint32_t index)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index };

	assert_int_equal(ioctl(vcpu, KVM_GET_MSRS, &m), 1);
	return m.e.data;
}

static void t_apic_reg(struct kvm_lapic_state *l, unsigned off, uint32_t v)
{
	memcpy(l->regs + off, &v, sizeof(v));
}

/* Give the source vCPU non-default state in every part we save. */
static void t_src_prepare(int vcpu)
{
	struct kvm_sregs2 sregs;
	struct kvm_regs regs = { .rip = T_CODE_GPA, .rflags = 2, .rsp = 0x8000,
				 .r15 = 0xfeedfacecafef00dULL };
	struct kvm_lapic_state lapic;
	struct kvm_debugregs dr = { .db = { 0x8000, 0xdead0000 }, .dr6 = 0xffff0ff0,
				    .dr7 = 0x400 };
	struct kvm_xcrs xcrs = { .nr_xcrs = 1, .xcrs[0] = { .xcr = 0, .value = 3 } };
	static uint8_t xsave[X86_XSAVE_MAX];

	assert_int_equal(ioctl(vcpu, KVM_GET_SREGS2, &sregs), 0);
	sregs.cs.selector = 0;
	sregs.cs.base = 0;
	assert_int_equal(ioctl(vcpu, KVM_SET_SREGS2, &sregs), 0);
	assert_int_equal(ioctl(vcpu, KVM_SET_REGS, &regs), 0);
	assert_int_equal(ioctl(vcpu, KVM_SET_XCRS, &xcrs), 0);
	assert_int_equal(ioctl(vcpu, KVM_GET_XSAVE, xsave), 0);
	memset(xsave + T_XSAVE_XMM0, 0x5a, 16);
	xsave[T_XSAVE_XSTATE_BV] |= 2;		/* SSE state is not in init state */
	assert_int_equal(ioctl(vcpu, KVM_SET_XSAVE, xsave), 0);
	assert_int_equal(ioctl(vcpu, KVM_SET_DEBUGREGS, &dr), 0);

	t_msr_set(vcpu, X86_MSR_IA32_SYSENTER_CS, 0x10);
	t_msr_set(vcpu, X86_MSR_STAR, 0x0023001000000000ULL);
	t_msr_set(vcpu, X86_MSR_LSTAR, 0xffffffff81000000ULL);
	t_msr_set(vcpu, X86_MSR_KERNEL_GS_BASE, 0xffff888000000000ULL);
	t_msr_set(vcpu, X86_MSR_TSC_AUX, 3);
	t_msr_set(vcpu, X86_MSR_IA32_CR_PAT, 0x0007010600070106ULL);
	t_msr_set(vcpu, X86_MSR_MTRR_DEF_TYPE, 0xc06);
	t_msr_set(vcpu, X86_MSR_KVM_SYSTEM_TIME_NEW, T_KVMCLOCK_GPA | 1);

	/* LAPIC on, TPR set, timer in TSC-deadline mode, armed far away. */
	assert_int_equal(ioctl(vcpu, KVM_GET_LAPIC, &lapic), 0);
	t_apic_reg(&lapic, T_APIC_SVR, 0x1ff);
	t_apic_reg(&lapic, T_APIC_TPR, 0x20);
	t_apic_reg(&lapic, T_APIC_LVTT, (2u << 17) | 0xec);
	assert_int_equal(ioctl(vcpu, KVM_SET_LAPIC, &lapic), 0);
	uint64_t tsc = t_msr_get(vcpu, X86_MSR_IA32_TSC);
	t_msr_set(vcpu, X86_MSR_IA32_TSC_DEADLINE, tsc + 1000000000000ULL);
}

/* Run until the guest has reported n more values; return the last one. */
static unsigned t_run_outs(struct t_vm *v, int n)
{
	unsigned val = 0;

	for (int i = 0; i < n; i++) {
		assert_int_equal(ioctl(v->vcpu, KVM_RUN, 0), 0);
		if (v->run->exit_reason != KVM_EXIT_IO || v->run->io.port != T_PORT)
			fail_msg("unexpected exit %u (port %#x)", v->run->exit_reason,
				 v->run->io.port);
		val = *((uint8_t *)v->run + v->run->io.data_offset);
	}
	return val;
}

static uint64_t t_saved_msr(uint32_t index)
{
	for (uint32_t i = 0; i < t_vcpu.nmsrs; i++)
		if (t_vcpu.msrs[i].index == index)
			return t_vcpu.msrs[i].data;
	return 0;
}

/* The comparisons below mean something only if the state is not default. */
static void t_check_nontrivial(void)
{
	uint32_t tpr;

	assert_int_equal(t_vcpu.regs.rbx, 0x1234);
	assert_int_equal(t_vcpu.regs.rax, 5);
	assert_int_equal(t_vcpu.xcrs.xcrs[0].value, 3);
	assert_int_equal(t_vcpu.xsave[T_XSAVE_XMM0], 0x5a);
	memcpy(&tpr, t_vcpu.lapic.regs + T_APIC_TPR, 4);
	assert_int_equal(tpr, 0x20);
	assert_int_equal(t_vcpu.debugregs.db[1], 0xdead0000);
	if (x86_msr_restorable(X86_MSR_IA32_TSC_DEADLINE))
		assert_true(t_saved_msr(X86_MSR_IA32_TSC_DEADLINE) != 0);
	if (x86_msr_restorable(X86_MSR_KVM_SYSTEM_TIME_NEW))
		assert_int_equal(t_saved_msr(X86_MSR_KVM_SYSTEM_TIME_NEW), T_KVMCLOCK_GPA | 1);
	assert_int_equal(t_vmst.pic[0].irq_base, 0x20);
	assert_int_equal(t_vmst.pic[0].imr, 0xfb);
	assert_int_equal(t_vmst.pit.channels[0].mode, 0);
	assert_int_equal(t_vmst.pit.channels[0].count, 0xffff);
	assert_true(t_vmst.clock.clock != 0);
}

static int t_setup(void **state)
{
	t_vm_create(&t_src);
	memcpy(t_src.mem + T_CODE_GPA, t_code, sizeof(t_code));
	t_src_prepare(t_src.vcpu);
	assert_int_equal(t_run_outs(&t_src, 5), 5);
	/* Complete the last OUT before reading state, as a VMM must. */
	assert_int_equal(x86_vcpu_quiesce(t_src.vcpu, t_src.run), 0);
	assert_int_equal(x86_vcpu_state_get(t_src.vcpu, &t_vcpu), 0);
	assert_int_equal(x86_vm_state_get(t_src.vm, &t_vmst), 0);
	vmstate_buf_init(&t_vcpu_buf);
	vmstate_buf_init(&t_vm_buf);
	assert_int_equal(vmstate_save(&x86_vcpu_state_vmsd, &t_vcpu, &t_vcpu_buf), 0);
	assert_int_equal(vmstate_save(&x86_vm_state_vmsd, &t_vmst, &t_vm_buf), 0);
	t_check_nontrivial();
	print_message("state: %u MSRs, xsave %u bytes, vcpu record %zu bytes, "
		      "vm record %zu bytes\n", t_vcpu.nmsrs, t_vcpu.xsave_size,
		      t_vcpu_buf.len, t_vm_buf.len);
	return 0;
}

static int t_teardown(void **state)
{
	t_vm_destroy(&t_src);
	vmstate_buf_free(&t_vcpu_buf);
	vmstate_buf_free(&t_vm_buf);
	return 0;
}

/* The encoding is lossless: decode gives back the same structs. */
static void test_decode_equals_saved(void **state)
{
	static struct x86_vcpu_state vcpu;
	struct x86_vm_state vm;
	struct vmstate_error err;

	memset(&vcpu, 0, sizeof(vcpu));
	memset(&vm, 0, sizeof(vm));
	assert_int_equal(vmstate_load(&x86_vcpu_state_vmsd, &vcpu, t_vcpu_buf.data,
				      t_vcpu_buf.len, &err), 0);
	assert_int_equal(vmstate_load(&x86_vm_state_vmsd, &vm, t_vm_buf.data,
				      t_vm_buf.len, &err), 0);
	assert_memory_equal(&vcpu, &t_vcpu, sizeof(vcpu));
	assert_memory_equal(&vm, &t_vmst, sizeof(vm));
}

static void t_compare_msrs(const struct x86_vcpu_state *a, const struct x86_vcpu_state *b)
{
	/* Generous: the TSC runs on between save and read-back. */
	uint64_t tsc_slack = (uint64_t)(a->tsc_khz ? a->tsc_khz : 4000000) * 1000 * 5;

	assert_int_equal(a->nmsrs, b->nmsrs);
	for (uint32_t i = 0; i < a->nmsrs; i++) {
		const struct kvm_msr_entry *x = &a->msrs[i], *y = &b->msrs[i];
		assert_int_equal(x->index, y->index);
		if (x->index == X86_MSR_IA32_TSC) {
			assert_true(y->data >= x->data && y->data - x->data < tsc_slack);
			continue;
		}
		if (x->data != y->data)
			fail_msg("MSR %#x: saved %#llx, restored %#llx", x->index,
				 (unsigned long long)x->data, (unsigned long long)y->data);
	}
}

static void t_compare_lapic(const struct kvm_lapic_state *a, const struct kvm_lapic_state *b)
{
	for (unsigned off = 0; off < sizeof(a->regs); off += 4) {
		if (off == T_APIC_TMCCT)	/* current count: a running value */
			continue;
		if (memcmp(a->regs + off, b->regs + off, 4))
			fail_msg("LAPIC register %#x differs", off);
	}
}

static void t_compare_vcpu(const struct x86_vcpu_state *a, const struct x86_vcpu_state *b)
{
	assert_memory_equal(&a->regs, &b->regs, sizeof(a->regs));
	assert_memory_equal(&a->sregs, &b->sregs, sizeof(a->sregs));
	assert_memory_equal(&a->xcrs, &b->xcrs, sizeof(a->xcrs));
	assert_int_equal(a->xsave_size, b->xsave_size);
	assert_memory_equal(a->xsave, b->xsave, a->xsave_size);
	t_compare_msrs(a, b);
	t_compare_lapic(&a->lapic, &b->lapic);
	assert_memory_equal(&a->events, &b->events, sizeof(a->events));
	assert_memory_equal(&a->debugregs, &b->debugregs, sizeof(a->debugregs));
	assert_int_equal(a->mp_state.mp_state, b->mp_state.mp_state);
	assert_int_equal(a->tsc_khz, b->tsc_khz);
}

static void t_compare_vm(const struct x86_vm_state *a, const struct x86_vm_state *b)
{
	assert_memory_equal(a->pic, b->pic, sizeof(a->pic));
	assert_memory_equal(&a->ioapic, &b->ioapic, sizeof(a->ioapic));
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state x = a->pit.channels[i], y = b->pit.channels[i];
		x.count_load_time = y.count_load_time = 0;	/* host time, reset on set */
		assert_memory_equal(&x, &y, sizeof(x));
	}
	assert_int_equal(a->pit.flags, b->pit.flags);
	/* The clock resumes from the saved value: no jump back, none forward. */
	assert_true(b->clock.clock >= a->clock.clock);
	assert_true(b->clock.clock - a->clock.clock < 1000000000ULL);
}

static void test_restore_into_new_vm(void **state)
{
	static struct x86_vcpu_state in, back;
	struct x86_vm_state vm_in, vm_back;
	struct vmstate_error err;
	struct t_vm dst = { 0 };

	memset(&in, 0, sizeof(in));
	assert_int_equal(vmstate_load(&x86_vcpu_state_vmsd, &in, t_vcpu_buf.data,
				      t_vcpu_buf.len, &err), 0);
	assert_int_equal(vmstate_load(&x86_vm_state_vmsd, &vm_in, t_vm_buf.data,
				      t_vm_buf.len, &err), 0);
	t_vm_create(&dst);
	memcpy(dst.mem, t_src.mem, T_MEM_SIZE);		/* "migrate" RAM too */
	assert_int_equal(x86_vcpu_state_set(dst.vcpu, &in), 0);
	assert_int_equal(x86_vm_state_set(dst.vm, &vm_in), 0);

	assert_int_equal(x86_vcpu_state_get(dst.vcpu, &back), 0);
	assert_int_equal(x86_vm_state_get(dst.vm, &vm_back), 0);
	t_compare_vcpu(&in, &back);
	t_compare_vm(&vm_in, &vm_back);

	/* And the guest carries on where it was: the next value is 6. */
	assert_int_equal(t_run_outs(&dst, 1), 6);
	t_vm_destroy(&dst);
}

/* An MSR this host did not list is refused before the vCPU is touched. */
static void test_unlisted_msr_refused(void **state)
{
	static struct x86_vcpu_state in;
	struct t_vm dst = { 0 };

	in = t_vcpu;
	assert_true(in.nmsrs > 0);
	in.msrs[0].index = X86_MSR_KVM_WALL_CLOCK_NEW;
	t_vm_create(&dst);
	assert_int_equal(x86_vcpu_state_set(dst.vcpu, &in), -EINVAL);
	t_vm_destroy(&dst);
}

/* Offset of the payload of top-level field 'name' in an encoding. */
static size_t t_field_at(const struct vmstate_buf *b, const struct vmstate_desc *d,
			 const char *name)
{
	size_t at = 1 + b->data[0] + 8;

	for (const struct vmstate_field *f = d->fields; f->name; f++) {
		uint32_t len;
		assert_true(at + 4 <= b->len);
		memcpy(&len, b->data + at, 4);
		if (!strcmp(f->name, name))
			return at + 4;
		at += 4 + len;
	}
	fail_msg("no field %s", name);
	return 0;
}

/* Patch n bytes of v (LE) into a copy of enc, load it, expect want + msg. */
static void t_corrupt(const struct vmstate_buf *enc, const struct vmstate_desc *d,
		      size_t at, size_t n, uint32_t v, int want, const char *msg)
{
	static struct x86_vcpu_state target, before;	/* the larger of the two */
	uint8_t *p = malloc(enc->len);
	struct vmstate_error err;

	assert_non_null(p);
	memcpy(p, enc->data, enc->len);
	assert_true(n <= sizeof(v) && at + n <= enc->len);
	memcpy(p + at, &v, n);			/* x86 is little-endian too */
	memset(&target, 0x42, sizeof(target));
	before = target;
	int ret = vmstate_load(d, &target, p, enc->len, &err);
	print_message("corrupt %s: %d: %s\n", d->name, ret, err.msg);
	assert_int_equal(ret, want);
	assert_non_null(strstr(err.msg, msg));
	assert_memory_equal(&target, &before, sizeof(target));
	free(p);
}

static void test_corrupt_rejected(void **state)
{
	const struct vmstate_desc *d = &x86_vcpu_state_vmsd;
	size_t mp = t_field_at(&t_vcpu_buf, d, "mp_state.mp_state");
	size_t nmsrs = t_field_at(&t_vcpu_buf, d, "nmsrs");

	t_corrupt(&t_vcpu_buf, d, mp, 4, 7, -ERANGE,
		  "x86_vcpu: field 'mp_state.mp_state': value 7 out of range 0..4");
	t_corrupt(&t_vcpu_buf, d, nmsrs, 4, t_vcpu.nmsrs + 1, -EINVAL, "field 'msrs[");
	t_corrupt(&t_vcpu_buf, d, nmsrs, 4, t_vcpu.nmsrs - 1, -EINVAL, "trailing bytes");
	t_corrupt(&t_vcpu_buf, d, nmsrs, 4, 1000, -ERANGE,
		  "x86_vcpu: field 'msrs': count 1000 exceeds maximum 256");

	/* pic[0].priority_add: past 4 fields of (u32 len, u8), then its len. */
	size_t pic = t_field_at(&t_vm_buf, &x86_vm_state_vmsd, "pic");
	t_corrupt(&t_vm_buf, &x86_vm_state_vmsd, pic + 4 * 5 + 4, 1, 9, -ERANGE,
		  "x86_vm: field 'pic[0].priority_add': value 9 out of range 0..7");
}

/*
 * The save path keeps SYSENTER_ESP/EIP as KVM on an AMD host would restore
 * them: 32 bits for an AMD-vendor guest, whatever this host's KVM holds;
 * all 64 for an Intel one.  On an Intel host KVM keeps the upper half for
 * either vendor, so this shows the save path dropping it.
 */
static void t_sysenter_saved(const char *vendor, uint64_t want_esp, uint64_t want_eip)
{
	static struct x86_vcpu_state s;
	struct t_vm v = { 0 };
	uint64_t esp = 0, eip = 0;

	if (!x86_msr_restorable(X86_MSR_IA32_SYSENTER_ESP) ||
	    !x86_msr_restorable(X86_MSR_IA32_SYSENTER_EIP)) {
		print_message("SYSENTER_ESP/EIP not saved on this host\n");
		return;
	}
	t_vm_create(&v);
	t_set_cpuid_vendor(v.vcpu, vendor);
	t_msr_set(v.vcpu, X86_MSR_IA32_SYSENTER_ESP, 0xfffffe0000001000ULL);
	t_msr_set(v.vcpu, X86_MSR_IA32_SYSENTER_EIP, 0xffffffff81a01234ULL);
	print_message("%s: KVM holds SYSENTER_ESP %#llx, EIP %#llx\n", vendor,
		      (unsigned long long)t_msr_get(v.vcpu, X86_MSR_IA32_SYSENTER_ESP),
		      (unsigned long long)t_msr_get(v.vcpu, X86_MSR_IA32_SYSENTER_EIP));
	assert_int_equal(x86_vcpu_state_get(v.vcpu, &s), 0);
	for (uint32_t i = 0; i < s.nmsrs; i++) {
		if (s.msrs[i].index == X86_MSR_IA32_SYSENTER_ESP)
			esp = s.msrs[i].data;
		if (s.msrs[i].index == X86_MSR_IA32_SYSENTER_EIP)
			eip = s.msrs[i].data;
	}
	assert_int_equal(esp, want_esp);
	assert_int_equal(eip, want_eip);
	t_vm_destroy(&v);
}

static void test_sysenter_amd_vendor(void **state)
{
	t_sysenter_saved("AuthenticAMD", 0x00001000, 0x81a01234);
	t_sysenter_saved("HygonGenuine", 0x00001000, 0x81a01234);
}

static void test_sysenter_intel_vendor(void **state)
{
	t_sysenter_saved("GenuineIntel", 0xfffffe0000001000ULL, 0xffffffff81a01234ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_equals_saved),
		cmocka_unit_test(test_restore_into_new_vm),
		cmocka_unit_test(test_unlisted_msr_refused),
		cmocka_unit_test(test_corrupt_rejected),
		cmocka_unit_test(test_sysenter_amd_vendor),
		cmocka_unit_test(test_sysenter_intel_vendor),
	};
	int ret;

	t_kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (t_kvm < 0) {
		printf("SKIP: cannot open /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	ret = x86_vcpu_state_init(t_kvm);
	if (ret == -ENOTSUP) {
		printf("SKIP: this KVM lacks KVM_CAP_SREGS2\n");
		return 77;
	}
	if (ret) {
		printf("x86_vcpu_state_init: %s\n", strerror(-ret));
		return 1;
	}
	ret = cmocka_run_group_tests(tests, t_setup, t_teardown);
	close(t_kvm);
	return ret;
}
