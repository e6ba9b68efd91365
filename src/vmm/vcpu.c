#include "vmm/vcpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "util/log.h"

#define VCPU_KICK_SIGNAL SIGUSR1

/* The kvm_run of the vCPU this thread runs, for the kick handler. */
static __thread struct kvm_run *vcpu_current_run;

static void vcpu_kick_handler(int sig)
{
	/* Entering KVM_RUN after this returns at once with EINTR: no lost kick. */
	if (vcpu_current_run)
		vcpu_current_run->immediate_exit = 1;
}

void vcpu_signal_setup(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

void vcpu_kick(struct vcpu *v)
{
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

/* Park while a pause is requested.  Returns false when the thread must exit. */
static bool vcpu_wait_runnable(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool run;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_requested && vm->state != VM_STATE_STOPPED && !vm->recreating) {
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && vm->state != VM_STATE_STOPPED && !vm->recreating)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->parked--;
	}
	run = vm->state != VM_STATE_STOPPED && !vm->recreating;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	for (uint32_t i = 0; i < run->io.count; i++)
		iobus_access(&v->vm->pio, run->io.port, data + (size_t)i * run->io.size,
			     run->io.size, is_write);
}

static void vcpu_crash(struct vcpu *v, const char *what)
{
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		pr_err("vCPU %u: %s at rip 0x%llx", v->index, what, (unsigned long long)regs.rip);
	else
		pr_err("vCPU %u: %s", v->index, what);
	vm_request_stop(v->vm, VM_STOP_GUEST_CRASH, 0);
}

/* Handle one exit.  Returns false when the vCPU must stop running. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[96];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		iobus_access(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data,
			     run->mmio.len > 8 ? 8 : run->mmio.len, run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_HLT:
		return true;
	case KVM_EXIT_SHUTDOWN:
		vcpu_crash(v, "guest triple fault (shutdown)");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
			vm_request_stop(v->vm, VM_STOP_GUEST_EXIT, 0);
			return false;
		}
		snprintf(what, sizeof(what), "system event %u", run->system_event.type);
		vcpu_crash(v, what);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "entry failed, reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_crash(v, what);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM internal error, suberror %u",
			 run->internal.suberror);
		vcpu_crash(v, what);
		return false;
	default:
		snprintf(what, sizeof(what), "unhandled exit reason %u", run->exit_reason);
		vcpu_crash(v, what);
		return false;
	}
}

/* Auto-converge: after a throttle kick, sleep pct/(100-pct) of a slice. */
static void vcpu_throttle(struct vcpu *v)
{
	unsigned pct = __atomic_load_n(&v->vm->throttle_pct, __ATOMIC_RELAXED);

	/* A pause or stop kick must not wait behind a throttle sleep. */
	if (!pct || __atomic_load_n(&v->vm->pause_requested, __ATOMIC_RELAXED) ||
	    __atomic_load_n(&v->vm->state, __ATOMIC_RELAXED) == VM_STATE_STOPPED)
		return;
	uint64_t ns = 10000000ULL * pct / (100 - pct);
	struct timespec ts = { (time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL) };
	nanosleep(&ts, NULL);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	sigset_t kick;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->index);
	pthread_setname_np(pthread_self(), name);
	vcpu_current_run = v->run;
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	while (vcpu_wait_runnable(v)) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				vcpu_throttle(v);
				continue;
			}
			char what[64];
			snprintf(what, sizeof(what), "KVM_RUN failed: %s", strerror(errno));
			vcpu_crash(v, what);
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}
	vcpu_current_run = NULL;
	return NULL;
}

int vcpu_start_thread(struct vcpu *v)
{
	sigset_t all, old;
	int err;

	/* The thread starts with every signal blocked and unblocks only its kick. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = -pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)
		v->thread_started = true;
	return err;
}
