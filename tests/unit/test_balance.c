/*
 * test_balance.c - the load balancer's decision (cluster/balance.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/balance.h"

static const struct bal_settings defaults = BAL_DEFAULTS;

/* h1 runs two VMs at 90 % of a CPU each (2 CPUs: 90 %), h2 and h3 idle:
 * move one to h2 (the first idle node), h1 90 -> 45, h2 0 -> 45. */
static void test_hot_node(void **state)
{
	struct bal_node n[] = { { "h1", 2, 90, true }, { "h2", 2, 0, true }, { "h3", 2, 0, true } };
	struct bal_vm v[] = { { "a", 0, 90, true, NULL }, { "b", 0, 90, true, NULL } };
	struct bal_move m;
	char why[256];

	(void)state;
	assert_int_equal(bal_recommend(n, 3, v, 2, &defaults, &m, why, sizeof(why)), 1);
	assert_int_equal(m.from, 0);
	assert_int_equal(m.to, 1);
	assert_int_equal(m.vm, 0);
	assert_true(m.from_after > 44.9 && m.from_after < 45.1);
	assert_true(m.to_after > 44.9 && m.to_after < 45.1);
	assert_non_null(strstr(why, "move a from h1 to h2"));
}

/* After that move (45, 45, 0): the spread is over the threshold, but moving
 * either VM to h3 only mirrors the loads: no gain, no move (no ping-pong). */
static void test_no_ping_pong(void **state)
{
	struct bal_node n[] = { { "h1", 2, 45, true }, { "h2", 2, 45, true }, { "h3", 2, 0, true } };
	struct bal_vm v[] = { { "a", 1, 90, true, NULL }, { "b", 0, 90, true, NULL } };
	struct bal_move m;
	char why[256];

	(void)state;
	assert_int_equal(bal_recommend(n, 3, v, 2, &defaults, &m, why, sizeof(why)), 0);
	assert_non_null(strstr(why, "no move"));
	/* and a move that would make the target the new hot spot is refused */
	{
		struct bal_node n2[] = { { "h1", 1, 100, true }, { "h2", 1, 20, true } };
		struct bal_vm v2[] = { { "big", 0, 100, true, NULL } };
		assert_int_equal(bal_recommend(n2, 2, v2, 1, &defaults, &m, why, sizeof(why)), 0);
	}
}

/* Balanced, or too few nodes: nothing to do, and why. */
static void test_balanced(void **state)
{
	struct bal_node n[] = { { "h1", 2, 50, true }, { "h2", 2, 40, true }, { "h3", 2, 0, false } };
	struct bal_vm v[] = { { "a", 0, 100, true, NULL } };
	struct bal_move m;
	char why[256];

	(void)state;
	assert_int_equal(bal_recommend(n, 3, v, 1, &defaults, &m, why, sizeof(why)), 0);
	assert_non_null(strstr(why, "balanced"));
	assert_int_equal(bal_recommend(n, 1, v, 1, &defaults, &m, why, sizeof(why)), 0);
	assert_non_null(strstr(why, "fewer than two"));
}

/* Placement and movability are respected; of two targets the one that
 * evens the loads out more wins. */
static void test_constraints(void **state)
{
	struct bal_node n[] = { { "h1", 2, 95, true }, { "h2", 2, 0, true }, { "h3", 4, 10, true } };
	bool fits_h3_only[] = { true, false, true };
	struct bal_vm v[] = { { "pinned", 0, 100, false, NULL },
			      { "small", 0, 90, true, fits_h3_only } };
	struct bal_move m;
	char why[256];

	(void)state;
	assert_int_equal(bal_recommend(n, 3, v, 2, &defaults, &m, why, sizeof(why)), 1);
	assert_int_equal(m.vm, 1);	/* the unmovable one stays */
	assert_int_equal(m.to, 2);	/* h2 does not fit it */
	assert_true(m.to_after > 32 && m.to_after < 33);	/* 10 + 90 / 4 */
	/* nothing movable: no move */
	v[1].movable = false;
	assert_int_equal(bal_recommend(n, 3, v, 2, &defaults, &m, why, sizeof(why)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hot_node),
		cmocka_unit_test(test_no_ping_pong),
		cmocka_unit_test(test_balanced),
		cmocka_unit_test(test_constraints),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
