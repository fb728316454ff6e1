/*
 * isr.S - the 32 exception vectors. Each stub pushes a dummy error code
 * where the CPU pushes none, then its vector number, saves the general
 * registers and calls exception_report(frame), which prints one
 * EXCEPTION line and halts this CPU. Nothing ever returns here, except
 * from isr_bp (below).
 */
#include "layout.h"

	.text
	.code64

.macro STUB vec, has_err
isr_\vec:
	.if \has_err == 0
	pushq $0
	.endif
	pushq $\vec
	jmp isr_common
	/* fixed spacing; the assembler fails if a stub outgrows it */
	.org isr_\vec + ISR_STUB_SIZE, 0xcc
.endm

/* Stubs are ISR_STUB_SIZE apart: stub n is at isr_stubs + n * ISR_STUB_SIZE. */
	.globl isr_stubs
	.balign ISR_STUB_SIZE
isr_stubs:

	STUB 0, 0
	STUB 1, 0
	STUB 2, 0
	STUB 3, 0
	STUB 4, 0
	STUB 5, 0
	STUB 6, 0
	STUB 7, 0
	STUB 8, 1
	STUB 9, 0
	STUB 10, 1
	STUB 11, 1
	STUB 12, 1
	STUB 13, 1
	STUB 14, 1
	STUB 15, 0
	STUB 16, 0
	STUB 17, 1
	STUB 18, 0
	STUB 19, 0
	STUB 20, 0
	STUB 21, 1
	STUB 22, 0
	STUB 23, 0
	STUB 24, 0
	STUB 25, 0
	STUB 26, 0
	STUB 27, 0
	STUB 28, 0
	STUB 29, 1
	STUB 30, 1
	STUB 31, 0

/*
 * isr_bp - #BP for emutest.c only (installed on vector 3 while it runs):
 * note the RIP the CPU pushed (a trap: just past the INT3), count, return.
 */
	.globl isr_bp
isr_bp:
	pushq %rax
	movq 8(%rsp), %rax
	movq %rax, emutest_bp_rip(%rip)
	incq emutest_bp_count(%rip)
	popq %rax
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
	andq $-16, %rsp
	call exception_report
1:	cli
	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
