/*
 * arbiter_etcd.h - the cluster's arbiter (migration/arbiter.h): the VM's
 * owner key in etcd, /kvmove/vms/VM/owner.  Its value is the name of the
 * node that may run the VM, or "free:TOKEN" while a hand-over is under way.
 * Every change is a compare-and-swap on the key's modification revision, so
 * of a source taking its VM back and a destination taking it over exactly
 * one wins.  The key is not bound to any lease: ownership outlives agents.
 */
#ifndef KVMOVE_CLUSTER_ARBITER_ETCD_H
#define KVMOVE_CLUSTER_ARBITER_ETCD_H

#include "common/err.h"

struct arbiter;

/* endpoints: comma-separated http://HOST:PORT; vm: the VM's name; node: this
 * host's node name. */
int arbiter_etcd_new(struct arbiter **out, const char *endpoints, const char *vm,
		     const char *node, struct kv_err *err);

/* The owner key of a VM ("/kvmove/vms/NAME/owner") into buf. */
int cluster_owner_key(char *buf, unsigned len, const char *vm);

#endif
