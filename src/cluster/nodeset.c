/*
 * nodeset.c - node records, node settings and reach keys as placement input
 * (nodeset.h).
 */
#define _GNU_SOURCE
#include "cluster/nodeset.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODES_PREFIX "/kvmove/nodes/"
#define NODECFG_PREFIX "/kvmove/nodecfg/"

static void problem(struct cluster_node *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void problem(struct cluster_node *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(n->problem, sizeof(n->problem), fmt, ap);
	va_end(ap);
}

static int cmp_node(const void *a, const void *b)
{
	return strcmp(((const struct cluster_node *)a)->name,
		      ((const struct cluster_node *)b)->name);
}

/* The NAME of PREFIX+NAME, or NULL (counted as ignored) if it is not a
 * valid node name. */
static const char *key_name(struct nodeset *ns, const char *key, const char *prefix)
{
	size_t pl = strlen(prefix);
	const char *name;

	if (strncmp(key, prefix, pl))
		return NULL;
	name = key + pl;
	if (cluster_node_name_ok(name))
		return name;
	if (!ns->ignored++)
		cluster_sanitize(ns->ignored_example, sizeof(ns->ignored_example), key);
	return NULL;
}

/* Find or add; NULL when full. */
static struct cluster_node *get(struct nodeset *ns, size_t cap, const char *name)
{
	struct cluster_node *n;

	for (size_t i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i].name, name))
			return &ns->v[i];
	if (ns->n >= cap)
		return NULL;
	n = &ns->v[ns->n++];
	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "%s", name);
	return n;
}

/* Check the record's fields; on the first bad one set n->problem. */
static void check_record(struct cluster_node *n, struct place_node *p)
{
	static const struct {
		const char *key;
		json_int_t max;
	} ints[] = {
		{ "cpus", 65536 }, { "cpus-used", 1 << 24 },
		{ "ram-total", (json_int_t)1 << 52 }, { "ram-used", (json_int_t)1 << 52 },
	};
	json_int_t v[4];
	json_t *rec = n->rec, *a, *f;
	const char *s;
	size_t i;

	s = json_string_value(json_object_get(rec, "name"));
	if (s && strcmp(s, n->name)) {
		problem(n, "its record names another node");
		return;
	}
	for (i = 0; i < 4; i++) {
		json_t *x = json_object_get(rec, ints[i].key);

		if (!json_is_integer(x) || json_integer_value(x) < 0 ||
		    json_integer_value(x) > ints[i].max) {
			problem(n, "its record's \"%s\" is %s", ints[i].key,
				x ? "not an integer in range" : "missing");
			return;
		}
		v[i] = json_integer_value(x);
	}
	p->cpus = (unsigned)v[0];
	p->cpus_used = (unsigned)v[1];
	p->ram_total = (uint64_t)v[2];
	p->ram_used = (uint64_t)v[3];

	a = json_object_get(rec, "load");
	if (a && !json_is_array(a)) {
		problem(n, "its record's \"load\" is not an array");
		return;
	}
	for (i = 0; i < 3 && i < json_array_size(a); i++) {
		double d = json_number_value(json_array_get(a, i));

		n->load[i] = isfinite(d) && d >= 0 && d < 1e9 ? d : 0;
	}
	p->load1 = n->load[0];

	a = json_object_get(rec, "cpu-vendor");
	if (a && !json_is_null(a) && !json_is_string(a)) {
		problem(n, "its record's \"cpu-vendor\" is not a string");
		return;
	}
	cluster_sanitize(n->vendor, sizeof(n->vendor), json_string_value(a));
	p->cpu_vendor = n->vendor;

	a = json_object_get(rec, "cpu-features");
	if (a && !json_is_null(a) &&
	    (!json_is_array(a) || json_array_size(a) > NODE_FEATURES_MAX)) {
		problem(n, "its record's \"cpu-features\" is not an array of at most %d",
			NODE_FEATURES_MAX);
		return;
	}
	if (json_array_size(a)) {
		n->features = calloc(json_array_size(a), sizeof(*n->features));
		if (!n->features) {
			problem(n, "out of memory");
			return;
		}
		json_array_foreach(a, i, f) {
			if (!json_is_string(f) || json_string_length(f) > NODE_FEATURE_LEN_MAX) {
				problem(n, "its record's \"cpu-features\" has a member that is "
					"not a short string");
				return;
			}
			n->features[i] = json_string_value(f);
		}
		p->features = n->features;
		p->nfeatures = json_array_size(a);
	}
	a = json_object_get(rec, "maintenance");
	if (json_is_true(a))
		p->maintenance = true;	/* the agent says so itself */
}

static void apply_cfg(struct cluster_node *n, struct place_node *p, int config_limit)
{
	json_t *lim = json_object_get(n->cfg, "migration-limit");

	n->migration_limit = config_limit;
	if (json_is_true(json_object_get(n->cfg, "maintenance")))
		p->maintenance = true;
	if (json_is_integer(lim) && json_integer_value(lim) >= 0 &&
	    json_integer_value(lim) <= 64) {
		n->migration_limit = (int)json_integer_value(lim);
		n->limit_from_cfg = true;
	}
}

static void apply_reach(struct nodeset *ns, const struct store_list *reach, const char *vm)
{
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "/kvmove/reach/%s/", vm);
	for (size_t i = 0; i < reach->n; i++) {
		const char *name = key_name(ns, reach->kvs[i].key, prefix);
		int k = name ? nodeset_find(ns, name) : -1;
		struct place_node *p;
		struct cluster_node *n;
		json_t *j = NULL, *ok;

		if (k < 0)
			continue;	/* a node we know nothing else of */
		n = &ns->v[k];
		p = &ns->place[k];
		if (cluster_json_object("reach", reach->kvs[i].value, reach->kvs[i].vlen, &j,
					NULL)) {
			p->reach = 0;
			snprintf(n->reach_reason, sizeof(n->reach_reason),
				 "its reach record is malformed");
			continue;
		}
		ok = json_object_get(j, "ok");
		if (json_is_true(ok)) {
			p->reach = 1;
		} else {
			p->reach = 0;
			cluster_sanitize(n->reach_reason, sizeof(n->reach_reason),
					 json_is_boolean(ok) ? cluster_jstr(j, "reason") :
					 "its reach record has no \"ok\"");
		}
		json_decref(j);
	}
}

int nodeset_build(struct nodeset *ns, const struct store_list *nodes,
		  const struct store_list *cfgs, const struct store_list *reach,
		  const char *vm, const char *config, size_t config_len, struct kv_err *err)
{
	size_t cap = (nodes ? nodes->n : 0) + (cfgs ? cfgs->n : 0);

	memset(ns, 0, sizeof(*ns));
	ns->config_limit = cluster_config_limit(config, config_len);
	if (cap > NODESET_MAX)
		return kv_errf(err, E2BIG, "the store lists %zu node keys, more than the %d "
			       "this command handles", cap, NODESET_MAX);
	ns->v = calloc(cap ? cap : 1, sizeof(*ns->v));
	if (!ns->v)
		return kv_errf(err, ENOMEM, "out of memory");

	for (size_t i = 0; nodes && i < nodes->n; i++) {
		const char *name = key_name(ns, nodes->kvs[i].key, NODES_PREFIX);
		struct cluster_node *n = name ? get(ns, cap, name) : NULL;

		if (n && !n->rec &&
		    cluster_json_object("node record", nodes->kvs[i].value, nodes->kvs[i].vlen,
					&n->rec, NULL)) {
			problem(n, "its record is not a JSON object");
			n->rec = json_object();	/* up, but unusable */
		}
	}
	for (size_t i = 0; cfgs && i < cfgs->n; i++) {
		const char *name = key_name(ns, cfgs->kvs[i].key, NODECFG_PREFIX);
		struct cluster_node *n = name ? get(ns, cap, name) : NULL;

		/* a malformed nodecfg counts as none: defaults */
		if (n && !n->cfg)
			cluster_json_object("nodecfg", cfgs->kvs[i].value, cfgs->kvs[i].vlen,
					    &n->cfg, NULL);
	}
	qsort(ns->v, ns->n, sizeof(*ns->v), cmp_node);

	ns->place = calloc(ns->n ? ns->n : 1, sizeof(*ns->place));
	if (!ns->place) {
		nodeset_free(ns);
		return kv_errf(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < ns->n; i++) {
		struct cluster_node *n = &ns->v[i];
		struct place_node *p = &ns->place[i];

		p->name = n->name;
		p->up = n->rec != NULL;
		p->reach = -1;
		p->reach_reason = n->reach_reason;
		if (n->rec && !n->problem[0])
			check_record(n, p);
		apply_cfg(n, p, ns->config_limit);
		if (n->problem[0])
			p->up = false;	/* never chosen; nodeset_choose says why */
	}
	if (reach && vm)
		apply_reach(ns, reach, vm);
	return 0;
}

void nodeset_free(struct nodeset *ns)
{
	for (size_t i = 0; ns->v && i < ns->n; i++) {
		json_decref(ns->v[i].rec);
		json_decref(ns->v[i].cfg);
		free(ns->v[i].features);
	}
	free(ns->v);
	free(ns->place);
	memset(ns, 0, sizeof(*ns));
}

int nodeset_find(const struct nodeset *ns, const char *name)
{
	for (size_t i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i].name, name))
			return (int)i;
	return -1;
}

int nodeset_choose(const struct nodeset *ns, const struct place_vm *vm,
		   struct place_verdict *verdicts)
{
	int best = place_choose(vm, ns->place, ns->n, verdicts);

	for (size_t i = 0; i < ns->n; i++)
		if (ns->v[i].problem[0] && ns->v[i].rec &&
		    !(vm->exclude && !strcmp(vm->exclude, ns->v[i].name)))
			snprintf(verdicts[i].reason, sizeof(verdicts[i].reason),
				 "cannot be used: %.*s", (int)sizeof(verdicts[i].reason) - 17,
				 ns->v[i].problem);
	return best;
}

const char *nodeset_state(const struct cluster_node *n)
{
	if (!n->rec)
		return "down";
	if (n->problem[0])
		return "bad record";
	if (json_is_true(json_object_get(n->cfg, "maintenance")) ||
	    json_is_true(json_object_get(n->rec, "maintenance")))
		return "maintenance";
	return "up";
}
