/*
 * cmd_cluster_cpu.c - kvmove cluster cpu-baseline: the richest named CPU
 * model every current node runs (so a VM created with it can boot on and
 * move to any of them), the features all nodes share beyond it, and what
 * each node has beyond that.  The computation is cluster/cpubaseline.c;
 * this reads the node records and prints.
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cpubaseline.h"
#include "cluster/vmcpu.h"

#define NAMES_MAX 8192	/* a feature list as text */

static void usage_baseline(FILE *f)
{
	fputs("usage: kvmove cluster cpu-baseline\n"
	      "\n"
	      "Intersect the CPU features every node that is up publishes (what its\n"
	      "KVM gives a guest, /kvmove/nodes/NODE \"cpu-features\") and name the\n"
	      "richest named CPU model inside them: a VM created with 'vm create --cpu\n"
	      "MODEL' on it boots on and moves to every one of these nodes.  Also\n"
	      "prints the features all nodes share beyond the model, and for each node\n"
	      "what it has that not every node has.  Nodes of different CPU vendors\n"
	      "have no common model (a guest sees its host's vendor, so it never moves\n"
	      "between them): said so.  Down nodes and malformed records are listed as\n"
	      "not counted.  --json: {\"model\" (null: none), \"model-features\",\n"
	      "\"shared-beyond\", \"common\", \"vendor\", \"mixed-vendors\", \"nodes\":\n"
	      "[{\"name\", \"vendor\", \"beyond-baseline\", \"not-shared\", \"unknown\"}],\n"
	      "\"not-counted\": [{\"name\", \"why\"}]}.\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 shown (with or without a model), 1 failed, 2 usage error,\n"
	      "3 no node is up, 5 etcd unreachable\n", f);
}

/* a less b */
static struct cpu_feats minus(const struct cpu_feats *a, const struct cpu_feats *b)
{
	struct cpu_feats r;

	for (unsigned w = 0; w < CPU_FEATS_WORDS; w++)
		r.w[w] = a->w[w] & ~b->w[w];
	return r;
}

static unsigned count(const struct cpu_feats *f)
{
	unsigned n = 0;

	for (unsigned i = 0; i < cpu_feature_count(); i++)
		n += cpu_feats_has(f, i);
	return n;
}

static json_t *result_json(const struct cpubase *b, const struct cpubase_node *nodes,
			   const unsigned *unknown, json_t *skipped)
{
	const struct cpu_feats *base = b->model ? &b->model_feats : &b->common;
	json_t *j = json_pack("{s:s?, s:o, s:o, s:o, s:s, s:b, s:[], s:O}",
			      "model", b->model, "model-features", vmcpu_feats_json(&b->model_feats),
			      "shared-beyond", vmcpu_feats_json(&b->beyond),
			      "common", vmcpu_feats_json(&b->common), "vendor", b->vendor ? b->vendor : "",
			      "mixed-vendors", b->mixed_vendors, "nodes", "not-counted", skipped);

	for (size_t i = 0; j && i < b->n; i++) {
		struct cpu_feats beyond = minus(&nodes[i].feats, base);
		struct cpu_feats own = minus(&nodes[i].feats, &b->common);

		json_array_append_new(json_object_get(j, "nodes"),
			json_pack("{s:s, s:s, s:o, s:o, s:i}", "name", nodes[i].name, "vendor",
				  nodes[i].vendor, "beyond-baseline", vmcpu_feats_json(&beyond),
				  "not-shared", vmcpu_feats_json(&own), "unknown", (int)unknown[i]));
	}
	return j;
}

static void print_human(const struct cpubase *b, const struct cpubase_node *nodes,
			const unsigned *unknown, json_t *skipped)
{
	char *buf = malloc(NAMES_MAX);
	size_t w = 0, i;
	json_t *s;

	if (!buf) {
		fprintf(stderr, "kvmove cluster cpu-baseline: out of memory\n");
		return;
	}
	printf("%zu node%s:", b->n, b->n == 1 ? "" : "s");
	for (i = 0; i < b->n; i++)
		printf(" %s", nodes[i].name);
	if (!b->mixed_vendors)
		printf(" (CPU vendor %s)", *b->vendor ? b->vendor : "unknown");
	printf("\n");
	if (b->mixed_vendors) {
		printf("no named model fits every node: their CPU vendors differ (");
		for (i = 0; i < b->n; i++)
			printf("%s%s %s", i ? ", " : "", nodes[i].name,
			       *nodes[i].vendor ? nodes[i].vendor : "unknown");
		printf("): a guest sees its host's vendor, so a VM moves only between nodes "
		       "of one vendor\n");
	} else if (!b->model) {
		struct cpu_feats need;

		cpu_model_base_feats(cpu_model_name(0), &need);
		need = minus(&need, &b->common);
		cpu_feats_names(&need, buf, NAMES_MAX);
		printf("no named model fits every node: even %s needs %s, which not every node "
		       "offers\n", cpu_model_name(0), buf);
	} else {
		printf("baseline: %s (a VM created with --cpu %s boots on and moves to every one "
		       "of them)\n", b->model, b->model);
		cpu_feats_names(&b->beyond, buf, NAMES_MAX);
		printf("shared beyond it: %s\n", *buf ? buf : "nothing");
	}
	for (i = 0; i < b->n; i++)
		if (strlen(nodes[i].name) > w)
			w = strlen(nodes[i].name);
	for (i = 0; i < b->n; i++) {
		struct cpu_feats own = minus(&nodes[i].feats, &b->common);

		cpu_feats_names(&own, buf, NAMES_MAX);
		printf("  %-*s  %u features; not on every node: %s", (int)w, nodes[i].name,
		       count(&nodes[i].feats), *buf ? buf : "none");
		if (unknown[i])
			printf(" (and %u feature name%s this kvmove does not know: an older "
			       "agent?)", unknown[i], unknown[i] == 1 ? "" : "s");
		printf("\n");
	}
	json_array_foreach(skipped, i, s)
		printf("  not counted: %s (%s)\n", cluster_jstr(s, "name"), cluster_jstr(s, "why"));
	free(buf);
}

int cmd_cluster_cpu_baseline(int argc, char **argv)
{
	struct ccli c = { .verb = "cluster cpu-baseline" };
	struct nodeset ns = { 0 };
	struct cpubase_node *nodes = NULL;
	unsigned *unknown = NULL;
	struct cpubase b;
	json_t *skipped = json_array();
	size_t n = 0;
	int status;

	status = ccli_parse_simple(&c, argc, argv, usage_baseline, CCLI_ARG_NONE, NULL);
	if (status) {
		json_decref(skipped);
		return status < 0 ? KV_EXIT_OK : status;
	}
	if ((status = ccli_open(&c)) || (status = ccli_nodes(&c, NULL, &ns)))
		goto out;
	nodes = calloc(ns.n + 1, sizeof(*nodes));
	unknown = calloc(ns.n + 1, sizeof(*unknown));
	if (!nodes || !unknown || !skipped) {
		ccli_msg(&c, "out of memory");
		status = KV_EXIT_FAIL;
		goto out;
	}
	for (size_t i = 0; i < ns.n; i++) {
		struct cluster_node *cn = &ns.v[i];

		if (!cn->rec || cn->problem[0]) {
			char why[sizeof(cn->problem) + 16];

			snprintf(why, sizeof(why), "%s", cn->rec ? cn->problem : "down");
			json_array_append_new(skipped, json_pack("{s:s, s:s}", "name", cn->name,
								 "why", why));
			continue;
		}
		nodes[n].name = cn->name;
		nodes[n].vendor = cn->vendor;	/* sanitised */
		vmcpu_feats_from_json(json_object_get(cn->rec, "cpu-features"), &nodes[n].feats,
				      &unknown[n]);
		n++;
	}
	if (!n) {
		ccli_msg(&c, "no node is up%s (kvmove node list)",
			 ns.n ? "" : ": no agent has joined the cluster yet");
		status = KV_EXIT_REFUSED;
		goto out;
	}
	cpubase_compute(nodes, n, &b);
	if (c.json) {
		json_t *j = result_json(&b, nodes, unknown, skipped);

		if (!j) {
			ccli_msg(&c, "out of memory");
			status = KV_EXIT_FAIL;
			goto out;
		}
		ccli_print_json(j);
		json_decref(j);
	} else {
		print_human(&b, nodes, unknown, skipped);
	}
	status = KV_EXIT_OK;
out:
	free(nodes);
	free(unknown);
	json_decref(skipped);
	nodeset_free(&ns);
	ccli_close(&c);
	return status;
}
