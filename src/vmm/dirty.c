#include "vmm/dirty.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "util/log.h"

static int vm_dirty_set_slots(struct vm *vm, bool on)
{
	return guest_memory_register(&vm->mem, vm->vm_fd, on);
}

int vm_dirty_log_start(struct vm *vm)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET },
	};

	/* The capability is per VM and must be on before logging starts. */
	if (!vm->dirty_manual) {
		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
			int err = -errno;
			pr_err("KVM cannot clear the dirty log by hand: %s", strerror(-err));
			return err;
		}
		vm->dirty_manual = true;
	}
	for (unsigned r = 0; r < vm->mem.nr_regions; r++) {
		uint64_t longs = dirty_bitmap_longs(vm->mem.regions[r].size / GUEST_PAGE_SIZE);
		free(vm->vmm_dirty[r]);
		free(vm->kvm_dirty[r]);
		vm->vmm_dirty[r] = calloc(longs, sizeof(unsigned long));
		vm->kvm_dirty[r] = calloc(longs, sizeof(unsigned long));
		if (!vm->vmm_dirty[r] || !vm->kvm_dirty[r])
			return -ENOMEM;
	}
	__atomic_store_n(&vm->dirty_logging, true, __ATOMIC_RELEASE);
	return vm_dirty_set_slots(vm, true);
}

void vm_dirty_log_stop(struct vm *vm)
{
	__atomic_store_n(&vm->dirty_logging, false, __ATOMIC_RELEASE);
	if (vm_dirty_set_slots(vm, false))
		pr_warn("could not turn the dirty log off");
}

int vm_dirty_log_sync(struct vm *vm, unsigned r, unsigned long *bitmap)
{
	const struct guest_region *reg = &vm->mem.regions[r];
	uint64_t longs = dirty_bitmap_longs(reg->size / GUEST_PAGE_SIZE);
	struct kvm_dirty_log log = { .slot = reg->slot, .dirty_bitmap = vm->kvm_dirty[r] };

	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	/*
	 * OR, never overwrite: bits ferry wrote are taken (exchanged to 0)
	 * here, so a caller's earlier, unsent bits are the only copy of them.
	 */
	for (uint64_t i = 0; i < longs; i++) {
		bitmap[i] |= vm->kvm_dirty[r][i];
		if (__atomic_load_n(&vm->vmm_dirty[r][i], __ATOMIC_RELAXED))
			bitmap[i] |= __atomic_exchange_n(&vm->vmm_dirty[r][i], 0, __ATOMIC_ACQ_REL);
	}
	return 0;
}

int64_t vm_dirty_log_peek(struct vm *vm, unsigned r, unsigned long *out)
{
	const struct guest_region *reg = &vm->mem.regions[r];
	uint64_t longs = dirty_bitmap_longs(reg->size / GUEST_PAGE_SIZE);
	struct kvm_dirty_log log = { .slot = reg->slot, .dirty_bitmap = out };
	int64_t n = 0;

	/* With manual protection, reading the log neither clears nor re-protects. */
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	for (uint64_t i = 0; i < longs; i++) {
		out[i] |= __atomic_load_n(&vm->vmm_dirty[r][i], __ATOMIC_RELAXED);
		n += __builtin_popcountl(out[i]);
	}
	return n;
}

int vm_dirty_log_clear(struct vm *vm, unsigned r, uint64_t first, uint64_t count,
		       const unsigned long *bitmap)
{
	const struct guest_region *reg = &vm->mem.regions[r];
	struct kvm_clear_dirty_log c = {
		.slot = reg->slot,
		.first_page = first,
		.num_pages = (uint32_t)count,
		.dirty_bitmap = (void *)bitmap,
	};

	if (first % 64 || count > UINT32_MAX)
		return -EINVAL;
	if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
		return -errno;
	return 0;
}

void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len)
{
	if (!__atomic_load_n(&vm->dirty_logging, __ATOMIC_ACQUIRE) || !len)
		return;
	for (unsigned r = 0; r < vm->mem.nr_regions; r++) {
		const struct guest_region *reg = &vm->mem.regions[r];
		if (gpa + len <= reg->gpa || gpa >= reg->gpa + reg->size)
			continue;
		uint64_t lo = gpa > reg->gpa ? gpa - reg->gpa : 0;
		uint64_t hi = gpa + len - reg->gpa < reg->size ? gpa + len - reg->gpa : reg->size;
		for (uint64_t p = lo / GUEST_PAGE_SIZE; p <= (hi - 1) / GUEST_PAGE_SIZE; p++)
			__atomic_or_fetch(&vm->vmm_dirty[r][p / DIRTY_BITS_PER_LONG],
					  1UL << (p % DIRTY_BITS_PER_LONG), __ATOMIC_RELEASE);
	}
}
