/*
 * trampoline.S - real-mode start for application processors. CPU 0
 * copies these bytes to TRAMPOLINE_PA (below 1 MiB, page aligned) and
 * sends INIT-SIPI-SIPI with vector TRAMPOLINE_PA >> 12; each AP starts
 * here at CS:IP = (TRAMPOLINE_PA >> 4):0 in real mode, loads our GDT,
 * enters protected mode and jumps to ap_entry32 in the image.
 * Position dependent on purpose: addresses are computed for TRAMPOLINE_PA.
 */
#include "layout.h"

	.section .rodata.trampoline, "a"
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	cld
	xorw %bx, %bx
	movw %bx, %ds
	lgdtl (TRAMPOLINE_PA + (tramp_gdtr - ap_trampoline))
	movl %cr0, %eax
	andl $0x9fffffff, %eax		/* INIT leaves CD/NW set: caches on */
	orl $1, %eax			/* PE */
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_entry32
	.balign 8
tramp_gdtr:
	.word GDT_BYTES - 1
	.long gdt
ap_trampoline_end:

	.section .note.GNU-stack, "", @progbits
