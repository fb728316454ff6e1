/*
 * Convergence as pure functions (migration/policy.c): the decision after
 * each round, the dirty-rate fit, the prediction; the throttle's duty
 * cycle arithmetic; and the post-copy range records a hostile peer could
 * forge.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "core/dirty.h"
#include "core/vm.h"
#include "migration/policy.h"
#include "migration/postcopy.h"
#include "migration/proto.h"
#include "state/stream.h"

#define MIB (1024.0 * 1024.0)

static struct mig_policy_cfg cfg_for(enum mig_policy p)
{
	struct mig_policy_cfg c;

	mig_policy_defaults(&c);
	c.policy = p;
	return c;
}

static struct mig_round round_of(uint64_t n, double remaining_mib, double bw_mib,
				 double dirty_mib)
{
	return (struct mig_round){ .round = n, .remaining = (uint64_t)(remaining_mib * MIB),
				   .bandwidth = bw_mib * MIB, .dirty_rate = dirty_mib * MIB };
}

static void switch_when_it_fits(void **state)
{
	struct mig_policy_cfg c = cfg_for(MIG_POLICY_FAIL);
	struct mig_policy_state st = { 0 };
	struct mig_decision d;
	struct mig_round rd = round_of(1, 9, 100, 500);	/* 90 ms at 100 MiB/s */

	(void)state;
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_SWITCH);
	assert_true(fabs(d.expected_ms - 90) < 0.5);
	rd = round_of(1, 11, 100, 5);		/* 110 ms: another round */
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_CONTINUE);
	rd.bandwidth = 0;			/* nothing measured yet, pages left */
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_CONTINUE);
}

static void auto_converge_steps(void **state)
{
	struct mig_policy_cfg c = cfg_for(MIG_POLICY_AUTO_CONVERGE);
	struct mig_policy_state st = { 0 };
	struct mig_decision d;
	unsigned want[] = { 0, 20, 30, 40, 50, 60, 70, 80, 90, 99, 99 };

	(void)state;
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct mig_round rd = round_of(i + 1, 200, 64, 256);
		mig_policy_decide(&c, &st, &rd, &d);
		assert_int_equal(d.act, MIG_ACT_CONTINUE);
		assert_int_equal(d.throttle, want[i]);
	}
	/* keeping up again: the throttle stays where it is */
	st.behind = 0;
	{
		struct mig_round rd = round_of(12, 200, 64, 10);
		mig_policy_decide(&c, &st, &rd, &d);
		assert_int_equal(d.throttle, 99);
	}
}

static void fail_and_force(void **state)
{
	struct mig_policy_cfg c = cfg_for(MIG_POLICY_FAIL);
	struct mig_policy_state st = { 0 };
	struct mig_decision d;
	struct mig_round rd;

	(void)state;
	/* never throttles; gives up after 3 rounds at or above the link */
	for (unsigned i = 1; i <= 2; i++) {
		rd = round_of(i, 200, 64, 64);
		mig_policy_decide(&c, &st, &rd, &d);
		assert_int_equal(d.act, MIG_ACT_CONTINUE);
		assert_int_equal(d.throttle, 0);
	}
	rd = round_of(3, 200, 64, 64);
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_FAIL);
	assert_non_null(strstr(d.why, "policy fail"));

	/* max rounds: fail says so, force switches */
	st = (struct mig_policy_state){ 0 };
	rd = round_of(30, 200, 64, 1);
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_FAIL);
	assert_non_null(strstr(d.why, "did not converge in 30 rounds"));
	c = cfg_for(MIG_POLICY_FORCE);
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_SWITCH);
}

static void postcopy_after_n(void **state)
{
	struct mig_policy_cfg c = cfg_for(MIG_POLICY_POSTCOPY);
	struct mig_policy_state st = { 0 };
	struct mig_decision d;
	struct mig_round rd;

	(void)state;
	c.postcopy_after = 3;
	for (unsigned i = 1; i <= 2; i++) {
		rd = round_of(i, 200, 64, 256);
		mig_policy_decide(&c, &st, &rd, &d);
		assert_int_equal(d.act, MIG_ACT_CONTINUE);
		assert_int_equal(d.throttle, 0);	/* post-copy never throttles */
	}
	rd = round_of(3, 200, 64, 256);
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_POSTCOPY);
	/* converged before: an ordinary switchover */
	st = (struct mig_policy_state){ 0 };
	rd = round_of(1, 1, 64, 256);
	mig_policy_decide(&c, &st, &rd, &d);
	assert_int_equal(d.act, MIG_ACT_SWITCH);
}

static void names_round_trip(void **state)
{
	enum mig_policy p;

	(void)state;
	for (unsigned i = 0; i < MIG_NPOLICIES; i++) {
		assert_int_equal(mig_policy_parse(mig_policy_name((enum mig_policy)i), &p), 0);
		assert_int_equal(p, i);
	}
	assert_int_equal(mig_policy_parse("Force", &p), -EINVAL);
	assert_int_equal(mig_policy_parse(NULL, &p), -EINVAL);
	assert_int_equal(mig_policy_parse("", &p), -EINVAL);
}

/* ---- the fit ---- */

static void sample(const struct mig_dirty_model *m, double *t, double *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		t[i] = 0.25 * (i + 1);
		c[i] = mig_dirty_after(m, t[i]);
	}
}

static void fit_saturating(void **state)
{
	struct mig_dirty_model truth = { .rate = 40000, .wss = 16384, .hot = 50 }, got;
	double t[4], c[4];

	(void)state;
	sample(&truth, t, c, 4);
	mig_dirty_fit(t, c, 4, 262144, &got);
	/* the curve is what matters: it must match at and beyond the sample */
	for (double x = 0.25; x <= 8; x *= 2)
		assert_true(fabs(mig_dirty_after(&got, x) - mig_dirty_after(&truth, x)) <
			    0.05 * mig_dirty_after(&truth, x));
}

static void fit_linear_is_not_a_small_wss(void **state)
{
	struct mig_dirty_model got;
	double t[4] = { 0.25, 0.5, 0.75, 1.0 }, c[4] = { 1000, 2000, 3000, 4000 };

	(void)state;
	mig_dirty_fit(t, c, 4, 262144, &got);
	assert_true(got.wss > 200000);		/* no invented saturation */
	assert_true(fabs(got.rate - 4000) < 200);
	/* a bound (what the guest ever touched) caps it */
	mig_dirty_fit(t, c, 4, 8192, &got);
	assert_true(got.wss <= 8192 * 1.001);
}

static void fit_degenerate(void **state)
{
	struct mig_dirty_model got;
	double t[2] = { 0.25, 0.5 }, zero[2] = { 0, 0 };

	(void)state;
	mig_dirty_fit(t, zero, 2, 1000, &got);
	assert_true(got.rate == 0 && mig_dirty_after(&got, 10) == 0);
	mig_dirty_fit(t, zero, 0, 1000, &got);
	assert_true(got.rate == 0);
	/* counts above the memory bound still give a sane model */
	{
		double c[2] = { 5000, 9000 };
		mig_dirty_fit(t, c, 2, 10, &got);
		assert_true(got.wss >= 9000 && isfinite(got.rate));
	}
}

/* ---- the prediction ---- */

static struct mig_predict_in pin(double dirty_mib, double bw_mib, bool pc)
{
	struct mig_predict_in in = { .bandwidth = bw_mib * MIB, .first_pass_bytes = 1024 * MIB,
				     .state_bytes = 64 << 10, .postcopy_ok = pc };

	mig_policy_defaults(&in.cfg);
	in.dirty = (struct mig_dirty_model){ .rate = dirty_mib * MIB / 4096,
					     .wss = 256 * MIB / 4096 };
	return in;
}

static void predict_idle(void **state)
{
	struct mig_predict_in in = pin(0, 1000, true);
	struct mig_prediction p;
	json_t *j;

	(void)state;
	mig_predict(&in, &p);
	for (unsigned i = 0; i < MIG_NPOLICIES; i++) {
		assert_true(p.p[i].converges);
		assert_int_equal(p.p[i].rounds, 1);
		assert_true(fabs(p.p[i].total_ms - 1024 - p.p[i].downtime_ms) < 1);
	}
	assert_int_equal(p.choice, MIG_POLICY_AUTO_CONVERGE);
	j = mig_prediction_json(&in, &p);
	assert_string_equal(json_string_value(json_object_get(j, "choice")), "auto-converge");
	assert_non_null(json_object_get(json_object_get(j, "policies"), "postcopy"));
	assert_null(json_object_get(json_object_get(j, "policies"), "auto"));
	json_decref(j);
}

static void predict_too_fast_a_guest(void **state)
{
	struct mig_predict_in in = pin(256, 64, true);
	struct mig_prediction p;

	(void)state;
	mig_predict(&in, &p);
	assert_false(p.p[MIG_POLICY_FAIL].converges);
	assert_true(p.p[MIG_POLICY_FORCE].converges);
	assert_true(p.p[MIG_POLICY_FORCE].downtime_ms > 1000);
	assert_true(p.p[MIG_POLICY_POSTCOPY].converges);
	assert_true(p.p[MIG_POLICY_POSTCOPY].downtime_ms < 100);
	assert_true(p.p[MIG_POLICY_POSTCOPY].postcopy_ms > 0);
	assert_true(p.p[MIG_POLICY_AUTO_CONVERGE].throttle > 0);
	assert_int_equal(p.choice, MIG_POLICY_POSTCOPY);
	/* no post-copy at the destination: throttling is what is left */
	in.postcopy_ok = false;
	mig_predict(&in, &p);
	assert_int_equal(p.choice, MIG_POLICY_AUTO_CONVERGE);
	assert_true(p.p[MIG_POLICY_AUTO_CONVERGE].converges);
}

/* ---- throttle arithmetic ---- */

static void throttle_duty_cycle(void **state)
{
	(void)state;
	assert_int_equal(vm_throttle_sleep_ns(10000000, 0), 0);
	assert_int_equal(vm_throttle_sleep_ns(10000000, 20), 2500000);
	assert_int_equal(vm_throttle_sleep_ns(10000000, 50), 10000000);
	assert_int_equal(vm_throttle_sleep_ns(10000000, 99), 990000000);
	/* a late timer: ran 25 ms, so it sleeps in proportion */
	assert_int_equal(vm_throttle_sleep_ns(25000000, 80), 100000000);
	assert_int_equal(vm_throttle_sleep_ns(10000000, 150), 990000000);	/* clamped */
}

/* ---- post-copy ranges ---- */

struct collect { uint64_t first[64], n[64]; unsigned k; };

static int collect(void *opaque, uint64_t first, uint64_t n, struct kv_err *err)
{
	struct collect *c = opaque;

	(void)err;
	c->first[c->k] = first;
	c->n[c->k++] = n;
	return 0;
}

static struct vm *mem_vm(uint64_t size)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct kv_err err;

	assert_int_equal(mem_init(&vm->mem, size, MEM_BACKEND_MEMFD, &err), 0);
	return vm;
}

static int parse_payload(struct vm *vm, const uint8_t *p, uint32_t len, struct collect *c,
			 struct kv_err *err)
{
	struct stream_rec rec = { .type = MIG_REC_DISCARD, .len = len, .payload = p };
	unsigned count;

	c->k = 0;
	return pc_parse_ranges(vm, &rec, collect, c, &count, err);
}

static void ranges_round_trip(void **state)
{
	/* 4 GiB + 1 MiB: two regions, a run that crosses the hole is split */
	struct vm *vm = mem_vm((4ull << 30) + (1 << 20));
	uint64_t nw = (vm->mem.npages + 63) / 64, *bm = calloc(nw, 8);
	uint64_t hole_page = 0xC0000000ull >> 12;
	struct stream s;
	struct stream_rec rec;
	struct collect c;
	struct kv_err err;
	unsigned count;
	int fd = memfd_create("ranges", 0);

	(void)state;
	for (uint64_t p = 10; p < 20; p++)
		bm[p / 64] |= 1ull << (p % 64);
	for (uint64_t p = hole_page - 3; p < hole_page + 2; p++)
		bm[p / 64] |= 1ull << (p % 64);
	assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
	assert_int_equal(pc_send_ranges(&s, MIG_REC_NEEDED, vm, bm, true, &err), 0);
	assert_int_equal(stream_flush(&s, &err), 0);
	stream_destroy(&s);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
	assert_int_equal(stream_read(&s, &rec, &err), 0);
	c.k = 0;
	assert_int_equal(pc_parse_ranges(vm, &rec, collect, &c, &count, &err), 0);
	assert_int_equal(count, 3);
	assert_int_equal(c.first[0], 10);
	assert_int_equal(c.n[0], 10);
	assert_int_equal(c.first[1], hole_page - 3);	/* below 3 GiB */
	assert_int_equal(c.n[1], 3);
	assert_int_equal(c.first[2], hole_page);	/* the rest, above 4 GiB */
	assert_int_equal(c.n[2], 2);
	assert_int_equal(stream_read(&s, &rec, &err), 0);	/* the terminator */
	assert_int_equal(pc_parse_ranges(vm, &rec, collect, &c, &count, &err), 0);
	assert_int_equal(count, 0);
	stream_destroy(&s);
	close(fd);
	free(bm);
	mem_destroy(&vm->mem);
	free(vm);
}

static void ranges_hostile(void **state)
{
	struct vm *vm = mem_vm(64 << 20);
	uint8_t p[4 + 2 * PC_RANGE_SIZE];
	struct collect c;
	struct kv_err err;

	(void)state;
	/* a count that the length does not carry */
	st_put32(p, 2);
	st_put64(p + 4, 0x1000);
	st_put64(p + 12, 1);
	assert_int_equal(parse_payload(vm, p, 4 + PC_RANGE_SIZE, &c, &err), -EBADMSG);
	assert_int_equal(parse_payload(vm, p, 3, &c, &err), -EBADMSG);
	st_put32(p, 1);
	/* outside RAM, unaligned, empty, huge, wrapping */
	st_put64(p + 4, 64 << 20);
	assert_int_equal(parse_payload(vm, p, 4 + PC_RANGE_SIZE, &c, &err), -EBADMSG);
	st_put64(p + 4, 0x1001);
	assert_int_equal(parse_payload(vm, p, 4 + PC_RANGE_SIZE, &c, &err), -EBADMSG);
	st_put64(p + 4, 0x1000);
	st_put64(p + 12, 0);
	assert_int_equal(parse_payload(vm, p, 4 + PC_RANGE_SIZE, &c, &err), -EBADMSG);
	st_put64(p + 12, (64 << 20) >> 12);
	assert_int_equal(parse_payload(vm, p, 4 + PC_RANGE_SIZE, &c, &err), -EBADMSG);
	st_put64(p + 12, UINT64_MAX / 4096);
	assert_int_equal(parse_payload(vm, p, 4 + PC_RANGE_SIZE, &c, &err), -EBADMSG);
	assert_int_equal(c.k, 0);	/* nothing was acted on */
	/* and a good one */
	st_put64(p + 12, 3);
	assert_int_equal(parse_payload(vm, p, 4 + PC_RANGE_SIZE, &c, &err), 0);
	assert_int_equal(c.k, 1);
	assert_int_equal(c.first[0], 1);
	assert_int_equal(c.n[0], 3);
	mem_destroy(&vm->mem);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(switch_when_it_fits),
		cmocka_unit_test(auto_converge_steps),
		cmocka_unit_test(fail_and_force),
		cmocka_unit_test(postcopy_after_n),
		cmocka_unit_test(names_round_trip),
		cmocka_unit_test(fit_saturating),
		cmocka_unit_test(fit_linear_is_not_a_small_wss),
		cmocka_unit_test(fit_degenerate),
		cmocka_unit_test(predict_idle),
		cmocka_unit_test(predict_too_fast_a_guest),
		cmocka_unit_test(throttle_duty_cycle),
		cmocka_unit_test(ranges_round_trip),
		cmocka_unit_test(ranges_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
