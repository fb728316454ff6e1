/*
 * entry.S - from the PVH entry point to C, for CPU 0 and the APs.
 *
 * PVH starts us in 32-bit protected mode, paging off, EBX = physical
 * address of struct hvm_start_info. We read the TSC first (guest time
 * zero), switch to long mode on the static identity map of the first
 * 4 GiB (below), and call boot_cpu0(), which maps any RAM above 4 GiB
 * and leaves CPL 0 for good. Every instruction here may be emulated (slow
 * on some hosts), so this stays short: no loops but one `rep stosb`.
 */
#include "layout.h"
#include "pvh.h"

#define CR0_PE 0x00000001
#define CR0_WP 0x00010000
#define CR0_NW 0x20000000
#define CR0_CD 0x40000000
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

/* The PVH note: Xen's XEN_ELFNOTE_PHYS32_ENTRY with our 32-bit entry.
 * The descriptor is 8 bytes like Linux's: QEMU reads 8 bytes of it. */
	.section .note.pvh, "a"
	.balign 4
	.long 4				/* namesz: "Xen\0" */
	.long 8				/* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
	.quad pvh_entry
	.balign 4

/*
 * 32-bit -> 64-bit: CR3 = \pml4, PAE, EFER.LME, paging on, far jump.
 * Clears CR0.CD/NW: an AP comes out of INIT with caches disabled.
 */
.macro LONG_MODE pml4, target
	movl $\pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	andl $~(CR0_CD | CR0_NW), %eax
	orl $(CR0_PG | CR0_WP | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_KCODE64, $\target
.endm

.macro LOAD_DATA_SEGMENTS
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
.endm

	.section .text.entry, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	movl %ebx, %esi
	rdtsc				/* guest time zero */
	movl %eax, boot_tsc
	movl %edx, boot_tsc + 4
	movl %esi, boot_start_info
	/*
	 * 1 GiB pages? Then switch pml4 to pdpt_1g, which maps 4-512 GiB with
	 * them. Doing it now, before paging is on, is one plain store; editing
	 * a live page table later costs milliseconds on shadow-paging hosts.
	 */
	movl $0x80000000, %eax
	cpuid
	cmpl $0x80000001, %eax
	jb 2f
	movl $0x80000001, %eax
	cpuid
	btl $26, %edx			/* Page1GB */
	jnc 2f
	movl $(pdpt_1g + 0x7), pml4
	movb $1, paging_1g
2:	lgdt gdt_ptr
	ljmp $SEL_KCODE32, $1f
1:	LOAD_DATA_SEGMENTS
	movl $(kstacks + KSTACK_SIZE), %esp
	/* .bss is small (big areas live in .noinit and are never zeroed);
	 * dwords, since an emulator pays per iteration */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl
	LONG_MODE pml4, entry64

	.code64
entry64:
	LOAD_DATA_SEGMENTS
	movq $(kstacks + KSTACK_SIZE), %rsp
	xorl %ebp, %ebp
	call boot_cpu0			/* never returns */
2:	cli
	hlt
	jmp 2b

/* APs arrive here from the real-mode trampoline, CS = SEL_KCODE32. */
	.code32
	.globl ap_entry32
ap_entry32:
	LOAD_DATA_SEGMENTS
	LONG_MODE pml4, ap_entry64

	.code64
ap_entry64:
	LOAD_DATA_SEGMENTS
	/* hardware slot for stacks/TSS/pvclock, in order of arrival */
	movl $1, %eax
	lock xaddl %eax, ap_next_hw(%rip)
	cmpl ap_hw_limit(%rip), %eax
	jae 3f				/* more APs than cpus=: park them */
	movl %eax, %edi
	movl %eax, %edx
	imulq $KSTACK_SIZE, %rdx
	leaq (kstacks + KSTACK_SIZE)(%rdx), %rsp
	xorl %ebp, %ebp
	call boot_ap			/* never returns */
3:	cli
	hlt
	jmp 3b

/*
 * enter_user(entry, stack_top, arg): iretq to CPL 3 at entry(arg) with
 * IOPL 3 (port I/O allowed) and IF 0. Registers are cleared; r15 is the
 * verifier's register copy of its write counter and must start at 0.
 */
	.globl enter_user
enter_user:
	subq $8, %rsi			/* ABI: rsp+8 16-aligned at entry; */
	movq $0, (%rsi)			/* a zero "return address" */
	pushq $(SEL_UDATA | 3)
	pushq %rsi
	pushq $0x3002			/* IOPL 3, IF 0, reserved bit 1 */
	pushq $(SEL_UCODE64 | 3)
	pushq %rdi
	movq %rdx, %rdi
	xorl %eax, %eax
	xorl %ebx, %ebx
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %esi, %esi
	xorl %ebp, %ebp
	xorl %r8d, %r8d
	xorl %r9d, %r9d
	xorl %r10d, %r10d
	xorl %r11d, %r11d
	xorl %r12d, %r12d
	xorl %r13d, %r13d
	xorl %r14d, %r14d
	xorl %r15d, %r15d
	iretq

	.section .data
	.balign 8
	.globl boot_tsc, boot_start_info
boot_tsc:
	.quad 0
boot_start_info:
	.long 0
	.globl paging_1g
paging_1g:				/* bool: pdpt_1g is in use */
	.byte 0
	.balign 8
	.globl ap_next_hw
ap_next_hw:
	.long 1
	.balign 8
	.word 0, 0, 0
gdt_ptr:				/* 32-bit base; read as 10 bytes in long mode */
	.word GDT_BYTES - 1
	.long gdt
	.long 0

/*
 * Page tables for the first 4 GiB, built by the assembler so they cost no
 * instructions at run time (CPL 0 may be emulated): identity map with
 * 2 MiB pages, present + writable + user (all work happens at CPL 3).
 * paging.c adds the RAM above 4 GiB to pdpt at boot. Both CPU 0 and the
 * APs run on these tables from their first paged instruction.
 */
	.section .data.page_tables, "aw"
	.balign 4096
	.globl pml4, pdpt
pml4:
	.quad pdpt + 0x7		/* or pdpt_1g, see pvh_entry */
	.fill 511, 8, 0
pdpt:					/* 2 MiB pages; paging.c adds RAM above 4 GiB */
	.quad pd_low + 0x7
	.quad pd_low + 0x1000 + 0x7
	.quad pd_low + 0x2000 + 0x7
	.quad pd_low + 0x3000 + 0x7
	.fill 508, 8, 0
pdpt_1g:				/* with 1 GiB pages above 4 GiB: all 512 GiB */
	.quad pd_low + 0x7
	.quad pd_low + 0x1000 + 0x7
	.quad pd_low + 0x2000 + 0x7
	.quad pd_low + 0x3000 + 0x7
	.set g, 4
	.rept 508
	.quad (g << 30) | 0x87		/* present, writable, user, 1 GiB */
	.set g, g + 1
	.endr
pd_low:
	.set i, 0
	.rept 4 * 512
	.quad (i << 21) | 0x87		/* present, writable, user, 2 MiB */
	.set i, i + 1
	.endr

	.section .note.GNU-stack, "", @progbits
