/*
 * agent_drain.c - maintenance mode: this node's agent moves every VM it
 * runs away (docs/CLUSTER.md, "Maintenance").
 *
 * `kvmove node maintenance NODE on` sets the node's nodecfg in maintenance
 * and writes /kvmove/drains/NODE in state "draining".  Each pass the agent
 * of NODE works the drain out again from the snapshot (level-triggered, so
 * a restarted agent goes on where the last one stopped):
 *
 *   - a VM it runs with no migration queued or running gets one, queued in
 *     its own queue and marked with the drain's id; the queue and the slots
 *     (migration-limit on every node) pace them, so a drain is never a storm;
 *   - a VM whose drain migrations were refused (no node fits) or failed
 *     twice stays here and is "stuck", with the last reason; with
 *     quick-fallback, a VM whose live migrations failed twice gets one quick
 *     migration first;
 *   - the drain ends "drained" when no VM is left, "drain-incomplete" when
 *     every VM left is stuck.  Nothing is queued once the drain is not
 *     "draining" (`off` cancels it), so nothing reappears later.
 *
 * The record's progress (moved, remaining, stuck, the VM in flight and its
 * migration's progress, an ETA from the moves' measured throughput) is
 * rewritten only when it changed, with a compare on its revision so that an
 * operator's `off` always wins.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/agent_int.h"
#include "cluster/records.h"

#define DRAIN_LIVE_TRIES 2	/* failed live migrations before a VM is stuck */
#define DRAIN_MAX_VMS 512

/*
 * The migration records whose value mentions needle (a VM's name, a
 * drain's id: a cheap filter before parsing), one per call from *i on:
 * the parsed object (the caller's), or NULL at the end.  *kv: its key.
 */
static json_t *next_rec(const struct snap *s, size_t *i, size_t e, const char *needle,
			const struct store_kv **kv)
{
	for (; *i < e; ++*i) {
		const struct store_kv *k = &s->l.kvs[*i];
		json_t *rec;

		if (!memmem(k->value, k->vlen, needle, strlen(needle)))
			continue;
		rec = json_loadb(k->value, k->vlen, 0, NULL);
		if (!json_is_object(rec)) {
			json_decref(rec);
			continue;
		}
		++*i;
		if (kv)
			*kv = k;
		return rec;
	}
	return NULL;
}

/* What the migrations of one VM say (failures: the drain's only). */
struct vm_tally {
	unsigned live_failed, quick_failed;
	bool refused, in_flight;
};

static void tally(const struct snap *s, const char *drain_id, const char *vm,
		  struct vm_tally *t)
{
	size_t i, e;
	json_t *rec;

	memset(t, 0, sizeof(*t));
	snap_range(s, "/kvmove/migrations/", &i, &e);
	while ((rec = next_rec(s, &i, e, vm, NULL))) {
		const char *state = cluster_jstr(rec, "state");

		if (strcmp(cluster_jstr(rec, "vm"), vm)) {
			/* another VM whose record mentions this name */
		} else if (!strcmp(state, "queued") || !strcmp(state, "running")) {
			t->in_flight = true;	/* whoever asked for it */
		} else if (!strcmp(cluster_jstr(rec, "drain"), drain_id) &&
			   !strcmp(state, "failed")) {
			if (cluster_jbool(rec, "refused", false))
				t->refused = true;
			else if (cluster_jbool(rec, "quick", false))
				t->quick_failed++;
			else
				t->live_failed++;
		}
		json_decref(rec);
	}
}

/* The last failure's reason, sanitized, into buf. */
static void last_reason(const struct snap *s, const char *drain_id, const char *vm,
			char *buf, size_t len)
{
	size_t i, e;
	double best = -1;
	json_t *rec;

	snprintf(buf, len, "its migrations failed");
	snap_range(s, "/kvmove/migrations/", &i, &e);
	while ((rec = next_rec(s, &i, e, drain_id, NULL))) {
		if (!strcmp(cluster_jstr(rec, "vm"), vm) &&
		    !strcmp(cluster_jstr(rec, "drain"), drain_id) &&
		    !strcmp(cluster_jstr(rec, "state"), "failed") &&
		    cluster_jnum(rec, "finished", 0) > best) {
			best = cluster_jnum(rec, "finished", 0);
			cluster_sanitize(buf, len, cluster_jstr(rec, "reason"));
		}
		json_decref(rec);
	}
}

/* Queue a migration of vm from here for the drain (only if the VM still
 * runs here: a compare on its owner key). */
static void enqueue(struct agent *a, const struct snap *s, json_t *drain, const char *vm,
		    bool quick)
{
	const struct store_kv *owner = snap_get(s, "/kvmove/vms/%s/owner", vm);
	char id[MIG_ID_LEN], key[KEY_MAX_LEN], okey[KEY_MAX_LEN];
	struct kv_err err;
	json_t *rec;
	char *text;
	bool ok = false;
	int r;

	if (!owner || cluster_migration_id_new(id, sizeof(id), &err))
		return;
	rec = cluster_migration_queued(id, vm, a->o.name, NULL, quick,
				       "queued by the drain of this node", agent_wall());
	if (rec)
		json_object_set_new(rec, "drain", json_string(cluster_jstr(drain, "id")));
	text = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))
		   : NULL;
	snprintf(key, sizeof(key), "/kvmove/migrations/%s", id);
	snprintf(okey, sizeof(okey), "/kvmove/vms/%s/owner", vm);
	if (text) {
		const struct store_cmp c[2] = {
			{ .key = key, .target = STORE_CMP_CREATE, .result = STORE_EQ },
			{ .key = okey, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = owner->mod_rev },
		};
		const struct store_op put = { .type = STORE_OP_PUT, .key = key, .value = text };

		r = store_txn(a->st, c, 2, &put, 1, NULL, 0, &ok, NULL, &err);
		if (r)
			agent_log(a, "drain: queueing %s: %s", vm, err.msg);
		else if (ok)
			agent_log(a, "drain: %s queued (%s%s)", vm, id, quick ? ", quick" : "");
	}
	free(text);
	json_decref(rec);
}

/* The drain's moves so far: bytes per second over their total time. */
static double drain_rate(const struct snap *s, const char *drain_id)
{
	size_t i, e;
	double bytes = 0, secs = 0;
	json_t *rec;

	snap_range(s, "/kvmove/migrations/", &i, &e);
	while ((rec = next_rec(s, &i, e, drain_id, NULL))) {
		json_t *st = json_object_get(rec, "stats");

		if (!strcmp(cluster_jstr(rec, "drain"), drain_id) &&
		    !strcmp(cluster_jstr(rec, "state"), "completed") && json_is_object(st)) {
			bytes += cluster_jbytes(st, "transferred");
			secs += cluster_jnum(st, "total-time-ms", 0) / 1e3;
		}
		json_decref(rec);
	}
	return secs > 0 ? bytes / secs : 0;
}

/* Put the drain record (a compare on the revision we read: an operator's
 * change wins, and we look again next pass). */
static void put_drain(struct agent *a, const struct store_kv *dkv, json_t *drain)
{
	char key[KEY_MAX_LEN];
	char *text = json_dumps(drain, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
	struct store_cmp c = { .key = key, .target = STORE_CMP_MOD, .result = STORE_EQ,
			       .num = dkv->mod_rev };
	struct store_op put = { .type = STORE_OP_PUT, .key = key, .value = text };
	struct kv_err err;
	bool ok = false;

	snprintf(key, sizeof(key), "/kvmove/drains/%s", a->o.name);
	if (text && store_txn(a->st, &c, 1, &put, 1, NULL, 0, &ok, NULL, &err))
		agent_log(a, "drain record: %s", err.msg);
	else if (text && ok && strcmp(cluster_jstr(drain, "state"), "draining"))
		agent_log(a, "drain %s: %s (%lld moved, %lld left)", cluster_jstr(drain, "id"),
			  cluster_jstr(drain, "state"), (long long)cluster_jint(drain, "moved", 0),
			  (long long)cluster_jint(drain, "remaining", 0));
	free(text);
}

/* A drain that ended by cancel: the migrations it queued from here that
 * have not started never will (the operator's CLI drops them too; this
 * covers a CLI that died half-way, or nodecfg set by hand). */
static void drop_cancelled(struct agent *a, const struct snap *s, const char *drain_id)
{
	const struct store_kv *kv;
	size_t i, e;
	json_t *rec;

	snap_range(s, "/kvmove/migrations/", &i, &e);
	while ((rec = next_rec(s, &i, e, drain_id, &kv))) {
		if (!strcmp(cluster_jstr(rec, "drain"), drain_id) &&
		    !strcmp(cluster_jstr(rec, "from"), a->o.name) &&
		    !strcmp(cluster_jstr(rec, "state"), "queued")) {
			bool ok;
			(void)cluster_migration_cancel_queued(a->st, kv, rec, DRAIN_CANCELLED,
							      agent_wall(), &ok, NULL);
		}
		json_decref(rec);
	}
}

void drain_reconcile(struct agent *a, const struct snap *s)
{
	const struct store_kv *dkv = snap_get(s, "/kvmove/drains/%s", a->o.name);
	json_t *drain = NULL, *cfg = NULL, *vms = NULL, *stuck = NULL, *flight = NULL, *old;
	const char *id, *state;
	char why[512];
	unsigned moved = 0, remaining = 0;
	uint64_t mem_left = 0;
	double rate, eta = -1;
	bool quick_fb, changed;
	size_t b, e;

	if (!dkv || cluster_json_object("drain", dkv->value, dkv->vlen, &drain, NULL))
		return;
	id = cluster_jstr(drain, "id");
	state = cluster_jstr(drain, "state");
	cfg = snap_json(s, "/kvmove/nodecfg/%s", a->o.name);
	if (!cluster_migration_id_ok(id))
		goto out;
	/* a drain only runs while the node is in maintenance */
	if (!strcmp(state, "draining") && !cluster_jbool(cfg, "maintenance", false)) {
		json_object_set_new(drain, "state", json_string("cancelled"));
		json_object_set_new(drain, "finished", json_real(agent_wall()));
		put_drain(a, dkv, drain);
		goto out;
	}
	if (!strcmp(state, "cancelled"))
		drop_cancelled(a, s, id);
	if (strcmp(state, "draining"))
		goto out;
	quick_fb = cluster_jbool(drain, "quick-fallback", false);
	vms = json_object();
	stuck = json_object();
	/* every VM this node runs */
	snap_range(s, "/kvmove/vms/", &b, &e);
	for (size_t i = b; i < e && json_object_size(vms) < DRAIN_MAX_VMS; i++) {
		const struct store_kv *kv = &s->l.kvs[i];
		const char *name = kv->key + strlen("/kvmove/vms/");
		const char *slash = strchr(name, '/');
		char vm[NAME_MAX_LEN];
		struct vm_tally t;
		json_t *spec;

		if (!slash || strcmp(slash, "/owner") || (size_t)(slash - name) >= sizeof(vm) ||
		    strcmp(kv->value, a->o.name))
			continue;
		memcpy(vm, name, (size_t)(slash - name));
		vm[slash - name] = '\0';
		if (!cluster_vm_name_ok(vm))
			continue;
		remaining++;
		spec = snap_json(s, "/kvmove/vms/%s/spec", vm);
		mem_left += (uint64_t)cluster_jint(spec, "mem", 0);
		json_decref(spec);
		tally(s, id, vm, &t);
		if (t.in_flight) {
			json_object_set_new(vms, vm, json_string("moving"));
			continue;
		}
		if (t.refused || t.quick_failed ||
		    (t.live_failed >= DRAIN_LIVE_TRIES && !quick_fb)) {
			last_reason(s, id, vm, why, sizeof(why));
			json_object_set_new(vms, vm, json_string("stuck"));
			json_object_set_new(stuck, vm, json_string(why));
			continue;
		}
		json_object_set_new(vms, vm, json_string("queued"));
		enqueue(a, s, drain, vm, t.live_failed >= DRAIN_LIVE_TRIES);
	}
	/* moved: the drain's completed migrations (of VMs no longer here) */
	{
		size_t i;
		json_t *rec;

		snap_range(s, "/kvmove/migrations/", &i, &e);
		while ((rec = next_rec(s, &i, e, id, NULL))) {
			const char *st = cluster_jstr(rec, "state"), *vm = cluster_jstr(rec, "vm");
			bool live = !strcmp(st, "running") || !strcmp(st, "queued");

			if (strcmp(cluster_jstr(rec, "drain"), id)) {
				json_decref(rec);
				continue;
			}
			if (!strcmp(st, "completed") && !json_object_get(vms, vm)) {
				moved++;
			} else if (live && !json_object_get(vms, vm) && cluster_vm_name_ok(vm)) {
				/* handed over right now (its owner key says free:):
				 * not moved until its migration says so */
				json_object_set_new(vms, vm, json_string("moving"));
				remaining++;
			}
			if (!strcmp(st, "running") && !flight)
				flight = json_pack("{s:s, s:s, s:O?}", "vm", vm, "to",
						   cluster_jstr(rec, "to"), "progress",
						   json_object_get(rec, "progress"));
			json_decref(rec);
		}
	}
	rate = drain_rate(s, id);
	if (rate > 0)
		eta = (double)mem_left / rate;
	old = json_deep_copy(drain);
	json_object_set_new(drain, "moved", json_integer(moved));
	json_object_set_new(drain, "remaining", json_integer(remaining));
	json_object_set_new(drain, "stuck", stuck);
	stuck = NULL;
	json_object_set_new(drain, "vms", vms);
	vms = NULL;
	json_object_set_new(drain, "in-flight", flight ? flight : json_null());
	flight = NULL;
	json_object_set_new(drain, "eta-s", eta >= 0 ? json_integer((json_int_t)(eta + 0.5))
						    : json_null());
	if (!remaining) {
		json_object_set_new(drain, "state", json_string("drained"));
		json_object_set_new(drain, "finished", json_real(agent_wall()));
	} else if (json_object_size(json_object_get(drain, "stuck")) == remaining) {
		json_object_set_new(drain, "state", json_string("drain-incomplete"));
		json_object_set_new(drain, "finished", json_real(agent_wall()));
	}
	changed = !json_equal(old, drain);
	json_decref(old);
	if (changed)
		put_drain(a, dkv, drain);
out:
	json_decref(stuck);
	json_decref(vms);
	json_decref(flight);
	json_decref(cfg);
	json_decref(drain);
}
