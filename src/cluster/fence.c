/*
 * fence.c - a cluster VMM's self-fencing (fence.h): a prober thread asks
 * etcd for the lease's time to live and moves the deadline; a watchdog
 * thread sleeps until the deadline and ends the VM when it passes.
 */
#define _GNU_SOURCE
#include "cluster/fence.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/store.h"

struct fence {
	struct kv_store *st;
	int64_t lease;
	fence_fire_fn fire;
	void *opaque;
	pthread_mutex_t mu;
	pthread_cond_t cond;		/* CLOCK_MONOTONIC */
	double deadline;		/* mu */
	double period;			/* mu: between questions */
	bool stop;			/* mu */
	bool fired;			/* mu */
	pthread_t prober, watchdog;
	bool prober_started, watchdog_started;
};

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timespec at(double t)
{
	struct timespec ts;

	if (t < 0)
		t = 0;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	return ts;
}

double fence_deadline(double t_sent, int ttl_left)
{
	return t_sent + (double)ttl_left - FENCE_MARGIN_S;
}

double fence_period(int granted_ttl)
{
	double p = granted_ttl > 0 ? granted_ttl / 8.0 : FENCE_PERIOD_S;

	return p < FENCE_PERIOD_MIN_S ? FENCE_PERIOD_MIN_S : p > FENCE_PERIOD_S ? FENCE_PERIOD_S : p;
}

int fence_lease_parse(const char *s, int64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v == 0 || v > INT64_MAX)
		return -EINVAL;
	*out = (int64_t)v;
	return 0;
}

/* Fire once (under f->mu), then let the callback end the process. */
static void fire_locked(struct fence *f, const char *why)
{
	if (f->fired || f->stop)
		return;
	f->fired = true;
	pthread_mutex_unlock(&f->mu);
	f->fire(f->opaque, why);
	pthread_mutex_lock(&f->mu);
}

static int probe(struct fence *f, struct kv_err *err)
{
	double t0 = mono();
	int ttl = 0, granted = 0, r;

	r = store_lease_ttl(f->st, f->lease, &ttl, &granted, err);
	pthread_mutex_lock(&f->mu);
	if (!r) {
		double d = fence_deadline(t0, ttl);

		f->period = fence_period(granted);
		/* a later answer never shortens what an earlier one proved:
		 * the lease lives at least until then either way */
		if (d > f->deadline)
			f->deadline = d;
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->mu);
	return r;
}

static void *prober_main(void *arg)
{
	struct fence *f = arg;
	bool warned = false;

	pthread_mutex_lock(&f->mu);
	while (!f->stop && !f->fired) {
		struct timespec ts = at(mono() + f->period);
		struct kv_err err;
		int r;

		pthread_cond_timedwait(&f->cond, &f->mu, &ts);
		if (f->stop || f->fired)
			break;
		pthread_mutex_unlock(&f->mu);
		r = probe(f, &err);
		if (r && r != -ENOENT && !warned)
			fprintf(stderr, "kvmove: fence: cannot confirm the node's lease (%s); the VM "
				"ends at its deadline unless etcd answers\n", err.msg);
		warned = r && r != -ENOENT;
		pthread_mutex_lock(&f->mu);
		if (r == -ENOENT) {
			char why[300];
			snprintf(why, sizeof(why), "the node's lease %" PRIx64 " expired: the "
				 "cluster may restart this VM elsewhere", (uint64_t)f->lease);
			fire_locked(f, why);
		}
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

static void *watchdog_main(void *arg)
{
	struct fence *f = arg;

	pthread_mutex_lock(&f->mu);
	while (!f->stop && !f->fired) {
		double now = mono();
		if (now >= f->deadline) {
			char why[300];
			snprintf(why, sizeof(why), "etcd has not confirmed the node's lease %" PRIx64
				 " in time (it may expire within %.0f s): the cluster may restart "
				 "this VM elsewhere", (uint64_t)f->lease, FENCE_MARGIN_S);
			fire_locked(f, why);
			continue;
		}
		struct timespec ts = at(f->deadline);
		pthread_cond_timedwait(&f->cond, &f->mu, &ts);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

int fence_start(struct fence **out, const char *endpoints, int64_t lease, fence_fire_fn fire,
		void *opaque, struct kv_err *err)
{
	/* short requests: the watchdog does not wait for them, but a prober
	 * stuck on a dead endpoint confirms nothing */
	struct store_options so = { .endpoints = endpoints, .timeout_ms = 1000,
				    .connect_timeout_ms = 500 };
	struct fence *f = calloc(1, sizeof(*f));
	pthread_condattr_t ca;
	int r;

	*out = NULL;
	if (!f)
		return kv_errf(err, ENOMEM, "fence");
	f->lease = lease;
	f->fire = fire;
	f->opaque = opaque;
	f->period = FENCE_PERIOD_S;
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = store_open(&f->st, &so, err)))
		goto fail;
	if ((r = probe(f, err))) {
		kv_err_prefix(err, r, "the node's lease %" PRIx64, (uint64_t)lease);
		goto fail;
	}
	if ((r = -pthread_create(&f->watchdog, NULL, watchdog_main, f))) {
		kv_errf(err, -r, "fence watchdog thread");
		goto fail;
	}
	f->watchdog_started = true;
	if ((r = -pthread_create(&f->prober, NULL, prober_main, f))) {
		kv_errf(err, -r, "fence thread");
		goto fail;
	}
	f->prober_started = true;
	*out = f;
	return 0;
fail:
	fence_stop(f);
	return r;
}

void fence_stop(struct fence *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	f->stop = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
	if (f->watchdog_started)
		pthread_join(f->watchdog, NULL);
	if (f->prober_started)
		pthread_join(f->prober, NULL);
	store_close(f->st);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
