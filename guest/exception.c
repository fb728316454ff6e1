/*
 * exception.c - the one C function the exception stubs call: print an
 * EXCEPTION line and halt this CPU (at CPL 0, cli; hlt). Nothing is
 * recoverable in a test guest; the line is what the tests look for.
 */
#include "console.h"
#include "x86.h"

struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vec, err;
	uint64_t rip, cs, rflags, rsp, ss;	/* pushed by the CPU */
};

__attribute__((noreturn)) void exception_report(const struct exc_frame *f);

__attribute__((noreturn)) void exception_report(const struct exc_frame *f)
{
	con_line_unlocked_after_timeout("EXCEPTION vec=%lu err=0x%lx rip=0x%lx cr2=0x%lx cpl=%lu",
					f->vec, f->err, f->rip, read_cr2(), f->cs & 3);
	halt_forever();
}
