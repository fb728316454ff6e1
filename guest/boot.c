/*
 * boot.c - CPL 0 setup for CPU 0 and the APs: kvmclock registration,
 * GDT/TSS/IDT, then iretq to CPL 3 for good. (The page tables are
 * prebuilt in the image; see paging.c.)
 */
#include "boot.h"

#include "clock.h"
#include "cpuidrep.h"
#include "lib.h"
#include "x86.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_X2APIC (1ULL << 10)

uint8_t kstacks[MAX_CPUS][KSTACK_SIZE] __attribute__((section(".noinit"), aligned(16)));
uint8_t ustacks[MAX_CPUS][USTACK_SIZE] __attribute__((section(".noinit"), aligned(16)));
static uint8_t istacks[MAX_CPUS][ISTACK_SIZE] __attribute__((section(".noinit"), aligned(16)));

/*
 * 64-bit TSS with an I/O permission bitmap. IOPL 3 alone lets CPL 3 use
 * ports on VMX/SVM, but PVM (guest CPL 3 on host ring 3) drops IOPL after
 * the first exit and its emulator then consults this bitmap. Clear bits
 * allow: ports 0-0x3ff (UART, PIT, port 0x61, debug exit) and the PCI
 * configuration ports 0xcf8-0xcff are allowed; 0x400-0xcf7 are denied by
 * set bits, and everything above 0xcff lies past the TSS limit.
 */
#define IO_PORTS_LOW 0x400		/* 0 .. 0x3ff allowed */
#define IO_PORTS_MAPPED 0xd00		/* the bitmap covers 0 .. 0xcff */
#define IO_PCI_CONFIG 0xcf8		/* 0xcf8 .. 0xcff allowed: one byte */
struct __attribute__((packed)) tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
	uint8_t iomap[IO_PORTS_MAPPED / 8];
	uint8_t iomap_end;	/* all ones, as the architecture requires */
};
_Static_assert(__builtin_offsetof(struct tss, iomap) == 104, "TSS layout");

static struct tss tss[MAX_CPUS] __attribute__((section(".noinit"), aligned(16)));

/*
 * Flat segments. 0x18 (32-bit code) serves the PVH entry and the AP
 * trampoline; TSS descriptors are filled in per CPU at run time.
 */
uint64_t gdt[GDT_SLOTS] __attribute__((aligned(16))) = {
	[0] = 0,
	[SEL_KCODE64 / 8] = 0x00af9b000000ffffULL,	/* DPL 0, L=1 */
	[SEL_KDATA / 8] = 0x00cf93000000ffffULL,
	[SEL_KCODE32 / 8] = 0x00cf9b000000ffffULL,
	[SEL_UDATA / 8] = 0x00cff3000000ffffULL,	/* DPL 3 */
	[SEL_UCODE64 / 8] = 0x00affb000000ffffULL,	/* DPL 3, L=1 */
};

static uint64_t idt[32 * 2] __attribute__((aligned(16)));	/* exceptions only */
extern char isr_stubs[];

uint32_t ap_hw_limit;
uint64_t lapic_phys;
bool lapic_x2apic;

void idt_set_gate(unsigned v, void *handler)
{
	uint64_t a = handler ? (uint64_t)(uintptr_t)handler :
			       (uint64_t)(uintptr_t)isr_stubs + v * ISR_STUB_SIZE;
	/* NMI, double fault, machine check get a known-good stack (IST1) */
	uint64_t ist = (v == 2 || v == 8 || v == 18) ? 1 : 0;

	if (v >= 32)
		return;
	idt[2 * v] = (a & 0xffff) | (uint64_t)SEL_KCODE64 << 16 | ist << 32 |
		     0x8eULL << 40 |		/* present, DPL 0, interrupt gate */
		     ((a >> 16) & 0xffff) << 48;
	idt[2 * v + 1] = a >> 32;
}

static void idt_init(void)
{
	for (unsigned v = 0; v < 32; v++)
		idt_set_gate(v, NULL);
}

/* This CPU's TSS (stacks for CPL 3 -> 0 transitions), GDT slot, IDT. */
static void cpu_tables_load(unsigned hw)
{
	struct tss *t = &tss[hw];
	uint64_t base = (uint64_t)(uintptr_t)t, limit = sizeof(*t) - 1;
	unsigned slot = GDT_FIXED + 2 * hw;
	struct dtr idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

	memset(t, 0, sizeof(*t));
	t->rsp[0] = (uint64_t)(uintptr_t)kstacks[hw] + KSTACK_SIZE;
	t->ist[0] = (uint64_t)(uintptr_t)istacks[hw] + ISTACK_SIZE;
	t->iomap_base = __builtin_offsetof(struct tss, iomap);
	/* one rep stosb each (cheap where CPL 0 is emulated) */
	memset(&t->iomap[IO_PORTS_LOW / 8], 0xff, (IO_PCI_CONFIG - IO_PORTS_LOW) / 8);
	t->iomap_end = 0xff;
	gdt[slot] = (limit & 0xffff) | (base & 0xffffff) << 16 |
		    0x89ULL << 40 |			/* present, available 64-bit TSS */
		    ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[slot + 1] = base >> 32;
	ltr((uint16_t)(SEL_TSS0 + 16 * hw));
	lidt(&idtr);
}

static uint64_t ustack_top(unsigned hw)
{
	return (uint64_t)(uintptr_t)ustacks[hw] + USTACK_SIZE;
}

void boot_cpu0(void)
{
	uint64_t apic;

	/* kvmclock first: it is what CPL 3 will measure this setup with */
	clock_cpl0_detect();
	clock_cpl0_enable(0);
	cpuid_capture();	/* what KVM says, for cpuid=1 */
	idt_init();
	cpu_tables_load(0);
	if (boot_start_info) {
		const struct hvm_start_info *si =
			(const struct hvm_start_info *)(uintptr_t)boot_start_info;

		unsigned level = si->magic == HVM_START_MAGIC && si->cmdline_paddr ?
			emutest_wanted((const char *)(uintptr_t)si->cmdline_paddr) : 0;

		if (level)
			emutest_run(level);
	}
	apic = rdmsr(MSR_APIC_BASE);
	lapic_phys = apic & 0x000ffffffffff000ULL;
	lapic_x2apic = (apic & APIC_BASE_X2APIC) != 0;
	enter_user(cpu0_main, ustack_top(0), 0);
}

void boot_ap(unsigned hw)
{
	cpu_tables_load(hw);
	clock_cpl0_enable(hw);
	enter_user(ap_main, ustack_top(hw), hw);
}
