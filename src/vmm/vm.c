#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/cpu_model.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/vcpu_state.h"
#include "util/log.h"
#include "vmm/vcpu.h"

/* Addresses KVM needs for its own use on Intel hosts, as QEMU places them. */
#define VM_TSS_ADDR 0xfffbd000ULL

uint64_t vm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int vm_check_kvm(int kvm_fd)
{
	static const struct { long cap; const char *name; } needed[] = {
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
		{ KVM_CAP_PIT2, "in-kernel PIT" },
		{ KVM_CAP_USER_MEMORY, "user memory" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
		{ KVM_CAP_EXT_CPUID, "CPUID2" },
	};
	int v = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);

	if (v != KVM_API_VERSION) {
		pr_err("/dev/kvm speaks API version %d, ferry needs %d", v, KVM_API_VERSION);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0) {
			pr_err("this KVM lacks %s, which ferry needs", needed[i].name);
			return -ENOTSUP;
		}
	}
	return 0;
}

static int vm_create_vcpu(struct vm *vm, unsigned index)
{
	struct vcpu *v = &vm->vcpus[index];
	int err;

	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, index);
	if (v->fd < 0) {
		err = -errno;
		pr_err("cannot create vCPU %u: %s", index, strerror(-err));
		return err;
	}
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return -errno;
	}
	err = x86_cpuid_set_vcpu(v->fd, vm->cpuid, index, vm->nr_vcpus);
	if (err)
		pr_err("cannot set CPUID of vCPU %u: %s", index, strerror(-err));
	return err;
}

static void vm_destroy_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->run)
			munmap(v->run, vm->run_size);
		if (v->fd >= 0)
			close(v->fd);
		v->run = NULL;
		v->fd = -1;
	}
}

/* The KVM side of the machine: VM fd, irqchip, PIT, memory slots, vCPUs. */
static int vm_create_kvm(struct vm *vm)
{
	/* SPEAKER_DUMMY: KVM also serves port 0x61, the channel-2 gate. */
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int err;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		err = -errno;
		pr_err("KVM_CREATE_VM: %s", strerror(-err));
		return err;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, VM_TSS_ADDR) < 0)
		pr_debug("KVM_SET_TSS_ADDR: %s (not needed on this host)", strerror(errno));
	/*
	 * Exceptions as they are: one pending (not yet delivered, with its
	 * payload) apart from one injected.  Without this, KVM_GET_VCPU_EVENTS
	 * folds a pending exception into "injected" and KVM_SET_VCPU_EVENTS
	 * drops "pending", so vCPU state with a pending exception does not
	 * read back as it was loaded.  QEMU turns it on as well.
	 */
	struct kvm_enable_cap ep = { .cap = KVM_CAP_EXCEPTION_PAYLOAD, .args = { 1 } };
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXCEPTION_PAYLOAD) > 0 &&
	    ioctl(vm->vm_fd, KVM_ENABLE_CAP, &ep) < 0)
		pr_debug("KVM_CAP_EXCEPTION_PAYLOAD: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		err = -errno;
		pr_err("cannot create the in-kernel irqchip and PIT: %s", strerror(-err));
		return err;
	}
	err = guest_memory_register(&vm->mem, vm->vm_fd, false);
	if (err)
		return err;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		err = vm_create_vcpu(vm, i);
		if (err)
			return err;
	}
	return 0;
}

static void vm_destroy_kvm(struct vm *vm)
{
	vm_destroy_vcpus(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	vm->vm_fd = -1;
	vm->dirty_manual = false;	/* a capability of the VM fd just closed */
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	int err;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	vm->mem.fd = -1;
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	/* vm_pause() waits on `cond` against a CLOCK_MONOTONIC deadline. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	iobus_init(&vm->pio, "port I/O");
	iobus_init(&vm->mmio, "MMIO");
	vm->state = VM_STATE_CREATED;

	if (cfg->vcpus < 1 || cfg->vcpus > VM_MAX_VCPUS) {
		pr_err("%u vCPUs requested; ferry supports 1 to %u", cfg->vcpus, VM_MAX_VCPUS);
		return -EINVAL;
	}
	vm->nr_vcpus = cfg->vcpus;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		err = -errno;
		pr_err("cannot open /dev/kvm: %s (is KVM loaded, and may this user use it?)",
		       strerror(-err));
		return err;
	}
	/* Every exit's rip for the crash dump's ring, at no extra ioctl. */
	int sync = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	vm->sync_regs = sync > 0 && (sync & KVM_SYNC_X86_REGS);
	err = vm_check_kvm(vm->kvm_fd);
	if (!err)
		err = x86_vcpu_state_init(vm->kvm_fd);
	if (err)
		return err;
	int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		return -EIO;
	vm->run_size = (size_t)run_size;
	err = x86_cpuid_get_supported(vm->kvm_fd, &vm->cpuid);
	if (err) {
		pr_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(-err));
		return err;
	}
	if (cfg->cpu_model)
		x86_cpu_model_apply(cfg->cpu_model, vm->cpuid);
	if (cfg->premade) {
		if (cfg->premade->size != cfg->memory)
			return -EINVAL;
		vm->mem = *cfg->premade;	/* taken over: the caller forgets it */
		memset(cfg->premade, 0, sizeof(*cfg->premade));
		cfg->premade->fd = -1;
	} else {
		err = guest_memory_create(&vm->mem, cfg->memory);
		if (!err && cfg->prealloc)
			err = guest_memory_prealloc(&vm->mem, true);
		if (err) {
			pr_err("cannot allocate %llu MiB of guest memory: %s",
			       (unsigned long long)(cfg->memory >> 20), strerror(-err));
			return err;
		}
	}
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0)
		return -errno;
	return vm_create_kvm(vm);
}

int vm_set_cpuid(struct vm *vm, struct kvm_cpuid2 *cpuid)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		int err = x86_cpuid_set_vcpu(vm->vcpus[i].fd, cpuid, i, vm->nr_vcpus);
		if (err) {
			pr_err("cannot set CPUID of vCPU %u: %s", i, strerror(-err));
			free(cpuid);
			return err;
		}
	}
	free(vm->cpuid);
	vm->cpuid = cpuid;
	return 0;
}

void vm_destroy(struct vm *vm)
{
	if (vm->throttle_started && vm_set_throttle(vm, 0))
		pr_warn("could not stop the throttle thread");
	if (vm->state == VM_STATE_RUNNING || vm->state == VM_STATE_PAUSED) {
		vm_request_stop(vm, VM_STOP_REQUESTED, 0);
		vm_wait_stopped(vm);
	}
	vm_destroy_kvm(vm);
	guest_memory_destroy(&vm->mem);
	free(vm->cpuid);
	vm->cpuid = NULL;
	for (unsigned r = 0; r < GUEST_MAX_REGIONS; r++) {
		free(vm->vmm_dirty[r]);
		free(vm->kvm_dirty[r]);
		vm->vmm_dirty[r] = vm->kvm_dirty[r] = NULL;
	}
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->stop_efd = vm->kvm_fd = -1;
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

static int vm_start_threads(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		int err = vcpu_start_thread(&vm->vcpus[i]);
		if (err) {
			vm_request_stop(vm, VM_STOP_GUEST_CRASH, 0);
			return err;
		}
	}
	return 0;
}

int vm_start(struct vm *vm)
{
	vcpu_signal_setup();
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_STATE_RUNNING;
	vm->start_ns = vm_now_ns();
	pthread_mutex_unlock(&vm->lock);
	return vm_start_threads(vm);
}

/* Absolute CLOCK_MONOTONIC time timeout_ns from now, for vm->cond. */
static struct timespec vm_deadline(uint64_t timeout_ns)
{
	uint64_t t = vm_now_ns() + timeout_ns;

	return (struct timespec){ (time_t)(t / 1000000000ULL), (long)(t % 1000000000ULL) };
}

int vm_pause(struct vm *vm, uint64_t timeout_ns)
{
	struct timespec until = vm_deadline(timeout_ns);
	int err = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_STOPPED) {
		pthread_mutex_unlock(&vm->lock);
		return -ESRCH;
	}
	/* A request already standing (another pauser, vm_pause_nowait) is not ours to undo. */
	bool ours = !vm->pause_requested;
	vm->pause_requested = true;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	while (vm->parked < vm->nr_vcpus && vm->state != VM_STATE_STOPPED && !err)
		err = -pthread_cond_timedwait(&vm->cond, &vm->lock, &until);
	if (vm->state == VM_STATE_STOPPED) {
		err = -ESRCH;
	} else if (vm->parked == vm->nr_vcpus) {
		err = 0;	/* all parked, even if the wait timed out just then */
		vm->state = VM_STATE_PAUSED;
	} else {
		/*
		 * A vCPU stuck in the kernel (e.g. on a post-copy page that has
		 * not arrived) would hold the caller forever.  Give up: the VM
		 * runs on, and the vCPUs that parked go back to work.
		 */
		err = -ETIMEDOUT;
		if (ours) {
			vm->pause_requested = false;
			pthread_cond_broadcast(&vm->cond);
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return err;
}

const char *vm_pause_strerror(int err)
{
	return err == -ETIMEDOUT ? "the vCPUs did not stop in time; the guest runs on"
				 : "the VM has stopped";
}

void vm_pause_nowait(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_RUNNING) {
		vm->pause_requested = true;
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			vcpu_kick(&vm->vcpus[i]);
	}
	pthread_mutex_unlock(&vm->lock);
}

int vm_hold(struct vm *vm, uint64_t timeout_ns)
{
	int err;

	pthread_mutex_lock(&vm->lock);
	bool was = vm->held;
	vm->held = true;
	pthread_mutex_unlock(&vm->lock);
	err = vm_pause(vm, timeout_ns);
	if (err) {
		pthread_mutex_lock(&vm->lock);
		vm->held = was;
		pthread_mutex_unlock(&vm->lock);
	}
	return err;
}

int vm_release(struct vm *vm)
{
	int err = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_CREATED)
		err = -EAGAIN;
	else if (vm->fenced && vm->state != VM_STATE_STOPPED)
		err = -EPERM;
	else
		vm->held = false;
	pthread_mutex_unlock(&vm->lock);
	return err ? err : vm_resume(vm);
}

void vm_fence(struct vm *vm, bool on)
{
	pthread_mutex_lock(&vm->lock);
	vm->fenced = on;
	pthread_mutex_unlock(&vm->lock);
}

bool vm_fenced(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	bool on = vm->fenced;
	pthread_mutex_unlock(&vm->lock);
	return on;
}

int vm_resume(struct vm *vm)
{
	int err = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_STOPPED) {
		err = -ESRCH;
	} else if (vm->fenced && vm->state == VM_STATE_PAUSED) {
		err = -EPERM;	/* the guest may run elsewhere */
	} else if (vm->held && vm->state == VM_STATE_PAUSED) {
		/* The operator's pause stands. */
	} else {
		vm->pause_requested = false;
		vm->state = VM_STATE_RUNNING;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return err;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int guest_status)
{
	vm_request_stop_detail(vm, reason, guest_status, NULL);
}

void vm_request_stop_detail(struct vm *vm, enum vm_stop_reason reason, int guest_status,
			    const char *detail)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	if (vm->stop_reason == VM_STOP_NONE) {
		vm->stop_reason = reason;
		vm->guest_status = guest_status;
		snprintf(vm->stop_detail, sizeof(vm->stop_detail), "%s", detail ? detail : "");
	}
	vm->state = VM_STATE_STOPPED;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (write(vm->stop_efd, &one, sizeof(one)) < 0)
		pr_debug("stop eventfd: %s", strerror(errno));
}

static void vm_join_threads(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->thread_started)
			pthread_join(v->thread, NULL);
		v->thread_started = false;
	}
}

enum vm_stop_reason vm_wait_stopped(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->state != VM_STATE_STOPPED)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	vm_join_threads(vm);
	return vm->stop_reason;
}

enum vm_stop_reason vm_stop_why(struct vm *vm, char *why, size_t len)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_stop_reason r = vm->state == VM_STATE_STOPPED ? vm->stop_reason : VM_STOP_NONE;
	const char *d = vm->stop_detail;

	switch (r) {
	case VM_STOP_NONE:
		snprintf(why, len, "the VM has not stopped");
		break;
	case VM_STOP_GUEST_EXIT:
		snprintf(why, len, "the guest exited with status %d", vm->guest_status);
		break;
	case VM_STOP_REQUESTED:
		snprintf(why, len, "the VM was asked to stop (quit or a signal)");
		break;
	case VM_STOP_GUEST_CRASH:
		if (d[0])
			snprintf(why, len, "the guest crashed (%s)", d);
		else
			snprintf(why, len, "the guest crashed");
		break;
	case VM_STOP_MIGRATED:
		snprintf(why, len, "the guest was migrated away");
		break;
	case VM_STOP_LOST:
		snprintf(why, len, "the guest was lost");
		break;
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

enum vm_state vm_get_state(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_state s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

const char *vm_state_name(enum vm_state state)
{
	static const char *const names[] = {
		[VM_STATE_CREATED] = "created",
		[VM_STATE_RUNNING] = "running",
		[VM_STATE_PAUSED] = "paused",
		[VM_STATE_STOPPED] = "shutdown",
	};
	return names[state];
}

int vm_recreate_kvm(struct vm *vm)
{
	int err;

	pthread_mutex_lock(&vm->lock);
	bool paused = vm->state == VM_STATE_PAUSED;
	if (paused)
		vm->recreating = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (!paused)
		return -EBUSY;
	vm_join_threads(vm);
	pthread_mutex_lock(&vm->lock);
	vm->recreating = false;
	vm->parked = 0;
	pthread_mutex_unlock(&vm->lock);

	vm_destroy_kvm(vm);
	err = vm_create_kvm(vm);
	if (err)
		return err;
	err = vm_start_threads(vm);
	if (err)
		return err;
	/* Wait until the new threads have parked, so the VM is paused again. */
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->nr_vcpus && vm->state != VM_STATE_STOPPED)
		pthread_cond_wait(&vm->cond, &vm->lock);
	err = vm->state == VM_STATE_STOPPED ? -ESRCH : 0;
	pthread_mutex_unlock(&vm->lock);
	return err;
}

void vm_set_irq(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		pr_warn("KVM_IRQ_LINE %u: %s", irq, strerror(errno));
}

int vm_add_irqfd(struct vm *vm, unsigned gsi, int efd)
{
	struct kvm_irqfd f = { .fd = (uint32_t)efd, .gsi = gsi };

	return ioctl(vm->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int vm_add_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, uint64_t value, int efd)
{
	struct kvm_ioeventfd e = {
		.datamatch = value, .addr = addr, .len = len, .fd = efd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
	};

	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

#define VM_THROTTLE_SLICE_NS 10000000ULL

static void *vm_throttle_thread(void *arg)
{
	struct vm *vm = arg;
	struct timespec slice = { 0, (long)VM_THROTTLE_SLICE_NS };

	pthread_setname_np(pthread_self(), "throttle");
	while (__atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED)) {
		nanosleep(&slice, NULL);
		pthread_mutex_lock(&vm->lock);
		bool stopped = vm->state == VM_STATE_STOPPED;
		if (!stopped)
			for (unsigned i = 0; i < vm->nr_vcpus; i++)
				vcpu_kick(&vm->vcpus[i]);
		pthread_mutex_unlock(&vm->lock);
		if (stopped)
			break;
	}
	return NULL;
}

int vm_set_throttle(struct vm *vm, unsigned pct)
{
	pct = pct > 99 ? 99 : pct;
	__atomic_store_n(&vm->throttle_pct, pct, __ATOMIC_RELAXED);
	if (!pct && vm->throttle_started) {
		pthread_join(vm->throttle_thread, NULL);
		vm->throttle_started = false;
	} else if (pct && !vm->throttle_started) {
		int err = -pthread_create(&vm->throttle_thread, NULL, vm_throttle_thread, vm);
		if (err)
			return err;
		vm->throttle_started = true;
	}
	return 0;
}
