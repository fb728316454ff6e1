/*
 * placement.c - which node should run a VM (placement.h).
 *
 * A node fits when it is up, not in maintenance, has the VM's CPU vendor and
 * every CPU feature the VM was given, has the RAM and the vCPUs the VM needs
 * free (vCPUs are not overcommitted beyond what the node offers), its agent
 * said it reaches the VM's disks and networks, and it is not the node the VM
 * runs on.  Among the fitting nodes the lowest score wins (docs/CLUSTER.md,
 * "Placement"):
 *
 *   score = max(RAM fraction used after placing, vCPU fraction used after
 *               placing) + 0.5 * min(1, load1 / cpus)
 *
 * ties broken by name.
 */
#define _GNU_SOURCE
#include "cluster/placement.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

/* Scores closer than this are a tie (floating-point noise). */
#define SCORE_EPSILON 1e-9

static void reason(struct place_verdict *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void reason(struct place_verdict *v, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
	/* a truncated reason says so */
	if (n >= (int)sizeof(v->reason))
		memcpy(v->reason + sizeof(v->reason) - 4, "...", 4);
	v->fits = false;
}

static const char *str(const char *s)
{
	return s ? s : "";
}

/* "512 MiB", "1.5 MiB", "20480 MiB": RAM in MiB, whole when it is. */
static void fmt_mib(char *buf, size_t len, uint64_t bytes)
{
	if (bytes % (1024 * 1024) == 0)
		snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes / (1024 * 1024)));
	else
		snprintf(buf, len, "%.1f MiB", (double)bytes / MIB);
}

static bool has_feature(const struct place_node *n, const char *f)
{
	for (size_t i = 0; i < n->nfeatures; i++)
		if (n->features[i] && !strcmp(n->features[i], f))
			return true;
	return false;
}

/* The VM's features the node lacks, space-separated, into v->reason after
 * "missing CPU features: "; false when none is missing. */
static bool missing_features(const struct place_vm *vm, const struct place_node *n,
			     struct place_verdict *v)
{
	static const char head[] = "missing CPU features:";
	size_t len = sizeof(head) - 1, cap = sizeof(v->reason);
	bool any = false, cut = false;

	memcpy(v->reason, head, sizeof(head));
	for (size_t i = 0; i < vm->nfeatures; i++) {
		const char *f = vm->features[i];
		size_t fl;
		bool dup = false;

		if (!f || !*f || has_feature(n, f))
			continue;
		for (size_t j = 0; j < i && !dup; j++)	/* list each once */
			dup = vm->features[j] && !strcmp(vm->features[j], f);
		if (dup)
			continue;
		any = true;
		fl = strlen(f);
		/* keep room for " ..." */
		if (cut || len + 1 + fl + 4 >= cap) {
			cut = true;
			continue;
		}
		v->reason[len++] = ' ';
		memcpy(v->reason + len, f, fl);
		len += fl;
		v->reason[len] = '\0';
	}
	if (cut)
		memcpy(v->reason + len, " ...", 5);
	if (any)
		v->fits = false;
	else
		v->reason[0] = '\0';
	return any;
}

static void judge(const struct place_vm *vm, const struct place_node *n,
		  struct place_verdict *v)
{
	uint64_t ram_free = n->ram_total > n->ram_used ? n->ram_total - n->ram_used : 0;
	unsigned cpus_free = n->cpus > n->cpus_used ? n->cpus - n->cpus_used : 0;
	double ram_frac, cpu_frac, load;

	memset(v, 0, sizeof(*v));
	if (vm->exclude && n->name && !strcmp(vm->exclude, n->name)) {
		reason(v, "the VM runs there");
		return;
	}
	if (!n->up) {
		reason(v, "down");
		return;
	}
	if (n->maintenance) {
		reason(v, "in maintenance");
		return;
	}
	if (vm->cpu_vendor && *vm->cpu_vendor &&
	    (!n->cpu_vendor || strcmp(vm->cpu_vendor, n->cpu_vendor))) {
		reason(v, "CPU vendor %s, the VM needs %s",
		       n->cpu_vendor && *n->cpu_vendor ? n->cpu_vendor : "unknown",
		       vm->cpu_vendor);
		return;
	}
	if (missing_features(vm, n, v))
		return;
	if (ram_free < vm->mem) {
		char have[32], need[32];

		fmt_mib(have, sizeof(have), ram_free);
		fmt_mib(need, sizeof(need), vm->mem);
		reason(v, "not enough free RAM: %s free, the VM needs %s", have, need);
		return;
	}
	if (cpus_free < vm->cpus) {
		reason(v, "not enough free vCPUs: %u of %u free, the VM needs %u", cpus_free,
		       n->cpus, vm->cpus);
		return;
	}
	if (n->reach == 0) {
		reason(v, "its agent cannot reach the VM's storage: %s",
		       n->reach_reason && *n->reach_reason ? n->reach_reason : "no reason given");
		return;
	}
	if (n->reach != 1) {
		reason(v, "has not checked the VM's disks yet");
		return;
	}

	/* Fits.  A node offering 0 RAM or 0 vCPUs only fits a VM needing none:
	 * count it as full. */
	ram_frac = n->ram_total ?
		((double)n->ram_used + (double)vm->mem) / (double)n->ram_total : 1;
	cpu_frac = n->cpus ? ((double)n->cpus_used + vm->cpus) / n->cpus : 1;
	load = isfinite(n->load1) && n->load1 > 0 ? n->load1 : 0;
	load = n->cpus ? load / n->cpus : 1;
	if (load > 1)
		load = 1;
	v->fits = true;
	v->score = (ram_frac > cpu_frac ? ram_frac : cpu_frac) + 0.5 * load;
}

int place_choose(const struct place_vm *vm, const struct place_node *nodes, size_t n,
		 struct place_verdict *verdicts)
{
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		judge(vm, &nodes[i], &verdicts[i]);
		if (!verdicts[i].fits)
			continue;
		if (best < 0) {
			best = (int)i;
			continue;
		}
		double d = verdicts[i].score - verdicts[best].score;

		if (d < -SCORE_EPSILON ||
		    (d <= SCORE_EPSILON && strcmp(str(nodes[i].name), str(nodes[best].name)) < 0))
			best = (int)i;
	}
	return best;
}
