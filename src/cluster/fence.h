/*
 * fence.h - a cluster VMM's self-fencing.  A VM that the cluster may restart
 * elsewhere (restart policy on-failure or always) runs only while the lease
 * of its node's agent lives: once the lease expires, the node is dead to the
 * cluster and other nodes may boot the VM from its disks.  So the VMM asks
 * etcd itself (not through its agent, which may be the part that died) how
 * long the lease has left, every FENCE_PERIOD_S, and ends the VM before the
 * lease can expire when it cannot confirm it: etcd says the lease is gone,
 * or no answer came for so long that it might be.  It asks every TTL/8
 * (between FENCE_PERIOD_MIN_S and FENCE_PERIOD_S): the agent renews every
 * TTL/3, so a TTL read just before a renewal still leaves several questions
 * before the deadline.
 *
 * The deadline after an answer "TTL s left" to a request sent at t is
 * t + TTL - FENCE_MARGIN_S: etcd's TTL is rounded down and counted from the
 * moment it answered, which is after t, so the lease cannot expire before
 * the deadline plus the margin.  A separate watchdog thread ends the VM at
 * the deadline, however long a request hangs.
 */
#ifndef KVMOVE_CLUSTER_FENCE_H
#define KVMOVE_CLUSTER_FENCE_H

#include <stdint.h>

#include "common/err.h"

#define FENCE_PERIOD_S 1.0
#define FENCE_PERIOD_MIN_S 0.25
#define FENCE_MARGIN_S 1.0
#define FENCE_EXIT_STATUS 8	/* kvmove run's exit status when it fenced */

struct fence;

/* Called once, from a fence thread, when the VM must end now (why: for the
 * log).  It should not return (the VMM _exit()s). */
typedef void (*fence_fire_fn)(void *opaque, const char *why);

/* Asks once, synchronously (a lease that is gone already, or etcd
 * unreachable, fails here: the VM does not start), then starts the threads.
 * endpoints: etcd's comma-separated http://HOST:PORT list. */
int fence_start(struct fence **out, const char *endpoints, int64_t lease, fence_fire_fn fire,
		void *opaque, struct kv_err *err);
void fence_stop(struct fence *f);

/* The deadline (CLOCK_MONOTONIC seconds) after a request sent at t_sent was
 * answered with ttl_left seconds. */
double fence_deadline(double t_sent, int ttl_left);

/* Seconds between questions for a lease granted with this TTL (0: unknown). */
double fence_period(int granted_ttl);

/* Parse a lease ID as the agent passes it (decimal or 0x hex); 0 or -EINVAL. */
int fence_lease_parse(const char *s, int64_t *out);

#endif
