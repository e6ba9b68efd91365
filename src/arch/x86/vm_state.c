/*
 * x86 VM-wide state: description and get/set through KVM ioctls.
 *
 * The ranges below are what KVM's own device models can produce (e.g. the
 * i8254 stores mode 0..5, or 0xff before the guest programs a channel), so
 * a real guest's state always loads and anything else is a corrupt or
 * hostile stream.
 */
#include "arch/x86/vm_state.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "util/log.h"

#define X86_IOAPIC_BASE		0xfec00000ULL
#define X86_PIT_MODE_UNSET	0xff	/* i8254 channel never programmed */
#define X86_PIT_COUNT_MAX	0x10000	/* a count of 0 means 65536 */
#define X86_PIT_RW_STATE_MAX	4	/* RW_STATE_LSB..RW_STATE_WORD1 */
#define X86_CLOCK_FLAGS		(KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | \
				 KVM_CLOCK_HOST_TSC)

/* ---- description ------------------------------------------------------- */

static int x86_pic_post_load(void *obj, char *why, size_t whylen)
{
	const struct kvm_pic_state *p = obj;

	/* ICW2 only sets bits 7..3; ELCR bits outside the mask are fixed 0. */
	if (p->irq_base & 7) {
		snprintf(why, whylen, "irq_base %#x is not a multiple of 8", p->irq_base);
		return -EINVAL;
	}
	if (p->elcr & ~p->elcr_mask) {
		snprintf(why, whylen, "elcr %#x outside elcr_mask %#x", p->elcr,
			 p->elcr_mask);
		return -EINVAL;
	}
	return 0;
}

#define X86_PIC struct kvm_pic_state
/*
 * irr and last_irr latch interrupt lines, which the in-kernel PIT raises
 * by itself once loaded (KVM_SET_PIT2 restarts its channels), vCPUs
 * stopped or not: --verify leaves them out, as the IOAPIC's irr.
 */
static const struct vmstate_field x86_pic_fields[] = {
	VMSTATE_U8(X86_PIC, last_irr, .flags = VMS_NO_VERIFY),
	VMSTATE_U8(X86_PIC, irr, .flags = VMS_NO_VERIFY),
	VMSTATE_U8(X86_PIC, imr),
	VMSTATE_U8(X86_PIC, isr),
	VMSTATE_U8_RANGE(X86_PIC, priority_add, 0, 7),
	VMSTATE_U8(X86_PIC, irq_base),
	VMSTATE_U8_RANGE(X86_PIC, read_reg_select, 0, 1),
	VMSTATE_U8_RANGE(X86_PIC, poll, 0, 1),
	VMSTATE_U8_RANGE(X86_PIC, special_mask, 0, 1),
	VMSTATE_U8_RANGE(X86_PIC, init_state, 0, 3),	/* ICW1..ICW4 sequence */
	VMSTATE_U8_RANGE(X86_PIC, auto_eoi, 0, 1),
	VMSTATE_U8_RANGE(X86_PIC, rotate_on_auto_eoi, 0, 1),
	VMSTATE_U8_RANGE(X86_PIC, special_fully_nested_mode, 0, 1),
	VMSTATE_U8_RANGE(X86_PIC, init4, 0, 1),
	VMSTATE_U8(X86_PIC, elcr),
	VMSTATE_U8(X86_PIC, elcr_mask),
	VMSTATE_END
};
#undef X86_PIC

static const struct vmstate_desc x86_pic_vmsd = {
	.name = "x86_pic", .version = 1, .size = sizeof(struct kvm_pic_state),
	.fields = x86_pic_fields, .post_load = x86_pic_post_load,
};

/*
 * The MMIO base is fixed in KVM but restored verbatim and used to route
 * accesses, so it must be the one KVM registered.
 */
static const struct vmstate_field x86_ioapic_fields[] = {
	VMSTATE_U64_RANGE(struct kvm_ioapic_state, base_address,
			  X86_IOAPIC_BASE, X86_IOAPIC_BASE),
	VMSTATE_U32_RANGE(struct kvm_ioapic_state, ioregsel, 0, 0xff),
	VMSTATE_U32_RANGE(struct kvm_ioapic_state, id, 0, 15),
	VMSTATE_U32_RANGE(struct kvm_ioapic_state, irr, 0, (1u << KVM_IOAPIC_NUM_PINS) - 1,
			  .flags = VMS_NO_VERIFY),
	VMSTATE_U32_RANGE(struct kvm_ioapic_state, pad, 0, 0),
	/* Guests may write any bits of an entry; KVM keeps them all. */
	VMSTATE_U64_ARRAY(struct kvm_ioapic_state, redirtbl),
	VMSTATE_END
};

static const struct vmstate_desc x86_ioapic_vmsd = {
	.name = "x86_ioapic", .version = 1, .size = sizeof(struct kvm_ioapic_state),
	.fields = x86_ioapic_fields,
};

static int x86_pit_mode_check(const void *field, char *why, size_t whylen)
{
	uint8_t mode = *(const uint8_t *)field;

	if (mode <= 5 || mode == X86_PIT_MODE_UNSET)
		return 0;
	snprintf(why, whylen, "mode %u is neither 0..5 nor unset (255)", mode);
	return -ERANGE;
}

#define X86_PITC struct kvm_pit_channel_state
static const struct vmstate_field x86_pit_channel_fields[] = {
	VMSTATE_U32_RANGE(X86_PITC, count, 0, X86_PIT_COUNT_MAX),
	VMSTATE_U16(X86_PITC, latched_count),
	VMSTATE_U8_RANGE(X86_PITC, count_latched, 0, 3),
	VMSTATE_U8_RANGE(X86_PITC, status_latched, 0, 1),
	VMSTATE_U8(X86_PITC, status),
	VMSTATE_U8_RANGE(X86_PITC, read_state, 0, X86_PIT_RW_STATE_MAX),
	VMSTATE_U8_RANGE(X86_PITC, write_state, 0, X86_PIT_RW_STATE_MAX),
	VMSTATE_U8(X86_PITC, write_latch),
	VMSTATE_U8_RANGE(X86_PITC, rw_mode, 0, 3),
	VMSTATE_U8(X86_PITC, mode, .check = x86_pit_mode_check),
	VMSTATE_U8_RANGE(X86_PITC, bcd, 0, 1),
	VMSTATE_U8_RANGE(X86_PITC, gate, 0, 1),
	/*
	 * Host time; KVM_SET_PIT2 restarts every channel and overwrites it,
	 * so it never reads back as loaded: not verified.
	 */
	VMSTATE_U64(X86_PITC, count_load_time, .flags = VMS_NO_VERIFY),
	VMSTATE_END
};
#undef X86_PITC

static const struct vmstate_desc x86_pit_channel_vmsd = {
	.name = "x86_pit_channel", .version = 1,
	.size = sizeof(struct kvm_pit_channel_state), .fields = x86_pit_channel_fields,
};

static const struct vmstate_field x86_pit_fields[] = {
	VMSTATE_STRUCT_ARRAY(struct kvm_pit_state2, channels, x86_pit_channel_vmsd),
	VMSTATE_U32_RANGE(struct kvm_pit_state2, flags, 0,
			  KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON),
	VMSTATE_U32_ZERO(struct kvm_pit_state2, reserved),
	VMSTATE_END
};

static const struct vmstate_desc x86_pit_vmsd = {
	.name = "x86_pit", .version = 1, .size = sizeof(struct kvm_pit_state2),
	.fields = x86_pit_fields,
};

static const struct vmstate_field x86_clock_fields[] = {
	VMSTATE_U64(struct kvm_clock_data, clock),
	VMSTATE_U32_RANGE(struct kvm_clock_data, flags, 0, X86_CLOCK_FLAGS),
	VMSTATE_U32_RANGE(struct kvm_clock_data, pad0, 0, 0),
	VMSTATE_U64(struct kvm_clock_data, realtime),
	VMSTATE_U64(struct kvm_clock_data, host_tsc),
	VMSTATE_U32_ZERO(struct kvm_clock_data, pad),
	VMSTATE_END
};

static const struct vmstate_desc x86_clock_vmsd = {
	.name = "x86_kvmclock", .version = 1, .size = sizeof(struct kvm_clock_data),
	.fields = x86_clock_fields,
};

static const struct vmstate_field x86_vm_fields[] = {
	VMSTATE_STRUCT_ARRAY(struct x86_vm_state, pic, x86_pic_vmsd),
	VMSTATE_STRUCT(struct x86_vm_state, ioapic, x86_ioapic_vmsd),
	VMSTATE_STRUCT(struct x86_vm_state, pit, x86_pit_vmsd),
	/*
	 * KVM_GET_CLOCK reads the clock now (and the host's realtime and
	 * TSC with it): it has moved on by the time a destination reads it
	 * back, so --verify leaves the clock out.
	 */
	VMSTATE_STRUCT(struct x86_vm_state, clock, x86_clock_vmsd, .flags = VMS_NO_VERIFY),
	VMSTATE_END
};

const struct vmstate_desc x86_vm_state_vmsd = {
	.name = "x86_vm", .version = 1, .size = sizeof(struct x86_vm_state),
	.fields = x86_vm_fields,
};

/* ---- KVM --------------------------------------------------------------- */

static int x86_vm_ioctl(int fd, unsigned long req, void *arg, const char *what)
{
	if (ioctl(fd, req, arg) < 0) {
		int err = errno;
		pr_err("vm state: %s: %s", what, strerror(err));
		return -err;
	}
	return 0;
}
#define VM_IOCTL(fd, req, arg) x86_vm_ioctl(fd, req, arg, #req)

static const uint32_t x86_chip_ids[] = {
	KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC,
};

int x86_vm_state_get(int vm_fd, struct x86_vm_state *s)
{
	struct kvm_irqchip chip;
	int ret = 0;

	memset(s, 0, sizeof(*s));
	for (int i = 0; i < 3 && !ret; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = x86_chip_ids[i];
		ret = VM_IOCTL(vm_fd, KVM_GET_IRQCHIP, &chip);
		if (ret)
			break;
		if (i < 2)
			s->pic[i] = chip.chip.pic;
		else
			s->ioapic = chip.chip.ioapic;
	}
	if (!ret)
		ret = VM_IOCTL(vm_fd, KVM_GET_PIT2, &s->pit);
	if (!ret)
		ret = VM_IOCTL(vm_fd, KVM_GET_CLOCK, &s->clock);
	return ret;
}

static int x86_clock_set(int vm_fd, const struct kvm_clock_data *saved)
{
	/*
	 * Only the value: no KVM_CLOCK_REALTIME, which would make KVM add the
	 * wall time elapsed since the save, i.e. jump guest time forward by
	 * the downtime.  The guest TSC (an MSR) resumes from its saved value
	 * too, so both clocks stay consistent; the guest's NTP (or its own
	 * RTC re-read) catches up wall time.
	 */
	struct kvm_clock_data c = { .clock = saved->clock };

	return VM_IOCTL(vm_fd, KVM_SET_CLOCK, &c);
}

/* Interrupt controllers, then the PIT that feeds them, then the clock. */
int x86_vm_state_set(int vm_fd, const struct x86_vm_state *s)
{
	struct kvm_irqchip chip;
	int ret = 0;

	for (int i = 0; i < 3 && !ret; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = x86_chip_ids[i];
		if (i < 2)
			chip.chip.pic = s->pic[i];
		else
			chip.chip.ioapic = s->ioapic;
		ret = VM_IOCTL(vm_fd, KVM_SET_IRQCHIP, &chip);
	}
	if (!ret)
		ret = VM_IOCTL(vm_fd, KVM_SET_PIT2, (void *)&s->pit);
	if (!ret)
		ret = x86_clock_set(vm_fd, &s->clock);
	return ret;
}
