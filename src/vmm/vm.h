/*
 * A KVM virtual machine: guest RAM, vCPU threads, the in-kernel irqchip and
 * PIT, and the buses devices hang on.  This module knows nothing of
 * migration; it offers what migration needs: pause/resume, memory regions
 * and the KVM file descriptors for state save/load.
 */
#ifndef FERRY_VMM_VM_H
#define FERRY_VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/iobus.h"
#include "vmm/memory.h"

#define VM_MAX_VCPUS 64

struct vm;
struct x86_cpu_model;

/* The last exits of a vCPU, for its crash dump. */
#define VCPU_EXIT_RING 16

struct vcpu_exit_rec {
	uint32_t reason;	/* KVM_EXIT_* */
	bool rip_known;		/* KVM_CAP_SYNC_REGS: KVM reported the registers */
	uint64_t rip;
};

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;	/* mmap'd; written by KVM and this vCPU's thread */
	pthread_t thread;
	bool thread_started;
	/* Only this vCPU's thread touches the ring. */
	struct vcpu_exit_rec exits[VCPU_EXIT_RING];
	uint64_t nr_exits;	/* exits recorded; the next goes to nr_exits % RING */
};

enum vm_state {
	VM_STATE_CREATED,	/* vCPUs not started yet */
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_STOPPED,	/* guest exited, crashed, or stop was requested */
};

/* Why the VM stopped; decides ferry's exit status. */
enum vm_stop_reason {
	VM_STOP_NONE,
	VM_STOP_GUEST_EXIT,	/* the guest wrote its status to the debug-exit port */
	VM_STOP_REQUESTED,	/* quit command or signal */
	VM_STOP_GUEST_CRASH,	/* triple fault, failed entry, emulation error */
	VM_STOP_MIGRATED,	/* the guest now runs elsewhere */
	VM_STOP_LOST,		/* the guest could not survive (its memory is gone) */
};

struct vm_config {
	uint64_t memory;
	unsigned vcpus;
	bool prealloc;			/* allocate all RAM up front */
	struct guest_memory *premade;	/* RAM made earlier, taken over (or NULL) */
	const struct x86_cpu_model *cpu_model;	/* features offered (NULL: all KVM has) */
};

struct vm {
	int kvm_fd;
	int vm_fd;
	bool sync_regs;			/* KVM fills kvm_run's registers on every exit */
	struct guest_memory mem;
	unsigned nr_vcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	/* KVM's supported CPUID less what the CPU model drops; filtered per vCPU. */
	struct kvm_cpuid2 *cpuid;

	/* Dirty tracking (dirty.c): owned by the thread that started it. */
	bool dirty_manual;		/* manual-protect capability enabled */
	bool dirty_logging;		/* atomic: read by vm_mark_dirty() */
	unsigned long *vmm_dirty[GUEST_MAX_REGIONS];	/* pages ferry wrote */
	unsigned long *kvm_dirty[GUEST_MAX_REGIONS];	/* scratch for KVM_GET_DIRTY_LOG */
	size_t run_size;

	/* Filled before vm_start(); read-only afterwards. */
	struct iobus pio;
	struct iobus mmio;

	/*
	 * Run control.  `lock` guards every field below; vCPU threads park on
	 * `cond` while pause is requested, and the pauser waits on it (with a
	 * CLOCK_MONOTONIC deadline) for all of them to arrive.  Pausers: the
	 * control thread (pause), the migration thread (switchover), the
	 * incoming side (post-copy reconnect, vm_pause_nowait).
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_requested;
	bool held;			/* paused by the operator (vm_hold): vm_resume leaves it */
	bool fenced;			/* the guest may run elsewhere (vm_fence): no resume */
	bool recreating;		/* parked vCPU threads must exit */
	unsigned parked;
	enum vm_stop_reason stop_reason;
	int guest_status;		/* value written to the debug-exit port */
	char stop_detail[192];		/* what the stopping thread saw ("" if nothing) */
	int stop_efd;			/* eventfd: readable once the VM stopped */
	uint64_t start_ns;		/* CLOCK_MONOTONIC when vCPUs started */

	/* Throttling (auto-converge): pct is atomic; the thread kicks vCPUs. */
	unsigned throttle_pct;
	pthread_t throttle_thread;
	bool throttle_started;
};

/*
 * Open /dev/kvm, allocate RAM and create the KVM VM with its irqchip, PIT and
 * vCPUs.  On failure prints why and returns -errno (-ENOENT/-EACCES when
 * /dev/kvm cannot be opened).
 */
int vm_create(struct vm *vm, const struct vm_config *cfg) __attribute__((warn_unused_result));
/*
 * Give every vCPU the CPUID table `cpuid` (taken over: the VM frees it)
 * instead of the one vm_create() chose: a migrated guest keeps the CPUID
 * it booted with.  Main thread, before vm_start().  Returns 0 or -errno
 * (the table is freed either way).
 */
int vm_set_cpuid(struct vm *vm, struct kvm_cpuid2 *cpuid) __attribute__((warn_unused_result));

/* Stop the vCPU threads if running and free everything. */
void vm_destroy(struct vm *vm);

/* Start one thread per vCPU.  Returns 0 or -errno. */
int vm_start(struct vm *vm) __attribute__((warn_unused_result));

/* How long a pause waits for every vCPU to park before it gives up. */
#define VM_PAUSE_TIMEOUT_NS (2ULL * 1000000000ULL)

/*
 * Pause every vCPU and wait, at most timeout_ns, until all are out of
 * KVM_RUN.  Returns 0; -ESRCH if the VM has stopped; -ETIMEDOUT if some
 * vCPU did not park in time (one blocked in the kernel, e.g. on a post-copy
 * page): then the VM is left running and the vCPUs that parked resume.
 * Pausing a paused VM is a no-op.  Any thread but a vCPU's.
 */
int vm_pause(struct vm *vm, uint64_t timeout_ns) __attribute__((warn_unused_result));
/* What a vm_pause() error means, for messages. */
const char *vm_pause_strerror(int err);
/*
 * Ask every vCPU to park without waiting for it (one blocked on a missing
 * page parks once the page arrives).  vm_resume() undoes it.
 */
void vm_pause_nowait(struct vm *vm);
/*
 * Let paused vCPUs run again, unless the operator holds the VM paused
 * (vm_hold): then it stays paused, and this is no error.  Whoever paused
 * for a moment of its own (an epoch, a save that runs on) resumes with
 * this, so an operator's pause that came meanwhile is not undone.
 * Returns 0, -ESRCH if stopped, -EPERM if fenced (vm_fence; it stays paused).
 */
int vm_resume(struct vm *vm) __attribute__((warn_unused_result));
/*
 * The operator's pause and resume: vm_pause and vm_resume, holding and
 * letting go.  vm_release returns -EPERM, and leaves the VM as it is, while
 * the VM is fenced, and -EAGAIN for a VM whose vCPUs never started (a
 * destination still waiting for its guest).
 */
int vm_hold(struct vm *vm, uint64_t timeout_ns) __attribute__((warn_unused_result));
int vm_release(struct vm *vm) __attribute__((warn_unused_result));
/*
 * Fence the VM (on) or lift the fence: while fenced, neither vm_resume nor
 * vm_release lets a paused vCPU run (both return -EPERM), because this
 * guest may be running somewhere else.  Whoever pauses to hand the guest
 * over fences first, and lifts the fence only where the guest must run on
 * here.  Any thread.
 */
void vm_fence(struct vm *vm, bool on);
bool vm_fenced(struct vm *vm);

/* Ask the VM to stop for `reason`; the first reason wins.  Any thread. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int guest_status);
/*
 * The same, with what was seen (a crash: which vCPU, what, where), kept
 * with the reason for vm_stop_why().  detail may be NULL.
 */
void vm_request_stop_detail(struct vm *vm, enum vm_stop_reason reason, int guest_status,
			    const char *detail);

/*
 * Why the VM stopped, for whoever watches it from outside (a migration of
 * it): the reason, or VM_STOP_NONE while it has not stopped; `why` gets
 * one line saying so, e.g. "the guest crashed (vCPU 0: triple fault
 * (shutdown) at rip 0x1234)" or "the guest exited with status 0".
 * Any thread.
 */
enum vm_stop_reason vm_stop_why(struct vm *vm, char *why, size_t len);

/* Join the vCPU threads after a stop.  Returns the stop reason. */
enum vm_stop_reason vm_wait_stopped(struct vm *vm);

enum vm_state vm_get_state(struct vm *vm);
const char *vm_state_name(enum vm_state state);

/*
 * Tear down the KVM VM and vCPUs (not RAM or devices) and create them anew,
 * as migration does on another host.  The VM must be paused; its vCPU
 * threads are restarted, still parked.  Returns 0 or -errno.
 */
int vm_recreate_kvm(struct vm *vm) __attribute__((warn_unused_result));

uint64_t vm_now_ns(void);



/*
 * Throttle the vCPUs to run at most (100 - pct)% of the time (auto-converge):
 * each is kicked every 10 ms and then sleeps in proportion.  0 stops it.
 * pct is capped at 99.  Returns 0 or -errno.
 */
int vm_set_throttle(struct vm *vm, unsigned pct) __attribute__((warn_unused_result));

/* Drive GSI `irq` of the in-kernel irqchip to `level`.  Any thread. */
void vm_set_irq(struct vm *vm, unsigned irq, int level);

/*
 * Have KVM send an edge on GSI `gsi` whenever eventfd efd is signalled
 * (KVM_IRQFD), so a device thread interrupts the guest with one write.
 * Returns 0 or -errno (no irqfd: use vm_set_irq).  Registrations belong
 * to the KVM VM: vm_recreate_kvm() drops them.
 */
int vm_add_irqfd(struct vm *vm, unsigned gsi, int efd) __attribute__((warn_unused_result));
/*
 * Have KVM signal eventfd efd, without an exit to ferry, when the guest
 * writes `value` (len bytes) at MMIO address addr (KVM_IOEVENTFD).
 * Returns 0 or -errno; dropped by vm_recreate_kvm() like irqfds.
 */
int vm_add_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, uint64_t value, int efd)
	__attribute__((warn_unused_result));
#endif
