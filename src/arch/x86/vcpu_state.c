/*
 * x86 vCPU state: its vmstate description, and get/set through KVM ioctls.
 */
#include "arch/x86/vcpu_state.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/cpuid.h"
#include "util/log.h"

/* XSAVE header: XSTATE_BV at 512, XCOMP_BV at 520 (SDM vol. 1, 13.4.2). */
#define X86_XSAVE_HDR_XCOMP_BV	520
#define X86_XCOMP_BV_COMPACTED	(1ULL << 63)
#define X86_XCR0_X87		1ULL
/* IA32_RFLAGS bits above ID (21) are reserved. */
#define X86_RFLAGS_MAX		0x3fffffULL

static uint32_t x86_xsave_size;	/* from KVM_CAP_XSAVE2; 0: legacy 4 KiB */
static bool x86_vcpu_ready;		/* x86_vcpu_state_init() succeeded */

/* ---- description ------------------------------------------------------- */

static const struct vmstate_field x86_regs_fields[] = {
	VMSTATE_U64(struct kvm_regs, rax), VMSTATE_U64(struct kvm_regs, rbx),
	VMSTATE_U64(struct kvm_regs, rcx), VMSTATE_U64(struct kvm_regs, rdx),
	VMSTATE_U64(struct kvm_regs, rsi), VMSTATE_U64(struct kvm_regs, rdi),
	VMSTATE_U64(struct kvm_regs, rsp), VMSTATE_U64(struct kvm_regs, rbp),
	VMSTATE_U64(struct kvm_regs, r8),  VMSTATE_U64(struct kvm_regs, r9),
	VMSTATE_U64(struct kvm_regs, r10), VMSTATE_U64(struct kvm_regs, r11),
	VMSTATE_U64(struct kvm_regs, r12), VMSTATE_U64(struct kvm_regs, r13),
	VMSTATE_U64(struct kvm_regs, r14), VMSTATE_U64(struct kvm_regs, r15),
	VMSTATE_U64(struct kvm_regs, rip),
	VMSTATE_U64_RANGE(struct kvm_regs, rflags, 0, X86_RFLAGS_MAX),
	VMSTATE_END
};

static const struct vmstate_desc x86_regs_vmsd = {
	.name = "x86_regs", .version = 1, .size = sizeof(struct kvm_regs),
	.fields = x86_regs_fields,
};

/* Each attribute is a bit (or DPL, 2 bits) in a descriptor. */
static const struct vmstate_field x86_segment_fields[] = {
	VMSTATE_U64(struct kvm_segment, base),
	VMSTATE_U32(struct kvm_segment, limit),
	VMSTATE_U16(struct kvm_segment, selector),
	VMSTATE_U8_RANGE(struct kvm_segment, type, 0, 15),
	VMSTATE_U8_RANGE(struct kvm_segment, present, 0, 1),
	VMSTATE_U8_RANGE(struct kvm_segment, dpl, 0, 3),
	VMSTATE_U8_RANGE(struct kvm_segment, db, 0, 1),
	VMSTATE_U8_RANGE(struct kvm_segment, s, 0, 1),
	VMSTATE_U8_RANGE(struct kvm_segment, l, 0, 1),
	VMSTATE_U8_RANGE(struct kvm_segment, g, 0, 1),
	VMSTATE_U8_RANGE(struct kvm_segment, avl, 0, 1),
	VMSTATE_U8_RANGE(struct kvm_segment, unusable, 0, 1),
	VMSTATE_U8_RANGE(struct kvm_segment, padding, 0, 0),
	VMSTATE_END
};

static const struct vmstate_desc x86_segment_vmsd = {
	.name = "x86_segment", .version = 1, .size = sizeof(struct kvm_segment),
	.fields = x86_segment_fields,
};

static const struct vmstate_field x86_dtable_fields[] = {
	VMSTATE_U64(struct kvm_dtable, base),
	VMSTATE_U16(struct kvm_dtable, limit),
	VMSTATE_U16_ZERO(struct kvm_dtable, padding),
	VMSTATE_END
};

static const struct vmstate_desc x86_dtable_vmsd = {
	.name = "x86_dtable", .version = 1, .size = sizeof(struct kvm_dtable),
	.fields = x86_dtable_fields,
};

static const struct vmstate_field x86_sregs_fields[] = {
	VMSTATE_STRUCT(struct kvm_sregs2, cs, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, ds, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, es, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, fs, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, gs, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, ss, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, tr, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, ldt, x86_segment_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, gdt, x86_dtable_vmsd),
	VMSTATE_STRUCT(struct kvm_sregs2, idt, x86_dtable_vmsd),
	VMSTATE_U64(struct kvm_sregs2, cr0),
	VMSTATE_U64(struct kvm_sregs2, cr2),
	VMSTATE_U64(struct kvm_sregs2, cr3),
	VMSTATE_U64(struct kvm_sregs2, cr4),
	VMSTATE_U64_RANGE(struct kvm_sregs2, cr8, 0, 15),	/* TPR[7:4] */
	VMSTATE_U64(struct kvm_sregs2, efer),
	VMSTATE_U64(struct kvm_sregs2, apic_base),
	VMSTATE_U64_RANGE(struct kvm_sregs2, flags, 0, KVM_SREGS2_FLAGS_PDPTRS_VALID),
	VMSTATE_U64_ARRAY(struct kvm_sregs2, pdptrs),
	VMSTATE_END
};

static const struct vmstate_desc x86_sregs_vmsd = {
	.name = "x86_sregs2", .version = 1, .size = sizeof(struct kvm_sregs2),
	.fields = x86_sregs_fields,
};

static int x86_xcr0_check(const void *field, char *why, size_t whylen)
{
	uint64_t v;

	memcpy(&v, field, sizeof(v));
	if (!(v & X86_XCR0_X87)) {
		snprintf(why, whylen, "XCR0 %#llx lacks x87, which is always on",
			 (unsigned long long)v);
		return -EINVAL;
	}
	return 0;
}

/* KVM knows only XCR0; it refuses any other index. */
static const struct vmstate_field x86_xcr_fields[] = {
	VMSTATE_U32_RANGE(struct kvm_xcr, xcr, 0, 0),
	VMSTATE_U32_RANGE(struct kvm_xcr, reserved, 0, 0),
	VMSTATE_U64(struct kvm_xcr, value, .check = x86_xcr0_check),
	VMSTATE_END
};

static const struct vmstate_desc x86_xcr_vmsd = {
	.name = "x86_xcr", .version = 1, .size = sizeof(struct kvm_xcr),
	.fields = x86_xcr_fields,
};

static const struct vmstate_field x86_xcrs_fields[] = {
	VMSTATE_U32(struct kvm_xcrs, nr_xcrs),
	VMSTATE_U32_RANGE(struct kvm_xcrs, flags, 0, 0),
	VMSTATE_VARRAY_STRUCT(struct kvm_xcrs, xcrs, nr_xcrs, x86_xcr_vmsd),
	VMSTATE_U64_ZERO(struct kvm_xcrs, padding),
	VMSTATE_END
};

static const struct vmstate_desc x86_xcrs_vmsd = {
	.name = "x86_xcrs", .version = 1, .size = sizeof(struct kvm_xcrs),
	.fields = x86_xcrs_fields,
};

static const struct vmstate_field x86_msr_fields[] = {
	VMSTATE_U32(struct kvm_msr_entry, index),
	VMSTATE_U32_RANGE(struct kvm_msr_entry, reserved, 0, 0),
	VMSTATE_U64(struct kvm_msr_entry, data),
	VMSTATE_END
};

/*
 * The guest TSC ticks on while a vCPU is stopped: read back after a load
 * it is past the loaded value, so --verify compares its index, not its
 * value.  TSC_DEADLINE and the rest stay put until the guest runs.
 */
static void x86_msr_verify_mask(void *obj)
{
	struct kvm_msr_entry *e = obj;

	if (e->index == X86_MSR_IA32_TSC)
		e->data = 0;
}

static const struct vmstate_desc x86_msr_vmsd = {
	.name = "x86_msr", .version = 1, .size = sizeof(struct kvm_msr_entry),
	.fields = x86_msr_fields, .verify_mask = x86_msr_verify_mask,
};

#define X86_EV struct kvm_vcpu_events
static const struct vmstate_field x86_events_fields[] = {
	VMSTATE_U8_RANGE(X86_EV, exception.injected, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, exception.nr, 0, 31),		/* a vector */
	VMSTATE_U8_RANGE(X86_EV, exception.has_error_code, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, exception.pending, 0, 1),
	VMSTATE_U32(X86_EV, exception.error_code),
	VMSTATE_U8_RANGE(X86_EV, interrupt.injected, 0, 1),
	VMSTATE_U8(X86_EV, interrupt.nr),
	VMSTATE_U8_RANGE(X86_EV, interrupt.soft, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, interrupt.shadow, 0, 3),	/* MOV SS | STI */
	VMSTATE_U8_RANGE(X86_EV, nmi.injected, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, nmi.pending, 0, 2),	/* KVM caps pending NMIs at 2 */
	VMSTATE_U8_RANGE(X86_EV, nmi.masked, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, nmi.pad, 0, 0),
	VMSTATE_U32_RANGE(X86_EV, sipi_vector, 0, 255),
	VMSTATE_U32_RANGE(X86_EV, flags, 0, 0x3f),	/* KVM_VCPUEVENT_VALID_* */
	VMSTATE_U8_RANGE(X86_EV, smi.smm, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, smi.pending, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, smi.smm_inside_nmi, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, smi.latched_init, 0, 1),
	VMSTATE_U8_RANGE(X86_EV, triple_fault.pending, 0, 1),
	VMSTATE_U8_ZERO(X86_EV, reserved),
	VMSTATE_U8_RANGE(X86_EV, exception_has_payload, 0, 1),
	VMSTATE_U64(X86_EV, exception_payload),
	VMSTATE_END
};
#undef X86_EV

static const struct vmstate_desc x86_events_vmsd = {
	.name = "x86_vcpu_events", .version = 1,
	.size = sizeof(struct kvm_vcpu_events), .fields = x86_events_fields,
};

/* KVM rejects DR6/DR7 with the upper 32 bits set. */
static const struct vmstate_field x86_debugregs_fields[] = {
	VMSTATE_U64_ARRAY(struct kvm_debugregs, db),
	VMSTATE_U64_RANGE(struct kvm_debugregs, dr6, 0, UINT32_MAX),
	VMSTATE_U64_RANGE(struct kvm_debugregs, dr7, 0, UINT32_MAX),
	VMSTATE_U64_RANGE(struct kvm_debugregs, flags, 0, 0),
	VMSTATE_U64_ZERO(struct kvm_debugregs, reserved),
	VMSTATE_END
};

static const struct vmstate_desc x86_debugregs_vmsd = {
	.name = "x86_debugregs", .version = 1,
	.size = sizeof(struct kvm_debugregs), .fields = x86_debugregs_fields,
};

static int x86_vcpu_post_load(void *obj, char *why, size_t whylen)
{
	const struct x86_vcpu_state *s = obj;
	uint64_t xcomp;

	/* KVM's uABI XSAVE image is the standard (non-compacted) format. */
	memcpy(&xcomp, s->xsave + X86_XSAVE_HDR_XCOMP_BV, sizeof(xcomp));
	if (xcomp & X86_XCOMP_BV_COMPACTED) {
		snprintf(why, whylen, "xsave: compacted format (XCOMP_BV %#llx)",
			 (unsigned long long)xcomp);
		return -EINVAL;
	}
	/* A duplicate would make the restored value depend on list order. */
	for (uint32_t i = 0; i < s->nmsrs; i++)
		for (uint32_t j = i + 1; j < s->nmsrs; j++)
			if (s->msrs[i].index == s->msrs[j].index) {
				snprintf(why, whylen, "msrs: MSR %#x appears twice",
					 s->msrs[i].index);
				return -EINVAL;
			}
	return 0;
}

/*
 * What the LAPIC page holds that moves by itself once loaded, left out of
 * --verify's digest: the timer's current count (counting down in one-shot
 * and periodic modes) and IRR, where an interrupt from the in-kernel PIT
 * through the IOAPIC lands while the vCPU is stopped.  The rest of the
 * page (ISR, LVTs, the timer's initial count, TPR, ...) changes only when
 * the guest runs.
 */
#define X86_APIC_IRR	0x200
#define X86_APIC_TMCCT	0x390

static void x86_vcpu_verify_mask(void *obj)
{
	struct x86_vcpu_state *s = obj;

	for (int i = 0; i < 8; i++)
		memset(s->lapic.regs + X86_APIC_IRR + 0x10 * i, 0, 4);
	memset(s->lapic.regs + X86_APIC_TMCCT, 0, 4);
}

#define X86_VS struct x86_vcpu_state
static const struct vmstate_field x86_vcpu_fields[] = {
	VMSTATE_STRUCT(X86_VS, regs, x86_regs_vmsd),
	VMSTATE_STRUCT(X86_VS, sregs, x86_sregs_vmsd),
	VMSTATE_STRUCT(X86_VS, xcrs, x86_xcrs_vmsd),
	VMSTATE_U32_RANGE(X86_VS, xsave_size, X86_XSAVE_LEGACY, X86_XSAVE_MAX),
	VMSTATE_VARRAY_U8(X86_VS, xsave, xsave_size),
	VMSTATE_U32(X86_VS, nmsrs),
	VMSTATE_VARRAY_STRUCT(X86_VS, msrs, nmsrs, x86_msr_vmsd),
	VMSTATE_BUFFER(X86_VS, lapic),
	VMSTATE_STRUCT(X86_VS, events, x86_events_vmsd),
	VMSTATE_STRUCT(X86_VS, debugregs, x86_debugregs_vmsd),
	/* x86 uses RUNNABLE..SIPI_RECEIVED; the rest are other arches/SEV. */
	VMSTATE_U32_RANGE(X86_VS, mp_state.mp_state, KVM_MP_STATE_RUNNABLE,
			  KVM_MP_STATE_SIPI_RECEIVED),
	VMSTATE_U32(X86_VS, tsc_khz),
	VMSTATE_END
};
#undef X86_VS

const struct vmstate_desc x86_vcpu_state_vmsd = {
	.name = "x86_vcpu", .version = 1, .size = sizeof(struct x86_vcpu_state),
	.fields = x86_vcpu_fields, .post_load = x86_vcpu_post_load,
	.verify_mask = x86_vcpu_verify_mask,
};

/* ---- KVM --------------------------------------------------------------- */

/* struct kvm_msrs with room for every MSR (a GNU extension KVM users share). */
struct x86_msr_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[X86_MSR_MAX];
};

static int x86_vcpu_ioctl(int fd, unsigned long req, void *arg, const char *what)
{
	if (ioctl(fd, req, arg) < 0) {
		int err = errno;
		pr_err("vcpu state: %s: %s", what, strerror(err));
		return -err;
	}
	return 0;
}
#define VCPU_IOCTL(fd, req, arg) x86_vcpu_ioctl(fd, req, arg, #req)

int x86_vcpu_state_init(int kvm_fd)
{
	int ret;

	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) <= 0) {
		pr_err("vcpu state: KVM lacks KVM_CAP_SREGS2 (needs Linux 5.16+)");
		return -ENOTSUP;
	}
	/* On /dev/kvm this is the size for the default XSAVE permissions. */
	ret = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (ret > X86_XSAVE_MAX) {
		pr_err("vcpu state: XSAVE area of %d bytes exceeds %d", ret, X86_XSAVE_MAX);
		return -E2BIG;
	}
	x86_xsave_size = ret >= X86_XSAVE_LEGACY ? (uint32_t)ret : 0;
	ret = x86_msr_list_init(kvm_fd);
	x86_vcpu_ready = ret == 0;
	return ret;
}

int x86_vcpu_quiesce(int vcpu_fd, struct kvm_run *run)
{
	int ret;

	run->immediate_exit = 1;
	ret = ioctl(vcpu_fd, KVM_RUN, 0) < 0 ? -errno : 0;
	run->immediate_exit = 0;
	if (ret == -EINTR)
		return 0;
	/* 0 would mean guest code ran (an exit we did not ask for). */
	pr_err("vcpu state: KVM_RUN with immediate_exit: %s",
	       ret ? strerror(-ret) : "ran the guest");
	return ret ? ret : -EIO;
}

/*
 * The MSRs as the destination will hold them (x86_msrs_as_loaded()), which
 * depends on the vendor in the vCPU's CPUID.
 */
static int x86_msrs_get(int vcpu_fd, struct x86_vcpu_state *s)
{
	size_t n;
	const uint32_t *list = x86_msr_list(&n);
	struct x86_msr_buf *b;
	struct kvm_cpuid2 *cpuid;
	int ret;

	ret = x86_cpuid_get_vcpu(vcpu_fd, &cpuid);
	if (ret) {
		pr_err("vcpu state: KVM_GET_CPUID2: %s", strerror(-ret));
		return ret;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		free(cpuid);
		return -ENOMEM;
	}
	b->hdr.nmsrs = (uint32_t)n;
	for (size_t i = 0; i < n; i++)
		b->e[i].index = list[i];
	ret = ioctl(vcpu_fd, KVM_GET_MSRS, b);
	if (ret < 0 || (size_t)ret != n) {
		pr_err("vcpu state: KVM_GET_MSRS: stopped at MSR %#x of %zu: %s",
		       ret >= 0 ? list[ret] : 0, n, ret < 0 ? strerror(errno) : "refused");
		ret = ret < 0 ? -errno : -EIO;
	} else {
		x86_msrs_as_loaded(b->e, n, cpuid);
		s->nmsrs = (uint32_t)n;
		memcpy(s->msrs, b->e, n * sizeof(b->e[0]));
		ret = 0;
	}
	free(b);
	free(cpuid);
	return ret;
}

static int x86_xsave_get(int vcpu_fd, struct x86_vcpu_state *s)
{
	if (x86_xsave_size) {
		s->xsave_size = x86_xsave_size;
		return VCPU_IOCTL(vcpu_fd, KVM_GET_XSAVE2, s->xsave);
	}
	s->xsave_size = X86_XSAVE_LEGACY;
	return VCPU_IOCTL(vcpu_fd, KVM_GET_XSAVE, s->xsave);
}

int x86_vcpu_state_get(int vcpu_fd, struct x86_vcpu_state *s)
{
	int ret;

	/* Without the probe we would silently save no MSRs. */
	assert(x86_vcpu_ready);
	/* Zeroed: unused tails and padding encode the same every time. */
	memset(s, 0, sizeof(*s));
	/* First: it makes KVM process a latched INIT/SIPI, which resets regs. */
	ret = VCPU_IOCTL(vcpu_fd, KVM_GET_MP_STATE, &s->mp_state);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_GET_REGS, &s->regs);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_GET_SREGS2, &s->sregs);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_GET_XCRS, &s->xcrs);
	if (!ret)
		ret = x86_xsave_get(vcpu_fd, s);
	if (!ret)
		ret = x86_msrs_get(vcpu_fd, s);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_GET_LAPIC, &s->lapic);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_GET_VCPU_EVENTS, &s->events);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_GET_DEBUGREGS, &s->debugregs);
	if (!ret) {
		int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
		s->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	}
	return ret;
}

/* Hostile-stream guard: only MSRs this host probed as safe to write. */
static int x86_msrs_check(const struct x86_vcpu_state *s)
{
	for (uint32_t i = 0; i < s->nmsrs; i++)
		if (!x86_msr_restorable(s->msrs[i].index)) {
			pr_err("vcpu state: MSR %#x is not restorable on this host",
			       s->msrs[i].index);
			return -EINVAL;
		}
	return 0;
}

/* Set the MSRs with (late) or without (!late) TSC_DEADLINE. */
static int x86_msrs_set(int vcpu_fd, const struct x86_vcpu_state *s, bool late)
{
	struct x86_msr_buf *b = calloc(1, sizeof(*b));
	uint32_t n = 0;
	int ret;

	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->nmsrs; i++)
		if ((s->msrs[i].index == X86_MSR_IA32_TSC_DEADLINE) == late)
			b->e[n++] = s->msrs[i];
	b->hdr.nmsrs = n;
	ret = n ? ioctl(vcpu_fd, KVM_SET_MSRS, b) : 0;
	if (ret < 0 || (uint32_t)ret != n) {
		pr_err("vcpu state: KVM_SET_MSRS: refused MSR %#x value %#llx: %s",
		       ret >= 0 ? b->e[ret].index : 0,
		       ret >= 0 ? (unsigned long long)b->e[ret].data : 0ULL,
		       ret < 0 ? strerror(errno) : "invalid for this vCPU");
		ret = ret < 0 ? -errno : -EINVAL;
	} else {
		ret = 0;
	}
	free(b);
	return ret;
}

static int x86_tsc_khz_set(int vcpu_fd, uint32_t khz)
{
	int cur = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);

	if (!khz || cur <= 0 || (uint32_t)cur == khz)
		return 0;
	/* Without TSC scaling KVM accepts only rates within its tolerance. */
	if (ioctl(vcpu_fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0) {
		int err = errno;
		pr_err("vcpu state: guest TSC runs at %u kHz, this host at %d kHz "
		       "and KVM_SET_TSC_KHZ failed: %s", khz, cur, strerror(err));
		return -err;
	}
	return 0;
}

static int x86_xsave_set(int vcpu_fd, const struct x86_vcpu_state *s)
{
	uint32_t local = x86_xsave_size ? x86_xsave_size : X86_XSAVE_LEGACY;

	/* KVM reads 'local' bytes; the tail past xsave_size is zero. */
	if (s->xsave_size > local) {
		pr_err("vcpu state: XSAVE image of %u bytes, this host takes %u",
		       s->xsave_size, local);
		return -EINVAL;
	}
	return VCPU_IOCTL(vcpu_fd, KVM_SET_XSAVE, (void *)s->xsave);
}

static int x86_events_set(int vcpu_fd, const struct x86_vcpu_state *s)
{
	struct kvm_vcpu_events ev = s->events;

	/* KVM ignores nmi.pending and sipi_vector unless told they are valid. */
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	return VCPU_IOCTL(vcpu_fd, KVM_SET_VCPU_EVENTS, &ev);
}

/*
 * Restore order (QEMU's kvm_arch_put_registers and the KVM selftests'
 * vcpu_load_state agree on the constraints):
 *  - TSC rate before the TSC MSR, so the value is taken at the right rate;
 *  - sregs first: CR0/CR4/EFER and the APIC base (x2APIC mode) decide how
 *    KVM interprets MSRs, XSAVE and the LAPIC page that follow;
 *  - regs before events: KVM_SET_REGS drops a pending exception;
 *  - XCR0 before the XSAVE image it governs;
 *  - MSRs (ASYNC_PF_INT before ASYNC_PF_EN, by list order), then mp_state
 *    and the LAPIC;
 *  - TSC_DEADLINE after the LAPIC (KVM drops the write unless LVTT is in
 *    deadline mode) and after the TSC it is compared against;
 *  - events after everything that can queue or clear an event, then
 *    debug registers.
 */
int x86_vcpu_state_set(int vcpu_fd, const struct x86_vcpu_state *s)
{
	int ret;

	assert(x86_vcpu_ready);
	ret = x86_msrs_check(s);
	if (!ret)
		ret = x86_tsc_khz_set(vcpu_fd, s->tsc_khz);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_SET_SREGS2, (void *)&s->sregs);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_SET_REGS, (void *)&s->regs);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_SET_XCRS, (void *)&s->xcrs);
	if (!ret)
		ret = x86_xsave_set(vcpu_fd, s);
	if (!ret)
		ret = x86_msrs_set(vcpu_fd, s, false);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_SET_MP_STATE, (void *)&s->mp_state);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_SET_LAPIC, (void *)&s->lapic);
	if (!ret)
		ret = x86_msrs_set(vcpu_fd, s, true);
	if (!ret)
		ret = x86_events_set(vcpu_fd, s);
	if (!ret)
		ret = VCPU_IOCTL(vcpu_fd, KVM_SET_DEBUGREGS, (void *)&s->debugregs);
	return ret;
}
