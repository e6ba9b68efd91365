/*
 * probe.h - shared definitions for the ferry probe guest.
 *
 * The probe is a tiny freestanding x86-64 guest.  Ring 0 (kernel.c, boot.S,
 * trampoline.S) only sets up long mode, descriptor tables and the APIC, and
 * offers a handful of services through "syscall".  Everything else runs in
 * ring 3 with IOPL=3 and IF=0, because on kvm-pvm ring 0 is emulated
 * (~1 us per instruction) while ring 3 runs natively.
 */
#ifndef PROBE_H
#define PROBE_H

/* ---- constants shared with assembly ---------------------------------- */
#define IMAGE_BASE      0x100000        /* physical load/link address */
#define TRAMP_BASE      0x8000          /* AP real-mode trampoline; SIPI vector 0x08 */
#define MAX_CPUS        32

#define KSTACK_SIZE     8192            /* ring-0 stack per CPU (TSS.RSP0) */
#define USTACK_SIZE     32768           /* ring-3 stack per CPU */

#define SEL_KCODE       0x08            /* 64-bit ring-0 code */
#define SEL_KDATA       0x10            /* flat data (ring 0; also used in 32-bit mode) */
#define SEL_UDATA       0x1b            /* ring-3 data, RPL 3 */
#define SEL_UCODE       0x23            /* 64-bit ring-3 code, RPL 3 */
#define SEL_KCODE32     0x28            /* 32-bit ring-0 code (AP trampoline) */
#define SEL_TSS0        0x30            /* TSS of CPU n at SEL_TSS0 + 16 * n */
#define GDT_ENTRIES     (6 + 2 * MAX_CPUS)

#define VEC_SYSCALL     0x80            /* int $0x80 from ring 3 */
#define VEC_TIMER       0xf0            /* LAPIC timer */
#define VEC_SPURIOUS    0xff

/* syscall numbers (rax); arguments in rdi, rsi; result in rax.  Entered
 * with "int $0x80" (kvm-pvm turns that into #UD, which kernel.c accepts as
 * the same thing; its "syscall" instruction does not leave ring 3). */
#define SYS_IDLE        1               /* halt until TSC >= rdi */
#define SYS_IPI         2               /* ICR value (x2APIC layout: dest in bits 63:32) */
#define SYS_TIMER_START 3               /* start LAPIC timer count-down (calibration) */
#define SYS_TIMER_READ  4               /* read LAPIC timer current count */
#define SYS_HALT        5               /* cli; hlt forever */
#define SYS_WRITE       6               /* serial: write rsi bytes at rdi */
#define SYS_EXIT        7               /* outl rdi to the exit port */
#define SYS_PIT_CAL     8               /* TSC ticks for rdi PIT ticks, 0 = no PIT */
#define SYS_CPUID       9               /* CPUID leaf rsi into u32[4] at rdi, as KVM sees it */
#define SYS_KVMCLOCK    10              /* MSR_KVM_SYSTEM_TIME_NEW = rdi (0 = off) */
#define SYS_CRASH       11              /* crash=: triple-fault this vCPU on purpose */

#ifndef __ASSEMBLER__

typedef unsigned char      u8;
typedef unsigned short     u16;
typedef unsigned int       u32;
typedef unsigned long      u64;
typedef long               s64;
typedef unsigned long      size_t;
typedef _Bool              bool;
#define true  1
#define false 0
#define NULL  ((void *)0)

#define PAGE_SIZE   4096UL
#define ALIGN_UP(x, a)  (((x) + (a) - 1) & ~((u64)(a) - 1))
#define ARRAY_SIZE(a)   (sizeof(a) / sizeof((a)[0]))
#define noreturn __attribute__((noreturn))

/* exit values written to port 0xf4 */
#define EXIT_OK         0
#define EXIT_CORRUPT    1
#define EXIT_BADARG     2
#define EXIT_EXCEPTION  3

/* ---- PVH start info (xen/include/public/arch-x86/hvm/start_info.h) ---- */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr;       /* version >= 1 */
	u32 memmap_entries;     /* version >= 1 */
	u32 reserved;
};

struct hvm_memmap_entry {
	u64 addr;
	u64 size;
	u32 type;               /* 1 = RAM */
	u32 reserved;
};
#define MEMMAP_RAM 1

/* ---- what ring 0 tells ring 3 (all memory is user-accessible) -------- */
struct kinfo {
	struct hvm_start_info *start_info;
	u64 ram_top;            /* highest RAM byte + 1 */
	u64 free_start;         /* first byte after image, stacks, page tables */
	bool x2apic;            /* x2APIC via MSRs, else xAPIC MMIO */
	bool tsc_deadline;      /* LAPIC TSC-deadline timer mode available */
	volatile u32 ap_booted; /* APs that reached ring 0 in long mode */
	volatile bool io_probe; /* ring 3 is testing whether it may do port I/O */
	volatile bool user_io;  /* ...and the answer */
	u64 tsc_khz;            /* set by ring 3 after calibration */
	u64 apic_khz;           /* LAPIC timer rate (only without TSC-deadline) */
};
extern struct kinfo kinfo;

/* ---- port I/O, TSC (usable in ring 0 and, with IOPL=3, ring 3) ------- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void cpuid(u32 leaf, u32 sub, u32 r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* ---- syscalls (ring 3 -> ring 0) ------------------------------------ */
static inline u64 syscall1(u64 nr, u64 arg)
{
	u64 ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "D"(arg) : "memory");
	return ret;
}

static inline u64 syscall2(u64 nr, u64 a, u64 b)
{
	u64 ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "memory");
	return ret;
}

/* ---- lib.c ----------------------------------------------------------- */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
static inline u64 xorshift64(u64 *s)
{
	u64 x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}
static inline u64 mix64(u64 z)
{
	/* splitmix64 finaliser: a cheap, well-spread hash */
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
	return z ^ (z >> 31);
}

/* ---- serial.c (general-registers only: callable from ring 0) --------- */
/* ring 3 */
void pr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void probe_exit(u32 code);
/* ring 0 */
void serial_init(void);
void serial_write(const char *s, size_t n);
void kpr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void kexit(u32 code);

/* ---- kernel.c -------------------------------------------------------- */
struct trap_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};
void kmain(u32 start_info_paddr);
void ap_kmain(u32 index);
void trap_handler(struct trap_frame *f);

/* boot.S */
noreturn void enter_user(void (*entry)(u32), u64 user_rsp, u32 arg);
extern char tramp_start[], tramp_end[];
extern u64 boot_pml4[512], boot_pdpt[512];
extern char _end[];
extern u64 boot_tsc;                    /* TSC at the PVH entry */
extern void *isr_table[];
extern char isr_syscall[], isr_timer[], isr_spurious[];

/* main.c: ring-3 entry points */
noreturn void user_main(u32 cpu);
noreturn void ap_user_main(u32 cpu);

#endif /* !__ASSEMBLER__ */
#endif /* PROBE_H */
