/*
 * control.c - the outgoing-migration API the VMM calls: start the thread,
 * cancel, query, parse parameters.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/vm.h"
#include "migration/source_internal.h"
#include "migration/vmlock.h"

static void *source_main(void *arg)
{
	struct migration *m = arg;

	src_set_status(m, MIG_SETUP);
	if (!strncmp(m->p.uri, "file:", 5))
		src_run_save(m);
	else if (m->p.via[0])
		src_run_quick_via(m);
	else
		src_run_live(m);
	ram_sender_destroy(&m->rs);
	stream_destroy(&m->s);
	pthread_mutex_lock(&m->mu);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->total_ms = src_now_ms() - m->t_start;
	m->finished = true;
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* 128 random bits, hex: what a destination checks before it lets a source
 * reconnect to a paused post-copy. */
static void make_id(char out[33])
{
	uint8_t b[16] = { 0 };

	if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
		/* getrandom cannot fail for 16 bytes once the pool is ready;
		 * still, never leave the id predictable-by-accident */
		uint64_t t = (uint64_t)src_now_ms() * 1000003u ^ (uint64_t)getpid();
		memcpy(b, &t, sizeof(t));
	}
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

int mig_start(struct migration **out, struct vm *vm, struct vmlock *lock,
	      const struct mig_params *p, mig_event_fn ev, void *ev_opaque,
	      struct kv_err *err)
{
	struct migration *m;
	int r;

	if (vm_get_state(vm) != VM_STATE_RUNNING)
		return kv_errf(err, EINVAL, "the VM must be running to migrate (it is %s)",
			       vm_state_name(vm_get_state(vm)));
	if (strncmp(p->uri, "tcp:", 4) && strncmp(p->uri, "file:", 5))
		return kv_errf(err, EINVAL, "unsupported destination '%s' (tcp:HOST:PORT or "
			       "file:PATH)", p->uri);
	m = calloc(1, sizeof(*m));
	if (!m)
		return kv_errf(err, ENOMEM, "migration");
	m->vm = vm;
	m->lock = lock && lock->fd >= 0 ? lock : NULL;
	m->p = *p;
	m->ev = ev;
	m->ev_opaque = ev_opaque;
	m->fd = -1;
	m->t_start = src_now_ms();
	mig_policy_defaults(&m->pcfg);
	m->pcfg.policy = p->policy;	/* AUTO: resolved by the prediction */
	m->pcfg.downtime_ms = p->downtime_ms;
	m->pcfg.max_rounds = p->max_rounds;
	m->pcfg.postcopy_after = p->postcopy_after;
	pthread_mutex_init(&m->ev_mu, NULL);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cond, NULL);
	make_id(m->id);
	r = pthread_create(&m->thread, NULL, source_main, m);
	if (r) {
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->mu);
		pthread_mutex_destroy(&m->ev_mu);
		free(m);
		return kv_errf_sys(err, r, "starting the migration thread");
	}
	*out = m;
	return 0;
}

int mig_cancel(struct migration *m, struct kv_err *err)
{
	int r = 0;

	pthread_mutex_lock(&m->ev_mu);
	pthread_mutex_lock(&m->mu);
	if (m->finished || m->status == MIG_COMPLETED || m->status == MIG_FAILED ||
	    m->status == MIG_CANCELLED || m->status == MIG_INDETERMINATE)
		r = kv_errf(err, EINVAL, "no migration in progress");
	else if (m->go_sent)
		r = kv_errf(err, EBUSY, "too late to cancel: the VM is being handed over");
	else {
		__atomic_store_n(&m->cancel, 1, __ATOMIC_RELEASE);
		m->status = MIG_CANCELLING;
	}
	pthread_mutex_unlock(&m->mu);
	/* The event goes out before the thread can be woken to say
	 * "cancelled"; ev_mu keeps its own status change behind this one. */
	if (!r && m->ev)
		m->ev(m->ev_opaque, "MIGRATION", json_pack("{s:s}", "status", "cancelling"));
	if (!r) {
		/* under mu: the thread closes m->fd under it, so it is ours here */
		pthread_mutex_lock(&m->mu);
		if (m->fd >= 0)
			shutdown(m->fd, SHUT_RDWR);	/* wake blocked I/O */
		pthread_mutex_unlock(&m->mu);
	}
	pthread_mutex_unlock(&m->ev_mu);
	return r;
}

int mig_resume(struct migration *m, const char *uri, struct kv_err *err)
{
	int r = 0;

	if (strncmp(uri, "tcp:", 4) || strlen(uri) >= sizeof(m->resume_uri))
		return kv_errf(err, EINVAL, "resume needs a tcp:HOST:PORT destination");
	pthread_mutex_lock(&m->mu);
	if (m->status != MIG_POSTCOPY_PAUSED)
		r = kv_errf(err, EINVAL, "there is no paused post-copy to resume (the migration "
			    "is %s)", mig_status_name(m->status));
	else {
		snprintf(m->resume_uri, sizeof(m->resume_uri), "%s", uri);
		m->resume_req = true;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->mu);
	return r;
}

void mig_abandon(struct migration *m)
{
	if (!m)
		return;
	mig_cancel(m, NULL);	/* before GO: the VM simply stays here */
	pthread_mutex_lock(&m->mu);
	m->abandon = true;
	pthread_cond_broadcast(&m->cond);
	if (m->fd >= 0 && m->go_sent)
		shutdown(m->fd, SHUT_RDWR);	/* a post-copy push ends */
	pthread_mutex_unlock(&m->mu);
}

bool mig_postcopy_pending(struct migration *m)
{
	enum mig_status st = mig_get_status(m);

	return st == MIG_POSTCOPY_ACTIVE || st == MIG_POSTCOPY_PAUSED ||
	       st == MIG_POSTCOPY_RECOVER;
}

enum mig_status mig_get_status(struct migration *m)
{
	enum mig_status st;

	pthread_mutex_lock(&m->mu);
	st = m->status;
	pthread_mutex_unlock(&m->mu);
	return st;
}

bool mig_finished(struct migration *m)
{
	bool f;

	pthread_mutex_lock(&m->mu);
	f = m->finished;
	pthread_mutex_unlock(&m->mu);
	return f;
}

json_t *mig_query(struct migration *m)
{
	json_t *o, *ram;
	uint64_t total;

	pthread_mutex_lock(&m->mu);
	total = m->vm->mem.size;
	ram = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}",
			"transferred", (json_int_t)m->transferred, "total", (json_int_t)total,
			"duplicate", (json_int_t)m->zero, "normal", (json_int_t)m->normal,
			"normal-bytes", (json_int_t)(m->normal * MEM_PAGE_SIZE),
			"remaining", (json_int_t)m->remaining,
			"dirty-sync-count", (json_int_t)m->rounds, "mbps", m->mbps,
			"dirty-pages-rate", m->dirty_pps);
	o = json_pack("{s:s, s:I, s:I, s:o}", "status", mig_status_name(m->status),
		      "total-time", (json_int_t)m->total_ms, "setup-time",
		      (json_int_t)m->setup_ms, "ram", ram);
	if ((m->status == MIG_COMPLETED && !m->p.check_only) || m->downtime_ms > 0)
		/* whole ms like QMP, rounded up: a pause never reads as 0 */
		json_object_set_new(o, "downtime", json_integer((json_int_t)ceil(m->downtime_ms)));
	if (m->status == MIG_ACTIVE)
		json_object_set_new(o, "expected-downtime",
				    json_integer((json_int_t)m->expected_ms));
	if (m->throttle)
		json_object_set_new(o, "cpu-throttle-percentage", json_integer(m->throttle));
	if (m->postcopy) {
		json_object_set_new(ram, "postcopy-requests", json_integer((json_int_t)
				    __atomic_load_n(&m->pc_requests, __ATOMIC_RELAXED)));
		json_object_set_new(o, "x-postcopy-time", json_integer((json_int_t)
				    (m->postcopy_ms > 0 ? m->postcopy_ms :
				     m->t_postcopy > 0 ? src_now_ms() - m->t_postcopy : 0)));
		if (m->pc_stats)
			json_object_set(o, "x-postcopy-destination", m->pc_stats);
	}
	if (m->error_id) {
		json_object_set_new(o, "error-desc", json_string(m->error_desc));
		json_object_set_new(o, "x-error-id", json_string(m->error_id));
	}
	if (m->preflight)
		json_object_set(o, "x-preflight", m->preflight);
	if (m->dest_load_ms > 0)
		json_object_set_new(o, "x-destination-load-ms", json_real(m->dest_load_ms));
	json_object_set_new(o, "x-check-only", json_boolean(m->p.check_only));
	json_object_set_new(o, "x-policy", json_string(mig_policy_name(m->pcfg.policy)));
	if (m->p.policy == MIG_POLICY_AUTO)
		json_object_set_new(o, "x-policy-requested", json_string("auto"));
	if (m->prediction)
		json_object_set(o, "x-prediction", m->prediction);
	json_object_set_new(o, "x-downtime-target", json_integer((json_int_t)m->p.downtime_ms));
	pthread_mutex_unlock(&m->mu);
	return o;
}

void mig_destroy(struct migration *m)
{
	if (!m)
		return;
	pthread_join(m->thread, NULL);
	json_decref(m->preflight);
	json_decref(m->prediction);
	json_decref(m->pc_stats);
	free(m->hot);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->ev_mu);
	free(m);
}

int mig_params_from_json(json_t *args, struct mig_params *p, struct kv_err *err)
{
	const char *key;
	json_t *v;

	struct mig_policy_cfg def;
	bool have_policy = false;

	mig_policy_defaults(&def);
	memset(p, 0, sizeof(*p));
	p->downtime_ms = def.downtime_ms;
	p->max_rounds = def.max_rounds;
	p->policy = def.policy;
	p->postcopy_after = 0;
	json_object_foreach(args, key, v) {
		if (!strcmp(key, "uri")) {
			if (!json_is_string(v) || json_string_length(v) >= sizeof(p->uri) ||
			    strlen(json_string_value(v)) != json_string_length(v))
				return kv_errf(err, EINVAL, "'uri' must be a string");
			strcpy(p->uri, json_string_value(v));
		} else if (!strcmp(key, "downtime-ms")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 3600000)
				return kv_errf(err, EINVAL, "'downtime-ms' must be 1..3600000");
			p->downtime_ms = (uint64_t)json_integer_value(v);
		} else if (!strcmp(key, "bandwidth")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 1000000)
				return kv_errf(err, EINVAL, "'bandwidth' (MiB/s) must be 0..1000000");
			p->bandwidth = (uint64_t)json_integer_value(v) << 20;
		} else if (!strcmp(key, "max-rounds")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 10000)
				return kv_errf(err, EINVAL, "'max-rounds' must be 1..10000");
			p->max_rounds = (unsigned)json_integer_value(v);
		} else if (!strcmp(key, "policy")) {
			if (mig_policy_parse(json_string_value(v), &p->policy))
				return kv_errf(err, EINVAL, "'policy' must be fail, force, "
					       "auto-converge, postcopy or auto");
			have_policy = true;
		} else if (!strcmp(key, "postcopy-after")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 10000)
				return kv_errf(err, EINVAL, "'postcopy-after' must be 1..10000");
			p->postcopy_after = (unsigned)json_integer_value(v);
		} else if (!strcmp(key, "via")) {
			if (!json_is_string(v) || json_string_length(v) == 0 ||
			    json_string_length(v) >= sizeof(p->via) ||
			    strlen(json_string_value(v)) != json_string_length(v))
				return kv_errf(err, EINVAL, "'via' must be a directory path");
			strcpy(p->via, json_string_value(v));
		} else if (!strcmp(key, "check-only")) {
			if (!json_is_boolean(v))
				return kv_errf(err, EINVAL, "'check-only' must be a boolean");
			p->check_only = json_is_true(v);
		} else {
			return kv_errf(err, EINVAL, "Parameter '%s' is unexpected", key);
		}
	}
	if (!p->uri[0])
		return kv_errf(err, EINVAL, "'uri' is required");
	/* --postcopy-after N alone means hybrid: N rounds of pre-copy, then
	 * post-copy */
	if (p->postcopy_after && !have_policy)
		p->policy = MIG_POLICY_POSTCOPY;
	if (p->postcopy_after && p->policy != MIG_POLICY_POSTCOPY)
		return kv_errf(err, EINVAL, "'postcopy-after' goes with policy postcopy, not %s",
			       mig_policy_name(p->policy));
	if (!p->postcopy_after)
		p->postcopy_after = def.postcopy_after;
	if (p->postcopy_after > p->max_rounds)
		return kv_errf(err, EINVAL, "'postcopy-after' (%u) is beyond 'max-rounds' (%u)",
			       p->postcopy_after, p->max_rounds);
	if (p->via[0] && strncmp(p->uri, "tcp:", 4))
		return kv_errf(err, EINVAL, "'via' (quick migration through shared storage) "
			       "needs a tcp: destination");
	return 0;
}
