/*
 * smp.h - bringing up application processors from CPL 3 on CPU 0:
 * trampoline copy, INIT-SIPI-SIPI through the xAPIC MMIO page (mapped
 * user-accessible like all memory), bounded wait for check-ins.
 */
#ifndef GUEST_SMP_H
#define GUEST_SMP_H

#include "memmap.h"

/* CPU 0: start APs and wait (<= 2 s guest time). Returns CPUs online (>= 1). */
unsigned smp_start(unsigned want, const struct memmap_info *mi);

/* AP at CPL 3: take a logical CPU number (1..), or -1 if CPU 0 gave up waiting. */
int smp_checkin(void);

#endif
