/*
 * boot.S - PVH entry, switch to long mode, interrupt stubs, ring-3 entry.
 *
 * The VMM (QEMU or ferry) enters pvh_entry32 in 32-bit protected mode with
 * paging off and EBX = physical address of struct hvm_start_info.  Every
 * instruction here runs in ring 0, which kvm-pvm emulates, so keep it short.
 */
#include "probe.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MSR_EFER  0xc0000080
#define EFER_LME  0x100
#define CR4_PAE   0x20
#define PTE_PRESENT_RW_USER 0x7
#define PDE_2M_PRESENT_RW_USER 0x87

/* ---- PVH note: tells the VMM where the 32-bit entry point is ---------- */
	.section .note.pvh, "a"
	.p2align 2
	.long 4                         /* namesz: "Xen\0" */
	.long 4                         /* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.long pvh_entry32

/* ---- 32-bit entry ---------------------------------------------------- */
	.section .text.boot, "ax"
	.code32
	.globl pvh_entry32
pvh_entry32:
	cli
	cld
	movl %ebx, %esi                 /* keep start_info across the setup */
	rdtsc                           /* for the boot-time line in main.c */
	movl %eax, boot_tsc
	movl %edx, boot_tsc + 4

	/* .bss is not guaranteed to be zero; it holds only small data and the
	 * boot page tables (stacks live in .stacks, which needs no clearing). */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl

	/* Identity-map the first 4 GiB with 2 MiB pages (user-accessible, so
	 * the ring-3 workloads can reach all RAM).  kernel.c extends the map
	 * if RAM goes above 4 GiB. */
	movl $boot_pdpt + PTE_PRESENT_RW_USER, boot_pml4
	movl $boot_pd + PTE_PRESENT_RW_USER, %eax
	movl $boot_pdpt, %edi
	movl $4, %ecx
1:	movl %eax, (%edi)
	addl $0x1000, %eax
	addl $8, %edi
	loop 1b

	movl $PDE_2M_PRESENT_RW_USER, %eax
	movl $boot_pd, %edi
	movl $2048, %ecx
2:	movl %eax, (%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 2b

	/* PAE, page tables, EFER.LME, then paging on: IA-32e mode. */
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $boot_pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0

	lgdt gdt_ptr
	ljmp $SEL_KCODE, $entry64

	.code64
entry64:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	leaq kstacks + KSTACK_SIZE(%rip), %rsp   /* CPU 0's ring-0 stack */
	movl %esi, %edi
	call kmain
	jmp halt_forever

/* ---- AP entry: the trampoline jumps here in 64-bit mode --------------- */
	.globl ap_entry64
ap_entry64:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movl $1, %eax
	lock xaddl %eax, ap_next_index(%rip)    /* eax = this AP's index */
	cmpl $MAX_CPUS, %eax
	jae halt_forever                        /* no stack for it: park */
	movl %eax, %edi
	incl %eax
	shlq $13, %rax                          /* * KSTACK_SIZE */
	leaq kstacks(%rip), %rsp
	addq %rax, %rsp
	call ap_kmain
	.globl halt_forever
halt_forever:
	cli
	hlt
	jmp halt_forever

/* ---- enter_user(entry, user_rsp, arg): iretq to ring 3 ---------------- */
/* RFLAGS = IOPL 3 (bits 12-13) | reserved bit 1; IF = 0. */
	.globl enter_user
enter_user:
	movq %rdi, %rax
	movl %edx, %edi
	pushq $SEL_UDATA
	pushq %rsi
	pushq $0x3002
	pushq $SEL_UCODE
	pushq %rax
	iretq

/* ---- interrupt and exception stubs ------------------------------------ */
/* Each stub leaves an error code (real or 0) and the vector on the stack. */
.macro ISR_NOERR vec
isr\vec:
	pushq $0
	pushq $\vec
	jmp isr_common
.endm
.macro ISR_ERR vec
isr\vec:
	pushq $\vec
	jmp isr_common
.endm

	ISR_NOERR 0
	ISR_NOERR 1
	ISR_NOERR 2
	ISR_NOERR 3
	ISR_NOERR 4
	ISR_NOERR 5
	ISR_NOERR 6
	ISR_NOERR 7
	ISR_ERR   8
	ISR_NOERR 9
	ISR_ERR   10
	ISR_ERR   11
	ISR_ERR   12
	ISR_ERR   13
	ISR_ERR   14
	ISR_NOERR 15
	ISR_NOERR 16
	ISR_ERR   17
	ISR_NOERR 18
	ISR_NOERR 19
	ISR_NOERR 20
	ISR_ERR   21
	ISR_NOERR 22
	ISR_NOERR 23
	ISR_NOERR 24
	ISR_NOERR 25
	ISR_NOERR 26
	ISR_NOERR 27
	ISR_NOERR 28
	ISR_ERR   29
	ISR_ERR   30
	ISR_NOERR 31

	.globl isr_syscall, isr_timer, isr_spurious
isr_syscall:
	pushq $0
	pushq $VEC_SYSCALL
	jmp isr_common

/* The timer only has to wake a hlt: EOI and return, no C needed. */
isr_timer:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rdi
	pushq %rsi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	call apic_eoi
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rsi
	popq %rdi
	popq %rdx
	popq %rcx
	popq %rax
	iretq

isr_spurious:                           /* no EOI for spurious vectors */
	iretq

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call trap_handler
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp                  /* vector, error code */
	iretq

	.section .rodata
	.p2align 3
	.globl isr_table
isr_table:
	.quad isr0, isr1, isr2, isr3, isr4, isr5, isr6, isr7
	.quad isr8, isr9, isr10, isr11, isr12, isr13, isr14, isr15
	.quad isr16, isr17, isr18, isr19, isr20, isr21, isr22, isr23
	.quad isr24, isr25, isr26, isr27, isr28, isr29, isr30, isr31

/* ---- data -------------------------------------------------------------- */
	.section .data
	.p2align 3
	.globl gdt_ptr
gdt_ptr:                                /* also read by 32-bit lgdt (6 bytes) */
	.word GDT_ENTRIES * 8 - 1
	.quad gdt
ap_next_index:
	.long 1                         /* CPU 0 is the BSP */
	.p2align 3
	.globl boot_tsc
boot_tsc:
	.quad 0

	.section .bss
	.p2align 12
	.globl boot_pml4, boot_pdpt
boot_pml4:	.skip 4096
boot_pdpt:	.skip 4096
boot_pd:	.skip 4 * 4096

	/* Stacks are not cleared at boot (that would cost emulated ring-0
	 * time) and so live outside .bss. */
	.section .stacks, "aw", @nobits
	.p2align 12
	.globl kstacks, ustacks
kstacks:	.skip MAX_CPUS * KSTACK_SIZE
ustacks:	.skip MAX_CPUS * USTACK_SIZE

	.section .note.GNU-stack, "", @progbits
