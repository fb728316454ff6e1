/*
 * agent_failover.c - a dead node's VMs boot again on the live nodes.
 *
 * A node is dead when its lease-bound record (/kvmove/nodes/NODE) is gone:
 * its agent did not renew the lease for one TTL.  A VM whose owner key
 * still names such a node, whose desired state is running and whose restart
 * policy is on-failure or always is booted again elsewhere, from its disks.
 * "Never twice" rests on three things, in this order:
 *   1. its VMM ran with --fence-lease (agent_vmm.c): it ended the VM before
 *      the lease could expire, whether its agent lived or not (fence.h);
 *   2. before a node takes the VM it checks that no process holds a lock on
 *      any of the VM's disks (every VMM locks its disks while it runs): if
 *      one does, the VM is reported "fencing" and not started;
 *   3. the take is one transaction: the owner key is still what was read
 *      (the dead node) and the dead node's record is still absent, so a
 *      node that comes back in time keeps its VMs and of two agents with
 *      different views at most one wins.
 * Every live agent computes the same plan from the same snapshot (VMs in
 * priority order, then by name; each placed by the placement rules with the
 * plan's earlier choices counted) and takes only the VMs the plan gives it.
 * The first live node by name reports the VMs that stay down (restart
 * policy never, or no node fits) in their status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/agent_int.h"
#include "cluster/arbiter_etcd.h"
#include "cluster/nodeset.h"
#include "cluster/records.h"
#include "cluster/vmcpu.h"

struct cand {
	char vm[NAME_MAX_LEN];
	char dead[NAME_MAX_LEN];
	int64_t owner_mod;
	bool handover;		/* the owner key says free:... (a cut hand-over) */
	struct vm_spec spec;
};

struct planned {			/* a VM the plan put on node name */
	char name[NAME_MAX_LEN];
	uint64_t ram;
	unsigned cpus;
};

static int cand_cmp(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;

	if (a->spec.priority != b->spec.priority)
		return a->spec.priority > b->spec.priority ? -1 : 1;
	return strcmp(a->vm, b->vm);
}

/*
 * Does any process hold a lock on path?  1 (why filled), 0, or -errno.  A
 * probe for a write lock conflicts with every lock a VMM takes (write for a
 * disk it writes, read for a read-only one).
 */
static int disk_locked(const char *path, char *why, size_t len)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	close(fd);
	if (fl.l_type == F_UNLCK)
		return 0;
	if (fl.l_pid > 0)
		snprintf(why, len, "disk %s is still locked (a %s lock of pid %d on this host)", path,
			 fl.l_type == F_WRLCK ? "write" : "read", (int)fl.l_pid);
	else
		snprintf(why, len, "disk %s is still locked (a %s lock; its VMM may still run)",
			 path, fl.l_type == F_WRLCK ? "write" : "read");
	return 1;
}

/* The status of a VM whose node is dead: written by a live node, when
 * state or reason changed (the rest of the old status is kept). */
static void report(struct agent *a, const struct snap *s, const struct cand *c,
		   const char *state, const char *reason)
{
	json_t *old = snap_json(s, "/kvmove/vms/%s/status", c->vm), *st;
	char key[KEY_MAX_LEN];
	struct kv_err err;

	if (old && !strcmp(cluster_jstr(old, "state"), state) &&
	    !strcmp(cluster_jstr(old, "reason"), reason) &&
	    !strcmp(cluster_jstr(old, "node"), c->dead)) {
		json_decref(old);
		return;
	}
	st = old ? old : json_object();
	json_object_set_new(st, "node", json_string(c->dead));
	json_object_set_new(st, "state", json_string(state));
	json_object_set_new(st, "pid", json_integer(0));
	json_object_set_new(st, "since", json_real(agent_wall()));
	json_object_set_new(st, "reason", json_string(reason));
	snprintf(key, sizeof(key), "/kvmove/vms/%s/status", c->vm);
	if (agent_put_json(a, key, st, false, &err))
		agent_log(a, "status of %s: %s", c->vm, err.msg);
	else
		agent_log(a, "VM %s: %s: %s", c->vm, state, reason);
}

/* Set the owner key to node if it is unchanged and the dead node's record
 * still absent: take the VM (node = us), or give a cut hand-over back to
 * its dead source (a restart-never VM: it waits for that node, as it would
 * have without the hand-over). */
static bool set_owner(struct agent *a, const struct cand *c, const char *node)
{
	char okey[KEY_MAX_LEN], nkey[KEY_MAX_LEN];
	struct store_cmp cmps[2];
	struct store_op op;
	struct kv_err err;
	bool ok = false;

	cluster_owner_key(okey, sizeof(okey), c->vm);
	snprintf(nkey, sizeof(nkey), "/kvmove/nodes/%s", c->dead);
	cmps[0] = (struct store_cmp){ .key = okey, .target = STORE_CMP_MOD, .result = STORE_EQ,
				      .num = c->owner_mod };
	cmps[1] = (struct store_cmp){ .key = nkey, .target = STORE_CMP_CREATE,
				      .result = STORE_EQ, .num = 0 };
	op = (struct store_op){ .type = STORE_OP_PUT, .key = okey, .value = node };
	if (store_txn(a->st, cmps, 2, &op, 1, NULL, 0, &ok, NULL, &err)) {
		agent_log(a, "failover of %s: %s", c->vm, err.msg);
		return false;
	}
	return ok;
}

/* Place c with the plan so far; the chosen node's name, or NULL (why). */
static const char *place(struct agent *a, const struct snap *s, const struct cand *c,
			 struct planned *plan, size_t nplan, char *why, size_t len)
{
	struct place_vm pv = { .name = c->vm, .mem = c->spec.mem, .cpus = c->spec.cpus };
	struct vmcpu_need need;
	struct place_verdict *v = NULL;
	struct nodeset ns = { 0 };
	const char *chosen = NULL;
	struct kv_err err;
	int i;

	/* a cold boot: any CPU that has its model's features */
	vmcpu_need(&c->spec.cpu, NULL, &need);
	vmcpu_place(&need, &pv);
	if (mig_nodeset(&ns, s, c->vm, &err) || !(v = calloc(ns.n + 1, sizeof(*v)))) {
		snprintf(why, len, "placement: %s", err.msg);
		nodeset_free(&ns);
		return NULL;
	}
	for (size_t p = 0; p < nplan; p++) {
		int k = nodeset_find(&ns, plan[p].name);
		if (k >= 0) {
			ns.place[k].ram_used += plan[p].ram;
			ns.place[k].cpus_used += plan[p].cpus;
		}
	}
	i = nodeset_choose(&ns, &pv, v);
	if (i >= 0) {
		chosen = ns.v[i].name;
		snprintf(plan[nplan].name, sizeof(plan[nplan].name), "%s", chosen);
		plan[nplan].ram = c->spec.mem;
		plan[nplan].cpus = c->spec.cpus;
		chosen = plan[nplan].name;
	} else {
		size_t o = (size_t)snprintf(why, len, "no node can take it:");
		for (size_t k = 0; k < ns.n && o < len; k++)
			o += (size_t)snprintf(why + o, len - o, " %s: %s;", ns.v[k].name,
					      v[k].reason);
	}
	free(v);
	nodeset_free(&ns);
	return chosen;
}

/* The node a VM's owner key puts it on, for failover: the owner itself,
 * or, during a hand-over ("free:TOKEN": the source let go, the destination
 * has not taken it yet), the node its status says it ran on: if that
 * source died in the middle, no GO can come any more and the VM would
 * otherwise stay unowned forever.  A destination that did get GO races
 * set_owner() on the owner key's revision: exactly one of them wins. */
static const char *owner_node(const struct snap *s, const char *vm, const struct store_kv *owner,
			      char *buf, size_t len)
{
	json_t *st;

	if (strncmp(owner->value, "free:", 5))
		return owner->value;
	st = snap_json(s, "/kvmove/vms/%s/status", vm);
	snprintf(buf, len, "%s", cluster_jstr(st, "node"));
	json_decref(st);
	return buf;
}

/* The candidates: VMs whose owner key names a node without a record. */
static size_t candidates(struct agent *a, const struct snap *s, struct cand **out)
{
	struct cand *v = NULL;
	size_t n = 0, cap = 0, b, e;

	snap_range(s, "/kvmove/vms/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const char *key = s->l.kvs[i].key + strlen("/kvmove/vms/"), *slash;
		const struct store_kv *owner;
		struct cand c = { 0 };
		struct kv_err err;
		char nbuf[NAME_MAX_LEN];
		const char *node;

		slash = strchr(key, '/');
		if (!slash || strcmp(slash, "/spec") || (size_t)(slash - key) >= sizeof(c.vm))
			continue;
		snprintf(c.vm, sizeof(c.vm), "%.*s", (int)(slash - key), key);
		if (!cluster_vm_name_ok(c.vm))
			continue;
		owner = snap_get(s, "/kvmove/vms/%s/owner", c.vm);
		if (!owner)
			continue;
		node = owner_node(s, c.vm, owner, nbuf, sizeof(nbuf));
		if (!cluster_node_name_ok(node) || strlen(node) >= sizeof(c.dead) ||
		    !strcmp(node, a->o.name) || snap_get(s, "/kvmove/nodes/%s", node))
			continue;
		if (vm_spec_parse(c.vm, s->l.kvs[i].value, s->l.kvs[i].vlen, &c.spec, &err))
			continue;
		if (!c.spec.running) {
			vm_spec_free(&c.spec);
			continue;
		}
		snprintf(c.dead, sizeof(c.dead), "%s", node);
		c.owner_mod = owner->mod_rev;
		c.handover = !strncmp(owner->value, "free:", 5);
		if (n == cap) {
			struct cand *nv = realloc(v, (cap = cap ? 2 * cap : 8) * sizeof(*v));
			if (!nv) {
				vm_spec_free(&c.spec);
				break;
			}
			v = nv;
		}
		v[n++] = c;
	}
	*out = v;
	return n;
}

/* The dead node's unfinished migrations of a VM we took end "failed": no
 * agent of theirs is left to end them (a node that comes back would find
 * its VMM gone and say the same). */
static void end_migrations(struct agent *a, const struct snap *s, const struct cand *c)
{
	size_t b, e;

	snap_range(s, "/kvmove/migrations/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const struct store_kv *kv = &s->l.kvs[i];
		json_t *rec = json_loadb(kv->value, kv->vlen, 0, NULL);
		struct kv_err err;
		char reason[200];
		bool ok;

		if (json_is_object(rec) && !strcmp(cluster_jstr(rec, "vm"), c->vm) &&
		    !strcmp(cluster_jstr(rec, "from"), c->dead) &&
		    !cluster_migration_state_terminal(cluster_jstr(rec, "state"))) {
			snprintf(reason, sizeof(reason), "its source node %s died; %s failed over",
				 c->dead, c->vm);
			json_object_set_new(rec, "state", json_string("failed"));
			json_object_set_new(rec, "reason", json_string(reason));
			json_object_set_new(rec, "finished", json_real(agent_wall()));
			{
				char *text = json_dumps(rec, JSON_COMPACT);
				const struct store_cmp cmp = { .key = kv->key, .target = STORE_CMP_MOD,
							       .result = STORE_EQ,
							       .num = kv->mod_rev };
				const struct store_op put = { .type = STORE_OP_PUT, .key = kv->key,
							      .value = text };
				if (text && store_txn(a->st, &cmp, 1, &put, 1, NULL, 0, &ok, NULL,
						      &err))
					agent_log(a, "migration record %s: %s", kv->key, err.msg);
				free(text);
			}
		}
		json_decref(rec);
	}
}

/* Am I the first live node by name (the one that reports)? */
static bool reporter(struct agent *a, const struct snap *s)
{
	size_t b, e;

	snap_range(s, "/kvmove/nodes/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const char *n = s->l.kvs[i].key + strlen("/kvmove/nodes/");
		if (cluster_node_name_ok(n))
			return !strcmp(n, a->o.name);
	}
	return false;
}

void failover_reconcile(struct agent *a, const struct snap *s)
{
	struct cand *c = NULL;
	struct planned *plan = NULL;
	size_t n, nplan = 0;
	bool rep;

	/* our own record must be there: a node the cluster thinks dead takes
	 * nothing (it registers first) */
	if (!snap_get(s, "/kvmove/nodes/%s", a->o.name))
		return;
	/* after a whole-cluster outage the agents come back one by one: the
	 * first must not take every VM of the others before they registered.
	 * One lease TTL after our own registration every live node has had
	 * the time to renew (or register) its own. */
	if (agent_now() - a->t_lease < a->o.lease_ttl)
		return;
	n = candidates(a, s, &c);
	if (!n)
		goto out;
	rep = reporter(a, s);
	qsort(c, n, sizeof(*c), cand_cmp);
	if (!(plan = calloc(n, sizeof(*plan))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		char why[1500], reason[1700];
		const char *to;
		json_t *d;
		size_t k;
		int busy = 0;

		if (c[i].spec.restart == VM_RESTART_NEVER) {
			if (rep && c[i].handover && !set_owner(a, &c[i], c[i].dead))
				continue;	/* changed meanwhile: look again next pass */
			if (rep) {
				snprintf(reason, sizeof(reason), "node %s is down (its lease "
					 "expired); restart policy never: not booted elsewhere",
					 c[i].dead);
				report(a, s, &c[i], "node-down", reason);
			}
			continue;
		}
		to = place(a, s, &c[i], plan, nplan, why, sizeof(why));
		if (!to) {
			if (rep) {
				snprintf(reason, sizeof(reason), "node %s is down; %s", c[i].dead,
					 why);
				report(a, s, &c[i], "node-down", reason);
			}
			continue;
		}
		nplan++;
		if (strcmp(to, a->o.name))
			continue;	/* the node the plan names takes it */
		json_array_foreach(json_object_get(c[i].spec.j, "disks"), k, d) {
			const char *p = json_string_value(json_object_get(d, "path"));
			if (p && (busy = disk_locked(p, why, sizeof(why))) != 0)
				break;
		}
		if (busy) {
			if (busy < 0)
				snprintf(why, sizeof(why), "cannot check the lock of its disks: %s",
					 strerror(-busy));
			snprintf(reason, sizeof(reason), "node %s is down but %s: not booted "
				 "here until it is free", c[i].dead, why);
			report(a, s, &c[i], "fencing", reason);
			continue;
		}
		if (!set_owner(a, &c[i], a->o.name))
			continue;	/* someone else did, or the node came back */
		snprintf(reason, sizeof(reason), "failed over from %s (its lease expired), "
			 "priority %s", c[i].dead, vm_priority_name(c[i].spec.priority));
		agent_log(a, "VM %s: %s", c[i].vm, reason);
		end_migrations(a, s, &c[i]);
		json_object_del(a->failed, c[i].vm);
		json_object_set_new(a->restart_why, c[i].vm, json_string(reason));
	}
out:
	for (size_t i = 0; i < n; i++)
		vm_spec_free(&c[i].spec);
	free(c);
	free(plan);
}
