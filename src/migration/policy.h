/*
 * policy.h - convergence as pure functions: what to do after a pre-copy
 * round (switch over, go on, throttle harder, switch to post-copy, give up),
 * and a prediction of every policy's total time, rounds and downtime from a
 * sampled dirty rate and bandwidth.  No I/O here: the migration thread feeds
 * measured rounds to mig_policy_decide(); mig_predict() feeds modelled ones
 * to the same function, so the prediction follows the real decisions.
 */
#ifndef KVMOVE_MIGRATION_POLICY_H
#define KVMOVE_MIGRATION_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum mig_policy {
	MIG_POLICY_FAIL,		/* give up when the guest out-dirties the link */
	MIG_POLICY_AUTO_CONVERGE,	/* throttle the vCPUs until it fits */
	MIG_POLICY_FORCE,		/* switch over at max-rounds whatever it costs */
	MIG_POLICY_POSTCOPY,		/* resume on the destination, fetch the rest */
	MIG_POLICY_AUTO,		/* chosen from the prediction after the sample */
};
#define MIG_NPOLICIES 5

const char *mig_policy_name(enum mig_policy p);
/* "fail", ... -> 0 and *out; -EINVAL for anything else. */
int mig_policy_parse(const char *s, enum mig_policy *out);

struct mig_policy_cfg {
	enum mig_policy policy;		/* never MIG_POLICY_AUTO here: resolved first */
	uint64_t downtime_ms;		/* target */
	unsigned max_rounds;
	unsigned postcopy_after;	/* POSTCOPY: pre-copy rounds before switching */
	unsigned throttle_initial, throttle_step;	/* auto-converge: 20, 10 */
	unsigned throttle_max;				/* 99 */
};

/* What one round measured (round 1 = right after the first pass). */
struct mig_round {
	uint64_t round;
	uint64_t remaining;		/* bytes still dirty */
	double bandwidth;		/* bytes/s */
	double dirty_rate;		/* bytes/s of distinct pages dirtied in the round */
};

/* Carried between rounds. */
struct mig_policy_state {
	unsigned behind;		/* rounds in a row dirtying > half the bandwidth */
	unsigned throttle;		/* percent now applied */
};

enum mig_action {
	MIG_ACT_CONTINUE,		/* another round (throttle may have changed) */
	MIG_ACT_SWITCH,			/* stop and copy now */
	MIG_ACT_POSTCOPY,		/* stop, send state, resume there, pages after */
	MIG_ACT_FAIL,			/* give up; the VM stays here */
};

struct mig_decision {
	enum mig_action act;
	unsigned throttle;		/* percent to apply (auto-converge) */
	double expected_ms;		/* downtime if we stopped now */
	char why[256];			/* for FAIL: the user's message */
};

void mig_policy_defaults(struct mig_policy_cfg *cfg);
void mig_policy_decide(const struct mig_policy_cfg *cfg, struct mig_policy_state *st,
		       const struct mig_round *rd, struct mig_decision *d);

/*
 * The guest's dirtying, as sampled: distinct pages dirtied after t seconds
 * follow H + W * (1 - exp(-r t / W)): a hot set of H pages rewritten all
 * the time, and r pages/s at first, saturating at a working set of W.  mig_dirty_fit() fits r and W to cumulative
 * counts taken at times t[i].
 */
struct mig_dirty_model {
	double rate;			/* pages/s */
	double wss;			/* pages */
	double hot;			/* pages dirty at once, however short the time */
};
void mig_dirty_fit(const double *t, const double *pages, unsigned n, double mem_pages,
		   struct mig_dirty_model *out);
double mig_dirty_after(const struct mig_dirty_model *m, double seconds);

struct mig_predict_in {
	struct mig_policy_cfg cfg;	/* downtime, max-rounds, postcopy-after */
	struct mig_dirty_model dirty;
	double bandwidth;		/* bytes/s */
	double first_pass_bytes;	/* what the first pass sends */
	double state_bytes;		/* CPU and device state */
	bool postcopy_ok;		/* the destination can take post-copy */
};

struct mig_prediction {
	struct mig_policy_outcome {
		bool converges;
		double total_ms, downtime_ms, postcopy_ms;
		unsigned rounds, throttle;
	} p[MIG_NPOLICIES];
	enum mig_policy choice;
};

void mig_predict(const struct mig_predict_in *in, struct mig_prediction *out);
/* {"dirty-rate", "working-set", "bandwidth", "policies": {...}, "choice"} */
json_t *mig_prediction_json(const struct mig_predict_in *in, const struct mig_prediction *p);

#endif
