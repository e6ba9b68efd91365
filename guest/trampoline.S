/*
 * trampoline.S - real-mode start code for the application processors.
 *
 * An AP starts at CS:IP = 0x0800:0000 (SIPI vector 0x08) in real mode.  The
 * BSP copies the bytes between tramp_start and tramp_end to TRAMP_BASE
 * (below 1 MiB, as SIPI requires) before sending the SIPIs.  The code loads
 * the kernel GDT (which has a 32-bit code segment for exactly this use),
 * enters protected mode, turns on PAE + long mode with the BSP's page tables
 * and jumps to ap_entry64 in the image.  Only trampoline-internal addresses
 * need rebasing; everything else is an absolute address in the image.
 */
#include "probe.h"

#define REBASE(x) (TRAMP_BASE + (x) - tramp_start)

	.section .data
	.p2align 4
	.globl tramp_start, tramp_end
	.code16
tramp_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl tramp_gdtr - tramp_start
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $REBASE(tramp32)

	.code32
tramp32:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %cr4, %eax
	orl $0x20, %eax                 /* PAE */
	movl %eax, %cr4
	movl $boot_pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx          /* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000000, %eax           /* PG */
	movl %eax, %cr0
	ljmp $SEL_KCODE, $ap_entry64

	.p2align 2
tramp_gdtr:
	.word GDT_ENTRIES * 8 - 1
	.long gdt
tramp_end:

	.section .note.GNU-stack, "", @progbits
