/*
 * precopy.c - step 3 of docs/PROTOCOL.md: pre-copy rounds until the policy
 * (policy.c) says switch over, post-copy or give up; and the prediction:
 * a sample of the guest's dirty rate (cumulative dirty-log counts over about
 * a second, nothing cleared) and of the link, fed to mig_predict().
 *
 * A live migration samples during its first pass (dirty logging is on and
 * the pass takes that long anyway on any VM worth predicting), so the
 * prediction costs it no time; --policy auto picks its policy from it after
 * the first pass.  --check-only moves no memory: it probes the link with
 * filler records and samples the dirty log for a second on its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dirty.h"
#include "core/vm.h"
#include "migration/policy.h"
#include "migration/proto.h"
#include "migration/source_internal.h"

#define PROBE_CHUNK (1u << 20)
#define PROBE_MAX_BYTES (64u << 20)
#define PROBE_MAX_MS 250.0
/* vCPU and device state on the wire, roughly (for the prediction) */
#define STATE_BYTES_PER_VCPU (16u << 10)

static void emit_pass(struct migration *m, uint64_t round, double expected_ms)
{
	if (m->ev)
		m->ev(m->ev_opaque, "MIGRATION_PASS",
		      json_pack("{s:I, s:I, s:I, s:I, s:i}", "pass", (json_int_t)round,
				"remaining", (json_int_t)m->remaining, "expected-downtime",
				(json_int_t)expected_ms, "dirty-pages-rate",
				(json_int_t)m->dirty_pps, "cpu-throttle-percentage",
				(int)m->throttle));
}

/* ---- the dirty-rate sample ---- */

static void sample_start(struct migration *m)
{
	m->sample_t0 = src_now_ms();
	m->nsample = 0;
}

/* Take the sample points that are due (force: one now, if none yet). */
static void sample_tick(struct migration *m, bool force)
{
	double t = src_now_ms() - m->sample_t0;
	int64_t n;

	if (m->nsample >= SRC_SAMPLES || t <= 0)
		return;
	if (!(force && !m->nsample) &&
	    t < (double)(m->nsample + 1) * SRC_SAMPLE_MS / SRC_SAMPLES)
		return;
	n = dirty_peek(m->vm, NULL);
	if (n < 0)
		return;
	m->sample_t[m->nsample] = t / 1e3;
	m->sample_pages[m->nsample++] = (double)n;
}

static bool sample_done(const struct migration *m)
{
	return m->nsample >= SRC_SAMPLES;
}

/* Model the sample, predict every policy, publish x-prediction; resolve
 * --policy auto. */
static void predict(struct migration *m, double bandwidth)
{
	struct mig_predict_in in = { .cfg = m->pcfg, .bandwidth = bandwidth,
				     .postcopy_ok = m->peer_postcopy };
	struct mig_prediction pr;
	json_t *j;

	if (in.cfg.policy == MIG_POLICY_AUTO)
		in.cfg.policy = MIG_POLICY_AUTO_CONVERGE;
	in.first_pass_bytes = (double)(m->fp_total ? m->fp_total : mem_resident_bytes(&m->vm->mem));
	/* A second of sampling cannot show where a working set ends; what the
	 * guest has ever touched bounds it (a fresh guest's new pages aside). */
	mig_dirty_fit(m->sample_t, m->sample_pages, m->nsample,
		      in.first_pass_bytes / MEM_PAGE_SIZE, &in.dirty);
	in.state_bytes = (double)m->vm->nvcpus * STATE_BYTES_PER_VCPU;
	mig_predict(&in, &pr);
	j = mig_prediction_json(&in, &pr);
	pthread_mutex_lock(&m->mu);
	json_decref(m->prediction);
	m->prediction = j;
	if (m->pcfg.policy == MIG_POLICY_AUTO)
		m->pcfg.policy = pr.choice;
	pthread_mutex_unlock(&m->mu);
}

/* The first pass's progress hook: stats, and the sample while it runs. */
static void first_pass_progress(void *opaque)
{
	struct migration *m = opaque;

	src_publish(m);
	if (!sample_done(m)) {
		sample_tick(m, false);
		if (sample_done(m))
			predict(m, (double)src_bytes_out(m) /
				   ((src_now_ms() - m->sample_t0) / 1e3));
	}
}

/* ---- pre-copy ---- */

static int set_throttle(struct migration *m, unsigned pct, struct kv_err *err)
{
	int r;

	if (pct == m->throttle)
		return 0;
	if ((r = vm_set_throttle(m->vm, pct, err)))
		return src_set_fail(m, "kvm", err, r);
	pthread_mutex_lock(&m->mu);
	m->throttle = pct;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

/* Post-copy pushes first the pages that were dirty in the last round too
 * (m->hot): a page the guest keeps rewriting is one it will touch soon. */
static int remember_round(struct migration *m, struct kv_err *err)
{
	size_t bytes = ((m->vm->mem.npages + 63) / 64) * sizeof(uint64_t);

	if (!m->hot && !(m->hot = malloc(bytes)))
		return kv_errf(err, ENOMEM, "post-copy bitmap");
	memcpy(m->hot, m->rs.dirty, bytes);
	return 0;
}

int src_precopy(struct migration *m, bool *postcopy, struct kv_err *err)
{
	double t0 = src_now_ms(), round_start;
	int r;

	*postcopy = false;
	pthread_mutex_lock(&m->mu);
	m->t_active = t0;
	m->fp_total = mem_resident_bytes(&m->vm->mem);
	/* "active" never shows an empty first pass: all of it is still to go */
	m->remaining = m->fp_total;
	pthread_mutex_unlock(&m->mu);
	src_set_status(m, MIG_ACTIVE);
	if ((r = dirty_log_start(m->vm, err)))
		return src_set_fail(m, "kvm", err, r);
	src_set_rate(m, m->p.bandwidth);
	sample_start(m);
	m->rs.progress = first_pass_progress;
	r = src_ram_pass(m, true, err);
	m->rs.progress = src_publish;
	if (!r)
		r = stream_flush(&m->s, err);
	if (r)
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "io", err, r);
	if (!sample_done(m)) {	/* a short first pass: predict from what we have */
		sample_tick(m, true);
		predict(m, (double)src_bytes_out(m) / ((src_now_ms() - t0) / 1e3));
	}
	if (m->pcfg.policy == MIG_POLICY_AUTO)
		m->pcfg.policy = MIG_POLICY_AUTO_CONVERGE;	/* no sample at all */
	if ((m->pcfg.policy == MIG_POLICY_POSTCOPY ||
	     __atomic_load_n(&m->start_postcopy, __ATOMIC_ACQUIRE)) && !m->peer_postcopy) {
		r = kv_errf(err, ENOTSUP, "the destination cannot take post-copy "
			    "(no userfaultfd for guest memory there, or its guest RAM is "
			    "not a memfd: --mem-backend anon or hugetlb)");
		return src_set_fail(m, "postcopy", err, r);
	}
	round_start = t0;

	for (uint64_t round = 1;; round++) {
		double t = src_now_ms(), dt = (t - round_start) / 1e3;
		double bw = (double)src_bytes_out(m) / ((t - t0) / 1e3);	/* bytes/s */
		int64_t newly = dirty_sync(m->vm, m->rs.dirty, err);
		struct mig_decision d;
		struct mig_round rd;

		if (newly < 0)
			return src_set_fail(m, "kvm", err, (int)newly);
		rd = (struct mig_round){
			.round = round, .remaining = ram_dirty_count(&m->rs) * MEM_PAGE_SIZE,
			.bandwidth = bw,
			.dirty_rate = dt > 0 ? (double)newly * MEM_PAGE_SIZE / dt : 0,
		};
		mig_policy_decide(&m->pcfg, &m->pst, &rd, &d);
		/* migrate-start-postcopy (QMP): switch now rather than go on */
		if (d.act == MIG_ACT_CONTINUE && m->peer_postcopy &&
		    __atomic_load_n(&m->start_postcopy, __ATOMIC_ACQUIRE))
			d.act = MIG_ACT_POSTCOPY;
		pthread_mutex_lock(&m->mu);
		m->rounds = round;
		m->remaining = rd.remaining;
		m->mbps = bw * 8 / 1e6;
		m->dirty_pps = rd.dirty_rate / MEM_PAGE_SIZE;
		m->expected_ms = d.expected_ms;
		pthread_mutex_unlock(&m->mu);
		src_publish(m);
		emit_pass(m, round, d.expected_ms);

		switch (d.act) {
		case MIG_ACT_SWITCH:
			return 0;
		case MIG_ACT_POSTCOPY:
			*postcopy = true;
			return 0;
		case MIG_ACT_FAIL:
			r = kv_errf(err, ETIME, "%s", d.why);
			return src_set_fail(m, "converge", err, r);
		case MIG_ACT_CONTINUE:
			if ((r = set_throttle(m, d.throttle, err)))
				return r;
			break;
		}
		if ((m->pcfg.policy == MIG_POLICY_POSTCOPY || m->p.postcopy_ram) &&
		    (r = remember_round(m, err)))
			return src_set_fail(m, "internal", err, r);
		round_start = src_now_ms();
		if ((r = src_ram_pass(m, false, err)) || (r = stream_flush(&m->s, err)))
			return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "io", err, r);
	}
}

/* ---- check-only: probe the link, sample the guest, predict ---- */

static int probe_link(struct migration *m, double *bandwidth, struct kv_err *err)
{
	uint8_t *buf = malloc(PROBE_CHUNK);
	uint64_t x = 0x9e3779b97f4a7c15ull, sent = 0;
	struct stream_rec rec;
	double t0;
	int r = 0;

	if (!buf)
		return kv_errf(err, ENOMEM, "probe buffer");
	/* incompressible filler: the link's speed, not a compressor's */
	for (size_t i = 0; i < PROBE_CHUNK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		st_put64(buf + i, x);
	}
	stream_set_rate(&m->s, m->p.bandwidth);
	t0 = src_now_ms();
	while (!r && sent < PROBE_MAX_BYTES && src_now_ms() - t0 < PROBE_MAX_MS) {
		r = stream_write(&m->s, MIG_REC_PROBE, 0, buf, PROBE_CHUNK, err);
		sent += PROBE_CHUNK;
	}
	if (!r)
		r = stream_write(&m->s, MIG_REC_PROBE, 0, NULL, 0, err);
	if (!r)
		r = stream_flush(&m->s, err);
	if (!r)
		r = mig_expect(&m->s, MIG_REC_PROBE_ACK, &rec, err);
	if (!r)
		*bandwidth = (double)sent / ((src_now_ms() - t0) / 1e3);
	stream_set_rate(&m->s, 0);
	free(buf);
	return r;
}

int src_check_only(struct migration *m, struct kv_err *err)
{
	double bw = 0;
	int r;

	if ((r = probe_link(m, &bw, err)))
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "io", err, r);
	if ((r = dirty_log_start(m->vm, err)))
		return src_set_fail(m, "kvm", err, r);
	sample_start(m);
	while (!sample_done(m) && !src_is_cancelled(m)) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		sample_tick(m, false);
	}
	dirty_log_stop(m->vm);
	if (src_is_cancelled(m)) {
		r = kv_errf(err, ECANCELED, "migration cancelled");
		return src_set_fail(m, "cancelled", err, r);
	}
	predict(m, bw);
	return 0;
}
