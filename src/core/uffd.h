/*
 * uffd.h - userfaultfd over guest memory, for post-copy: once registered,
 * a touch of a page that is not there (a hole in the memfd) stops the
 * touching thread (a vCPU inside KVM_RUN, a device thread, KVM itself) and
 * reports the address here, until uffd_place() puts the page in atomically
 * (UFFDIO_COPY: nobody ever sees a half-written page) and wakes it.
 */
#ifndef KVMOVE_CORE_UFFD_H
#define KVMOVE_CORE_UFFD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "core/mem.h"

/* Can this host take post-copy (userfaultfd on shared memory)? */
bool uffd_supported(void);

/* Register all of mem's mapping (missing-page mode); returns the fd. */
int uffd_register(struct guest_mem *mem, struct kv_err *err);
/* Unregister and close: threads still waiting retry as normal faults. */
void uffd_unregister(int fd, struct guest_mem *mem);

/* Put one page (data, or zeros if NULL) at memfd page `page`, waking
 * whoever waits for it.  0, or -EEXIST if the page was already there. */
int uffd_place(int fd, struct guest_mem *mem, uint64_t page, const void *data);
/* Wake threads waiting on `page` (it arrived by another way). */
void uffd_wake(int fd, struct guest_mem *mem, uint64_t page);

/* Read pending faults (non-blocking): memfd page indexes into pages[];
 * returns how many (0 = none now), or a negative errno. */
int uffd_read_faults(int fd, struct guest_mem *mem, uint64_t *pages, unsigned max);

#endif
