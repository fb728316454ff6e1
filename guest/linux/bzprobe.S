/*
 * bzprobe.S - a tiny file in the bzImage format whose "kernel" reports, on
 * the serial port, the state the 64-bit boot protocol promises it
 * (Documentation/arch/x86/boot.rst), then ends the VM through the debug-exit
 * port (0xf4).  It tests a VMM's bzImage loader in milliseconds where a real
 * kernel's decompressor runs for minutes (KVM's emulator on PVM hosts).
 *
 * Build (tests/integration/test_linux_bzimage.py does this):
 *   gcc -c -o bzprobe.o bzprobe.S
 *   objcopy -O binary -j .text bzprobe.o bzprobe.bzImage
 *
 * File layout: sector 0 holds the setup header at 0x1f1; one setup sector
 * (setup_sects = 1) follows; the protected-mode kernel starts at file offset
 * 0x400 and is loaded at 1 MiB; its 64-bit entry is at +0x200.
 *
 * Output lines (all begin with "BZPROBE "):
 *   entry cs=... ds=... ss=... if=... cr0=... cr4=... efer=... rsi=... rip=...
 *   loader=... version=... cmdline_ptr=...
 *   cmdline=<the command line>
 *   ramdisk=<addr> size=<bytes> sum=<32-bit sum of its bytes>
 *   e820 entries=<n>
 *   e820 <addr> <size> <type>                  (n lines)
 *   mp=<the 4 bytes at 0xf0000>
 *   done
 * Values are hexadecimal, 16 digits.  Exit code 0x21 on success.
 */
	.set	LOAD, 0x100000
	.set	PM_OFF, 0x400
	.set	COM1, 0x3f8
	.set	EXIT_PORT, 0xf4

	.text
	.globl	_start
_start:
	.org	0x1f1
	.byte	1			/* setup_sects */
	.word	0			/* root_flags */
	.long	(end - pm_start + 15) / 16	/* syssize */
	.word	0			/* ram_size */
	.word	0xffff			/* vid_mode */
	.word	0			/* root_dev */
	.word	0xaa55			/* boot_flag */
	.byte	0xeb, 0x6a		/* jump over the header: it ends at 0x26c */
	.ascii	"HdrS"
	.word	0x020f			/* protocol 2.15 */
	.long	0			/* realmode_swtch */
	.word	0			/* start_sys_seg */
	.word	0			/* kernel_version */
	.byte	0			/* type_of_loader (the loader fills it) */
	.byte	0x01			/* loadflags: LOADED_HIGH */
	.word	0			/* setup_move_size */
	.long	LOAD			/* code32_start */
	.long	0			/* ramdisk_image */
	.long	0			/* ramdisk_size */
	.long	0			/* bootsect_kludge */
	.word	0			/* heap_end_ptr */
	.byte	0, 0			/* ext_loader_ver, ext_loader_type */
	.long	0			/* cmd_line_ptr */
	.long	0x7fffffff		/* initrd_addr_max */
	.long	0x200000		/* kernel_alignment */
	.byte	0			/* relocatable_kernel */
	.byte	0			/* min_alignment */
	.word	0x0001			/* xloadflags: XLF_KERNEL_64 */
	.long	2047			/* cmdline_size */
	.long	0			/* hardware_subarch */
	.quad	0			/* hardware_subarch_data */
	.long	0			/* payload_offset */
	.long	0			/* payload_length */
	.quad	0			/* setup_data */
	.quad	LOAD			/* pref_address */
	.long	0x100000		/* init_size */
	.long	0			/* handover_offset */
	.long	0			/* kernel_info_offset */
	.org	0x26c			/* where the jump says the header ends */

	.org	PM_OFF
pm_start:
	.code32
	hlt				/* no 32-bit entry */
	jmp	pm_start

	.org	PM_OFF + 0x200
	.code64
entry64:
	cli
	mov	%rsi, %rbx		/* boot_params */
	lea	stack_top(%rip), %rsp

	lea	s_entry(%rip), %rsi
	call	puts
	mov	%cs, %eax
	call	hex
	lea	s_ds(%rip), %rsi
	call	puts
	mov	%ds, %eax
	call	hex
	lea	s_ss(%rip), %rsi
	call	puts
	mov	%ss, %eax
	call	hex
	lea	s_if(%rip), %rsi
	call	puts
	pushfq
	pop	%rax
	shr	$9, %rax
	and	$1, %eax
	call	hex
	lea	s_cr0(%rip), %rsi
	call	puts
	mov	%cr0, %rax
	call	hex
	lea	s_cr4(%rip), %rsi
	call	puts
	mov	%cr4, %rax
	call	hex
	lea	s_efer(%rip), %rsi
	call	puts
	mov	$0xc0000080, %ecx
	rdmsr
	shl	$32, %rdx
	or	%rdx, %rax
	call	hex
	lea	s_rsi(%rip), %rsi
	call	puts
	mov	%rbx, %rax
	call	hex
	lea	s_rip(%rip), %rsi
	call	puts
	lea	entry64(%rip), %rax
	call	hex
	call	nl

	lea	s_loader(%rip), %rsi
	call	puts
	movzbl	0x210(%rbx), %eax
	call	hex
	lea	s_version(%rip), %rsi
	call	puts
	movzwl	0x206(%rbx), %eax
	call	hex
	lea	s_cmdptr(%rip), %rsi
	call	puts
	mov	0x228(%rbx), %eax
	call	hex
	call	nl

	lea	s_cmdline(%rip), %rsi
	call	puts
	mov	0x228(%rbx), %esi
	call	puts
	call	nl

	lea	s_ramdisk(%rip), %rsi
	call	puts
	mov	0x218(%rbx), %eax
	call	hex
	lea	s_size(%rip), %rsi
	call	puts
	mov	0x21c(%rbx), %eax
	call	hex
	lea	s_sum(%rip), %rsi
	call	puts
	mov	0x218(%rbx), %esi	/* sum the initrd's bytes */
	mov	0x21c(%rbx), %ecx
	xor	%eax, %eax
	xor	%edx, %edx
1:	test	%ecx, %ecx
	jz	2f
	movzbl	(%rsi), %edx
	add	%edx, %eax
	inc	%rsi
	dec	%ecx
	jmp	1b
2:	call	hex
	call	nl

	lea	s_e820(%rip), %rsi
	call	puts
	movzbl	0x1e8(%rbx), %eax
	mov	%eax, %r12d
	call	hex
	call	nl
	lea	0x2d0(%rbx), %r13
3:	test	%r12d, %r12d
	jz	4f
	lea	s_e820e(%rip), %rsi
	call	puts
	mov	(%r13), %rax
	call	hex
	call	sp
	mov	8(%r13), %rax
	call	hex
	call	sp
	mov	16(%r13), %eax
	call	hex
	call	nl
	add	$20, %r13
	dec	%r12d
	jmp	3b

4:	lea	s_mp(%rip), %rsi
	call	puts
	mov	$0xf0000, %esi
	mov	$4, %ecx
5:	lodsb
	call	putc
	loop	5b
	call	nl

	lea	s_done(%rip), %rsi
	call	puts
	call	nl
	mov	$0x21, %al
	out	%al, $EXIT_PORT
6:	hlt
	jmp	6b

/* putc: %al to COM1 */
putc:
	push	%rdx
	mov	$COM1, %dx
	out	%al, %dx
	pop	%rdx
	ret

/* puts: the NUL-terminated string at %rsi */
puts:
	push	%rax
1:	lodsb
	test	%al, %al
	jz	2f
	call	putc
	jmp	1b
2:	pop	%rax
	ret

nl:	push	%rax
	mov	$'\n', %al
	call	putc
	pop	%rax
	ret

sp:	push	%rax
	mov	$' ', %al
	call	putc
	pop	%rax
	ret

/* hex: %rax as 16 hex digits */
hex:
	push	%rcx
	push	%rdx
	mov	%rax, %rdx
	mov	$16, %ecx
1:	rol	$4, %rdx
	mov	%edx, %eax
	and	$0xf, %eax
	add	$'0', %al
	cmp	$'9', %al
	jbe	2f
	add	$('a' - '9' - 1), %al
2:	call	putc
	dec	%ecx
	jnz	1b
	pop	%rdx
	pop	%rcx
	ret

s_entry:	.asciz	"BZPROBE entry cs="
s_ds:		.asciz	" ds="
s_ss:		.asciz	" ss="
s_if:		.asciz	" if="
s_cr0:		.asciz	" cr0="
s_cr4:		.asciz	" cr4="
s_efer:		.asciz	" efer="
s_rsi:		.asciz	" rsi="
s_rip:		.asciz	" rip="
s_loader:	.asciz	"BZPROBE loader="
s_version:	.asciz	" version="
s_cmdptr:	.asciz	" cmdline_ptr="
s_cmdline:	.asciz	"BZPROBE cmdline="
s_ramdisk:	.asciz	"BZPROBE ramdisk="
s_size:		.asciz	" size="
s_sum:		.asciz	" sum="
s_e820:		.asciz	"BZPROBE e820 entries="
s_e820e:	.asciz	"BZPROBE e820 "
s_mp:		.asciz	"BZPROBE mp="
s_done:		.asciz	"BZPROBE done"

	.balign	16
stack:	.fill	1024, 1, 0
stack_top:
end:
