/*
 * agent.c - kvmove agent's loop (agent.h).
 *
 * Level-triggered: every pass reads all of /kvmove/ at one revision,
 * compares it with what runs here and acts; then it waits on a watch from
 * the next revision (so no change between the read and the wait is missed)
 * or a timeout.  A separate thread renews the lease every TTL/3, so that a
 * slow pass never lets the node expire.  When etcd cannot be reached the
 * VMs keep running and nothing new starts; the loop goes on trying.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/agent_int.h"

#define PUBLISH_EVERY_S 60.0	/* load and host free RAM alone: every minute */

double agent_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void agent_log(struct agent *a, const char *fmt, ...)
{
	char msg[1024], when[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	strftime(when, sizeof(when), "%H:%M:%S", localtime_r(&ts.tv_sec, &tm));
	/* the agent is a daemon: its log is its standard error (journald) */
	fprintf(stderr, "%s.%03ld kvmove agent %s: %s\n", when, ts.tv_nsec / 1000000, a->o.name,
		msg);
}

double agent_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t agent_lease(struct agent *a)
{
	int64_t l;

	pthread_mutex_lock(&a->mu);
	l = a->lease;
	pthread_mutex_unlock(&a->mu);
	return l;
}

int agent_put_json(struct agent *a, const char *key, json_t *v, bool lease, struct kv_err *err)
{
	char *txt;
	int r;

	if (!v)
		return kv_errf(err, ENOMEM, "json");
	txt = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (!txt)
		return kv_errf(err, ENOMEM, "json");
	r = store_put(a->st, key, txt, lease ? agent_lease(a) : 0, NULL, err);
	free(txt);
	return r;
}

static void lease_file(struct agent *a, char *buf, size_t len)
{
	snprintf(buf, len, "%s/agent.lease", a->o.run_dir);
}

/* A restarted agent keeps its lease (and with it its node key and the
 * slots of migrations it runs) when the lease is still alive. */
static int take_lease(struct agent *a, struct kv_err *err)
{
	char path[512];
	long long id = 0;
	int64_t lease;
	FILE *f;
	int ttl, r;

	lease_file(a, path, sizeof(path));
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%lld", &id) != 1)
			id = 0;
		fclose(f);
	}
	if (id > 0 && !store_lease_keepalive(a->st, id, &ttl, NULL) && ttl > 0) {
		lease = id;
		agent_log(a, "kept lease %llx", id);
	} else {
		r = store_lease_grant(a->st, (int)a->o.lease_ttl, &lease, err);
		if (r)
			return r;
		if ((f = fopen(path, "we"))) {
			fprintf(f, "%lld\n", (long long)lease);
			fclose(f);
		}
	}
	pthread_mutex_lock(&a->mu);
	a->lease = lease;
	a->lease_lost = false;
	a->t_lease = agent_now();
	pthread_mutex_unlock(&a->mu);
	json_decref(a->published);	/* publish again under the new lease */
	a->published = NULL;
	json_object_clear(a->reach);
	return 0;
}

static void *keepalive(void *arg)
{
	struct agent *a = arg;
	unsigned period_ms = a->o.lease_ttl * 1000 / 3;
	bool warned = false;

	pthread_mutex_lock(&a->mu);
	while (!*a->stop) {
		struct timespec ts;
		int64_t lease;
		struct kv_err err;
		int ttl = 0, r;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += period_ms / 1000;
		ts.tv_nsec += (long)(period_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&a->cond, &a->mu, &ts);
		if (*a->stop || a->lease_lost)
			continue;
		lease = a->lease;	/* the main loop may have taken a new one meanwhile */
		pthread_mutex_unlock(&a->mu);
		r = store_lease_keepalive(a->st, lease, &ttl, &err);
		pthread_mutex_lock(&a->mu);
		if (r == -ENOENT && lease == a->lease) {
			a->lease_lost = true;
			pthread_mutex_unlock(&a->mu);
			agent_log(a, "lease %llx expired: registering again", (long long)lease);
			pthread_mutex_lock(&a->mu);
		} else if (r && !warned) {
			warned = true;
			pthread_mutex_unlock(&a->mu);
			agent_log(a, "cannot renew the lease (%s); VMs with a restart policy end "
				  "before it can expire (their VMMs fence), the others keep running",
				  err.msg);
			pthread_mutex_lock(&a->mu);
		} else if (!r && warned) {
			warned = false;
		}
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* The node record, written when something in it changed (load and the
 * host's free RAM only every PUBLISH_EVERY_S). */
static void publish(struct agent *a, const struct snap *s)
{
	json_t *rec = vms_node_record(a, s), *cmp_new, *cmp_old;
	char key[KEY_MAX_LEN];
	struct kv_err err;
	bool same = false;

	if (!rec)
		return;
	if (a->published) {
		cmp_new = json_deep_copy(rec);
		cmp_old = json_deep_copy(a->published);
		json_object_del(cmp_new, "load");
		json_object_del(cmp_new, "host-ram-free");
		json_object_del(cmp_old, "load");
		json_object_del(cmp_old, "host-ram-free");
		same = json_equal(cmp_new, cmp_old);
		json_decref(cmp_new);
		json_decref(cmp_old);
	}
	if (same && agent_now() - a->t_published < PUBLISH_EVERY_S &&
	    snap_get(s, "/kvmove/nodes/%s", a->o.name)) {
		json_decref(rec);
		return;
	}
	snprintf(key, sizeof(key), "/kvmove/nodes/%s", a->o.name);
	if (agent_put_json(a, key, json_incref(rec), true, &err)) {
		agent_log(a, "publishing the node: %s", err.msg);
		json_decref(rec);
		return;
	}
	json_decref(a->published);
	a->published = rec;
	a->t_published = agent_now();
}

static bool starts_with(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

/*
 * Does a change concern this agent?  Every pass reads all of /kvmove/, so at
 * 64 nodes waking every agent for every change (another node's record, a
 * migration's progress elsewhere) is most of the cluster's work.  Wanted:
 * VM definitions and owners, migrations from here, freed slots (our queue
 * may go on), requests to and answers for incoming VMMs, our settings and
 * our drain, nodes that died.  A
 * pass also runs at least every 2 s (300 ms while a migration runs), so a
 * change judged wrongly here is late, never lost.
 */
static bool relevant(const char *key, const char *value, size_t vlen, void *opaque)
{
	struct agent *a = opaque;
	char buf[KEY_MAX_LEN];

	if (!strcmp(key, "/kvmove/config") || starts_with(key, "/kvmove/incoming-ready/"))
		return true;
	snprintf(buf, sizeof(buf), "/kvmove/nodecfg/%s", a->o.name);
	if (!strcmp(key, buf))
		return true;
	snprintf(buf, sizeof(buf), "/kvmove/drains/%s", a->o.name);
	if (!strcmp(key, buf))
		return true;
	snprintf(buf, sizeof(buf), "/kvmove/incoming/%s/", a->o.name);
	if (starts_with(key, buf))
		return true;
	if (starts_with(key, "/kvmove/slots/"))
		return vlen == 0;	/* freed */
	if (starts_with(key, "/kvmove/nodes/"))
		return vlen == 0;	/* a node died: failover */
	if (starts_with(key, "/kvmove/vms/")) {
		const char *slash = strrchr(key, '/');
		return slash && (!strcmp(slash, "/spec") || !strcmp(slash, "/owner"));
	}
	if (starts_with(key, "/kvmove/migrations/")) {
		json_t *j = json_loadb(value, vlen, 0, NULL);
		const char *from = json_string_value(json_object_get(j, "from"));
		bool mine = !j || (from && !strcmp(from, a->o.name));
		json_decref(j);
		return mine;
	}
	return false;	/* node records, reach keys, statuses */
}

static int pass(struct agent *a, int64_t *rev, bool *unreachable)
{
	struct snap s = { 0 };
	struct kv_err err;
	bool lost;
	int r;

	pthread_mutex_lock(&a->mu);
	lost = a->lease_lost;
	pthread_mutex_unlock(&a->mu);
	if (lost && (r = take_lease(a, &err))) {
		agent_log(a, "registering: %s", err.msg);
		return r;
	}
	lvmm_reap(a);
	r = store_list(a->st, "/kvmove/", &s.l, &err);
	if (r) {
		if (!*unreachable)
			agent_log(a, "%s; the VMs keep running, nothing new starts", err.msg);
		*unreachable = true;
		return r;
	}
	if (*unreachable)
		agent_log(a, "etcd answers again");
	*unreachable = false;
	/* VMs that arrived become ours before our queue is looked at */
	incoming_reconcile(a, &s);
	vms_reconcile(a, &s);
	drain_reconcile(a, &s);	/* what it queues starts next pass */
	mig_reconcile(a, &s);
	failover_reconcile(a, &s);	/* what it takes starts next pass */
	load_publish(a, &s);
	balance_reconcile(a, &s);
	publish(a, &s);
	*rev = s.l.rev;
	store_list_free(&s.l);
	return 0;
}

int agent_run(const struct agent_options *o, volatile sig_atomic_t *stop, struct kv_err *err)
{
	struct store_options so = { .endpoints = o->etcd };
	struct agent *a = calloc(1, sizeof(*a));
	bool unreachable = false;
	ssize_t n;
	int r;

	if (!a)
		return kv_errf(err, ENOMEM, "agent");
	a->o = *o;
	if (!a->o.lease_ttl)
		a->o.lease_ttl = 6;
	if (!a->o.port_base)
		a->o.port_base = 7400;
	a->stop = stop;
	pthread_mutex_init(&a->mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&a->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	a->reach = json_object();
	a->status = json_object();
	a->failed = json_object();
	a->restarts = json_object();
	a->restart_why = json_object();
	a->vmcpu = json_object();
	a->load_prev = json_object();
	if (o->kvmove_bin) {
		snprintf(a->self, sizeof(a->self), "%s", o->kvmove_bin);
	} else if ((n = readlink("/proc/self/exe", a->self, sizeof(a->self) - 1)) > 0) {
		a->self[n] = '\0';
	} else {
		r = kv_errf_sys(err, errno, "/proc/self/exe");
		goto out;
	}
	if (mkdir(o->run_dir, 0750) && errno != EEXIST) {
		r = kv_errf_sys(err, errno, "run directory %s", o->run_dir);
		goto out;
	}
	if ((r = host_probe(&a->host, o, err)))
		goto out;
	if (a->host.cpu_problem[0])
		agent_log(a, "CPU features: cannot ask KVM (%s): this node offers none, so no "
			  "VM with a named CPU model is placed here", a->host.cpu_problem);
	if ((r = store_open(&a->st, &so, err)))
		goto out;
	if ((r = take_lease(a, err))) {
		kv_err_prefix(err, r, "registering node %s", o->name);
		goto out;
	}
	if ((r = -pthread_create(&a->ka_thread, NULL, keepalive, a))) {
		kv_errf(err, -r, "keepalive thread");
		goto out;
	}
	a->ka_started = true;
	lvmm_adopt(a, NULL);
	agent_log(a, "up: etcd %s, lease TTL %u s, run directory %s", store_endpoints(a->st),
		  a->o.lease_ttl, o->run_dir);
	while (!*stop) {
		int64_t rev = 0;
		struct kv_err werr;

		if (pass(a, &rev, &unreachable)) {
			sleep(1);
			continue;
		}
		r = store_watch_wait_filtered(a->st, "/kvmove/", rev + 1,
					      mig_busy(a) ? 300 : 2000, relevant, a, NULL, &werr);
		if (r && r != -ETIMEDOUT)
			sleep(1);
	}
	r = 0;
	agent_log(a, "stopping; its VMs keep running (a new agent adopts them)");
out:
	if (a->ka_started) {
		pthread_mutex_lock(&a->mu);
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->ka_thread, NULL);
	}
	while (a->vmms) {
		struct lvmm *v = a->vmms;
		a->vmms = v->next;
		free(v);	/* not lvmm_remove: the files let a new agent adopt them */
	}
	while (a->migs) {
		struct smig *m = a->migs;
		a->migs = m->next;
		json_decref(m->attempts);
		free(m);
	}
	host_free(&a->host);
	json_decref(a->published);
	json_decref(a->reach);
	json_decref(a->status);
	json_decref(a->failed);
	json_decref(a->restarts);
	json_decref(a->restart_why);
	json_decref(a->vmcpu);
	json_decref(a->load_prev);
	json_decref(a->bal);
	store_close(a->st);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->mu);
	free(a);
	return r;
}
