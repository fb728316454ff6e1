/*
 * agent_vms.c - the VMs this node owns: run what the cluster says should run
 * here, stop what should not, report what actually runs; tell the cluster
 * which VMs this node could run (their storage) and what it offers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster/agent_int.h"
#include "cluster/arbiter_etcd.h"
#include "cluster/fence.h"
#include "cluster/records.h"
#include "cluster/vmcpu.h"

/* Is path inside one of the directories this node's storage allows? */
static bool allowed(struct agent *a, const char *path)
{
	char rp[PATH_MAX], rd[PATH_MAX];

	if (!realpath(path, rp))
		return false;
	for (unsigned i = 0; i < a->o.nallow; i++) {
		size_t l;
		if (!realpath(a->o.allow[i], rd))
			continue;
		l = strlen(rd);
		if (!strcmp(rp, rd) || (!strncmp(rp, rd, l) && (rp[l] == '/' || rd[l - 1] == '/')))
			return true;
	}
	return false;
}

static json_t *reach_of(struct agent *a, json_t *spec)
{
	json_t *d;
	size_t i;
	const char *k = json_string_value(json_object_get(spec, "kernel"));
	const char *ird = json_string_value(json_object_get(spec, "initrd"));
	char why[400];

	if (!k || access(k, R_OK)) {
		snprintf(why, sizeof(why), "cannot read the kernel %s", k ? k : "(none)");
		goto no;
	}
	if (ird && access(ird, R_OK)) {
		snprintf(why, sizeof(why), "cannot read the initrd %s", ird);
		goto no;
	}
	json_array_foreach(json_object_get(spec, "nets"), i, d) {
		const char *br = json_string_value(json_object_get(d, "bridge"));
		if (!net_bridge_ok(br)) {
			snprintf(why, sizeof(why), "no bridge '%s' on this node for NIC %zu",
				 br ? br : "", i);
			goto no;
		}
	}
	json_array_foreach(json_object_get(spec, "disks"), i, d) {
		const char *p = json_string_value(json_object_get(d, "path"));
		bool ro = json_is_true(json_object_get(d, "readonly"));
		if (!p)
			continue;
		if (access(p, ro ? R_OK : R_OK | W_OK)) {
			snprintf(why, sizeof(why), "disk %s: %s", p, strerror(errno));
			goto no;
		}
		if (!allowed(a, p)) {
			snprintf(why, sizeof(why), "disk %s is not on storage this node uses "
				 "(its --allow-disk)", p);
			goto no;
		}
	}
	return json_pack("{s:b}", "ok", 1);
no:
	return json_pack("{s:b, s:s}", "ok", 0, "reason", why);
}

static void set_status(struct agent *a, const char *vm, const char *state, pid_t pid,
		       const char *reason)
{
	/* the CPU the guest was given where it booted, which it keeps when it
	 * moves (placement needs it), else this host's */
	json_t *cpu = json_object_get(a->vmcpu, vm);
	json_t *vendor = json_object_get(cpu, "cpu-vendor");
	json_t *feats = json_object_get(cpu, "cpu-features");
	json_t *old = json_object_get(a->status, vm), *st;
	char key[KEY_MAX_LEN];
	struct kv_err err;

	if (!json_is_array(feats))
		feats = a->host.features;
	if (old && json_equal(json_object_get(old, "cpu-features"), feats) &&
	    !strcmp(json_string_value(json_object_get(old, "state")) ?: "", state) &&
	    json_integer_value(json_object_get(old, "pid")) == pid &&
	    !strcmp(json_string_value(json_object_get(old, "reason")) ?: "", reason ?: ""))
		return;
	st = json_pack("{s:s, s:s, s:I, s:f, s:s, s:O}", "node", a->o.name, "state", state,
		       "pid", (json_int_t)pid, "since", (double)time(NULL), "cpu-vendor",
		       json_is_string(vendor) ? json_string_value(vendor) : a->host.vendor,
		       "cpu-features", feats);
	if (!st)
		return;
	if (reason)
		json_object_set_new(st, "reason", json_string(reason));
	snprintf(key, sizeof(key), "/kvmove/vms/%s/status", vm);
	json_object_set(a->status, vm, st);
	if (agent_put_json(a, key, st, false, &err)) {
		json_object_del(a->status, vm);	/* write it again next time */
		agent_log(a, "status of %s: %s", vm, err.msg);
	}
}

/* Another node may have written our VM's status while it thought this node
 * dead (failover's node-down): what we wrote last is then no longer what
 * etcd holds, and set_status must write again. */
static void forget_stale_status(struct agent *a, const struct snap *s, const char *vm)
{
	json_t *mine = json_object_get(a->status, vm), *cur;
	static const char *const fields[] = { "node", "state", "reason" };

	if (!mine)
		return;
	cur = snap_json(s, "/kvmove/vms/%s/status", vm);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (!cur || strcmp(cluster_jstr(cur, fields[i]), cluster_jstr(mine, fields[i]))) {
			json_object_del(a->status, vm);
			break;
		}
	json_decref(cur);
}

/* Let go of a VM this node no longer runs: the owner key goes only if it
 * still names us. */
static void disown(struct agent *a, const char *vm)
{
	char key[KEY_MAX_LEN];
	struct store_cmp c;
	struct store_op op;
	bool ok;
	struct kv_err err;

	cluster_owner_key(key, sizeof(key), vm);
	c = (struct store_cmp){ .key = key, .target = STORE_CMP_VALUE, .result = STORE_EQ,
				.value = a->o.name };
	op = (struct store_op){ .type = STORE_OP_DELETE, .key = key };
	if (store_txn(a->st, &c, 1, &op, 1, NULL, 0, &ok, NULL, &err))
		agent_log(a, "releasing %s: %s", vm, err.msg);
}

/* Is a migration of vm from here under way: one this agent drives, or one
 * the record says runs (a restarted agent picks it up in mig_reconcile,
 * after this: its VMM must still be there to ask)? */
static bool migrating_from_here(struct agent *a, const struct snap *s, const char *vm)
{
	size_t b, e;

	for (struct smig *m = a->migs; m; m = m->next)
		if (!strcmp(m->vm, vm))
			return true;
	snap_range(s, "/kvmove/migrations/", &b, &e);
	for (size_t i = b; i < e; i++) {
		json_t *r = json_loadb(s->l.kvs[i].value, s->l.kvs[i].vlen, 0, NULL);
		bool here = json_is_object(r) &&
			    !strcmp(json_string_value(json_object_get(r, "from")) ?: "", a->o.name) &&
			    !strcmp(json_string_value(json_object_get(r, "vm")) ?: "", vm) &&
			    !strcmp(json_string_value(json_object_get(r, "state")) ?: "", "running");
		json_decref(r);
		if (here)
			return true;
	}
	return false;
}

static void exit_reason(struct agent *a, struct lvmm *v, char *buf, size_t len)
{
	char log[512];

	lvmm_sock(a, v->vm, "log", log, sizeof(log));
	if (!v->child)
		snprintf(buf, len, "its VMM (pid %d) exited (log: %s)", (int)v->pid, log);
	else if (WIFEXITED(v->status) && WEXITSTATUS(v->status) == FENCE_EXIT_STATUS)
		snprintf(buf, len, "its VMM fenced itself: this node's lease could not be "
			 "confirmed in time (log: %s)", log);
	else if (WIFSIGNALED(v->status))
		snprintf(buf, len, "its VMM was killed by signal %d (log: %s)",
			 WTERMSIG(v->status), log);
	else
		snprintf(buf, len, "its VMM exited with status %d (log: %s)",
			 WEXITSTATUS(v->status), log);
}

/*
 * The VM's restart policy says to boot it again here after its VMM ended
 * (v, exited)?  A crash or an error exit is a failure; a clean exit (the
 * guest shut down) only counts for "always"; a VMM adopted after an agent
 * restart left no status, so its end counts as a failure.  *n: restarts in
 * the window, this one included; *gave_up: the budget is spent.
 */
static bool restart_due(struct agent *a, const char *vm, const struct vm_spec *spec,
			const struct lvmm *v, unsigned *n, bool *gave_up)
{
	bool clean = v->child && WIFEXITED(v->status) && WEXITSTATUS(v->status) == 0;
	json_t *times = json_object_get(a->restarts, vm), *kept, *t;
	double now = agent_now();
	size_t i;

	*n = 0;
	*gave_up = false;
	if (spec->restart == VM_RESTART_NEVER ||
	    (clean && spec->restart != VM_RESTART_ALWAYS))
		return false;
	/* the restarts of the last window only */
	kept = json_array();
	json_array_foreach(times, i, t)
		if (now - json_real_value(t) < CLUSTER_RESTART_WINDOW_S)
			json_array_append(kept, t);
	if (json_array_size(kept) >= CLUSTER_RESTART_MAX) {
		*n = (unsigned)json_array_size(kept);
		*gave_up = true;
		json_object_set_new(a->restarts, vm, kept);
		return false;
	}
	json_array_append_new(kept, json_real(now));
	*n = (unsigned)json_array_size(kept);
	json_object_set_new(a->restarts, vm, kept);
	return true;
}

/* The CPU a VM booting here is given, which its status reports and it
 * keeps when it moves: its named model's features, or on "host" this
 * host's (less its "-feat"s). */
static void boot_cpu(struct agent *a, const char *vm, const struct vm_spec *spec)
{
	json_t *f = vmcpu_boot_features(&spec->cpu, a->host.features);

	if (!f) {
		json_object_del(a->vmcpu, vm);	/* set_status falls back on the host's */
		return;
	}
	json_object_set_new(a->vmcpu, vm, json_pack("{s:s, s:o}", "cpu-vendor", a->host.vendor,
						    "cpu-features", f));
}

static void own_vm(struct agent *a, const struct snap *s, const char *vm,
		   const struct vm_spec *spec, struct lvmm *v, int64_t owner_rev)
{
	json_t *failed = json_object_get(a->failed, vm);
	struct kv_err err;
	char why[700];

	if (v && !json_object_get(a->vmcpu, vm)) {
		/* a VM that arrived, or a VMM adopted after a restart: its CPU is
		 * what the last status says (written where it booted, and carried
		 * along since) */
		json_t *prev = snap_json(s, "/kvmove/vms/%s/status", vm);
		if (json_is_array(json_object_get(prev, "cpu-features")))
			json_object_set_new(a->vmcpu, vm, json_pack(
				"{s:O?, s:O}", "cpu-vendor", json_object_get(prev, "cpu-vendor"),
				"cpu-features", json_object_get(prev, "cpu-features")));
		json_decref(prev);
	}

	if (v && v->role == LV_INCOMING) {
		/* the incoming VMM took the owner key at GO: it runs the VM */
		lvmm_set_role(a, v, LV_RUN);
		agent_log(a, "VM %s runs here now (migration %s)", vm, v->mig);
	}
	if (spec->running) {
		if (!v) {
			/* a VMM that died and that its restart policy did not
			 * boot again (below) was reported: the owner key went with
			 * it, and only a new `vm start` (a new owner key) runs it
			 * again */
			if (json_integer_value(failed) == owner_rev)
				return;
			boot_cpu(a, vm, spec);	/* a fresh boot: this host's CPU */
			if (lvmm_start_run(a, vm, spec, &err)) {
				json_object_set_new(a->failed, vm, json_integer(owner_rev));
				set_status(a, vm, "failed", 0, err.msg);
				disown(a, vm);
				return;
			}
			v = lvmm_find(a, vm);
			/* a failover's reason, when it brought the VM here */
			set_status(a, vm, "running", v ? v->pid : 0,
				   json_string_value(json_object_get(a->restart_why, vm)));
			return;
		}
		if (v->exited) {
			unsigned n;
			bool gave_up;

			exit_reason(a, v, why, sizeof(why));
			agent_log(a, "VM %s: %s", vm, why);
			if (restart_due(a, vm, spec, v, &n, &gave_up)) {
				char reason[800];

				/* a cold boot here, under the same owner key */
				lvmm_remove(a, v);
				boot_cpu(a, vm, spec);	/* this host's CPU now */
				if (!lvmm_start_run(a, vm, spec, &err)) {
					v = lvmm_find(a, vm);
					snprintf(reason, sizeof(reason), "restarted (%u of %d in %d s, "
						 "policy %s) after: %s", n, CLUSTER_RESTART_MAX,
						 CLUSTER_RESTART_WINDOW_S, vm_restart_name(spec->restart),
						 why);
					agent_log(a, "VM %s: %s", vm, reason);
					/* kept in its status while this VMM runs */
					json_object_set_new(a->restart_why, vm, json_string(reason));
					set_status(a, vm, "running", v ? v->pid : 0, reason);
					return;
				}
				snprintf(why, sizeof(why), "%.500s", err.msg);
				json_object_set_new(a->failed, vm, json_integer(owner_rev));
				json_object_del(a->restart_why, vm);
				set_status(a, vm, "failed", 0, why);
				disown(a, vm);
				return;
			}
			if (gave_up) {
				size_t l = strlen(why);
				snprintf(why + l, sizeof(why) - l, "; not restarted: %u restarts in the "
					 "last %d s already", n, CLUSTER_RESTART_WINDOW_S);
			}
			json_object_set_new(a->failed, vm, json_integer(owner_rev));
			json_object_del(a->restart_why, vm);
			set_status(a, vm, "failed", 0, why);
			lvmm_remove(a, v);
			disown(a, vm);
			return;
		}
		set_status(a, vm, "running", v->pid,
			   json_string_value(json_object_get(a->restart_why, vm)));
		return;
	}
	/* desired stopped */
	json_object_del(a->restart_why, vm);
	if (v && !v->exited) {
		lvmm_stop(a, v, false);
		set_status(a, vm, "stopping", v->pid, NULL);
		return;
	}
	if (v)
		lvmm_remove(a, v);
	set_status(a, vm, "stopped", 0, NULL);
	disown(a, vm);
}

void vms_reconcile(struct agent *a, const struct snap *s)
{
	size_t b, e;

	snap_range(s, "/kvmove/vms/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const char *key = s->l.kvs[i].key + strlen("/kvmove/vms/"), *slash;
		const struct store_kv *owner;
		char vm[NAME_MAX_LEN], rkey[KEY_MAX_LEN];
		struct vm_spec spec;
		json_t *r, *old;
		struct lvmm *v;
		struct kv_err err;

		slash = strchr(key, '/');
		if (!slash || strcmp(slash, "/spec") || (size_t)(slash - key) >= sizeof(vm))
			continue;
		snprintf(vm, sizeof(vm), "%.*s", (int)(slash - key), key);
		owner = snap_get(s, "/kvmove/vms/%s/owner", vm);
		if (!cluster_vm_name_ok(vm))
			continue;
		/* a definition is checked before anything of it is used */
		if (vm_spec_parse(vm, s->l.kvs[i].value, s->l.kvs[i].vlen, &spec, &err)) {
			if (owner && !strcmp(owner->value, a->o.name))
				set_status(a, vm, "failed", 0, err.msg);
			continue;
		}
		/* can this node run it? */
		r = reach_of(a, spec.j);
		old = json_object_get(a->reach, vm);
		if (r && (!old || !json_equal(old, r))) {
			snprintf(rkey, sizeof(rkey), "/kvmove/reach/%s/%s", vm, a->o.name);
			json_object_set(a->reach, vm, r);
			if (agent_put_json(a, rkey, json_incref(r), true, &err))
				json_object_del(a->reach, vm);
		}
		json_decref(r);

		v = lvmm_find(a, vm);
		if (owner && !strcmp(owner->value, a->o.name)) {
			forget_stale_status(a, s, vm);
			own_vm(a, s, vm, &spec, v, owner->create_rev);
		} else if (v && v->role == LV_RUN && !migrating_from_here(a, s, vm) &&
			   !(owner && !strncmp(owner->value, "free:", 5))) {
			/* it moved away (a finished migration), or the cluster
			 * stopped it: this VMM has nothing to run */
			if (v->exited)
				lvmm_remove(a, v);
			else
				lvmm_stop(a, v, false);
			json_object_del(a->status, vm);
			json_object_del(a->vmcpu, vm);
			json_object_del(a->restart_why, vm);
		}
		vm_spec_free(&spec);
	}
	/* VMMs of VMs the cluster no longer knows */
	for (struct lvmm *v = a->vmms, *n; v; v = n) {
		n = v->next;
		if (v->role == LV_RUN && !snap_get(s, "/kvmove/vms/%s/spec", v->vm) &&
		    !migrating_from_here(a, s, v->vm)) {
			if (v->exited)
				lvmm_remove(a, v);
			else
				lvmm_stop(a, v, false);
		}
	}
}

json_t *vms_node_record(struct agent *a, const struct snap *s)
{
	json_t *vms = json_array(), *addrs = json_array(), *nets = json_array(), *rec, *cfg,
	       *ncfg;
	uint64_t ram_used = 0;
	unsigned cpus_used = 0;
	double load[3];
	json_int_t limit = 1;
	bool maint = false;
	size_t b, e;

	snap_range(s, "/kvmove/vms/", &b, &e);
	for (size_t i = b; i < e; i++) {
		const struct store_kv *kv = &s->l.kvs[i];
		const char *k = kv->key + strlen("/kvmove/vms/"), *slash = strchr(k, '/');
		char vm[NAME_MAX_LEN];
		json_t *spec;

		if (!slash || strcmp(slash, "/owner") || strcmp(kv->value, a->o.name) ||
		    (size_t)(slash - k) >= sizeof(vm))
			continue;
		snprintf(vm, sizeof(vm), "%.*s", (int)(slash - k), k);
		json_array_append_new(vms, json_string(vm));
		if ((spec = snap_json(s, "/kvmove/vms/%s/spec", vm))) {
			ram_used += (uint64_t)json_integer_value(json_object_get(spec, "mem"));
			cpus_used += (unsigned)json_integer_value(json_object_get(spec, "cpus"));
			json_decref(spec);
		}
	}
	/* VMs on their way here hold their RAM already */
	for (struct lvmm *v = a->vmms; v; v = v->next) {
		json_t *spec;
		if (v->role != LV_INCOMING || v->exited)
			continue;
		if ((spec = snap_json(s, "/kvmove/vms/%s/spec", v->vm))) {
			ram_used += (uint64_t)json_integer_value(json_object_get(spec, "mem"));
			cpus_used += (unsigned)json_integer_value(json_object_get(spec, "cpus"));
			json_decref(spec);
		}
	}
	for (unsigned i = 0; i < a->host.nnets; i++) {
		json_array_append_new(nets, json_string(a->host.nets[i].cidr));
		json_array_append_new(addrs, json_string(a->host.nets[i].addr));
	}
	if ((cfg = snap_json(s, "/kvmove/config"))) {
		if (json_is_integer(json_object_get(cfg, "migration-limit")))
			limit = json_integer_value(json_object_get(cfg, "migration-limit"));
		json_decref(cfg);
	}
	if ((ncfg = snap_json(s, "/kvmove/nodecfg/%s", a->o.name))) {
		if (json_is_integer(json_object_get(ncfg, "migration-limit")))
			limit = json_integer_value(json_object_get(ncfg, "migration-limit"));
		maint = json_is_true(json_object_get(ncfg, "maintenance"));
		json_decref(ncfg);
	}
	host_load(load);
	rec = json_pack("{s:s, s:s?, s:o, s:o, s:i, s:i, s:I, s:I, s:I, s:I, s:[f,f,f], s:s, "
			"s:O, s:o, s:I, s:b, s:i}",
			"name", a->o.name, "mgmt-addr", a->o.mgmt_addr, "migration-addrs", addrs,
			"migration-nets", nets, "cpus", (int)a->host.cpus, "cpus-used",
			(int)cpus_used, "ram-total", (json_int_t)a->host.ram_total, "ram-used",
			(json_int_t)ram_used, "ram-free",
			(json_int_t)(a->host.ram_total > ram_used ? a->host.ram_total - ram_used
								    : 0),
			"host-ram-free", (json_int_t)host_ram_free(), "load", load[0], load[1],
			load[2], "cpu-vendor", a->host.vendor, "cpu-features", a->host.features,
			"vms", vms, "migration-limit", limit, "maintenance", maint, "agent-pid",
			(int)getpid());
	return rec;
}
