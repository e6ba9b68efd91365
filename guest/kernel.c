/*
 * kernel.c - everything the probe does in ring 0.
 *
 * On kvm-pvm each ring-0 instruction is emulated (~1 us), so this file does
 * the minimum: descriptor tables, the page-table extension above 4 GiB, the
 * local APIC, and a few small services for ring 3 (idle, IPI, APIC timer,
 * serial write, exit, PIT calibration, hypervisor CPUID, kvmclock), because
 * ring 3 cannot do port I/O or touch MSRs on kvm-pvm, and its CPUID there is
 * the raw host's.
 * It is compiled with -mgeneral-regs-only so ring 0 never touches SSE/x87
 * state that ring 3 owns.
 */
#include "probe.h"

#define MSR_APIC_BASE     0x1b
#define MSR_TSC_DEADLINE  0x6e0
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_X2APIC_BASE   0x800
#define APIC_BASE_EN      (1UL << 11)
#define APIC_BASE_EXTD    (1UL << 10)

/* LAPIC register offsets (xAPIC MMIO offset; x2APIC MSR = 0x800 + off/16) */
#define APIC_TPR          0x080
#define APIC_EOI          0x0b0
#define APIC_SVR          0x0f0
#define APIC_ICR_LO       0x300
#define APIC_ICR_HI       0x310
#define APIC_LVT_TIMER    0x320
#define APIC_LVT_LINT0    0x350
#define APIC_LVT_LINT1    0x360
#define APIC_TIMER_INIT   0x380
#define APIC_TIMER_CUR    0x390
#define APIC_TIMER_DIV    0x3e0
#define LVT_MASKED        (1U << 16)
#define LVT_TSC_DEADLINE  (2U << 17)

_Static_assert(KSTACK_SIZE == 1 << 13, "boot.S shifts by 13");

struct tss64 {
	u32 reserved0;
	u64 rsp0, rsp1, rsp2;
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));

struct idt_entry {
	u16 off_lo, sel;
	u8 ist, type;
	u16 off_mid;
	u32 off_hi, zero;
} __attribute__((packed));

struct kinfo kinfo;

/* Flat segments; the TSS descriptors are filled in per CPU. */
u64 gdt[GDT_ENTRIES] __attribute__((aligned(16))) = {
	[SEL_KCODE / 8]   = 0x00af9a000000ffffUL,   /* 64-bit code, DPL 0 */
	[SEL_KDATA / 8]   = 0x00cf92000000ffffUL,   /* data, DPL 0 */
	[SEL_UDATA / 8]   = 0x00cff2000000ffffUL,   /* data, DPL 3 */
	[SEL_UCODE / 8]   = 0x00affa000000ffffUL,   /* 64-bit code, DPL 3 */
	[SEL_KCODE32 / 8] = 0x00cf9a000000ffffUL,   /* 32-bit code, DPL 0 */
};

/*
 * The TSSes share one I/O permission bitmap that allows every port, with
 * the terminating 0xff byte the architecture reads past the last port;
 * each TSS's limit reaches to its end.  IOPL=3 already lets ring 3 do port
 * I/O on hardware; kvm-pvm's emulator checks the bitmap through TR
 * instead, and faults when the TSS ends at 0x67.  Shared, because .bss is
 * cleared in emulated ring 0 at boot.
 */
static struct {
	struct tss64 tss[MAX_CPUS];
	u8 iomap[65536 / 8];
	u8 iomap_end;
} __attribute__((packed)) tss_area;
static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct { u16 limit; u64 base; } __attribute__((packed)) idt_ptr;
static volatile u32 *xapic;             /* MMIO base when not in x2APIC mode */

extern char kstacks[], ustacks[];

static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}

static inline u64 read_cr2(void)
{
	u64 v;
	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}

static inline void wrmsr(u32 msr, u64 v)
{
	__asm__ volatile("wrmsr" :: "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

/* ---- local APIC ------------------------------------------------------ */

static u32 apic_read(u32 reg)
{
	if (kinfo.x2apic)
		return (u32)rdmsr(MSR_X2APIC_BASE + (reg >> 4));
	return xapic[reg / 4];
}

static void apic_write(u32 reg, u32 v)
{
	if (kinfo.x2apic)
		wrmsr(MSR_X2APIC_BASE + (reg >> 4), v);
	else
		xapic[reg / 4] = v;
}

/* Called from the timer stub in boot.S. */
void apic_eoi(void);
void apic_eoi(void)
{
	apic_write(APIC_EOI, 0);
}

/* icr: x2APIC layout (destination APIC ID in bits 63:32). */
static void apic_send_ipi(u64 icr)
{
	if (kinfo.x2apic) {
		wrmsr(MSR_X2APIC_BASE + (APIC_ICR_LO >> 4), icr);
		return;
	}
	apic_write(APIC_ICR_HI, (u32)(icr >> 32) << 24);
	apic_write(APIC_ICR_LO, (u32)icr);
}

static void apic_init(void)
{
	u64 base = rdmsr(MSR_APIC_BASE);

	if (kinfo.x2apic) {
		wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD);
	} else {
		wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN);
		xapic = (volatile u32 *)(base & 0xfffff000UL);
	}
	apic_write(APIC_SVR, 0x100 | VEC_SPURIOUS);
	apic_write(APIC_TPR, 0);
	/* The firmware may route the 8259 through LINT0 (ExtINT); we want no
	 * interrupt but our own timer. */
	apic_write(APIC_LVT_LINT0, LVT_MASKED);
	apic_write(APIC_LVT_LINT1, LVT_MASKED);
	apic_write(APIC_TIMER_DIV, 0xb);        /* divide by 1 */
	apic_write(APIC_LVT_TIMER, VEC_TIMER |
		   (kinfo.tsc_deadline ? LVT_TSC_DEADLINE : 0));
}

/* ---- descriptor tables ----------------------------------------------- */

static void set_gate(u32 vec, void *handler, u8 type)
{
	u64 a = (u64)handler;

	idt[vec] = (struct idt_entry){
		.off_lo = (u16)a, .sel = SEL_KCODE, .type = type,
		.off_mid = (u16)(a >> 16), .off_hi = (u32)(a >> 32),
	};
}

static void idt_init(void)
{
	for (u32 v = 0; v < 32; v++)
		set_gate(v, isr_table[v], 0x8e);        /* interrupt gate, DPL 0 */
	set_gate(VEC_SYSCALL, isr_syscall, 0xee);       /* DPL 3: int $0x80 */
	set_gate(VEC_TIMER, isr_timer, 0x8e);
	set_gate(VEC_SPURIOUS, isr_spurious, 0x8e);
	idt_ptr.limit = sizeof(idt) - 1;
	idt_ptr.base = (u64)idt;
}

static void tss_load(u32 cpu)
{
	u64 base = (u64)&tss_area.tss[cpu];
	u64 limit = (u64)&tss_area.iomap_end - base;
	u32 slot = SEL_TSS0 / 8 + 2 * cpu;

	tss_area.tss[cpu].rsp0 = (u64)kstacks + (cpu + 1) * KSTACK_SIZE;
	/* All ports allowed: the shared bitmap, below 64 KiB from any TSS. */
	tss_area.tss[cpu].iomap_base = (u16)((u64)tss_area.iomap - base);
	tss_area.iomap_end = 0xff;
	gdt[slot] = (limit & 0xffff) | (base & 0xffffff) << 16 |
		    0x89UL << 40 |                      /* present, 64-bit TSS */
		    ((limit >> 16) & 0xf) << 48 | (base >> 24 & 0xff) << 56;
	gdt[slot + 1] = base >> 32;
	__asm__ volatile("ltr %w0" :: "r"(SEL_TSS0 + 16 * cpu));
}

/* SSE for the ring-3 workloads: CR0.MP on, EM off; CR4.OSFXSR|OSXMMEXCPT. */
static void sse_enable(void)
{
	u64 cr0, cr4;

	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 = (cr0 & ~(1UL << 2)) | (1UL << 1);
	__asm__ volatile("mov %0, %%cr0" :: "r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= (1UL << 9) | (1UL << 10);
	__asm__ volatile("mov %0, %%cr4" :: "r"(cr4));
}

static void cpu_init(u32 cpu)
{
	__asm__ volatile("lidt %0" :: "m"(idt_ptr));
	tss_load(cpu);
	sse_enable();
	apic_init();
}

static noreturn void to_user(void (*entry)(u32), u32 cpu)
{
	/* -8: the entry sees the stack as if it had been called */
	enter_user(entry, (u64)ustacks + (cpu + 1) * USTACK_SIZE - 8, cpu);
}

/* ---- memory ------------------------------------------------------------ */

/*
 * boot.S mapped the first 4 GiB.  Map the rest of RAM with 2 MiB pages,
 * taking page directories from just past the image.  Only runs when the
 * guest has more than 4 GiB (512 entries per GiB, a few ms emulated).
 */
static void map_above_4g(u64 top, u64 *alloc)
{
	for (u64 gb = 4; gb < (top + (1UL << 30) - 1) >> 30 && gb < 512; gb++) {
		u64 *pd = (u64 *)*alloc;

		*alloc += PAGE_SIZE;
		for (u64 i = 0; i < 512; i++)
			pd[i] = (gb << 30) + (i << 21) + 0x87;
		boot_pdpt[gb] = (u64)pd + 0x7;
	}
	__asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
}

static u64 ram_top(const struct hvm_start_info *si)
{
	const struct hvm_memmap_entry *m = (void *)si->memmap_paddr;
	u64 top = 0;

	for (u32 i = 0; i < si->memmap_entries; i++)
		if (m[i].type == MEMMAP_RAM && m[i].addr + m[i].size > top)
			top = m[i].addr + m[i].size;
	return top;
}

/* Mask both 8259s and stop the periodic PIT tick the firmware may have set
 * up: an idle guest should get no interrupt but its own LAPIC timer. */
static void quiesce_legacy(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	outb(0x43, 0x30);       /* ch0, lo/hi, mode 0 (one-shot) */
	outb(0x40, 0xff);
	outb(0x40, 0xff);
}

/* ---- entry points -------------------------------------------------------- */

void kmain(u32 start_info_paddr)
{
	struct hvm_start_info *si = (void *)(u64)start_info_paddr;
	u32 r[4];
	u64 alloc = ALIGN_UP((u64)_end, PAGE_SIZE);

	serial_init();
	if (si->magic != HVM_START_MAGIC) {
		kpr("probe: bad hvm_start_info magic 0x%x at 0x%x\n", si->magic, start_info_paddr);
		kexit(EXIT_BADARG);
	}
	if (si->version < 1 || !si->memmap_paddr || !si->memmap_entries) {
		kpr("probe: hvm_start_info version %u has no memory map\n", si->version);
		kexit(EXIT_BADARG);
	}
	quiesce_legacy();
	kinfo.start_info = si;
	kinfo.ram_top = ram_top(si);
	if (kinfo.ram_top > (4UL << 30))
		map_above_4g(kinfo.ram_top, &alloc);
	kinfo.free_start = alloc;

	cpuid(1, 0, r);
	kinfo.x2apic = (r[2] >> 21) & 1;
	kinfo.tsc_deadline = (r[2] >> 24) & 1;

	idt_init();
	cpu_init(0);
	to_user(user_main, 0);
}

void ap_kmain(u32 index)
{
	cpu_init(index);
	__atomic_fetch_add(&kinfo.ap_booted, 1, __ATOMIC_SEQ_CST);
	to_user(ap_user_main, index);
}

/* ---- traps and syscalls -------------------------------------------------- */

static void idle_until(u64 deadline)
{
	/* The loop covers early wake-ups; the timer fires at once when the
	 * deadline has passed.  sti's one-instruction shadow makes sti;hlt
	 * race-free. */
	while (rdtsc() < deadline) {
		if (kinfo.tsc_deadline) {
			wrmsr(MSR_TSC_DEADLINE, deadline);
		} else {
			u64 d = deadline - rdtsc();
			u64 ticks = d * kinfo.apic_khz / kinfo.tsc_khz;

			if ((s64)d <= 0)
				break;
			apic_write(APIC_TIMER_INIT, ticks > 0xffffffffUL ? 0xffffffffU :
				   ticks ? (u32)ticks : 1);
		}
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
}

/*
 * Count `count` PIT ticks on channel 2 (gated via port 0x61, mode 0: OUT2
 * rises at terminal count) and return how far the TSC moved, or 0 when the
 * PIT does not answer (no gate at port 0x61).  Done in ring 0 because ring 3 cannot poll ports on
 * kvm-pvm; the loop is a few emulated instructions, i.e. a few us of error.
 */
static u64 pit_calibrate(u32 count)
{
	u8 p61 = inb(0x61);
	u64 t0, t1;

	/* No speaker gate there (QEMU microvm): the port floats to 0xff. */
	if (p61 == 0xff)
		return 0;
	outb(0x61, (p61 & ~0x02) | 0x01);       /* gate on, speaker off */
	outb(0x43, 0xb0);                       /* ch2, lo/hi byte, mode 0 */
	outb(0x42, count & 0xff);
	outb(0x42, count >> 8);
	t0 = rdtsc();
	while (!(inb(0x61) & 0x20))
		if (rdtsc() - t0 > (1UL << 34))
			return 0;
	t1 = rdtsc();
	outb(0x61, p61 & ~0x03);
	return t1 - t0;
}

/*
 * crash=: with an empty IDT no exception can be delivered, so ud2's #UD
 * becomes #GP, then #DF, then a triple fault: the CPU shuts down
 * (KVM_EXIT_SHUTDOWN), as a guest with a broken IDT or stack would.
 */
static noreturn void triple_fault(void)
{
	static const struct { u16 limit; u64 base; } __attribute__((packed)) no_idt = { 0, 0 };

	__asm__ volatile("cli; lidt %0; ud2" :: "m"(no_idt) : "memory");
	for (;;)
		__asm__ volatile("hlt");
}

static u64 do_syscall(u64 nr, u64 arg, u64 arg2)
{
	switch (nr) {
	case SYS_WRITE:
		serial_write((const char *)arg, arg2);
		return 0;
	case SYS_EXIT:
		kexit((u32)arg);
	case SYS_PIT_CAL:
		return pit_calibrate((u32)arg);
	case SYS_CPUID:
		cpuid((u32)arg2, 0, (u32 *)arg);
		return 0;
	case SYS_KVMCLOCK:
		wrmsr(MSR_KVM_SYSTEM_TIME_NEW, arg);
		return 0;
	case SYS_IDLE:
		idle_until(arg);
		return 0;
	case SYS_IPI:
		apic_send_ipi(arg);
		return 0;
	case SYS_TIMER_START:
		/* one-shot, masked: only the count-down is wanted */
		apic_write(APIC_LVT_TIMER, VEC_TIMER | LVT_MASKED);
		apic_write(APIC_TIMER_INIT, 0xffffffffU);
		return 0;
	case SYS_TIMER_READ: {
		u32 cur = apic_read(APIC_TIMER_CUR);

		apic_write(APIC_LVT_TIMER, VEC_TIMER);
		return cur;
	}
	case SYS_HALT:
		for (;;)
			__asm__ volatile("cli; hlt");
	case SYS_CRASH:
		triple_fault();
	}
	return (u64)-1;
}

void trap_handler(struct trap_frame *f)
{
	/* kvm-pvm raises #UD for "int $0x80" in ring 3 (rip at the int) */
	if (f->vector == 6 && (f->cs & 3) && *(u16 *)f->rip == 0x80cd) {
		f->rip += 2;
		f->vector = VEC_SYSCALL;
	}
	if (f->vector == VEC_SYSCALL) {
		f->rax = do_syscall(f->rax, f->rdi, f->rsi);
		return;
	}
	/* main.c's probe: a one-byte "in (%dx),%al" in ring 3 faulted */
	if (f->vector == 13 && kinfo.io_probe && *(u8 *)f->rip == 0xec) {
		kinfo.user_io = false;
		f->rip++;
		return;
	}
	kpr("probe: exception %lu rip 0x%lx error 0x%lx cs 0x%lx rflags 0x%lx rsp 0x%lx cr2 0x%lx\n",
	   f->vector, f->rip, f->error, f->cs, f->rflags, f->rsp, read_cr2());
	kexit(EXIT_EXCEPTION);
}
