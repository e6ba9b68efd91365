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

static const char *vcpu_exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_IO: return "io";
	case KVM_EXIT_MMIO: return "mmio";
	case KVM_EXIT_HLT: return "hlt";
	case KVM_EXIT_INTR: return "intr";
	case KVM_EXIT_SHUTDOWN: return "shutdown";
	case KVM_EXIT_FAIL_ENTRY: return "fail-entry";
	case KVM_EXIT_INTERNAL_ERROR: return "internal-error";
	case KVM_EXIT_SYSTEM_EVENT: return "system-event";
	case KVM_EXIT_DEBUG: return "debug";
	case KVM_EXIT_UNKNOWN: return "unknown";
	default: return NULL;
	}
}

/* Note an exit in the vCPU's ring (its own thread, right after KVM_RUN). */
static void vcpu_note_exit(struct vcpu *v)
{
	struct vcpu_exit_rec *e = &v->exits[v->nr_exits++ % VCPU_EXIT_RING];

	e->reason = v->run->exit_reason;
	e->rip_known = v->run->kvm_valid_regs & KVM_SYNC_X86_REGS;
	e->rip = e->rip_known ? v->run->s.regs.regs.rip : 0;
}

static void vcpu_dump_segment(const struct vcpu *v, const char *name, const struct kvm_segment *s)
{
	pr_err("vCPU %u:   %-3s sel 0x%04x base 0x%016llx limit 0x%08x type %u s %u dpl %u p %u "
	       "db %u l %u g %u%s", v->index, name, s->selector, (unsigned long long)s->base,
	       s->limit, s->type, s->s, s->dpl, s->present, s->db, s->l, s->g,
	       s->unusable ? " unusable" : "");
}

/*
 * The crash dump: what a triple fault or an internal error needs to be
 * understood afterwards.  Registers, segments and control registers,
 * pending events, then the last exits, oldest first.
 */
static void vcpu_dump(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_vcpu_events ev;
	unsigned u = v->index;

	if (ioctl(v->fd, KVM_GET_REGS, &r) == 0) {
		pr_err("vCPU %u:   rax 0x%016llx rbx 0x%016llx rcx 0x%016llx rdx 0x%016llx", u,
		       r.rax, r.rbx, r.rcx, r.rdx);
		pr_err("vCPU %u:   rsi 0x%016llx rdi 0x%016llx rsp 0x%016llx rbp 0x%016llx", u,
		       r.rsi, r.rdi, r.rsp, r.rbp);
		pr_err("vCPU %u:   r8  0x%016llx r9  0x%016llx r10 0x%016llx r11 0x%016llx", u,
		       r.r8, r.r9, r.r10, r.r11);
		pr_err("vCPU %u:   r12 0x%016llx r13 0x%016llx r14 0x%016llx r15 0x%016llx", u,
		       r.r12, r.r13, r.r14, r.r15);
		pr_err("vCPU %u:   rip 0x%016llx rflags %#llx", u, r.rip, r.rflags);
	} else {
		pr_err("vCPU %u:   KVM_GET_REGS: %s", u, strerror(errno));
	}
	if (ioctl(v->fd, KVM_GET_SREGS, &s) == 0) {
		vcpu_dump_segment(v, "cs", &s.cs);
		vcpu_dump_segment(v, "ds", &s.ds);
		vcpu_dump_segment(v, "es", &s.es);
		vcpu_dump_segment(v, "fs", &s.fs);
		vcpu_dump_segment(v, "gs", &s.gs);
		vcpu_dump_segment(v, "ss", &s.ss);
		vcpu_dump_segment(v, "tr", &s.tr);
		vcpu_dump_segment(v, "ldt", &s.ldt);
		pr_err("vCPU %u:   gdt base 0x%016llx limit 0x%04x  idt base 0x%016llx limit 0x%04x", u,
		       s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
		pr_err("vCPU %u:   cr0 %#llx cr2 %#llx cr3 %#llx cr4 %#llx cr8 %#llx efer %#llx "
		       "apic_base %#llx", u, s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base);
	} else {
		pr_err("vCPU %u:   KVM_GET_SREGS: %s", u, strerror(errno));
	}
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0) {
		pr_err("vCPU %u:   exception injected %u pending %u nr %u error %s%#x; "
		       "interrupt injected %u nr %u soft %u shadow %u", u, ev.exception.injected,
		       ev.exception.pending, ev.exception.nr,
		       ev.exception.has_error_code ? "" : "(none) ", ev.exception.error_code,
		       ev.interrupt.injected, ev.interrupt.nr, ev.interrupt.soft, ev.interrupt.shadow);
		pr_err("vCPU %u:   nmi injected %u pending %u masked %u; smm %u; "
		       "triple fault pending %u", u, ev.nmi.injected, ev.nmi.pending, ev.nmi.masked,
		       ev.smi.smm, ev.triple_fault.pending);
	} else {
		pr_err("vCPU %u:   KVM_GET_VCPU_EVENTS: %s", u, strerror(errno));
	}
	uint64_t n = v->nr_exits < VCPU_EXIT_RING ? v->nr_exits : VCPU_EXIT_RING;
	pr_err("vCPU %u:   last %llu of %llu exits, oldest first:", u, (unsigned long long)n,
	       (unsigned long long)v->nr_exits);
	for (uint64_t i = v->nr_exits - n; i < v->nr_exits; i++) {
		const struct vcpu_exit_rec *e = &v->exits[i % VCPU_EXIT_RING];
		const char *name = vcpu_exit_name(e->reason);
		char rip[24] = "rip ?";

		if (e->rip_known)
			snprintf(rip, sizeof(rip), "rip %#llx", (unsigned long long)e->rip);
		if (name)
			pr_err("vCPU %u:     %-14s %s", u, name, rip);
		else
			pr_err("vCPU %u:     exit %-9u %s", u, e->reason, rip);
	}
}

static void vcpu_crash(struct vcpu *v, const char *what)
{
	struct kvm_regs regs;
	char detail[160];

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		snprintf(detail, sizeof(detail), "vCPU %u: %s at rip 0x%llx", v->index, what,
			 (unsigned long long)regs.rip);
	else
		snprintf(detail, sizeof(detail), "vCPU %u: %s", v->index, what);
	pr_err("%s; its state:", detail);
	vcpu_dump(v);
	vm_request_stop_detail(v->vm, VM_STOP_GUEST_CRASH, 0, detail);
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
	if (v->vm->sync_regs)
		v->run->kvm_valid_regs = KVM_SYNC_X86_REGS;

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
		vcpu_note_exit(v);
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
