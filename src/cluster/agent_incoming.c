/*
 * agent_incoming.c - the destination side of a cluster migration: for each
 * /kvmove/incoming/NODE/VM request, an incoming VMM (`kvmove run --incoming
 * defer --expect VM`, this agent's --allow-disk and the VM's TAPs) made to
 * listen on this node's address in the asked migration network, and the
 * answer /kvmove/incoming-ready/NODE/VM; incoming VMMs nobody asks for any
 * more are stopped, but never one that may be past GO.
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
#include "cluster/records.h"

static int pick_port(struct agent *a, const char *addr)
{
	for (unsigned p = a->o.port_base; p < a->o.port_base + 200; p++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p) };
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r;
		if (fd < 0)
			return -errno;
		inet_pton(AF_INET, addr, &sa.sin_addr);
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (!r)
			return (int)p;
	}
	return -EADDRINUSE;
}

static void answer(struct agent *a, const char *vm, const char *mig, int attempt,
		   const char *addr, const char *error)
{
	char key[KEY_MAX_LEN];
	struct kv_err err;
	json_t *j = json_pack("{s:s, s:i}", "migration", mig, "attempt", attempt);

	if (addr)
		json_object_set_new(j, "addr", json_string(addr));
	if (error)
		json_object_set_new(j, "error", json_string(error));
	snprintf(key, sizeof(key), "/kvmove/incoming-ready/%s/%s", a->o.name, vm);
	if (agent_put_json(a, key, j, false, &err))
		agent_log(a, "answering for %s: %s", vm, err.msg);
}

/* Make the new incoming VMM listen (migrate-incoming returns once it does). */
static void listen_incoming(struct agent *a, struct lvmm *v)
{
	json_t *args = json_pack("{s:s+}", "uri", "tcp:", v->addr);
	struct kv_err err;
	int r = lvmm_exec(a, v->vm, "migrate-incoming", args, NULL, &err);

	json_decref(args);
	if (!r) {
		v->listening = true;
		answer(a, v->vm, v->mig, v->attempt, v->addr, NULL);
	} else if (v->exited) {
		answer(a, v->vm, v->mig, v->attempt, NULL, err.msg);
	} else {
		snprintf(v->why, sizeof(v->why), "%.190s", err.msg);
	}
}

/*
 * May this incoming VMM be stopped?  While no source is connected (status
 * none), yes.  Once one is, it may be past GO and about to take the owner
 * key (after this pass read it): killing it then could lose the VM.  It can
 * never take it, though, once the key names another node outright (not
 * free:TOKEN): the source kept the VM.  Asked of etcd now, not the snapshot.
 */
static bool incoming_idle(struct agent *a, struct lvmm *v)
{
	char key[KEY_MAX_LEN];
	struct store_kv kv;
	json_t *q = NULL;
	struct kv_err err;
	const char *st;
	bool idle = false;
	int r;

	if (v->exited)
		return true;
	if (!lvmm_exec(a, v->vm, "query-migrate", NULL, &q, &err)) {
		st = json_string_value(json_object_get(q, "status"));
		idle = !st || !strcmp(st, "none");
		json_decref(q);
		if (idle)
			return true;
	}
	cluster_owner_key(key, sizeof(key), v->vm);
	r = store_get(a->st, key, &kv, NULL, NULL);
	if (r)
		return r == -ENOENT;	/* no owner: nobody may take it */
	idle = strcmp(kv.value, a->o.name) && strncmp(kv.value, "free:", 5);
	store_kv_free(&kv);
	return idle;
}

void incoming_reconcile(struct agent *a, const struct snap *s)
{
	char prefix[KEY_MAX_LEN];
	size_t b, e;

	snprintf(prefix, sizeof(prefix), "/kvmove/incoming/%s/", a->o.name);
	snap_range(s, prefix, &b, &e);
	host_addrs(&a->host, &a->o);
	for (size_t i = b; i < e; i++) {
		const char *vm = s->l.kvs[i].key + strlen(prefix);
		json_t *req = json_loadb(s->l.kvs[i].value, s->l.kvs[i].vlen, 0, NULL);
		const char *mig = json_string_value(json_object_get(req, "migration"));
		const char *net = json_string_value(json_object_get(req, "network"));
		int attempt = (int)json_integer_value(json_object_get(req, "attempt"));
		struct lvmm *v = lvmm_find(a, vm);
		const struct store_kv *owner = snap_get(s, "/kvmove/vms/%s/owner", vm);
		char addr[80], why[256];
		const char *ip = NULL;
		const struct store_kv *skv;
		struct vm_spec spec;
		struct kv_err err;
		int port, r;

		if (!mig || !net || !cluster_vm_name_ok(vm) || !cluster_migration_id_ok(mig) ||
		    strlen(net) >= sizeof(a->host.nets[0].cidr)) {
			json_decref(req);
			continue;
		}
		if (v && v->role == LV_RUN) {
			if (owner && !strcmp(owner->value, a->o.name)) {
				json_decref(req);	/* it runs here already */
				continue;
			}
			/* the VMM the VM left here when it moved away (postmigrate):
			 * it must be gone before a new one takes its socket */
			lvmm_stop(a, v, false);
			for (int t = 0; t < 30 && !v->exited; t++) {
				struct timespec ts = { 0, 100 * 1000000L };
				nanosleep(&ts, NULL);
				lvmm_reap(a);
			}
			if (!v->exited) {
				json_decref(req);
				continue;
			}
			lvmm_remove(a, v);
			v = NULL;
		}
		if (v && (strcmp(v->mig, mig) || v->attempt != attempt)) {
			/* an older attempt: away with it first (once it is idle or
			 * has ended by itself) */
			if (v->exited && !(owner && !strcmp(owner->value, a->o.name)))
				lvmm_remove(a, v);
			else if (incoming_idle(a, v))
				lvmm_stop(a, v, false);
			json_decref(req);
			continue;
		}
		if (v) {
			if (!v->listening && !v->exited)
				listen_incoming(a, v);
			json_decref(req);
			continue;
		}
		for (unsigned k = 0; k < a->host.nnets; k++)
			if (!strcmp(a->host.nets[k].cidr, net) && a->host.nets[k].addr[0])
				ip = a->host.nets[k].addr;
		if (!ip) {
			snprintf(why, sizeof(why), "%s has no address on the migration network %s",
				 a->o.name, net);
			answer(a, vm, mig, attempt, NULL, why);
			json_decref(req);
			continue;
		}
		port = pick_port(a, ip);
		if (port < 0) {
			answer(a, vm, mig, attempt, NULL, "no free port for an incoming migration");
			json_decref(req);
			continue;
		}
		snprintf(addr, sizeof(addr), "%s:%d", ip, port);
		skv = snap_get(s, "/kvmove/vms/%s/spec", vm);
		if (!skv || vm_spec_parse(vm, skv->value, skv->vlen, &spec, &err)) {
			answer(a, vm, mig, attempt, NULL, skv ? err.msg : "the VM has no definition");
			json_decref(req);
			continue;
		}
		r = lvmm_start_incoming(a, vm, &spec, mig, attempt, addr, &err);
		vm_spec_free(&spec);
		if (r) {
			answer(a, vm, mig, attempt, NULL, err.msg);
		} else {
			/* give it a moment to open its control socket */
			struct lvmm *nv = lvmm_find(a, vm);
			for (int t = 0; t < 50 && nv && !nv->listening && !nv->exited; t++) {
				struct timespec ts = { 0, 100 * 1000000L };
				listen_incoming(a, nv);
				if (!nv->listening)
					nanosleep(&ts, NULL);
				lvmm_reap(a);
			}
			if (nv && !nv->listening) {
				snprintf(why, sizeof(why), "the incoming VMM did not listen (%.200s)",
					 nv->why);
				agent_log(a, "VM %s: %s", vm, why);
				answer(a, vm, mig, attempt, NULL, why);
			}
		}
		json_decref(req);
	}
	/* incoming VMMs nobody asks for any more */
	for (struct lvmm *v = a->vmms, *n; v; v = n) {
		const struct store_kv *owner;
		n = v->next;
		if (v->role != LV_INCOMING)
			continue;
		owner = snap_get(s, "/kvmove/vms/%s/owner", v->vm);
		if (owner && !strcmp(owner->value, a->o.name))
			continue;	/* it took the VM: vms_reconcile adopts it */
		if (snap_get(s, "/kvmove/incoming/%s/%s", a->o.name, v->vm))
			continue;
		if (v->exited)
			lvmm_remove(a, v);
		else if (incoming_idle(a, v))
			lvmm_stop(a, v, false);
	}
	/* answers nobody reads any more */
	snprintf(prefix, sizeof(prefix), "/kvmove/incoming-ready/%s/", a->o.name);
	snap_range(s, prefix, &b, &e);
	for (size_t i = b; i < e; i++)
		if (!snap_get(s, "/kvmove/incoming/%s/%s", a->o.name,
			      s->l.kvs[i].key + strlen(prefix)))
			(void)store_delete(a->st, s->l.kvs[i].key, NULL);
}

bool mig_busy(struct agent *a)
{
	if (a->migs)
		return true;
	for (struct lvmm *v = a->vmms; v; v = v->next)
		if (v->role == LV_INCOMING || v->stopping)
			return true;
	return false;
}
