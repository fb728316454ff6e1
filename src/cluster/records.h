/*
 * records.h - the names and JSON records of docs/CLUSTER.md as they come
 * back from etcd.  Every byte there is untrusted (any client with access to
 * etcd can write anything), so names are checked before they become keys,
 * JSON is size-capped and every field is type- and range-checked.
 */
#ifndef KVMOVE_CLUSTER_RECORDS_H
#define KVMOVE_CLUSTER_RECORDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "core/cpumodel.h"

#define CLUSTER_VM_NAME_MAX 32		/* [a-z0-9][a-z0-9-]{0,31} */
#define CLUSTER_NODE_NAME_MAX 63	/* [A-Za-z0-9][A-Za-z0-9._-]{0,62} */
#define CLUSTER_RECORD_MAX (256 * 1024)	/* a larger value is refused */
#define CLUSTER_VM_MEM_MIN (16ULL << 20)
#define CLUSTER_VM_MEM_MAX (1ULL << 40)
#define CLUSTER_VM_CPUS_MAX 64
#define CLUSTER_VM_DISKS_MAX 16
#define CLUSTER_DISK_PATH_MAX 255	/* a VMM's disk path limit */
#define CLUSTER_FILE_PATH_MAX 4095
#define CLUSTER_APPEND_MAX 4095

bool cluster_vm_name_ok(const char *s);
bool cluster_node_name_ok(const char *s);
/* An absolute path of 1..max bytes without control characters. */
bool cluster_path_ok(const char *s, size_t max);

/* Parse an etcd value as a JSON object (what: "/kvmove/vms/x/spec", for the
 * message).  -EPROTO when it is not one or is too large. */
int cluster_json_object(const char *what, const char *text, size_t len, json_t **out,
			struct kv_err *err);

/* Safe accessors on untrusted objects: the default when absent or of
 * another type. */
const char *cluster_jstr(json_t *o, const char *key);		/* "" */
json_int_t cluster_jint(json_t *o, const char *key, json_int_t dflt);
double cluster_jnum(json_t *o, const char *key, double dflt);	/* int or real */
bool cluster_jbool(json_t *o, const char *key, bool dflt);
/* A byte count for display: a number in [0, 2^60], else 0. */
double cluster_jbytes(json_t *o, const char *key);

/* Copy s to dst (len bytes) with every byte that is not printable ASCII
 * replaced by '?': etcd's strings never reach a terminal raw. */
void cluster_sanitize(char *dst, size_t len, const char *s);

/* A VM's restart policy: never (the default: the VMM's end is reported and
 * the owner key released), on-failure (a VMM that crashed or exited non-zero
 * is started again on the same node: a cold boot), always (also after the
 * guest shut down).  At most CLUSTER_RESTART_MAX restarts per
 * CLUSTER_RESTART_WINDOW_S, then it is reported failed. */
enum vm_restart { VM_RESTART_NEVER, VM_RESTART_ON_FAILURE, VM_RESTART_ALWAYS };
#define CLUSTER_RESTART_MAX 3
#define CLUSTER_RESTART_WINDOW_S 600
const char *vm_restart_name(enum vm_restart r);
int vm_restart_parse(const char *s, enum vm_restart *out);	/* 0 or -EINVAL */

/* Failover order: a dead node's VMs are booted elsewhere high first (then
 * by name).  "priority" in the definition; medium when absent. */
enum vm_priority { VM_PRIORITY_LOW, VM_PRIORITY_MEDIUM, VM_PRIORITY_HIGH };
const char *vm_priority_name(enum vm_priority p);
int vm_priority_parse(const char *s, enum vm_priority *out);	/* 0 or -EINVAL */

/* A VM definition (/kvmove/vms/VM/spec), checked.  The strings point into
 * j, which the struct owns. */
struct vm_spec {
	json_t *j;
	uint64_t mem;
	unsigned cpus;
	const char *kernel, *initrd, *append;	/* initrd NULL, append "" when absent */
	size_t ndisks;
	size_t nnets;				/* "nets": [{"bridge", "mac"?}] */
	bool running;				/* desired state */
	enum vm_restart restart;		/* "restart": what its node's agent does
						 * when the VMM ends on its own */
	enum vm_priority priority;		/* "priority": failover order */
	struct cpu_model cpu;			/* "cpu": the model its guest is given
						 * ("host" when absent) */
};

#define CLUSTER_VM_NETS_MAX 4
/* A bridge (network interface) name: 1..15 of [A-Za-z0-9_.-]. */
bool cluster_ifname_ok(const char *s);
/* The "cpu" member of a VM definition (what: the key, for the message):
 * absent or null is "host"; anything else must be a model spec that
 * cpu_model_parse() accepts (-EPROTO naming it otherwise). */
int cluster_vm_cpu(json_t *spec, const char *what, struct cpu_model *m, struct kv_err *err);
int vm_spec_parse(const char *vm, const char *text, size_t len, struct vm_spec *out,
		  struct kv_err *err);
void vm_spec_free(struct vm_spec *s);

/* The cluster-wide migration limit of /kvmove/config (1 when absent or
 * malformed: the caller passes NULL text for an absent key). */
int cluster_config_limit(const char *text, size_t len);

/* A migration ID: mYYYYMMDDhhmmss-XXXXXX (XXXXXX: [a-z0-9]). */
bool cluster_migration_id_ok(const char *s);
/* A new one for now (UTC) with a random suffix. */
int cluster_migration_id_new(char *buf, size_t len, struct kv_err *err);
bool cluster_migration_state_terminal(const char *state);

/* A new migration record in state queued (docs/CLUSTER.md), to be created
 * by the caller's transaction; to may be NULL (placement decides).  NULL
 * when out of memory. */
json_t *cluster_migration_queued(const char *id, const char *vm, const char *from,
				 const char *to, bool quick, const char *reason, double now);

/* A tip ID: tYYYYMMDDhhmmss-XXXXXX (a migration ID with a t). */
bool cluster_tip_id_ok(const char *s);

#define DRAIN_CANCELLED "the drain was cancelled (maintenance off)"
/* A queued migration record (rec, read at kv) cancelled by a drain's end:
 * state cancelled, with why, if it is still what was read (a compare on
 * its revision: the source agent may be starting it).  0 with *ok, or a
 * store error. */
struct kv_store;
struct store_kv;
int cluster_migration_cancel_queued(struct kv_store *st, const struct store_kv *kv, json_t *rec,
				    const char *why, double now, bool *ok, struct kv_err *err);

#endif
