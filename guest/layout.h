/*
 * layout.h - constants shared by the guest's assembly and C: segment
 * selectors, per-CPU limits and stack sizes, the AP trampoline address.
 * Plain #defines only, so entry.S and trampoline.S can include it.
 */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define MAX_CPUS 64

/* GDT: fixed descriptors, then one 16-byte TSS descriptor per CPU. */
#define SEL_KCODE64 0x08
#define SEL_KDATA   0x10
#define SEL_KCODE32 0x18
#define SEL_UDATA   0x20	/* used with RPL 3: 0x23 */
#define SEL_UCODE64 0x28	/* used with RPL 3: 0x2b */
#define SEL_TSS0    0x30
#define GDT_FIXED   6				/* 8-byte slots before the TSSs */
#define GDT_SLOTS   (GDT_FIXED + 2 * MAX_CPUS)
#define GDT_BYTES   (GDT_SLOTS * 8)

/* Per-CPU stacks (in .noinit, never zeroed). */
#define KSTACK_SIZE 8192	/* CPL 0: setup code and exception handlers */
#define ISTACK_SIZE 4096	/* IST1: double fault, NMI, machine check */
#define USTACK_SIZE 32768	/* CPL 3: all the real work */

/*
 * AP real-mode trampoline: one page below 1 MiB. kvmove puts the start
 * info, memory map and command line at 0x6000-0x7fff and QEMU's PVH
 * option ROM uses low memory too, so stay clear of both.
 */
#define TRAMPOLINE_PA 0x9000

/* Page tables: 2 MiB pages need one page directory per GiB mapped. */
#define MAX_PD_PAGES 72		/* 2 MiB pages: map at most 72 GiB */
#define MAX_1G_TOP   512	/* 1 GiB pages: one PDPT, at most 512 GiB */

/* Exception stubs in isr.S are this far apart. */
#define ISR_STUB_SIZE 16

#endif
