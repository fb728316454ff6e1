/*
 * policy.c - convergence decisions and the prediction built on them
 * (policy.h).  Pure functions: unit tests drive them with made-up rounds.
 */
#include "migration/policy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define PAGE 4096.0
/* Pause, dirty sync, READY/GO/RESUMED and the destination's load: what a
 * switchover costs besides the bytes (measured 5-15 ms on loopback). */
#define SWITCHOVER_OVERHEAD_MS 5.0

static const char *const names[MIG_NPOLICIES] = {
	[MIG_POLICY_FAIL] = "fail", [MIG_POLICY_AUTO_CONVERGE] = "auto-converge",
	[MIG_POLICY_FORCE] = "force", [MIG_POLICY_POSTCOPY] = "postcopy",
	[MIG_POLICY_AUTO] = "auto",
};

const char *mig_policy_name(enum mig_policy p)
{
	return (unsigned)p < MIG_NPOLICIES ? names[p] : "unknown";
}

int mig_policy_parse(const char *s, enum mig_policy *out)
{
	for (unsigned i = 0; s && i < MIG_NPOLICIES; i++)
		if (!strcmp(s, names[i])) {
			*out = (enum mig_policy)i;
			return 0;
		}
	return -EINVAL;
}

void mig_policy_defaults(struct mig_policy_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->policy = MIG_POLICY_AUTO_CONVERGE;
	cfg->downtime_ms = 100;
	cfg->max_rounds = 30;
	cfg->postcopy_after = 1;
	cfg->throttle_initial = 20;
	cfg->throttle_step = 10;
	cfg->throttle_max = 99;
}

void mig_policy_decide(const struct mig_policy_cfg *cfg, struct mig_policy_state *st,
		       const struct mig_round *rd, struct mig_decision *d)
{
	double bw = rd->bandwidth;
	double expected = bw > 0 ? (double)rd->remaining / bw * 1e3 : (rd->remaining ? 1e9 : 0);

	memset(d, 0, sizeof(*d));
	d->expected_ms = expected;
	d->throttle = st->throttle;
	if (expected <= (double)cfg->downtime_ms) {
		d->act = MIG_ACT_SWITCH;	/* the rest fits the downtime target */
		return;
	}
	if (cfg->policy == MIG_POLICY_POSTCOPY && rd->round >= cfg->postcopy_after) {
		d->act = MIG_ACT_POSTCOPY;
		return;
	}
	if (rd->round >= cfg->max_rounds) {
		if (cfg->policy == MIG_POLICY_FORCE) {
			d->act = MIG_ACT_SWITCH;	/* anyway; the stats show the cost */
			return;
		}
		d->act = MIG_ACT_FAIL;
		snprintf(d->why, sizeof(d->why), "did not converge in %u rounds: %llu MiB still "
			 "dirty, expected downtime %.0f ms > target %llu ms (dirty rate %.0f MiB/s, "
			 "bandwidth %.0f MiB/s)", cfg->max_rounds,
			 (unsigned long long)(rd->remaining >> 20), expected,
			 (unsigned long long)cfg->downtime_ms, rd->dirty_rate / 1048576,
			 bw / 1048576);
		return;
	}
	/* Falling behind: the guest dirties more than half of what we send. */
	st->behind = rd->dirty_rate > bw / 2 ? st->behind + 1 : 0;
	if (cfg->policy == MIG_POLICY_AUTO_CONVERGE && st->behind >= 2 &&
	    st->throttle < cfg->throttle_max) {
		st->throttle = st->throttle ? st->throttle + cfg->throttle_step
					    : cfg->throttle_initial;
		if (st->throttle > cfg->throttle_max)
			st->throttle = cfg->throttle_max;
		d->throttle = st->throttle;
	}
	if (cfg->policy == MIG_POLICY_FAIL && st->behind >= 3 && rd->dirty_rate >= bw) {
		d->act = MIG_ACT_FAIL;
		snprintf(d->why, sizeof(d->why), "the guest dirties at least %.0f MiB/s (distinct "
			 "pages), at or above the %.0f MiB/s the link carries; giving up (policy "
			 "fail)", rd->dirty_rate / 1048576, bw / 1048576);
		return;
	}
	d->act = MIG_ACT_CONTINUE;
}

/* ---- the dirty model ---- */

double mig_dirty_after(const struct mig_dirty_model *m, double seconds)
{
	if (seconds <= 0)
		return 0;
	if (m->rate <= 0 || m->wss <= 0)
		return m->hot;
	return m->hot + m->wss * -expm1(-m->rate * seconds / m->wss);
}

#define FIT_W 128
#define FIT_H 16

/* Mean squared error of the model at the points. */
static double fit_error(const struct mig_dirty_model *m, const double *t, const double *pages,
			unsigned n)
{
	double e = 0;

	for (unsigned i = 0; i < n; i++) {
		double d = mig_dirty_after(m, t[i]) - pages[i];
		e += d * d;
	}
	return e / n;
}

void mig_dirty_fit(const double *t, const double *pages, unsigned n, double mem_pages,
		   struct mig_dirty_model *out)
{
	struct mig_dirty_model fit[FIT_W + 1];
	double err2[FIT_W + 1], top = 0, first = 0, best = INFINITY;

	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < n; i++)
		if (pages[i] > top)
			top = pages[i];
	if (!n || top <= 0 || t[0] <= 0)
		return;
	first = pages[0];
	if (mem_pages < top * 1.001)
		mem_pages = top * 1.001;
	/*
	 * Grid over W (log-spaced from just above the largest count to all of
	 * RAM) and over the hot set H (pages every guest rewrites at once:
	 * stacks, counters; 0 .. half the first count).  For given W and H the
	 * model is linear in r after a transform, -W ln(1 - (c-H)/W) = r t, so
	 * r is a least-squares fit through the origin over every point.
	 */
	for (unsigned k = 0; k <= FIT_W; k++) {
		double w = top * 1.001 * pow(mem_pages / (top * 1.001), (double)k / FIT_W);

		err2[k] = INFINITY;
		for (unsigned j = 0; j < FIT_H; j++) {
			double h = first * 0.5 * j / FIT_H, sty = 0, stt = 0, e;
			struct mig_dirty_model m;

			for (unsigned i = 0; i < n; i++) {
				double c = pages[i] > h ? pages[i] - h : 0;
				sty += t[i] * -w * log1p(-c / w);
				stt += t[i] * t[i];
			}
			m = (struct mig_dirty_model){ stt > 0 ? sty / stt : 0, w, h };
			e = fit_error(&m, t, pages, n);
			if (e < err2[k]) {
				err2[k] = e;
				fit[k] = m;
			}
		}
		if (err2[k] < best)
			best = err2[k];
	}
	/* A second of sampling rarely shows a working set filling up: unless
	 * the counts clearly bend, take the largest W that fits as well as the
	 * best one give or take 1 % of the counts (noise), so that a short
	 * sample does not invent a small working set. */
	for (unsigned k = FIT_W + 1; k-- > 0;)
		if (sqrt(err2[k]) <= sqrt(best) + 0.01 * top) {
			*out = fit[k];
			return;
		}
}

/* ---- prediction: the decisions above, fed modelled rounds ---- */

static void simulate(const struct mig_predict_in *in, enum mig_policy policy,
		     struct mig_policy_outcome *o)
{
	struct mig_policy_cfg cfg = in->cfg;
	struct mig_policy_state st = { 0 };
	double bw = in->bandwidth, t, state_ms;

	memset(o, 0, sizeof(*o));
	cfg.policy = policy;
	if (bw <= 0)
		return;		/* nothing can be said without a link */
	state_ms = in->state_bytes / bw * 1e3 + SWITCHOVER_OVERHEAD_MS;
	t = in->first_pass_bytes / bw;
	o->total_ms = t * 1e3;
	for (uint64_t round = 1; round <= cfg.max_rounds + 1; round++) {
		struct mig_dirty_model m = in->dirty;
		struct mig_decision d;
		struct mig_round rd;
		double remaining;

		m.rate *= (100.0 - st.throttle) / 100.0;	/* a CPU-bound dirtier */
		remaining = mig_dirty_after(&m, t) * PAGE;
		rd = (struct mig_round){ .round = round, .remaining = (uint64_t)remaining,
					 .bandwidth = bw, .dirty_rate = t > 0 ? remaining / t : 0 };
		mig_policy_decide(&cfg, &st, &rd, &d);
		o->rounds = (unsigned)round;
		o->throttle = st.throttle;
		switch (d.act) {
		case MIG_ACT_SWITCH:
			o->converges = true;
			o->downtime_ms = remaining / bw * 1e3 + state_ms;
			o->total_ms += o->downtime_ms;
			return;
		case MIG_ACT_POSTCOPY:
			o->converges = true;
			o->downtime_ms = state_ms;
			o->postcopy_ms = remaining / bw * 1e3;
			o->total_ms += o->downtime_ms + o->postcopy_ms;
			return;
		case MIG_ACT_FAIL:
			return;
		case MIG_ACT_CONTINUE:
			t = remaining / bw;
			o->total_ms += t * 1e3;
			break;
		}
	}
}

void mig_predict(const struct mig_predict_in *in, struct mig_prediction *out)
{
	const struct mig_policy_outcome *plain = &out->p[MIG_POLICY_FAIL];

	memset(out, 0, sizeof(*out));
	for (unsigned p = 0; p < MIG_NPOLICIES; p++)
		if (p != MIG_POLICY_AUTO && (p != MIG_POLICY_POSTCOPY || in->postcopy_ok))
			simulate(in, (enum mig_policy)p, &out->p[p]);
	/*
	 * Plain pre-copy when it converges without throttling (auto-converge
	 * then only stands by); else post-copy where the destination can take
	 * it (the guest keeps its CPU); else throttling.  Never force: its
	 * downtime has no bound.
	 */
	if (plain->converges && plain->throttle == 0)
		out->choice = MIG_POLICY_AUTO_CONVERGE;
	else if (in->postcopy_ok)
		out->choice = MIG_POLICY_POSTCOPY;
	else
		out->choice = MIG_POLICY_AUTO_CONVERGE;
	out->p[MIG_POLICY_AUTO] = out->p[out->choice];
}

json_t *mig_prediction_json(const struct mig_predict_in *in, const struct mig_prediction *p)
{
	json_t *pol = json_object();

	for (unsigned i = 0; i < MIG_NPOLICIES; i++) {
		const struct mig_policy_outcome *o = &p->p[i];
		json_t *j;

		if (i == MIG_POLICY_AUTO || (i == MIG_POLICY_POSTCOPY && !in->postcopy_ok))
			continue;
		j = json_pack("{s:b, s:I, s:I, s:I, s:i}", "converges", o->converges,
			      "total-time", (json_int_t)llround(o->total_ms),
			      "downtime", (json_int_t)llround(o->downtime_ms),
			      "rounds", (json_int_t)o->rounds, "throttle", (int)o->throttle);
		if (i == MIG_POLICY_POSTCOPY)
			json_object_set_new(j, "postcopy-time",
					    json_integer((json_int_t)llround(o->postcopy_ms)));
		json_object_set_new(pol, names[i], j);
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:o, s:s}",
			 "dirty-rate", (json_int_t)llround(in->dirty.rate * PAGE),
			 "working-set", (json_int_t)llround(in->dirty.wss * PAGE),
			 "hot-set", (json_int_t)llround(in->dirty.hot * PAGE),
			 "bandwidth", (json_int_t)llround(in->bandwidth),
			 "first-pass-bytes", (json_int_t)llround(in->first_pass_bytes),
			 "policies", pol, "choice", names[p->choice]);
}
