/*
 * agent_balance.c - the cluster's load balancer.  One agent at a time runs
 * it: the one whose lease holds /kvmove/balancer (created create-only under
 * that lease, so it goes with its agent and another takes over).
 *
 * Settings: /kvmove/config's "balancer": {"mode": "off|recommend|automatic",
 * "cpu-threshold": 80, "spread": 25, "samples": 3} (kvmove cluster
 * balancer).  Every new load sample of every node (/kvmove/load/NODE,
 * agent_load.c) goes into a short history.  When no migration is queued or
 * running and every up node has `samples` samples taken after the last
 * migration ended, their means go to bal_recommend (balance.h).  A move
 * becomes a tip, /kvmove/tips/ID: in recommend mode "open" until
 * `kvmove cluster tips apply ID` ("stale" once no longer right); in
 * automatic mode queued at once as a migration ("applied").  An applied tip
 * keeps the loads before, the predicted after and, once its migration
 * ended, the measured after.  A VM a tip moved is not moved again for
 * BAL_COOLDOWN_S.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/agent_int.h"
#include "cluster/balance.h"
#include "cluster/nodeset.h"
#include "cluster/records.h"
#include "cluster/vmcpu.h"

#define BAL_HISTORY 12
#define BAL_COOLDOWN_S 300.0
#define BAL_TIPS_KEPT 50

struct bal_cfg {
	char mode[16];
	struct bal_settings s;
	int samples;
};

static void read_cfg(const struct snap *s, struct bal_cfg *c)
{
	json_t *cfg = snap_json(s, "/kvmove/config"), *b = json_object_get(cfg, "balancer");
	const struct bal_settings d = BAL_DEFAULTS;
	const char *mode = cluster_jstr(b, "mode");

	snprintf(c->mode, sizeof(c->mode), "%s",
		 !strcmp(mode, "recommend") || !strcmp(mode, "automatic") ? mode : "off");
	c->s = d;
	c->s.cpu_threshold = cluster_jnum(b, "cpu-threshold", d.cpu_threshold);
	c->s.spread = cluster_jnum(b, "spread", d.spread);
	c->samples = (int)cluster_jint(b, "samples", 3);
	if (!(c->s.cpu_threshold >= 1 && c->s.cpu_threshold <= 100))
		c->s.cpu_threshold = d.cpu_threshold;
	if (!(c->s.spread >= 1 && c->s.spread <= 100))
		c->s.spread = d.spread;
	if (c->samples < 1 || c->samples > BAL_HISTORY)
		c->samples = 3;
	json_decref(cfg);
}

/* Do we run the balancer?  Take the key when nobody holds it. */
static bool elected(struct agent *a, const struct snap *s)
{
	const struct store_kv *kv = snap_get(s, "/kvmove/balancer");
	struct store_cmp c = { .key = "/kvmove/balancer", .target = STORE_CMP_CREATE,
			       .result = STORE_EQ, .num = 0 };
	struct store_op op = { .type = STORE_OP_PUT, .key = "/kvmove/balancer",
			       .value = a->o.name, .lease = agent_lease(a) };
	struct kv_err err;
	bool ok = false;

	if (kv)
		return !strcmp(kv->value, a->o.name) && kv->lease == agent_lease(a);
	if (store_txn(a->st, &c, 1, &op, 1, NULL, 0, &ok, NULL, &err))
		agent_log(a, "balancer election: %s", err.msg);
	else if (ok)
		agent_log(a, "this node runs the cluster's balancer");
	return false;	/* from the next pass on */
}

/* New load samples into the history: hist = {node: [load records]}. */
static void take_samples(struct agent *a, const struct snap *s)
{
	json_t *hist = json_object_get(a->bal, "hist"), *fresh = json_object();
	size_t b, e;

	snap_range(s, "/kvmove/load/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const char *node = s->l.kvs[i].key + strlen("/kvmove/load/");
		json_t *rec = NULL, *h;
		struct kv_err err;

		if (!cluster_node_name_ok(node) ||
		    cluster_json_object(s->l.kvs[i].key, s->l.kvs[i].value, s->l.kvs[i].vlen,
					&rec, &err))
			continue;
		h = json_object_get(hist, node);
		h = h ? json_incref(h) : json_array();
		if (!json_array_size(h) ||
		    cluster_jnum(rec, "t", 0) > cluster_jnum(json_array_get(h, json_array_size(h) - 1),
							     "t", 0))
			json_array_append(h, rec);
		while (json_array_size(h) > BAL_HISTORY)
			json_array_remove(h, 0);
		json_object_set_new(fresh, node, h);
		json_decref(rec);
	}
	json_object_set_new(a->bal, "hist", fresh);	/* nodes without a load key go */
}

/* Did the sample begin after t0?  (A sample covers its interval before
 * "t": one that spans a migration's end holds a VM for part of it only.) */
static bool after(json_t *r, double t0)
{
	return cluster_jnum(r, "t", 0) - cluster_jnum(r, "interval", 0) > t0;
}

/* Mean of the CPU load (of the node, or of vm in it when vm) over the last
 * n samples that began after t0; false when fewer than n. */
static bool mean(json_t *h, const char *vm, int n, double t0, double *out)
{
	double sum = 0;
	int k = 0;

	for (size_t i = json_array_size(h); i-- > 0 && k < n;) {
		json_t *r = json_array_get(h, i), *o = vm ? json_object_get(json_object_get(r, "vms"),
									  vm) : r;
		double v = cluster_jnum(o, "cpu", -1);
		if (!after(r, t0))
			break;
		if (!o || !isfinite(v) || v < 0 || v > 1e5)
			continue;
		sum += v;
		k++;
	}
	if (k < n || !k)
		return false;
	*out = sum / k;
	return true;
}

/* The first n samples after t0, averaged (a tip's measured after). */
static bool mean_after(json_t *h, int n, double t0, double *out)
{
	double sum = 0;
	int k = 0;
	size_t i;
	json_t *r;

	json_array_foreach(h, i, r) {
		double v = cluster_jnum(r, "cpu", -1);
		if (k >= n)
			break;
		if (!after(r, t0) || !isfinite(v) || v < 0)
			continue;
		sum += v;
		k++;
	}
	if (k < n)
		return false;
	*out = sum / k;
	return true;
}

static void put_tip(struct agent *a, json_t *tip)
{
	char key[KEY_MAX_LEN];
	struct kv_err err;

	snprintf(key, sizeof(key), "/kvmove/tips/%s", cluster_jstr(tip, "id"));
	if (agent_put_json(a, key, json_incref(tip), false, &err))
		agent_log(a, "balancer: tip %s: %s", cluster_jstr(tip, "id"), err.msg);
}

/*
 * Walk the tips: measure after the applied ones whose migration ended,
 * let stale open ones go (keep != NULL: the tip that stays open), prune the
 * oldest.  *open_same: the open tip for keep_* exists already.
 */
static void tend_tips(struct agent *a, const struct snap *s, const struct bal_cfg *c,
		      const char *keep_vm, const char *keep_from, const char *keep_to,
		      const char *why, bool *open_same)
{
	json_t *hist = json_object_get(a->bal, "hist");
	double now = agent_wall();
	size_t b, e, n;

	snap_range(s, "/kvmove/tips/", &b, &e);
	n = e - b;
	for (size_t i = b; i < e; i++) {
		json_t *tip = NULL;
		struct kv_err err;
		const char *st;

		if (cluster_json_object(s->l.kvs[i].key, s->l.kvs[i].value, s->l.kvs[i].vlen, &tip,
					&err))
			continue;
		st = cluster_jstr(tip, "state");
		if (!strcmp(st, "open")) {
			if (keep_vm && !strcmp(cluster_jstr(tip, "vm"), keep_vm) &&
			    !strcmp(cluster_jstr(tip, "from"), keep_from) &&
			    !strcmp(cluster_jstr(tip, "to"), keep_to)) {
				*open_same = true;
			} else if (why) {
				json_object_set_new(tip, "state", json_string("stale"));
				json_object_set_new(tip, "reason", json_string(why));
				json_object_set_new(tip, "closed", json_real(now));
				put_tip(a, tip);
			}
		} else if (!strcmp(st, "applied")) {
			json_t *mig = snap_json(s, "/kvmove/migrations/%s",
						cluster_jstr(tip, "migration"));
			const char *ms = cluster_jstr(mig, "state");
			double fin = cluster_jnum(mig, "finished", 0);
			double f, t;

			if (!strcmp(ms, "completed") && !json_is_object(json_object_get(tip, "measured")) &&
			    mean_after(json_object_get(hist, cluster_jstr(tip, "from")), c->samples,
				       fin, &f) &&
			    mean_after(json_object_get(hist, cluster_jstr(tip, "to")), c->samples,
				       fin, &t)) {
				json_object_set_new(tip, "measured", json_pack("{s:f, s:f}", "from", f,
									       "to", t));
				put_tip(a, tip);
				agent_log(a, "balancer: tip %s measured: %s %.0f %%, %s %.0f %%",
					  cluster_jstr(tip, "id"), cluster_jstr(tip, "from"), f,
					  cluster_jstr(tip, "to"), t);
			} else if (cluster_migration_state_terminal(ms) && strcmp(ms, "completed")) {
				json_object_set_new(tip, "state", json_string("failed"));
				json_object_set_new(tip, "reason", json_string(cluster_jstr(mig, "reason")));
				put_tip(a, tip);
			} else if (!mig && now - cluster_jnum(tip, "applied", 0) > 60) {
				json_object_set_new(tip, "state", json_string("failed"));
				json_object_set_new(tip, "reason",
						    json_string("its migration record is gone"));
				put_tip(a, tip);
			}
			json_decref(mig);
		}
		/* the oldest closed tips go (keys sort by time) */
		if (n > BAL_TIPS_KEPT && strcmp(st, "open") && strcmp(st, "applied")) {
			(void)store_delete(a->st, s->l.kvs[i].key, NULL);
			n--;
		}
		json_decref(tip);
	}
}

/* The VMs a tip moved within BAL_COOLDOWN_S: {vm: true}. */
static json_t *cooling_of(const struct snap *s)
{
	json_t *out = json_object();
	double now = agent_wall();
	size_t b, e;

	snap_range(s, "/kvmove/tips/", &b, &e);
	for (size_t i = b; i < e && out; i++) {
		json_t *tip = json_loadb(s->l.kvs[i].value, s->l.kvs[i].vlen, 0, NULL);
		if (!strcmp(cluster_jstr(tip, "state"), "applied") &&
		    now - cluster_jnum(tip, "applied", 0) < BAL_COOLDOWN_S &&
		    cluster_vm_name_ok(cluster_jstr(tip, "vm")))
			json_object_set_new(out, cluster_jstr(tip, "vm"), json_true());
		json_decref(tip);
	}
	return out;
}

/* Is anything moving?  *last_end: when the last migration ended. */
static bool moving(const struct snap *s, double *last_end)
{
	size_t b, e;
	bool busy = false;

	*last_end = 0;
	snap_range(s, "/kvmove/migrations/", &b, &e);
	for (size_t i = b; i < e; i++) {
		json_t *r = json_loadb(s->l.kvs[i].value, s->l.kvs[i].vlen, 0, NULL);
		const char *st = cluster_jstr(r, "state");
		double f = cluster_jnum(r, "finished", 0);

		if (!strcmp(st, "queued") || !strcmp(st, "running"))
			busy = true;
		if (f > *last_end)
			*last_end = f;
		json_decref(r);
	}
	return busy;
}

/* Does placement accept vm (running on from) on node? */
static bool fits(const struct nodeset *ns, const char *node, const struct place_vm *pv)
{
	struct place_verdict v;
	int i = nodeset_find(ns, node);

	return i >= 0 && ns->v[i].rec && place_choose(pv, &ns->place[i], 1, &v) == 0;
}

struct bal_input {
	struct bal_node *nodes;
	size_t nn;
	struct bal_vm *vms;
	size_t nv;
	bool *fits;			/* nv * nn */
	char (*names)[NAME_MAX_LEN];	/* nn + nv */
};

static void input_free(struct bal_input *in)
{
	free(in->nodes);
	free(in->vms);
	free(in->fits);
	free(in->names);
}

/* The balancer's input from the history and the snapshot: false when some
 * up node has too few samples since t0. */
static bool gather(struct agent *a, const struct snap *s, const struct bal_cfg *c, double t0,
		   json_t *cooling, struct bal_input *in)
{
	json_t *hist = json_object_get(a->bal, "hist");
	size_t b, e, cap_vm = 0;

	memset(in, 0, sizeof(*in));
	snap_range(s, "/kvmove/nodes/", &b, &e);
	for (size_t i = b; i < e; i++) {
		json_t *h = json_object_get(hist, s->l.kvs[i].key + strlen("/kvmove/nodes/"));
		cap_vm += json_object_size(json_object_get(
			json_array_get(h, json_array_size(h) - 1), "vms"));
	}
	in->nodes = calloc(e - b + 1, sizeof(*in->nodes));
	in->vms = calloc(cap_vm + 1, sizeof(*in->vms));
	in->names = calloc(e - b + cap_vm + 1, sizeof(*in->names));
	if (!in->nodes || !in->vms || !in->names)
		return false;
	for (size_t i = b; i < e; i++) {
		const char *node = s->l.kvs[i].key + strlen("/kvmove/nodes/");
		json_t *h = json_object_get(hist, node), *last, *ncfg, *vm;
		struct bal_node *n = &in->nodes[in->nn];
		const char *name;
		double cpu;

		if (!cluster_node_name_ok(node))
			continue;
		last = json_array_get(h, json_array_size(h) - 1);
		snprintf(in->names[in->nn], NAME_MAX_LEN, "%s", node);
		n->name = in->names[in->nn];
		n->cpus = (unsigned)cluster_jint(last, "cpus", 0);
		if (cluster_jint(last, "cpus", 0) < 1 || cluster_jint(last, "cpus", 0) > 65536)
			n->cpus = 0;	/* not a node's: never eligible */
		ncfg = snap_json(s, "/kvmove/nodecfg/%s", node);
		if (!mean(h, NULL, c->samples, t0, &cpu)) {
			json_decref(ncfg);
			return false;	/* wait for samples of every node */
		}
		n->cpu = cpu;
		n->eligible = n->cpus > 0 && !cluster_jbool(ncfg, "maintenance", false);
		json_decref(ncfg);
		json_object_foreach(json_object_get(last, "vms"), name, vm) {
			struct bal_vm *v = &in->vms[in->nv];
			const struct store_kv *owner = snap_get(s, "/kvmove/vms/%s/owner", name);
			double vc;

			if (in->nv >= cap_vm || !cluster_vm_name_ok(name) ||
			    !mean(h, name, c->samples, t0, &vc))
				continue;
			snprintf(in->names[e - b + in->nv], NAME_MAX_LEN, "%s", name);
			v->name = in->names[e - b + in->nv];
			v->node = in->nn;
			v->cpu = vc;
			v->movable = owner && !strcmp(owner->value, node) &&
				     !json_object_get(cooling, name);
			in->nv++;
		}
		in->nn++;
	}
	/* where placement accepts each VM */
	in->fits = calloc(in->nv * in->nn + 1, sizeof(*in->fits));
	if (!in->fits)
		return false;
	for (size_t j = 0; j < in->nv; j++) {
		json_t *spec = snap_json(s, "/kvmove/vms/%s/spec", in->vms[j].name);
		json_t *st = snap_json(s, "/kvmove/vms/%s/status", in->vms[j].name);
		struct place_vm pv = { .name = in->vms[j].name,
				       .exclude = in->nodes[in->vms[j].node].name };
		struct vmcpu_need need;
		struct cpu_model model;
		struct nodeset ns = { 0 };
		struct kv_err err;

		pv.mem = (uint64_t)cluster_jint(spec, "mem", 0);
		pv.cpus = (unsigned)cluster_jint(spec, "cpus", 1);
		/* a live migration: the VM keeps its CPU (its named model's
		 * features, or on host those it booted with: its status), which
		 * placement compares; a malformed definition goes nowhere */
		if (!cluster_vm_cpu(spec, "definition", &model, &err)) {
			if (!st)
				st = json_object();
			vmcpu_need(&model, st, &need);
			vmcpu_place(&need, &pv);
			if (!mig_nodeset(&ns, s, in->vms[j].name, &err))
				for (size_t t = 0; t < in->nn; t++)
					in->fits[j * in->nn + t] = fits(&ns, in->nodes[t].name, &pv);
			nodeset_free(&ns);
		}
		json_decref(st);
		json_decref(spec);
		in->vms[j].fits = &in->fits[j * in->nn];
	}
	return true;
}

/* Write the tip; automatic: queue its migration in the same transaction. */
static void make_tip(struct agent *a, const struct snap *s, const struct bal_cfg *c,
		     const struct bal_input *in, const struct bal_move *m, const char *why)
{
	const char *vm = in->vms[m->vm].name, *from = in->nodes[m->from].name,
		   *to = in->nodes[m->to].name;
	const struct store_kv *owner = snap_get(s, "/kvmove/vms/%s/owner", vm);
	bool automatic = !strcmp(c->mode, "automatic"), ok = false;
	char id[MIG_ID_LEN], mid[MIG_ID_LEN], tkey[KEY_MAX_LEN], mkey[KEY_MAX_LEN],
		okey[KEY_MAX_LEN];
	char *ttext = NULL, *mtext = NULL;
	json_t *tip, *mig = NULL;
	struct kv_err err;
	double now = agent_wall();

	if (!owner || cluster_migration_id_new(id, sizeof(id), &err) ||
	    cluster_migration_id_new(mid, sizeof(mid), &err))
		return;
	id[0] = 't';
	tip = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:f, s:f}, s:{s:f, s:f}, "
			"s:{s:f, s:f}, s:f, s:n, s:n, s:n}",
			"id", id, "vm", vm, "from", from, "to", to, "state",
			automatic ? "applied" : "open", "mode", c->mode, "reason", why, "before",
			"from", m->from_before, "to", m->to_before, "after", "from", m->from_after,
			"to", m->to_after, "spread", "before", m->spread_before, "after",
			m->spread_after, "created", now, "applied", "migration", "measured");
	if (!tip)
		return;
	if (automatic) {
		json_object_set_new(tip, "applied", json_real(now));
		json_object_set_new(tip, "migration", json_string(mid));
		mig = cluster_migration_queued(mid, vm, from, to, false, "queued by the balancer",
					       now);
		if (mig)
			json_object_set_new(mig, "tip", json_string(id));
		mtext = mig ? json_dumps(mig, JSON_COMPACT | JSON_SORT_KEYS |
					 JSON_REAL_PRECISION(15)) : NULL;
	}
	ttext = json_dumps(tip, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
	snprintf(tkey, sizeof(tkey), "/kvmove/tips/%s", id);
	snprintf(mkey, sizeof(mkey), "/kvmove/migrations/%s", mid);
	snprintf(okey, sizeof(okey), "/kvmove/vms/%s/owner", vm);
	if (ttext && (!automatic || mtext)) {
		const struct store_cmp cmps[] = {
			{ .key = okey, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = owner->mod_rev },
			{ .key = mkey, .target = STORE_CMP_CREATE, .result = STORE_EQ },
		};
		const struct store_op ops[] = {
			{ .type = STORE_OP_PUT, .key = tkey, .value = ttext },
			{ .type = STORE_OP_PUT, .key = mkey, .value = mtext },
		};

		if (store_txn(a->st, cmps, automatic ? 2 : 1, ops, automatic ? 2 : 1, NULL, 0, &ok,
			      NULL, &err))
			agent_log(a, "balancer: %s", err.msg);
		else if (ok)
			agent_log(a, "balancer: tip %s (%s): %s%s", id, c->mode, why,
				  automatic ? "; migration queued" : "");
	}
	free(ttext);
	free(mtext);
	json_decref(tip);
	json_decref(mig);
}

void balance_reconcile(struct agent *a, const struct snap *s)
{
	json_t *cooling = NULL;
	struct bal_input in = { 0 };
	struct bal_move m;
	struct bal_cfg c;
	char why[400];
	double last_end;
	bool same = false;
	int r;

	if (!snap_get(s, "/kvmove/nodes/%s", a->o.name))
		return;
	if (!elected(a, s)) {
		json_decref(a->bal);
		a->bal = NULL;
		return;
	}
	if (!a->bal && !(a->bal = json_pack("{s:{}, s:s}", "hist", "why", "")))
		return;
	read_cfg(s, &c);
	take_samples(a, s);
	if (!strcmp(c.mode, "off")) {
		tend_tips(a, s, &c, NULL, NULL, NULL, "the balancer is off", &same);
		goto out;
	}
	cooling = cooling_of(s);
	if (moving(s, &last_end) || !gather(a, s, &c, last_end + 0.5, cooling, &in)) {
		tend_tips(a, s, &c, NULL, NULL, NULL, NULL, &same);	/* wait and see */
		goto out;
	}
	r = bal_recommend(in.nodes, in.nn, in.vms, in.nv, &c.s, &m, why, sizeof(why));
	if (strcmp(cluster_jstr(a->bal, "why"), why)) {
		agent_log(a, "balancer (%s): %s", c.mode, why);
		json_object_set_new(a->bal, "why", json_string(why));
	}
	if (!r) {
		tend_tips(a, s, &c, NULL, NULL, NULL, why, &same);
		goto out;
	}
	tend_tips(a, s, &c, in.vms[m.vm].name, in.nodes[m.from].name, in.nodes[m.to].name,
		  "superseded by a newer tip", &same);
	if (!same)
		make_tip(a, s, &c, &in, &m, why);
out:
	input_free(&in);
	json_decref(cooling);
}
