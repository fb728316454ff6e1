/*
 * balance.c - the load balancer's decision (balance.h).
 */
#include "cluster/balance.h"

#include <stdint.h>
#include <stdio.h>

/* Variance of the eligible nodes' loads, with node a's load replaced by
 * va and b's by vb (a, b may be SIZE_MAX: none). */
static double variance(const struct bal_node *n, size_t nn, size_t a, double va, size_t b,
		       double vb, double *spread)
{
	double sum = 0, sq = 0, lo = 0, hi = 0;
	size_t k = 0;

	for (size_t i = 0; i < nn; i++) {
		double x;
		if (!n[i].eligible)
			continue;
		x = i == a ? va : i == b ? vb : n[i].cpu;
		if (!k || x < lo)
			lo = x;
		if (!k || x > hi)
			hi = x;
		sum += x;
		sq += x * x;
		k++;
	}
	*spread = hi - lo;
	if (!k)
		return 0;
	return sq / (double)k - (sum / (double)k) * (sum / (double)k);
}

int bal_recommend(const struct bal_node *n, size_t nn, const struct bal_vm *v, size_t nv,
		  const struct bal_settings *s, struct bal_move *m, char *why, size_t len)
{
	size_t hot = SIZE_MAX, eligible = 0;
	double var0, spread0, best = -1;
	bool found = false;

	for (size_t i = 0; i < nn; i++) {
		if (!n[i].eligible || !n[i].cpus)
			continue;
		eligible++;
		if (hot == SIZE_MAX || n[i].cpu > n[hot].cpu)
			hot = i;
	}
	if (eligible < 2) {
		snprintf(why, len, "fewer than two nodes with load samples");
		return 0;
	}
	var0 = variance(n, nn, SIZE_MAX, 0, SIZE_MAX, 0, &spread0);
	if (n[hot].cpu <= s->cpu_threshold && spread0 <= s->spread) {
		snprintf(why, len, "balanced: busiest %s %.0f %% (threshold %.0f %%), spread %.0f "
			 "points (threshold %.0f)", n[hot].name, n[hot].cpu, s->cpu_threshold, spread0,
			 s->spread);
		return 0;
	}
	for (size_t j = 0; j < nv; j++) {
		if (v[j].node != hot || !v[j].movable || v[j].cpu <= 0)
			continue;
		for (size_t t = 0; t < nn; t++) {
			double from_after, to_after, var1, spread1;
			if (t == hot || !n[t].eligible || !n[t].cpus || (v[j].fits && !v[j].fits[t]))
				continue;
			from_after = n[hot].cpu - v[j].cpu / n[hot].cpus;
			if (from_after < 0)
				from_after = 0;
			to_after = n[t].cpu + v[j].cpu / n[t].cpus;
			if (to_after > n[hot].cpu - s->hysteresis)
				continue;	/* the target would become the hot spot */
			var1 = variance(n, nn, hot, from_after, t, to_after, &spread1);
			if (var1 > var0 * (1 - s->min_gain))
				continue;	/* not worth a migration */
			if (!found || var1 < best) {
				found = true;
				best = var1;
				*m = (struct bal_move){ .vm = j, .from = hot, .to = t,
							.from_before = n[hot].cpu,
							.from_after = from_after,
							.to_before = n[t].cpu, .to_after = to_after,
							.spread_before = spread0,
							.spread_after = spread1 };
			}
		}
	}
	if (!found) {
		snprintf(why, len, "%s is at %.0f %% (spread %.0f points) but no move of its VMs "
			 "helps enough", n[hot].name, n[hot].cpu, spread0);
		return 0;
	}
	snprintf(why, len, "move %s from %s to %s: %s CPU %.0f %% -> %.0f %%, %s %.0f %% -> "
		 "%.0f %%", v[m->vm].name, n[m->from].name, n[m->to].name, n[m->from].name,
		 m->from_before, m->from_after, n[m->to].name, m->to_before, m->to_after);
	return 1;
}
