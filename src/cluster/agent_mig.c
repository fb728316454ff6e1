/*
 * agent_mig.c - migrations, as the cluster runs them (docs/CLUSTER.md):
 *
 * source agent (the node that owns the VM):
 *   queued   the head of this node's queue (by the record's create revision)
 *            gets a destination (the record's "requested-to", or placement)
 *            and one slot on each node, both taken in one transaction with
 *            the record's move to "running" (slot keys bound to our lease:
 *            a dead agent frees them).
 *   running  ask the destination's agent for an incoming VMM on the first
 *            migration network both share (/kvmove/incoming/DEST/VM), wait
 *            for its address (/kvmove/incoming-ready/DEST/VM), tell our VMM
 *            to migrate there, copy its progress into the record.  A failure
 *            before GO on one network is retried on the next one; the VM
 *            runs here meanwhile.  The switchover's commit is the
 *            destination VMM's compare-and-swap on the owner key.
 * destination agent (agent_incoming.c): starts `kvmove run --incoming
 *   defer`, makes it listen on its address in the asked network, answers
 *   with that address.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster/agent_int.h"
#include "cluster/arbiter_etcd.h"
#include "cluster/nodeset.h"
#include "cluster/placement.h"
#include "cluster/records.h"
#include "cluster/vmcpu.h"

#define READY_TIMEOUT_S 30.0
#define PROGRESS_EVERY_S 1.0
#define MAX_NODES 256

static int put_rec(struct agent *a, json_t *rec)
{
	char key[KEY_MAX_LEN];
	struct kv_err err;
	int r;

	snprintf(key, sizeof(key), "/kvmove/migrations/%s",
		 json_string_value(json_object_get(rec, "id")));
	r = agent_put_json(a, key, json_incref(rec), false, &err);
	if (r)
		agent_log(a, "migration record: %s", err.msg);
	return r;
}

/* The record now (not the pass's snapshot: we changed it since).  *gone
 * says it was deleted; NULL without gone: etcd did not answer. */
static json_t *get_rec(struct agent *a, const char *id, bool *gone)
{
	char key[KEY_MAX_LEN];
	struct store_kv kv;
	json_t *j;
	int r;

	snprintf(key, sizeof(key), "/kvmove/migrations/%s", id);
	r = store_get(a->st, key, &kv, NULL, NULL);
	*gone = r == -ENOENT;
	if (r)
		return NULL;
	j = json_loadb(kv.value, kv.vlen, 0, NULL);
	store_kv_free(&kv);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static void release_slots(struct agent *a, const char *id)
{
	struct store_list l;
	struct kv_err err;

	/* every slot this migration holds, on either node */
	if (store_list(a->st, "/kvmove/slots/", &l, &err))
		return;
	for (size_t i = 0; i < l.n; i++)
		if (!strcmp(l.kvs[i].value, id))
			(void)store_delete(a->st, l.kvs[i].key, NULL);
	store_list_free(&l);
}

static void finish(struct agent *a, struct smig *m, json_t *rec, const char *state,
		   const char *reason)
{
	char key[KEY_MAX_LEN];

	if (rec) {
		json_object_set_new(rec, "state", json_string(state));
		if (reason)
			json_object_set_new(rec, "reason", json_string(reason));
		json_object_set_new(rec, "finished", json_real(agent_wall()));
		if (m && m->attempts)
			json_object_set(rec, "attempts", m->attempts);
		put_rec(a, rec);
		agent_log(a, "migration %s of %s: %s%s%s",
			  json_string_value(json_object_get(rec, "id")),
			  json_string_value(json_object_get(rec, "vm")), state, reason ? ": " : "",
			  reason ? reason : "");
	}
	if (m) {
		snprintf(key, sizeof(key), "/kvmove/incoming/%s/%s", m->to, m->vm);
		(void)store_delete(a->st, key, NULL);
		snprintf(key, sizeof(key), "/kvmove/migration-cancel/%s", m->id);
		(void)store_delete(a->st, key, NULL);
		release_slots(a, m->id);
		for (struct smig **pp = &a->migs; *pp; pp = &(*pp)->next)
			if (*pp == m) {
				*pp = m->next;
				break;
			}
		json_decref(m->attempts);
		free(m);
	}
}

/* ---- placement input from the snapshot ---- */

/* The part of the snapshot under prefix, as a list of its own. */
static struct store_list view(const struct snap *s, const char *prefix)
{
	struct store_list l = { .rev = s->l.rev };
	size_t b, e;

	snap_range(s, prefix, &b, &e);
	l.kvs = s->l.kvs + b;
	l.n = e - b;
	return l;
}

int mig_nodeset(struct nodeset *ns, const struct snap *s, const char *vm, struct kv_err *err)
{
	char prefix[KEY_MAX_LEN];
	struct store_list nodes = view(s, "/kvmove/nodes/"), cfgs = view(s, "/kvmove/nodecfg/"),
			  reach;
	const struct store_kv *cfg = snap_get(s, "/kvmove/config");

	snprintf(prefix, sizeof(prefix), "/kvmove/reach/%s/", vm);
	reach = view(s, prefix);
	return nodeset_build(ns, &nodes, &cfgs, &reach, vm, cfg ? cfg->value : NULL,
			     cfg ? cfg->vlen : 0, err);
}

/* The migration networks both nodes have, in our order, with the
 * destination's address in each. */
static unsigned shared_nets(struct agent *a, json_t *dst, struct smig *m)
{
	json_t *dn = json_object_get(dst, "migration-nets");
	json_t *da = json_object_get(dst, "migration-addrs");
	unsigned n = 0;

	for (unsigned i = 0; i < a->host.nnets && n < AGENT_MAX_NETS; i++) {
		size_t j;
		json_t *c;
		if (!a->host.nets[i].addr[0])
			continue;	/* we have no address there (link down) */
		json_array_foreach(dn, j, c) {
			const char *addr = json_string_value(json_array_get(da, j));
			if (json_is_string(c) && !strcmp(json_string_value(c), a->host.nets[i].cidr) &&
			    addr && *addr && cidr_contains(a->host.nets[i].cidr, addr)) {
				snprintf(m->nets[n], sizeof(m->nets[n]), "%s", a->host.nets[i].cidr);
				snprintf(m->dst_addr[n], sizeof(m->dst_addr[n]), "%s", addr);
				n++;
				break;
			}
		}
	}
	return n;
}

static int free_slot(const struct snap *s, const char *node, json_int_t limit)
{
	for (json_int_t k = 0; k < limit && k < 64; k++)
		if (!snap_get(s, "/kvmove/slots/%s/%lld", node, (long long)k))
			return (int)k;
	return -1;
}

static void set_reason(struct agent *a, json_t *rec, const char *reason)
{
	const char *old = json_string_value(json_object_get(rec, "reason"));

	if (old && !strcmp(old, reason))
		return;
	json_object_set_new(rec, "reason", json_string(reason));
	put_rec(a, rec);
}

static void refuse(struct agent *a, json_t *rec, const char *reason)
{
	json_object_set_new(rec, "refused", json_true());
	finish(a, NULL, rec, "failed", reason);
}

static void ask_incoming(struct agent *a, struct smig *m)
{
	char key[KEY_MAX_LEN];
	struct kv_err err;

	snprintf(key, sizeof(key), "/kvmove/incoming/%s/%s", m->to, m->vm);
	if (agent_put_json(a, key, json_pack("{s:s, s:s, s:i, s:s}", "migration", m->id, "from",
					     a->o.name, "attempt", m->attempt, "network",
					     m->nets[m->net]), false, &err))
		agent_log(a, "asking %s for an incoming VMM: %s", m->to, err.msg);
	m->phase = SM_WAIT_READY;
	m->t_phase = agent_now();
}

/* The head of our queue: pick a destination and take the slots. */
static void start_queued(struct agent *a, const struct snap *s, json_t *rec, int64_t mod_rev)
{
	const char *id = json_string_value(json_object_get(rec, "id"));
	const char *vm = json_string_value(json_object_get(rec, "vm"));
	const char *want = json_string_value(json_object_get(rec, "requested-to"));
	const struct store_kv *owner = snap_get(s, "/kvmove/vms/%s/owner", vm);
	json_t *spec = snap_json(s, "/kvmove/vms/%s/spec", vm);
	json_t *status = snap_json(s, "/kvmove/vms/%s/status", vm);
	struct lvmm *v = lvmm_find(a, vm);
	struct vmcpu_need need;
	struct cpu_model model;
	struct place_vm pv = { .name = vm, .exclude = a->o.name };
	struct place_verdict *verdicts = NULL;
	struct nodeset ns = { 0 };
	struct smig *m = calloc(1, sizeof(*m));
	char why[2048], k1[KEY_MAX_LEN], k2[KEY_MAX_LEN], key[KEY_MAX_LEN], idbuf[MIG_ID_LEN];
	int chosen = -1, s1, s2, me, to;
	struct kv_err err;
	size_t o = 0;

	if (!m || !spec) {
		if (!spec)
			refuse(a, rec, "the VM has no definition");
		goto out;
	}
	if (owner && !strcmp(owner->value, a->o.name) && v && v->role == LV_INCOMING)
		goto out;	/* it just arrived here: in a moment */
	if (!owner || strcmp(owner->value, a->o.name) || !v || v->role != LV_RUN || v->exited) {
		snprintf(why, sizeof(why), "VM %s does not run on %s", vm, a->o.name);
		refuse(a, rec, why);
		goto out;
	}
	pv.mem = (uint64_t)json_integer_value(json_object_get(spec, "mem"));
	pv.cpus = (unsigned)json_integer_value(json_object_get(spec, "cpus"));
	snprintf(key, sizeof(key), "/kvmove/vms/%s/spec", vm);
	if (cluster_vm_cpu(spec, key, &model, &err)) {
		refuse(a, rec, err.msg);
		goto out;
	}
	/* a named model's features, or on host those of the host it booted on
	 * (its status); and the vendor it booted with */
	if (!status)
		status = json_object();	/* none yet: a move all the same */
	vmcpu_need(&model, status, &need);
	vmcpu_place(&need, &pv);
	if (mig_nodeset(&ns, s, vm, &err) || !(verdicts = calloc(ns.n + 1, sizeof(*verdicts)))) {
		agent_log(a, "placement of %s: %s", vm, err.msg);
		goto out;
	}
	/* a node that shares no migration network with us cannot take it */
	for (size_t i = 0; i < ns.n; i++) {
		struct smig tmp;
		if (ns.v[i].rec && strcmp(ns.v[i].name, a->o.name) &&
		    !shared_nets(a, ns.v[i].rec, &tmp)) {
			ns.place[i].reach = 0;
			ns.place[i].reach_reason = "it shares no migration network with the source";
		}
	}
	if (want) {
		int i = nodeset_find(&ns, want);
		if (i < 0 || !ns.v[i].rec) {
			snprintf(why, sizeof(why), "node %s is not up", want);
			refuse(a, rec, why);
			goto out;
		}
		if (place_choose(&pv, &ns.place[i], 1, &verdicts[i]) < 0) {
			snprintf(why, sizeof(why), "%s cannot take VM %s: %s", want, vm,
				 verdicts[i].reason);
			refuse(a, rec, why);
			goto out;
		}
		chosen = i;
	} else {
		chosen = nodeset_choose(&ns, &pv, verdicts);
		if (chosen < 0) {
			o = (size_t)snprintf(why, sizeof(why), "no node can take VM %s:", vm);
			for (size_t i = 0; i < ns.n && o < sizeof(why); i++)
				o += (size_t)snprintf(why + o, sizeof(why) - o, " %s: %s;",
						      ns.v[i].name, verdicts[i].reason);
			refuse(a, rec, why);
			goto out;
		}
	}
	snprintf(m->to, sizeof(m->to), "%s", ns.v[chosen].name);
	m->nnets = shared_nets(a, ns.v[chosen].rec, m);
	me = nodeset_find(&ns, a->o.name);
	to = chosen;
	s1 = free_slot(s, a->o.name, me >= 0 ? ns.v[me].migration_limit : 1);
	s2 = free_slot(s, m->to, ns.v[to].migration_limit);
	if (s1 < 0 || s2 < 0) {
		snprintf(why, sizeof(why), "queued: waiting for a migration slot on %s",
			 s1 < 0 ? a->o.name : m->to);
		set_reason(a, rec, why);
		goto out;
	}
	snprintf(k1, sizeof(k1), "/kvmove/slots/%s/%d", a->o.name, s1);
	snprintf(k2, sizeof(k2), "/kvmove/slots/%s/%d", m->to, s2);
	snprintf(key, sizeof(key), "/kvmove/migrations/%s", id);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	json_object_set_new(rec, "state", json_string("running"));
	json_object_set_new(rec, "to", json_string(m->to));
	json_object_set_new(rec, "reason", json_string(""));
	json_object_set_new(rec, "started", json_real(agent_wall()));
	{
		char *txt = json_dumps(rec, JSON_COMPACT);
		int64_t lease = agent_lease(a);
		struct store_cmp c[3] = {
			{ .key = k1, .target = STORE_CMP_CREATE, .result = STORE_EQ, .num = 0 },
			{ .key = k2, .target = STORE_CMP_CREATE, .result = STORE_EQ, .num = 0 },
			{ .key = key, .target = STORE_CMP_MOD, .result = STORE_EQ, .num = mod_rev },
		};
		struct store_op ops[3] = {
			{ .type = STORE_OP_PUT, .key = k1, .value = idbuf, .lease = lease },
			{ .type = STORE_OP_PUT, .key = k2, .value = idbuf, .lease = lease },
			{ .type = STORE_OP_PUT, .key = key, .value = txt },
		};
		bool ok = false;
		int r = txt ? store_txn(a->st, c, 3, ops, 3, NULL, 0, &ok, NULL, &err) : -ENOMEM;
		free(txt);
		if (r || !ok) {
			if (r)
				agent_log(a, "taking slots for %s: %s", id, err.msg);
			goto out;	/* someone was quicker: next time */
		}
	}
	snprintf(m->id, sizeof(m->id), "%s", id);
	snprintf(m->vm, sizeof(m->vm), "%s", vm);
	m->attempt = 1;
	m->attempts = json_array();
	m->next = a->migs;
	a->migs = m;
	agent_log(a, "migration %s: %s to %s over %s (slots %s/%d, %s/%d)", id, vm, m->to,
		  m->nnets ? m->nets[0] : "-", a->o.name, s1, m->to, s2);
	ask_incoming(a, m);
	m = NULL;
out:
	free(m);
	free(verdicts);
	nodeset_free(&ns);
	json_decref(spec);
	json_decref(status);
}

static void attempt_failed(struct agent *a, struct smig *m, json_t *rec, const char *reason,
			   bool retry)
{
	json_array_append_new(m->attempts, json_pack("{s:s, s:s, s:s}", "network", m->nets[m->net],
						     "result", "failed", "reason", reason));
	if (retry && m->net + 1 < m->nnets) {
		agent_log(a, "migration %s over %s failed (%s): trying %s", m->id, m->nets[m->net],
			  reason, m->nets[m->net + 1]);
		m->net++;
		m->attempt++;
		json_object_set(rec, "attempts", m->attempts);
		put_rec(a, rec);
		ask_incoming(a, m);
		return;
	}
	finish(a, m, rec, "failed", reason);
}

/* The answer must be the destination's own address in the network chosen
 * (from its node record), with a port: the source connects to no host an
 * etcd writer picks. */
static bool addr_ok(const struct smig *m, const char *addr)
{
	size_t l = strlen(m->dst_addr[m->net]);
	char *end;
	unsigned long port;

	if (!addr || !l || strncmp(addr, m->dst_addr[m->net], l) || addr[l] != ':')
		return false;
	port = strtoul(addr + l + 1, &end, 10);
	return addr[l + 1] && !*end && port >= 1 && port <= 65535;
}

static void start_migrate(struct agent *a, struct smig *m, json_t *rec, const char *addr)
{
	json_t *args = json_pack("{s:s+}", "uri", "tcp:", addr);
	json_t *dt = json_object_get(rec, "downtime-ms"), *pol = json_object_get(rec, "policy");
	struct kv_err err;

	if (json_is_integer(dt) && json_integer_value(dt) > 0)
		json_object_set(args, "downtime-ms", dt);
	if (json_is_string(pol))
		json_object_set(args, "policy", pol);
	if (json_is_true(json_object_get(rec, "quick"))) {
		if (!a->o.quick_dir) {
			json_decref(args);
			json_object_set_new(rec, "refused", json_true());
			finish(a, m, rec, "failed", "a quick migration needs a shared directory: "
			       "this node's agent has no --quick-dir");
			return;
		}
		json_object_set_new(args, "via", json_string(a->o.quick_dir));
	}
	json_object_set_new(rec, "network", json_string(m->nets[m->net]));
	/* when the VMM was told (bench/cluster_scale.py: request to first byte) */
	json_object_set_new(rec, "issued", json_real(agent_wall()));
	put_rec(a, rec);
	if (lvmm_exec(a, m->vm, "migrate", args, NULL, &err)) {
		json_decref(args);
		attempt_failed(a, m, rec, err.msg, false);
		return;
	}
	json_decref(args);
	m->phase = SM_MIGRATING;
	m->t_phase = agent_now();
}

static void progress(struct agent *a, struct smig *m, json_t *rec, json_t *q)
{
	json_t *ram = json_object_get(q, "ram");
	const char *st = json_string_value(json_object_get(q, "status")) ?: "?";
	json_t *pr;

	if (agent_now() - m->t_progress < PROGRESS_EVERY_S)
		return;
	m->t_progress = agent_now();
	pr = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "status", st, "transferred",
		       json_integer_value(json_object_get(ram, "transferred")), "remaining",
		       json_integer_value(json_object_get(ram, "remaining")), "total",
		       json_integer_value(json_object_get(ram, "total")), "round",
		       json_integer_value(json_object_get(ram, "dirty-sync-count")),
		       "expected-downtime-ms",
		       json_integer_value(json_object_get(q, "expected-downtime")),
		       "total-time-ms", json_integer_value(json_object_get(q, "total-time")));
	/* what the guest dirties, bytes/s (QEMU's dirty-pages-rate is pages/s) */
	json_object_set_new(pr, "dirty-rate", json_integer(
		json_integer_value(json_object_get(ram, "dirty-pages-rate")) *
		(json_integer_value(json_object_get(ram, "page-size")) ?: 4096)));
	json_object_set_new(rec, "progress", pr);
	put_rec(a, rec);
}

static void poll_migrating(struct agent *a, struct smig *m, json_t *rec)
{
	json_t *q = NULL;
	struct kv_err err;
	const char *st;
	struct lvmm *v = lvmm_find(a, m->vm);

	if (lvmm_exec(a, m->vm, "query-migrate", NULL, &q, &err)) {
		if (!v || v->exited)
			finish(a, m, rec, "failed", "the source VMM exited during the migration");
		json_decref(q);
		return;
	}
	st = json_string_value(json_object_get(q, "status")) ?: "";
	if (!strcmp(st, "completed")) {
		json_t *ram = json_object_get(q, "ram");
		json_object_set_new(rec, "stats", json_pack(
			"{s:I, s:I, s:I, s:I, s:I}", "total-time-ms",
			json_integer_value(json_object_get(q, "total-time")), "downtime-ms",
			json_integer_value(json_object_get(q, "downtime")), "setup-time-ms",
			json_integer_value(json_object_get(q, "setup-time")), "transferred",
			json_integer_value(json_object_get(ram, "transferred")), "rounds",
			json_integer_value(json_object_get(ram, "dirty-sync-count"))));
		json_object_del(rec, "progress");
		json_array_append_new(m->attempts, json_pack("{s:s, s:s}", "network",
							     m->nets[m->net], "result", "completed"));
		finish(a, m, rec, "completed", NULL);
	} else if (!strcmp(st, "failed") || !strcmp(st, "cancelled")) {
		const char *desc = json_string_value(json_object_get(q, "error-desc")) ?: st;
		const char *eid = json_string_value(json_object_get(q, "x-error-id")) ?: "";
		bool go = json_is_true(json_object_get(q, "x-go-sent"));
		/* a refusal (preflight) or a cancel is not the network's fault */
		bool retry = !go && strcmp(st, "cancelled") && strcmp(eid, "preflight");
		if (!strcmp(st, "cancelled"))
			finish(a, m, rec, "cancelled", desc);
		else
			attempt_failed(a, m, rec, desc, retry);
	} else {
		progress(a, m, rec, q);
	}
	json_decref(q);
}

/* A migration the record says we run, but this agent (restarted) does not
 * know: pick it up from what our VMM says. */
static void recover(struct agent *a, const struct snap *s, json_t *rec)
{
	const char *id = json_string_value(json_object_get(rec, "id"));
	const char *vm = json_string_value(json_object_get(rec, "vm"));
	const char *to = json_string_value(json_object_get(rec, "to"));
	json_t *q = NULL, *dst;
	struct smig *m;
	struct kv_err err;
	const char *st;

	if (!id || !vm || !to)
		return;
	if (lvmm_exec(a, vm, "query-migrate", NULL, &q, &err)) {
		const struct store_kv *owner = snap_get(s, "/kvmove/vms/%s/owner", vm);
		/* the owner key says how it ended */
		if (owner && !strcmp(owner->value, to))
			finish(a, NULL, rec, "completed", "the source agent restarted after the "
			       "switchover: no statistics");
		else
			finish(a, NULL, rec, "failed", "the source agent restarted and its VMM "
			       "is gone");
		return;
	}
	st = json_string_value(json_object_get(q, "status")) ?: "none";
	m = calloc(1, sizeof(*m));
	if (!m) {
		json_decref(q);
		return;
	}
	snprintf(m->id, sizeof(m->id), "%s", id);
	snprintf(m->vm, sizeof(m->vm), "%s", vm);
	snprintf(m->to, sizeof(m->to), "%s", to);
	m->attempts = json_array();
	if ((dst = snap_json(s, "/kvmove/nodes/%s", to))) {
		m->nnets = shared_nets(a, dst, m);
		json_decref(dst);
	}
	m->attempt = 1;
	m->next = a->migs;
	a->migs = m;
	if (!strcmp(st, "none") || !m->nnets) {
		/* it never began (or cannot go on): start it over */
		agent_log(a, "migration %s: picked up after a restart, asking %s again", id, to);
		if (!m->nnets) {
			finish(a, m, rec, "failed", "no migration network is shared any more");
		} else {
			m->attempt = 100;	/* a fresh attempt number for the destination */
			ask_incoming(a, m);
		}
	} else {
		agent_log(a, "migration %s: picked up after a restart (%s)", id, st);
		m->phase = SM_MIGRATING;
	}
	json_decref(q);
}

/* A running migration holds one slot on each end.  After an agent restart
 * (a new lease) or a lost lease its slot keys may have gone: take them
 * again, so that the limit holds for as long as it runs. */
static void ensure_slots(struct agent *a, const struct snap *s, struct smig *m)
{
	const char *nodes[2] = { a->o.name, m->to };

	for (int i = 0; i < 2; i++) {
		char prefix[KEY_MAX_LEN], key[KEY_MAX_LEN];
		size_t b, e;
		bool have = false;
		json_t *rec;
		json_int_t limit = 1;
		int k;

		snprintf(prefix, sizeof(prefix), "/kvmove/slots/%s/", nodes[i]);
		snap_range(s, prefix, &b, &e);
		for (size_t j = b; j < e; j++)
			have |= !strcmp(s->l.kvs[j].value, m->id);
		if (have)
			continue;
		if ((rec = snap_json(s, "/kvmove/nodes/%s", nodes[i]))) {
			if (json_is_integer(json_object_get(rec, "migration-limit")))
				limit = json_integer_value(json_object_get(rec, "migration-limit"));
			json_decref(rec);
		}
		k = free_slot(s, nodes[i], limit);
		if (k < 0)
			continue;	/* full: the old key is still there */
		if (snprintf(key, sizeof(key), "%.300s%d", prefix, k) >= (int)sizeof(key))
			continue;
		{
			struct store_cmp c = { .key = key, .target = STORE_CMP_CREATE,
					       .result = STORE_EQ, .num = 0 };
			struct store_op op = { .type = STORE_OP_PUT, .key = key, .value = m->id,
					       .lease = agent_lease(a) };
			bool ok;
			(void)store_txn(a->st, &c, 1, &op, 1, NULL, 0, &ok, NULL, NULL);
		}
	}
}

void mig_reconcile(struct agent *a, const struct snap *s)
{
	size_t b, e;
	json_t *head = NULL;
	int64_t head_rev = 0, head_mod = 0;

	snap_range(s, "/kvmove/migrations/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const struct store_kv *kv = &s->l.kvs[i];
		json_t *rec = json_loadb(kv->value, kv->vlen, 0, NULL);
		const char *from = json_string_value(json_object_get(rec, "from"));
		const char *state = json_string_value(json_object_get(rec, "state"));
		const char *id = json_string_value(json_object_get(rec, "id"));
		bool known = false;

		if (!json_is_object(rec) || !from || !state || !id || strcmp(from, a->o.name) ||
		    strcmp(kv->key + strlen("/kvmove/migrations/"), id) ||
		    !cluster_migration_id_ok(id) ||
		    !cluster_vm_name_ok(json_string_value(json_object_get(rec, "vm")) ?: "") ||
		    (json_is_string(json_object_get(rec, "requested-to")) &&
		     !cluster_node_name_ok(json_string_value(json_object_get(rec, "requested-to"))))) {
			json_decref(rec);
			continue;
		}
		for (struct smig *m = a->migs; m; m = m->next)
			known |= !strcmp(m->id, id);
		if (!strcmp(state, "queued") && (!head || kv->create_rev < head_rev)) {
			json_decref(head);
			head = json_incref(rec);
			head_rev = kv->create_rev;
			head_mod = kv->mod_rev;
		} else if (!strcmp(state, "running") && !known) {
			recover(a, s, rec);
		}
		json_decref(rec);
	}
	/* cancel requests for migrations that ended (or never were) go */
	snap_range(s, "/kvmove/migration-cancel/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const char *id = s->l.kvs[i].key + strlen("/kvmove/migration-cancel/");
		json_t *rec = snap_json(s, "/kvmove/migrations/%s", id);
		const char *from = json_string_value(json_object_get(rec, "from"));
		if (!rec || (from && !strcmp(from, a->o.name) &&
			     cluster_migration_state_terminal(
				     json_string_value(json_object_get(rec, "state")))))
			(void)store_delete(a->st, s->l.kvs[i].key, NULL);
		json_decref(rec);
	}
	/* one at a time from our queue, in order */
	if (head) {
		bool busy = false;
		const char *vm = json_string_value(json_object_get(head, "vm"));
		for (struct smig *m = a->migs; m; m = m->next)
			busy |= vm && !strcmp(m->vm, vm);
		if (!busy)
			start_queued(a, s, head, head_mod);
		json_decref(head);
	}
	for (struct smig *m = a->migs, *n; m; m = n) {
		bool gone;
		json_t *rec = get_rec(a, m->id, &gone), *ready;
		n = m->next;
		if (!rec) {
			/* deleted: drop it; unreachable: ask again next pass */
			if (gone)
				finish(a, m, NULL, NULL, NULL);
			continue;
		}
		ensure_slots(a, s, m);
		/* kvmove migration cancel: before GO the VM stays here */
		if (snap_get(s, "/kvmove/migration-cancel/%s", m->id)) {
			struct kv_err cerr;
			if (m->phase == SM_WAIT_READY) {
				finish(a, m, rec, "cancelled", "cancelled on request");
				json_decref(rec);
				continue;
			}
			if (!m->cancel_sent) {
				m->cancel_sent = true;
				agent_log(a, "migration %s of %s: cancel requested", m->id, m->vm);
				if (lvmm_exec(a, m->vm, "migrate_cancel", NULL, NULL, &cerr))
					agent_log(a, "migration %s: migrate_cancel: %s", m->id,
						  cerr.msg);
			}
		}
		if (m->phase == SM_WAIT_READY) {
			ready = snap_json(s, "/kvmove/incoming-ready/%s/%s", m->to, m->vm);
			if (ready && !strcmp(json_string_value(json_object_get(ready, "migration")) ?: "",
					     m->id) &&
			    json_integer_value(json_object_get(ready, "attempt")) == m->attempt) {
				const char *addr = json_string_value(json_object_get(ready, "addr"));
				const char *er = json_string_value(json_object_get(ready, "error"));
				if (er)
					attempt_failed(a, m, rec, er, true);
				else if (!addr_ok(m, addr))
					attempt_failed(a, m, rec, "the destination answered with an address "
						       "that is not its own on this network", true);
				else
					start_migrate(a, m, rec, addr);
			} else if (!snap_get(s, "/kvmove/nodes/%s", m->to)) {
				finish(a, m, rec, "failed", "the destination node went down");
			} else if (agent_now() - m->t_phase > READY_TIMEOUT_S) {
				finish(a, m, rec, "failed", "the destination's agent did not start an "
				       "incoming VMM in time");
			}
			json_decref(ready);
		} else {
			poll_migrating(a, m, rec);
		}
		json_decref(rec);
	}
}
