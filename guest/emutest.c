/*
 * emutest.c - with "emutest=1" on the command line, CPU 0 executes INT3
 * and FWAIT at CPL 0 before it starts its work, with "emutest=2" also
 * POPCNT, so that kvmove's
 * handling of KVM's instruction emulator (src/core/emulate.c,
 * docs/linux-guests.md) is tested end to end in milliseconds:
 *
 *   INT3     #BP must arrive with RIP just past the 0xCC (a trap), and
 *            return: "EMUTEST int3 ok rip=..." (else "EMUTEST int3 BAD").
 *   FWAIT    no x87 exception pending, so nothing happens:
 *            "EMUTEST fwait ok".
 *   POPCNT   where CPL-0 code runs in KVM's emulator (PVM hosts) the
 *            emulator refuses it and kvmove stops the VM with its report;
 *            where the CPU executes it (VMX/SVM), "EMUTEST popcnt ran 8"
 *            and the guest goes on with its work.
 *
 * While the test runs, vector 3 points at isr_bp (isr.S), which counts and
 * returns; afterwards it is the reporting stub again, so a stray INT3 (the
 * stubs are padded with 0xCC) still ends in an EXCEPTION line.
 */
#include "boot.h"
#include "console.h"
#include "lib.h"

volatile uint64_t emutest_bp_rip, emutest_bp_count;
extern char isr_bp[], emutest_after_int3[];

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool starts_with(const char *p, const char *word, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != word[i])	/* stops at p's NUL too */
			return false;
	return true;
}

unsigned emutest_wanted(const char *cmdline)
{
	static const char word[] = "emutest=";
	const size_t n = sizeof(word) - 1;

	for (const char *p = cmdline; p && *p; p++) {
		if ((p == cmdline || is_space(p[-1])) && starts_with(p, word, n) &&
		    (p[n] == '1' || p[n] == '2') && (!p[n + 1] || is_space(p[n + 1])))
			return (unsigned)(p[n] - '0');
	}
	return 0;
}

__attribute__((noinline)) void emutest_run(unsigned level)
{
	uint64_t x = 0xf0f0, n;

	con_line("EMUTEST start");
	idt_set_gate(3, isr_bp);
	__asm__ volatile("int3\n\t"
			 ".globl emutest_after_int3\n"
			 "emutest_after_int3:" ::: "memory");
	idt_set_gate(3, NULL);
	if (emutest_bp_count == 1 && emutest_bp_rip == (uint64_t)(uintptr_t)emutest_after_int3)
		con_line("EMUTEST int3 ok rip=0x%lx", emutest_bp_rip);
	else
		con_line("EMUTEST int3 BAD count=%lu rip=0x%lx expected 0x%lx", emutest_bp_count,
			 emutest_bp_rip, (uint64_t)(uintptr_t)emutest_after_int3);

	__asm__ volatile("fwait" ::: "memory");
	con_line("EMUTEST fwait ok");
	if (level < 2)
		return;

	__asm__ volatile("popcnt %1, %0" : "=r"(n) : "r"(x));
	con_line("EMUTEST popcnt ran %lu", n);
}
