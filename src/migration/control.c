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
#include "migration/hello.h"
#include "migration/proto.h"
#include "migration/secure.h"
#include "migration/source_internal.h"
#include "migration/arbiter.h"

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
	src_chan_close(m);
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

int mig_start(struct migration **out, struct vm *vm, struct arbiter *arb,
	      const struct mig_tls *tls, const struct mig_params *p, mig_event_fn ev,
	      void *ev_opaque, struct kv_err *err)
{
	struct migration *m;
	int r;

	if (!strncmp(p->uri, "tcp:", 4) && !mig_tls_usable(tls))
		return kv_errf(err, EPERM, "this VMM has no TLS credentials for a migration: start "
			       "it with --tls-psk FILE or --tls-creds DIR (or --insecure, for "
			       "benchmarks)");
	/* a paused VM moves too, and stays paused there */
	if (vm_get_state(vm) != VM_STATE_RUNNING && vm_get_state(vm) != VM_STATE_PAUSED)
		return kv_errf(err, EINVAL, "the VM cannot be migrated: it is %s",
			       vm_state_name(vm_get_state(vm)));
	if (strncmp(p->uri, "tcp:", 4) && strncmp(p->uri, "file:", 5) && !mig_uri_is_local(p->uri))
		return kv_errf(err, EINVAL, "unsupported destination '%s' (tcp:HOST:PORT, "
			       "unix:PATH or file:PATH)", p->uri);
	if (mig_uri_is_local(p->uri) && !mem_backend_shareable(vm->mem.backend))
		return kv_errf(err, EINVAL, "a same-host hand-over passes guest RAM to the new "
			       "VMM, but this VM's RAM is private anonymous memory (--mem-backend "
			       "%s); migrate it over tcp:127.0.0.1:PORT instead, or run VMs that "
			       "will be upgraded in place with --mem-backend memfd or hugetlb",
			       mem_backend_name(vm->mem.backend));
	m = calloc(1, sizeof(*m));
	if (!m)
		return kv_errf(err, ENOMEM, "migration");
	m->vm = vm;
	m->tls = tls;
	m->arb = arb;
	m->p = *p;
	if (m->p.channels < 1 || m->p.channels > MIG_MAX_CHANNELS)
		m->p.channels = 1;
	/* same host: no page travels, so one connection carries it all */
	m->local = mig_uri_is_local(p->uri);
	if (m->local)
		m->p.channels = 1;
	m->ev = ev;
	m->ev_opaque = ev_opaque;
	m->fd = -1;
	m->t_start = src_now_ms();
	mig_policy_defaults(&m->pcfg);
	m->pcfg.policy = p->policy;	/* AUTO: resolved by the prediction */
	m->pcfg.downtime_ms = p->downtime_ms;
	m->pcfg.max_rounds = p->max_rounds;
	m->pcfg.postcopy_after = p->postcopy_after;
	m->pcfg.throttle_initial = p->throttle_initial;
	m->pcfg.throttle_step = p->throttle_step;
	m->pcfg.throttle_max = p->throttle_max;
	/* from the moment migrate returns, query-migrate says setup (a poller
	 * must never see "none" for a migration it started) */
	m->status = MIG_SETUP;
	pthread_mutex_init(&m->ev_mu, NULL);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_cond_init(&m->chan_cv, NULL);
	/* what a destination checks before it lets a source reconnect to a
	 * paused post-copy, and extra channels present */
	r = mig_random_hex(m->id);
	if (r)
		kv_errf(err, -r, "no random bytes for the migration's id");
	else if ((r = pthread_create(&m->thread, NULL, source_main, m)))
		r = kv_errf_sys(err, r, "starting the migration thread");
	if (r) {
		pthread_cond_destroy(&m->cond);
		pthread_cond_destroy(&m->chan_cv);
		pthread_mutex_destroy(&m->mu);
		pthread_mutex_destroy(&m->ev_mu);
		free(m);
		return r;
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
		pthread_cond_broadcast(&m->cond);	/* a pre-switchover wait ends */
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
		src_chan_shutdown_locked(m);
		pthread_mutex_unlock(&m->mu);
	}
	pthread_mutex_unlock(&m->ev_mu);
	return r;
}

int mig_start_postcopy(struct migration *m, struct kv_err *err)
{
	int r = 0;

	pthread_mutex_lock(&m->mu);
	if (!m->p.postcopy_ram && m->p.policy != MIG_POLICY_POSTCOPY)
		r = kv_errf(err, EINVAL, "Enable postcopy with migrate-set-capabilities before "
			    "the start of migration");
	else if (m->local)
		r = kv_errf(err, EINVAL, "a same-host hand-over copies no pages: there is no "
			    "post-copy");
	else if (m->status != MIG_SETUP && m->status != MIG_ACTIVE)
		r = kv_errf(err, EINVAL, "postcopy must be started during pre-copy (the migration "
			    "is %s)", mig_status_name(m->status));
	else
		__atomic_store_n(&m->start_postcopy, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&m->mu);
	return r;
}

int mig_continue(struct migration *m, struct kv_err *err)
{
	int r = 0;

	pthread_mutex_lock(&m->mu);
	if (m->status != MIG_PRE_SWITCHOVER)
		r = kv_errf(err, EINVAL, "Migration not in expected state: %s",
			    mig_status_name(m->status));
	else {
		m->continue_req = true;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->mu);
	return r;
}

bool mig_migrated(struct migration *m)
{
	bool b;

	pthread_mutex_lock(&m->mu);
	b = m->status == MIG_COMPLETED && !m->p.check_only;
	pthread_mutex_unlock(&m->mu);
	return b;
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
	/* Like a cancel before GO, but the outcome is not "the VM runs on the
	 * source": this VMM is going away with its VM (src_rollback reports
	 * "shutdown").  After GO the thread is woken out of its wait or push. */
	pthread_mutex_lock(&m->mu);
	m->abandon = true;
	if (!m->go_sent)
		__atomic_store_n(&m->cancel, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&m->cond);
	if (m->fd >= 0)
		shutdown(m->fd, SHUT_RDWR);
	if (!m->go_sent)
		src_chan_shutdown_locked(m);
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

	uint64_t pre, down, post;
	double active_s;

	pthread_mutex_lock(&m->mu);
	total = m->vm->mem.size;
	/* bytes by phase: before the pause, while paused, in post-copy */
	pre = m->bytes_paused ? m->bytes_paused : m->transferred;
	down = m->bytes_paused ? (m->bytes_resumed ? m->bytes_resumed : m->transferred) - pre : 0;
	post = m->bytes_resumed && m->postcopy ? m->transferred - m->bytes_resumed : 0;
	active_s = m->t_active > 0 ? (src_now_ms() - m->t_active) / 1e3 : 0;
	/* every field of QMP's MigrationStats, integers where its schema says
	 * so; kvmove's own extras are x- fields of MigrationInfo */
	ram = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, "
			"s:I, s:I, s:I, s:I, s:I}",
			"transferred", (json_int_t)m->transferred, "remaining",
			(json_int_t)m->remaining, "total", (json_int_t)total,
			"duplicate", (json_int_t)m->zero, "skipped", (json_int_t)0,
			"normal", (json_int_t)m->normal,
			"normal-bytes", (json_int_t)(m->normal * MEM_PAGE_SIZE),
			"dirty-pages-rate", (json_int_t)llround(m->dirty_pps), "mbps", m->mbps,
			"dirty-sync-count", (json_int_t)m->rounds,
			"postcopy-requests",
			(json_int_t)__atomic_load_n(&m->pc_requests, __ATOMIC_RELAXED),
			"page-size", (json_int_t)MEM_PAGE_SIZE, "multifd-bytes", (json_int_t)m->chan_bytes,
			"pages-per-second", (json_int_t)(active_s > 0 ?
							 (double)m->normal / active_s : 0),
			"precopy-bytes", (json_int_t)pre, "downtime-bytes", (json_int_t)down,
			"postcopy-bytes", (json_int_t)post,
			"dirty-sync-missed-zero-copy", (json_int_t)0);
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
	json_object_set_new(o, "x-go-sent", json_boolean(m->go_sent));
	if (m->postcopy) {
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
	/* same host: memory handed over, no pre-copy and so no policy */
	json_object_set_new(o, "x-local", json_boolean(m->local));
	if (!m->local)
		json_object_set_new(o, "x-policy", json_string(mig_policy_name(m->pcfg.policy)));
	if (m->p.policy == MIG_POLICY_AUTO)
		json_object_set_new(o, "x-policy-requested", json_string("auto"));
	if (m->prediction)
		json_object_set(o, "x-prediction", m->prediction);
	json_object_set_new(o, "x-downtime-target", json_integer((json_int_t)m->p.downtime_ms));
	/* where the downtime went: each step's end, ms after the pause */
	if (m->sw[SRC_SW_PAUSED] > 0) {
		static const char *const names[SRC_SW_N] = {
			"paused", "last-pages", "state-sent", "ready", "released", "resumed" };
		json_t *sw = json_object();

		for (unsigned i = 0; i < SRC_SW_N; i++)
			if (m->sw[i] > 0)
				json_object_set_new(sw, names[i], json_real(m->sw[i]));
		json_object_set_new(o, "x-switchover", sw);
	}
	/* QMP's CompressionStats (pages compressed, their bytes on the wire,
	 * the rate in / out), and kvmove's own: per codec, and the mode */
	{
		const struct ram_codec_stats *c = &m->codec;
		uint64_t zp = c->pages[RAM_CODEC_LZ4] + c->pages[RAM_CODEC_ZSTD];
		json_object_set_new(o, "compression", json_pack(
			"{s:I, s:I, s:f, s:I, s:f, s:s, s:I, s:I, s:I, s:I}",
			"pages", (json_int_t)zp, "busy", (json_int_t)0, "busy-rate", 0.0,
			"compressed-size", (json_int_t)c->out_bytes,
			"compression-rate", c->out_bytes ? (double)c->in_bytes / (double)c->out_bytes
							 : 1.0,
			"x-mode", ram_compress_name(m->compress),
			"x-raw-pages", (json_int_t)c->pages[RAM_CODEC_RAW],
			"x-lz4-pages", (json_int_t)c->pages[RAM_CODEC_LZ4],
			"x-zstd-pages", (json_int_t)c->pages[RAM_CODEC_ZSTD],
			"x-compress-ms", (json_int_t)(c->compress_ns / 1000000)));
	}
	/* connections for RAM: asked for, and in use once the destination said */
	json_object_set_new(o, "x-channels", json_pack("{s:i, s:i}", "requested",
						       (int)m->p.channels, "granted",
						       (int)m->granted));
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
	pthread_cond_destroy(&m->chan_cv);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->ev_mu);
	free(m);
}

void mig_settings_defaults(struct mig_settings *set)
{
	struct mig_policy_cfg def;

	mig_policy_defaults(&def);
	memset(set, 0, sizeof(*set));
	set->downtime_ms = def.downtime_ms;
	set->throttle_initial = def.throttle_initial;
	set->throttle_step = def.throttle_step;
	set->throttle_max = def.throttle_max;
	set->auto_converge = true;	/* kvmove's default: never an endless loop */
	set->multifd_channels = 2;	/* QEMU's default */
	set->compress = RAM_COMPRESS_AUTO;	/* only where measured faster */
}

unsigned mig_default_channels(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN) / 2;

	/* two even on a 2-CPU host: measured faster than one there
	 * (docs/benchmarks.md, "Several channels") */
	return n < 2 ? 2 : n > 4 ? 4 : (unsigned)n;
}

static int get_uint(json_t *v, const char *key, long long lo, long long hi, long long *out,
		    struct kv_err *err)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return kv_errf(err, EINVAL, "'%s' must be an integer in %lld..%lld", key, lo, hi);
	*out = json_integer_value(v);
	return 0;
}

static int get_path(json_t *v, const char *key, char *dst, size_t cap, struct kv_err *err)
{
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return kv_errf(err, EINVAL, "'%s' must be a string of 1..%zu bytes", key, cap - 1);
	strcpy(dst, json_string_value(v));
	return 0;
}

int mig_params_from_json(json_t *args, const struct mig_settings *set, struct mig_params *p,
			 struct kv_err *err)
{
	struct mig_policy_cfg def;
	bool have_policy = false;
	const char *key;
	long long n = 0;
	json_t *v;
	int r = 0;

	mig_policy_defaults(&def);
	memset(p, 0, sizeof(*p));
	p->downtime_ms = set->downtime_ms;
	p->bandwidth = set->bandwidth;
	p->max_rounds = def.max_rounds;
	p->policy = set->auto_converge ? MIG_POLICY_AUTO_CONVERGE : MIG_POLICY_FAIL;
	p->postcopy_ram = set->postcopy_ram;
	p->pause_before_switchover = set->pause_before_switchover;
	p->throttle_initial = set->throttle_initial;
	p->throttle_step = set->throttle_step;
	p->throttle_max = set->throttle_max;
	p->exit_after = set->exit_after;
	p->channels = set->multifd ? set->multifd_channels : mig_default_channels();
	p->compress = set->compress;
	json_object_foreach(args, key, v) {
		if (!strcmp(key, "uri")) {
			r = get_path(v, "uri", p->uri, sizeof(p->uri), err);
		} else if (!strcmp(key, "downtime-ms")) {
			if (!(r = get_uint(v, key, 1, 3600000, &n, err)))
				p->downtime_ms = (uint64_t)n;
		} else if (!strcmp(key, "bandwidth")) {
			if (!(r = get_uint(v, "bandwidth' (MiB/s)", 0, 1000000, &n, err)))
				p->bandwidth = (uint64_t)n << 20;
		} else if (!strcmp(key, "max-rounds")) {
			if (!(r = get_uint(v, key, 1, 10000, &n, err)))
				p->max_rounds = (unsigned)n;
		} else if (!strcmp(key, "policy")) {
			if (mig_policy_parse(json_string_value(v), &p->policy))
				return kv_errf(err, EINVAL, "'policy' must be fail, force, "
					       "auto-converge, postcopy or auto");
			have_policy = true;
		} else if (!strcmp(key, "postcopy-after")) {
			if (!(r = get_uint(v, key, 1, 10000, &n, err)))
				p->postcopy_after = (unsigned)n;
		} else if (!strcmp(key, "channels")) {
			if (!(r = get_uint(v, key, 1, MIG_MAX_CHANNELS, &n, err)))
				p->channels = (unsigned)n;
		} else if (!strcmp(key, "compress")) {
			if (!json_is_string(v))
				return kv_errf(err, EINVAL, "'compress' must be off, auto, lz4 or zstd");
			r = ram_compress_parse(json_string_value(v), &p->compress, err);
		} else if (!strcmp(key, "via")) {
			r = get_path(v, "via", p->via, sizeof(p->via), err);
		} else if (!strcmp(key, "check-only")) {
			if (!json_is_boolean(v))
				return kv_errf(err, EINVAL, "'check-only' must be a boolean");
			p->check_only = json_is_true(v);
		} else if (!strcmp(key, "detach")) {
			/* QMP's migrate always returns at once */
			if (!json_is_boolean(v))
				return kv_errf(err, EINVAL, "'detach' must be a boolean");
		} else if (!strcmp(key, "blk") || !strcmp(key, "inc")) {
			if (!json_is_boolean(v))
				return kv_errf(err, EINVAL, "'%s' must be a boolean", key);
			if (json_is_true(v))
				return kv_errf(err, ENOTSUP, "block migration ('%s') is not supported: "
					       "kvmove's disks live on shared storage and move by "
					       "hand-over of their locks", key);
		} else {
			return kv_errf(err, EINVAL, "Parameter '%s' is unexpected", key);
		}
		if (r)
			return r;
	}
	if (!p->uri[0])
		return kv_errf(err, EINVAL, "'uri' is required");
	if (p->via[0] && strncmp(p->uri, "tcp:", 4))
		return kv_errf(err, EINVAL, "'via' (quick migration through shared storage) "
			       "needs a tcp: destination");
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
	return 0;
}
