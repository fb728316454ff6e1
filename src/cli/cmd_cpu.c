/*
 * cmd_cpu.c - kvmove cpu-models: the named CPU models, the features each
 * gives, and which of them this host can run (docs/CPU-MODELS.md).
 */
#include "cli/cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpumodel.h"
#include "core/vm.h"

static void usage(FILE *f)
{
	fputs("usage: kvmove cpu-models [--features] [--json] [--x-hide-host-feature LIST]\n"
	      "\n"
	      "List the CPU models 'kvmove run --cpu' and 'kvmove vm create --cpu' take,\n"
	      "each with whether this host can give it to a guest (and if not, what it\n"
	      "lacks).  'host' is always possible: the guest gets everything this host's\n"
	      "KVM offers, and can then move only to hosts that have all of it.\n"
	      "\n"
	      "  --features           also list each model's features, and this host's\n"
	      "  --json               one JSON object: {\"host\": [features], \"best\",\n"
	      "                       \"models\": [{\"name\", \"description\", \"features\",\n"
	      "                       \"ok\", \"missing\"}]}; with --features also \"table\":\n"
	      "                       [{\"name\", \"leaf\", \"subleaf\", \"reg\", \"bit\"}]\n"
	      "  --x-hide-host-feature LIST\n"
	      "                       testing: as if this host lacked these features\n"
	      "  -h, --help           this text\n"
	      "\n"
	      "Exit status: 0, 1 when KVM cannot be asked, 2 on a usage error.\n", f);
}

int cmd_cpu_models(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "features", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "x-hide-host-feature", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cpu_feats hide = { 0 }, have;
	struct kvm_cpuid2 *host;
	bool features = false, js = false;
	json_t *out, *models;
	struct kv_err err;
	char buf[4096];
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': features = true; break;
		case 'j': js = true; break;
		case 'H':
			if (cpu_feats_parse_list(optarg, &hide, &err)) {
				fprintf(stderr, "kvmove cpu-models: %s\n", err.msg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'h': usage(stdout); return KV_EXIT_OK;
		default: usage(stderr); return KV_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmove cpu-models: unexpected argument '%s'\n", argv[optind]);
		return KV_EXIT_USAGE;
	}
	if (kvm_host_cpuid(&hide, &host, &err)) {
		fprintf(stderr, "kvmove cpu-models: %s\n", err.msg);
		return KV_EXIT_FAIL;
	}
	cpu_feats_from_cpuid(host, &have);
	free(host);
	cpu_feats_names(&have, buf, sizeof(buf));
	out = json_pack("{s:o, s:s?}", "host", json_array(), "best", cpu_model_best(&have));
	for (unsigned i = 0; i < cpu_feature_count(); i++)
		if (cpu_feats_has(&have, i))
			json_array_append_new(json_object_get(out, "host"),
					      json_string(cpu_feature_name(i)));
	models = json_array();
	for (unsigned i = 0; cpu_model_name(i); i++) {
		struct cpu_feats m;
		char missing[1024], names[2048];
		json_t *fl = json_array();

		cpu_model_base_feats(cpu_model_name(i), &m);
		for (unsigned k = 0; k < cpu_feature_count(); k++)
			if (cpu_feats_has(&m, k))
				json_array_append_new(fl, json_string(cpu_feature_name(k)));
		cpu_feats_missing(&m, &have, missing, sizeof(missing));
		json_array_append_new(models, json_pack("{s:s, s:s, s:o, s:b, s:s}",
			"name", cpu_model_name(i), "description", cpu_model_describe(i),
			"features", fl, "ok", !missing[0], "missing", missing));
		if (js)
			continue;
		printf("%-10s %s\n", cpu_model_name(i), cpu_model_describe(i));
		printf("%-10s this host: %s%s\n", "", missing[0] ? "no, lacks " : "yes", missing);
		if (features) {
			cpu_feats_names(&m, names, sizeof(names));
			printf("%-10s features: %s\n", "", names);
		}
	}
	json_object_set_new(out, "models", models);
	if (features) {
		/* where each feature lives, for tools that read CPUID themselves */
		json_t *t = json_array();
		for (unsigned i = 0; i < cpu_feature_count(); i++) {
			uint32_t fn, idx;
			unsigned bit;
			int reg;
			cpu_feature_where(i, &fn, &idx, &reg, &bit);
			json_array_append_new(t, json_pack("{s:s, s:I, s:I, s:s, s:i}", "name",
				cpu_feature_name(i), "leaf", (json_int_t)fn, "subleaf",
				(json_int_t)idx, "reg", (const char *[]){ "eax", "ebx", "ecx",
				"edx" }[reg & 3], "bit", (int)bit));
		}
		json_object_set_new(out, "table", t);
	}
	if (js) {
		char *s = json_dumps(out, JSON_COMPACT);
		puts(s);
		free(s);
	} else {
		printf("%-10s everything this host's KVM offers (moves only to hosts with all "
		       "of it)\n", "host");
		printf("\nThe richest model this host runs: %s\n",
		       cpu_model_best(&have) ? cpu_model_best(&have) : "(none: only host)");
		if (features)
			printf("This host's features: %s\n", buf);
	}
	json_decref(out);
	return KV_EXIT_OK;
}
