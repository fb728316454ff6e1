/*
 * dirty.h - dirty-page tracking for migration.
 *
 * KVM logs writes by vCPUs (KVM_MEM_LOG_DIRTY_PAGES with manual protect:
 * KVM_GET_DIRTY_LOG reads the bits, KVM_CLEAR_DIRTY_LOG clears exactly those
 * and write-protects the pages again, so a write that lands after the read
 * is logged for the next round).  The VMM's own writes are in
 * mem->vmm_dirty.  dirty_sync() ORs both into the caller's bitmap, indexed
 * like mem->vmm_dirty (one bit per page, in memfd-offset order); bits stay
 * there until the caller has sent the page.
 */
#ifndef KVMOVE_CORE_DIRTY_H
#define KVMOVE_CORE_DIRTY_H

#include <stdint.h>

#include "common/err.h"

struct vm;

int dirty_log_start(struct vm *vm, struct kv_err *err);
void dirty_log_stop(struct vm *vm);
/* Merge newly dirtied pages into bitmap; returns how many bits were newly
 * set, or a negative errno. */
int64_t dirty_sync(struct vm *vm, uint64_t *bitmap, struct kv_err *err);

/* How many pages were dirtied since dirty logging started or since the last
 * dirty_sync(), without clearing anything (a sample of the dirty rate). */
int64_t dirty_peek(struct vm *vm, struct kv_err *err);

/* Auto-converge: keep vCPUs out of the guest pct% of the time (0 = off,
 * at most 99).  Each vCPU runs VM_THROTTLE_RUN_NS, then sleeps
 * vm_throttle_sleep_ns(time it ran, pct). */
int vm_set_throttle(struct vm *vm, unsigned pct, struct kv_err *err);
unsigned vm_get_throttle(struct vm *vm);
int64_t vm_throttle_sleep_ns(int64_t ran_ns, unsigned pct);

#endif
