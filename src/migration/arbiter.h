/*
 * arbiter.h - who may run a VM.  Exactly one process holds a VM's arbiter at
 * a time; the holder may run the guest, nobody else may.  Switchover hands it
 * over: the source releases it before GO, the destination acquires it before
 * it resumes (that acquisition is the migration's commit point), and when
 * the channel breaks after GO each side asks the arbiter.
 *
 * Backends: the lock file on shared storage (vmlock.c: an open-file-
 * description lock) and, in a cluster, a compare-and-swap on the VM's owner
 * key in etcd (cluster/arbiter_etcd.c).  Arbiters chain: a VM in a cluster
 * with a lock file has both, acquired in order (etcd first: the commit) and
 * released in reverse, so the lock file stays a second line of defence.
 *
 * token names one hand-over (the migration id both ends know): a released
 * arbiter can be taken only by a party to that hand-over.  NULL = any (a
 * restore from a file, or a backend without tokens).
 */
#ifndef KVMOVE_MIGRATION_ARBITER_H
#define KVMOVE_MIGRATION_ARBITER_H

#include <limits.h>

#include "common/err.h"

/* wait_ms: how long an arbiter that cannot be reached is retried before the
 * call gives up with -ETIMEDOUT (the outcome then is not known). */
#define ARBITER_WAIT_FOREVER UINT_MAX

struct arbiter;

struct arbiter_ops {
	const char *name;	/* "lock file", "etcd" */
	/* 0 = held by us now (also when it already was); -EAGAIN = held by
	 * someone else (message says who); -ETIMEDOUT = unknown after wait_ms. */
	int (*acquire)(struct arbiter *a, const char *token, unsigned wait_ms,
		       struct kv_err *err);
	/* Let go so that a party to token can take it.  May fail (the store is
	 * unreachable): then the hand-over must not go on. */
	int (*release)(struct arbiter *a, const char *token, struct kv_err *err);
	/* Do we hold it, as far as this process knows? */
	int (*held)(struct arbiter *a);
	void (*destroy)(struct arbiter *a);
};

struct arbiter {
	const struct arbiter_ops *ops;
	void *priv;
	struct arbiter *next;	/* the next line of defence, or NULL */
};

/* Every arbiter of the chain in order; on a failure the ones already taken
 * are released again and the failure returned. */
int arbiter_acquire(struct arbiter *a, const char *token, unsigned wait_ms, struct kv_err *err);
/* In reverse order.  On a failure the ones already released are taken back
 * (best effort) and the failure returned: the caller still holds the VM. */
int arbiter_release(struct arbiter *a, const char *token, struct kv_err *err);
/* Does this process hold every arbiter of the chain? */
int arbiter_held(struct arbiter *a);
/* "etcd + lock file", for messages. */
const char *arbiter_describe(const struct arbiter *a, char *buf, unsigned len);
/* Append b at the end of chain *head (which may be NULL). */
void arbiter_chain(struct arbiter **head, struct arbiter *b);
/* Destroy the whole chain (does not release: the kernel drops file locks
 * with the process, an etcd owner key stays what it is). */
void arbiter_destroy(struct arbiter *a);

/* The lock-file backend (vmlock.c).  For a VM that boots here, take it with
 * arbiter_acquire() afterwards. */
int arbiter_lockfile_new(struct arbiter **out, const char *path, struct kv_err *err);

#endif
