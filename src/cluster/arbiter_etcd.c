/*
 * arbiter_etcd.c - the VM's owner key in etcd as its arbiter
 * (arbiter_etcd.h).
 *
 *   acquire: the value is our node: held.  It is "free:T" with T our token
 *            (or we have none): CAS it to our node.  Anything else: someone
 *            else owns the VM (-EAGAIN), or nobody (key absent: the cluster
 *            stopped it).  etcd unreachable: asked again every 250 ms until
 *            wait_ms passes (-ETIMEDOUT: the outcome is not known).
 *   release: the value is our node: CAS it to "free:T".  Already "free:T":
 *            done (an earlier answer was lost).  etcd unreachable for 10 s:
 *            -ETIMEDOUT, and the caller must not hand over.
 */
#define _GNU_SOURCE
#include "cluster/arbiter_etcd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/store.h"
#include "migration/arbiter.h"

#define RETRY_MS 250
#define RELEASE_WAIT_MS 10000

struct etcd_arb {
	struct kv_store *st;
	char key[320];
	char vm[64];
	char node[64];
	bool held;
};

int cluster_owner_key(char *buf, unsigned len, const char *vm)
{
	int n = snprintf(buf, len, "/kvmove/vms/%s/owner", vm);
	return n < 0 || (unsigned)n >= len ? -ENAMETOOLONG : 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap(void)
{
	struct timespec ts = { 0, RETRY_MS * 1000000L };
	nanosleep(&ts, NULL);
}

static void free_value(char *buf, size_t len, const char *token)
{
	snprintf(buf, len, "free:%s", token && *token ? token : "any");
}

/* May the holder of token take a key whose value is v? */
static bool takeable(const char *v, const char *token)
{
	if (strncmp(v, "free:", 5))
		return false;
	return !token || !*token || !strcmp(v + 5, token);
}

/* Set the key from the value it had at mod_rev to val: 1 done, 0 it changed
 * meanwhile, <0 unknown. */
static int cas(struct etcd_arb *e, int64_t mod_rev, const char *val, struct kv_err *err)
{
	struct store_cmp c = { .key = e->key, .target = STORE_CMP_MOD, .result = STORE_EQ,
			       .num = mod_rev };
	struct store_op op = { .type = STORE_OP_PUT, .key = e->key, .value = val };
	bool ok = false;
	int r = store_txn(e->st, &c, 1, &op, 1, NULL, 0, &ok, NULL, err);

	return r < 0 ? r : ok;
}

static int ea_acquire(struct arbiter *a, const char *token, unsigned wait_ms,
		      struct kv_err *err)
{
	struct etcd_arb *e = a->priv;
	uint64_t deadline = wait_ms == ARBITER_WAIT_FOREVER ? UINT64_MAX : now_ms() + wait_ms;
	struct kv_err last = { "" };

	for (;;) {
		struct store_kv kv = { 0 };
		int r = store_get(e->st, e->key, &kv, NULL, &last);

		if (r == -ENOENT)
			return kv_errf(err, EAGAIN, "the cluster has no owner for VM %s (it was "
				       "stopped or deleted): not running it", e->vm);
		if (!r) {
			if (!strcmp(kv.value, e->node)) {
				store_kv_free(&kv);
				e->held = true;
				return 0;
			}
			if (!takeable(kv.value, token)) {
				r = kv_errf(err, EAGAIN, "VM %s belongs to %s%s in the cluster", e->vm,
					    strncmp(kv.value, "free:", 5) ? "node " : "another hand-"
					    "over: ", kv.value);
				store_kv_free(&kv);
				return r;
			}
			r = cas(e, kv.mod_rev, e->node, &last);
			store_kv_free(&kv);
			if (r == 1) {
				e->held = true;
				return 0;
			}
			if (r == 0)
				continue;	/* it changed under us: look again */
		}
		/* unreachable, or the CAS's answer was lost: ask again */
		if (now_ms() >= deadline)
			return kv_errf(err, ETIMEDOUT, "the cluster store did not answer whether "
				       "this node owns VM %s (%s)", e->vm, last.msg);
		nap();
	}
}

static int ea_release(struct arbiter *a, const char *token, struct kv_err *err)
{
	struct etcd_arb *e = a->priv;
	uint64_t deadline = now_ms() + RELEASE_WAIT_MS;
	struct kv_err last = { "" };
	char freev[128];

	free_value(freev, sizeof(freev), token);
	for (;;) {
		struct store_kv kv = { 0 };
		int r = store_get(e->st, e->key, &kv, NULL, &last);

		if (!r) {
			if (!strcmp(kv.value, freev)) {
				store_kv_free(&kv);
				e->held = false;
				return 0;
			}
			if (strcmp(kv.value, e->node)) {
				r = kv_errf(err, EPERM, "VM %s is not this node's in the cluster (its "
					    "owner is %s)", e->vm, kv.value);
				store_kv_free(&kv);
				e->held = false;
				return r;
			}
			r = cas(e, kv.mod_rev, freev, &last);
			store_kv_free(&kv);
			if (r == 1) {
				e->held = false;
				return 0;
			}
			if (r == 0)
				continue;
		} else if (r == -ENOENT) {
			e->held = false;
			return kv_errf(err, EPERM, "the cluster has no owner for VM %s", e->vm);
		}
		if (now_ms() >= deadline)
			return kv_errf(err, ETIMEDOUT, "could not hand VM %s over in the cluster "
				       "store (%s)", e->vm, last.msg);
		nap();
	}
}

static int ea_held(struct arbiter *a)
{
	return ((struct etcd_arb *)a->priv)->held;
}

static void ea_destroy(struct arbiter *a)
{
	struct etcd_arb *e = a->priv;

	store_close(e->st);
	free(e);
	free(a);
}

static const struct arbiter_ops etcd_ops = {
	.name = "etcd owner key",
	.acquire = ea_acquire,
	.release = ea_release,
	.held = ea_held,
	.destroy = ea_destroy,
};

int arbiter_etcd_new(struct arbiter **out, const char *endpoints, const char *vm,
		     const char *node, struct kv_err *err)
{
	struct store_options o = { .endpoints = endpoints };
	struct arbiter *a;
	struct etcd_arb *e;
	int r;

	if (!node || !*node || strlen(node) >= sizeof(e->node) || strchr(node, '/') ||
	    !strncmp(node, "free:", 5))
		return kv_errf(err, EINVAL, "a cluster VM needs this host's node name (--node)");
	if (strlen(vm) >= sizeof(e->vm))
		return kv_errf(err, ENAMETOOLONG, "VM name too long");
	a = calloc(1, sizeof(*a));
	e = calloc(1, sizeof(*e));
	if (!a || !e) {
		free(a);
		free(e);
		return kv_errf(err, ENOMEM, "arbiter");
	}
	snprintf(e->vm, sizeof(e->vm), "%s", vm);
	snprintf(e->node, sizeof(e->node), "%s", node);
	cluster_owner_key(e->key, sizeof(e->key), vm);
	r = store_open(&e->st, &o, err);
	if (r) {
		free(a);
		free(e);
		return kv_err_prefix(err, r, "--etcd");
	}
	a->ops = &etcd_ops;
	a->priv = e;
	*out = a;
	return 0;
}
