/*
 * vmcpu.c - the CPU of a cluster VM, for placement and its status
 * (vmcpu.h).
 */
#define _GNU_SOURCE
#include "cluster/vmcpu.h"

#include <string.h>

static void need_feats(const struct cpu_feats *f, struct vmcpu_need *out)
{
	for (unsigned i = 0; i < cpu_feature_count() && out->n < VMCPU_NEED_MAX; i++)
		if (cpu_feats_has(f, i))
			out->features[out->n++] = cpu_feature_name(i);
}

void vmcpu_need(const struct cpu_model *m, json_t *status, struct vmcpu_need *out)
{
	out->vendor = NULL;
	out->n = 0;
	if (status) {
		const char *v = json_string_value(json_object_get(status, "cpu-vendor"));

		out->vendor = v && *v ? v : NULL;
	}
	if (!m->host) {
		/* the model's features, boot or move: the guest has exactly these */
		need_feats(&m->feats, out);
		return;
	}
	if (!status) {
		/* a boot on host: it takes the node's; "+feat"s it must have */
		need_feats(&m->add, out);
		return;
	}
	/* a move on host: every feature it booted with */
	{
		json_t *f;
		size_t i;

		json_array_foreach(json_object_get(status, "cpu-features"), i, f)
			if (json_is_string(f) && out->n < VMCPU_NEED_MAX)
				out->features[out->n++] = json_string_value(f);
	}
}

void vmcpu_place(const struct vmcpu_need *need, struct place_vm *pv)
{
	pv->cpu_vendor = need->vendor;
	pv->features = need->features;
	pv->nfeatures = need->n;
}

void vmcpu_feats_from_json(json_t *names, struct cpu_feats *out, unsigned *unknown)
{
	json_t *f;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (unknown)
		*unknown = 0;
	json_array_foreach(names, i, f) {
		int k = json_is_string(f) ? cpu_feature_find(json_string_value(f)) : -1;

		if (k >= 0)
			cpu_feats_set(out, (unsigned)k);
		else if (unknown)
			(*unknown)++;
	}
}

json_t *vmcpu_feats_json(const struct cpu_feats *f)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < cpu_feature_count(); i++)
		if (cpu_feats_has(f, i) && json_array_append_new(a, json_string(cpu_feature_name(i)))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

json_t *vmcpu_boot_features(const struct cpu_model *m, json_t *host)
{
	json_t *a, *v;
	size_t i;

	if (!m->host)
		return vmcpu_feats_json(&m->feats);
	/* the host's list as it is (its own spelling and order), less "-feat"s */
	a = json_array();
	json_array_foreach(host, i, v) {
		int k = json_is_string(v) ? cpu_feature_find(json_string_value(v)) : -1;

		if (!a)
			break;
		if (k >= 0 && cpu_feats_has(&m->remove, (unsigned)k))
			continue;
		if (json_array_append(a, v)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}
