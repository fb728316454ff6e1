/*
 * cpubaseline.c - the CPU every node of a cluster offers (cpubaseline.h).
 */
#include "cluster/cpubaseline.h"

#include <string.h>

static const char *str(const char *s)
{
	return s ? s : "";
}

void cpubase_compute(const struct cpubase_node *nodes, size_t n, struct cpubase *out)
{
	memset(out, 0, sizeof(*out));
	out->n = n;
	if (!n)
		return;
	out->vendor = str(nodes[0].vendor);
	out->common = nodes[0].feats;
	for (size_t i = 1; i < n; i++) {
		for (unsigned w = 0; w < CPU_FEATS_WORDS; w++)
			out->common.w[w] &= nodes[i].feats.w[w];
		if (strcmp(str(nodes[i].vendor), out->vendor))
			out->mixed_vendors = true;
	}
	/* an unknown vendor on every node is still one vendor: nothing to
	 * compare; a mix (known or not) is not */
	out->beyond = out->common;
	if (out->mixed_vendors)
		return;
	out->model = cpu_model_best(&out->common);
	if (!out->model || cpu_model_base_feats(out->model, &out->model_feats)) {
		out->model = NULL;
		return;
	}
	for (unsigned w = 0; w < CPU_FEATS_WORDS; w++)
		out->beyond.w[w] &= ~out->model_feats.w[w];
}
