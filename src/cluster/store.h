/*
 * store.h - the cluster store: the few etcd v3 operations the cluster needs
 * (docs/CLUSTER.md has the keys).  One real backend, store_etcd.c, speaks
 * etcd's v3 JSON gateway over HTTP with libcurl (keys and values travel
 * base64-encoded, int64 fields as decimal strings).  Tests run a real etcd.
 *
 * Every call is independent (its own HTTP request), so a store may be used
 * from several threads at once.  Errors: -ECONNREFUSED / -ETIMEDOUT /
 * -EHOSTUNREACH when no endpoint answered in time (etcd down, or no quorum:
 * the caller tells the user which endpoints it tried), -EIO for an answer
 * etcd gave that is an error (message from etcd), -EPROTO for an answer that
 * is not what the gateway documents, -ENOENT where noted.
 */
#ifndef KVMOVE_CLUSTER_STORE_H
#define KVMOVE_CLUSTER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct kv_store;

#define STORE_MAX_ENDPOINTS 16

struct store_options {
	/* comma-separated http://HOST:PORT list (at most STORE_MAX_ENDPOINTS) */
	const char *endpoints;
	unsigned timeout_ms;		/* per request and endpoint; 0 = 3000 */
	unsigned connect_timeout_ms;	/* 0 = 1000 */
};

struct store_kv {
	char *key;		/* NUL-terminated */
	char *value;		/* NUL-terminated copy of the bytes (vlen without the NUL) */
	size_t vlen;
	int64_t create_rev, mod_rev, version, lease;
};

struct store_list {
	struct store_kv *kvs;
	size_t n;
	int64_t rev;		/* the store's revision when it answered */
};

int store_open(struct kv_store **out, const struct store_options *o, struct kv_err *err);
void store_close(struct kv_store *st);
/* the endpoints as given, for messages ("etcd at http://...: ...") */
const char *store_endpoints(const struct kv_store *st);

/* One key.  -ENOENT (message filled) when it does not exist.  rev may be NULL. */
int store_get(struct kv_store *st, const char *key, struct store_kv *out, int64_t *rev,
	      struct kv_err *err);
/* Every key under prefix, sorted by key. */
int store_list(struct kv_store *st, const char *prefix, struct store_list *out,
	       struct kv_err *err);
void store_kv_free(struct store_kv *kv);
void store_list_free(struct store_list *l);

/* lease 0 = none.  rev (may be NULL) = the revision of the write. */
int store_put(struct kv_store *st, const char *key, const char *value, int64_t lease,
	      int64_t *rev, struct kv_err *err);
/* Deleting a key that does not exist is not an error. */
int store_delete(struct kv_store *st, const char *key, struct kv_err *err);
int store_delete_prefix(struct kv_store *st, const char *prefix, struct kv_err *err);

/* Transactions: if every compare holds, the success ops run, else the failure
 * ops (either list may be empty); *ok says which. */
enum store_cmp_target { STORE_CMP_VALUE, STORE_CMP_CREATE, STORE_CMP_MOD, STORE_CMP_VERSION };
enum store_cmp_result { STORE_EQ, STORE_NEQ, STORE_LT, STORE_GT };
struct store_cmp {
	const char *key;
	enum store_cmp_target target;
	enum store_cmp_result result;
	const char *value;	/* STORE_CMP_VALUE */
	int64_t num;		/* revisions / version (create_rev 0 = "does not exist") */
};
enum store_op_type { STORE_OP_PUT, STORE_OP_DELETE };
struct store_op {
	enum store_op_type type;
	const char *key;
	const char *value;	/* PUT */
	int64_t lease;		/* PUT; 0 = none */
};
int store_txn(struct kv_store *st, const struct store_cmp *cmps, size_t ncmp,
	      const struct store_op *then, size_t nthen, const struct store_op *orelse,
	      size_t nelse, bool *ok, int64_t *rev, struct kv_err *err);

/* Leases: ttl in seconds.  keepalive gives -ENOENT once the lease expired. */
int store_lease_grant(struct kv_store *st, int ttl_s, int64_t *id, struct kv_err *err);
int store_lease_keepalive(struct kv_store *st, int64_t id, int *ttl_left, struct kv_err *err);
int store_lease_revoke(struct kv_store *st, int64_t id, struct kv_err *err);
/* Seconds left (rounded down) of a lease, and the TTL it was granted with
 * (granted may be NULL); -ENOENT once it expired. */
int store_lease_ttl(struct kv_store *st, int64_t id, int *ttl_left, int *granted,
		    struct kv_err *err);

/*
 * Wait until some key under prefix changes at or after revision start_rev
 * (a watch on the gateway's streaming /v3/watch).  0 with *event_rev set to
 * the first change's revision; -ETIMEDOUT when nothing changed within
 * timeout_ms; -ECONNREFUSED etc. when no endpoint could be watched.  A
 * compacted start_rev returns 0 at once with *event_rev = the compact
 * revision (the caller re-reads everything anyway).
 */
int store_watch_wait(struct kv_store *st, const char *prefix, int64_t start_rev,
		     unsigned timeout_ms, int64_t *event_rev, struct kv_err *err);

/* The same, but only a change filter() says matters ends the wait (the
 * others are skipped as they stream by): key and value (vlen bytes, "" for a
 * delete) of each changed key, decoded and checked. */
typedef bool (*store_watch_filter)(const char *key, const char *value, size_t vlen,
				   void *opaque);
int store_watch_wait_filtered(struct kv_store *st, const char *prefix, int64_t start_rev,
			      unsigned timeout_ms, store_watch_filter filter, void *opaque,
			      int64_t *event_rev, struct kv_err *err);

/* The cluster's own view for `kvmove cluster status`: a JSON object
 * {"endpoints":[{"endpoint","ok","error"?,"member-id","leader","version",
 * "db-size","raft-index","raft-term"}...], "members":[{"id","name",
 * "peer-urls":[],"client-urls":[]}...], "leader": member name or null,
 * "quorum": bool (a linearizable read succeeded)}.  Never fails for an
 * unreachable member: that is what it reports.  Caller json_decref()s. */
struct json_t;
int store_cluster_status(struct kv_store *st, struct json_t **out, struct kv_err *err);

#endif
