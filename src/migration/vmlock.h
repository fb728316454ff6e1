/*
 * vmlock.h - the arbiter of who runs a VM: an open-file-description lock on
 * a per-VM file on shared storage.  Exactly one process can hold it; the
 * holder may run the guest, nobody else may.  Switchover hands it over:
 * the source releases it before GO, the destination takes it before
 * resuming, and when the channel breaks after GO each side asks the lock.
 */
#ifndef KVMOVE_MIGRATION_VMLOCK_H
#define KVMOVE_MIGRATION_VMLOCK_H

#include <stdbool.h>

#include "common/err.h"

struct vmlock {
	int fd;
	bool held;
	char path[4096];
};

/* Open (creating) the lock file without taking the lock. */
int vmlock_open(struct vmlock *l, const char *path, struct kv_err *err);
/* 0 = we hold it now; -EAGAIN = someone else does. */
int vmlock_acquire(struct vmlock *l, struct kv_err *err);
void vmlock_release(struct vmlock *l);
void vmlock_close(struct vmlock *l);

#endif
