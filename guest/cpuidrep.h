/*
 * cpuidrep.h - cpuid=1: report the CPUID leaves a CPU model decides.
 *
 * The leaves are read at CPL 0, where KVM answers CPUID on every host: on
 * PVM hosts a CPUID at CPL 3 runs on the hardware (no CPUID faulting
 * unless the guest asks for it), so it would show the host, not the model.
 */
#ifndef GUEST_CPUIDREP_H
#define GUEST_CPUIDREP_H

/* CPL 0, CPU 0, before leaving for CPL 3. */
void cpuid_capture(void);
/* CPL 3: "CPUID 0x%08x.%u eax=... ebx=... ecx=... edx=..." lines, then
 * "CPUID done"; a WARN line if CPL 3 sees other feature bits. */
void cpuid_report(void);

#endif
