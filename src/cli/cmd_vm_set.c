/*
 * cmd_vm_set.c - kvmove vm set NAME --cpu MODEL: change the definition of a
 * VM that is off.  The CPU model is what its guest was given at boot and
 * keeps across migrations, so it changes only while no node runs the VM:
 * the write compares the definition's revision (nothing changed it since
 * it was read) and the owner key's absence (nobody started it meanwhile;
 * vm start compares the definition too, so one of the two loses).
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpumodel.h"

static void usage_set(FILE *f)
{
	fputs("usage: kvmove vm set NAME --cpu MODEL[,+FEAT,-FEAT...]\n"
	      "\n"
	      "Change a VM's definition while the VM is off (no node runs it: stopped,\n"
	      "failed, or never started); it takes effect at its next start.  A VM\n"
	      "that runs, starts, stops or is being handed over is refused: stop it\n"
	      "first (kvmove vm stop NAME).\n"
	      "\n"
	      "  -u, --cpu MODEL[,+FEAT,-FEAT...]\n"
	      "                           the CPU its guest is given: host (everything\n"
	      "                           its node's KVM offers; it then moves only to\n"
	      "                           nodes with all of it) or a named model (x86-64,\n"
	      "                           x86-64-v2, compat, x86-64-v3, x86-64-v4; kvmove\n"
	      "                           cpu-models lists them), placed only on nodes\n"
	      "                           that offer its features.  'kvmove cluster\n"
	      "                           cpu-baseline' names the richest every node runs\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status:\n"
	      "  0  changed (or already so)\n"
	      "  1  failed (e.g. its definition is malformed)\n"
	      "  2  usage error (e.g. an unknown model or feature)\n"
	      "  3  refused: no such VM, or it is not off\n"
	      CCLI_HELP_EXIT_ETCD, f);
}

/* Why the VM is not off, from its owner key, or NULL when it is off. */
static const char *not_off(const struct vm_keys *k, char *buf, size_t len)
{
	char owner[80];

	if (!k->owner)
		return NULL;
	ccli_owner(k, owner, sizeof(owner));
	if (!strncmp(owner, "free:", 5))
		snprintf(buf, len, "it is being handed over between nodes (a migration)");
	else
		snprintf(buf, len, "it runs on %s", owner);
	return buf;
}

/*
 * One read-compare-write.  0 done (*was: the old model, *same: nothing to
 * write), -1 the definition or the owner changed meanwhile (read again),
 * else an exit status.
 */
static int set_once(struct ccli *c, const char *name, const struct cpu_model *cpu, char *was,
		    size_t wlen, bool *same, json_t **out)
{
	struct vm_keys k = { 0 };
	struct vm_spec spec = { 0 };
	struct kv_err err;
	char key[64], owner_key[64], why[128], *text = NULL;
	const char *busy;
	bool ok = false;
	int status, rc;

	if ((status = ccli_vm_keys(c, name, &k)))
		return status;
	status = KV_EXIT_REFUSED;
	if (!k.spec) {
		ccli_msg(c, "no VM named %s (kvmove vm list)", name);
		goto out;
	}
	if ((busy = not_off(&k, why, sizeof(why)))) {
		ccli_msg(c, "%s: %s; stop it first: a CPU model changes only while the VM is off "
			 "(kvmove vm stop %s)", name, busy, name);
		goto out;
	}
	if (vm_spec_parse(name, k.spec->value, k.spec->vlen, &spec, &err)) {
		ccli_msg(c, "%s; fix it, or delete the VM", err.msg);
		status = KV_EXIT_FAIL;
		goto out;
	}
	snprintf(was, wlen, "%s", spec.cpu.spec);
	*same = !strcmp(spec.cpu.spec, cpu->spec);
	json_object_set_new(spec.j, "cpu", json_string(cpu->spec));
	if (*same) {
		*out = json_incref(spec.j);
		status = KV_EXIT_OK;
		goto out;
	}
	text = json_dumps(spec.j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text) {
		ccli_msg(c, "out of memory");
		status = KV_EXIT_FAIL;
		goto out;
	}
	snprintf(key, sizeof(key), "/kvmove/vms/%s/spec", name);
	snprintf(owner_key, sizeof(owner_key), "/kvmove/vms/%s/owner", name);
	{
		const struct store_cmp cmps[] = {
			{ .key = key, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = k.spec->mod_rev },
			{ .key = owner_key, .target = STORE_CMP_CREATE, .result = STORE_EQ },
		};
		const struct store_op put = { .type = STORE_OP_PUT, .key = key, .value = text };

		rc = store_txn(c->st, cmps, 2, &put, 1, NULL, 0, &ok, NULL, &err);
	}
	if (rc) {
		status = ccli_store_fail(c, rc, &err, rc == -ECONNREFUSED ? NULL :
					 "it may or may not have been changed: kvmove vm show");
		goto out;
	}
	if (!ok) {
		status = -1;
		goto out;
	}
	*out = json_incref(spec.j);
	status = KV_EXIT_OK;
out:
	free(text);
	vm_spec_free(&spec);
	ccli_vm_keys_free(&k);
	return status;
}

int cmd_vm_set(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "cpu", required_argument, NULL, 'u' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ccli c = { .verb = "vm set" };
	struct cpu_model cpu;
	struct kv_err err;
	const char *name = NULL;
	char was[CPU_MODEL_SPEC_MAX] = "";
	bool have_cpu = false, same = false;
	json_t *spec = NULL;
	int ch, status;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":u:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case 'u':
			if (cpu_model_parse(optarg, &cpu, &err)) {
				ccli_msg(&c, "--cpu: %s", err.msg);
				return KV_EXIT_USAGE;
			}
			have_cpu = true;
			break;
		case 'h':
			usage_set(stdout);
			return KV_EXIT_OK;
		default:
			return ccli_bad_opt(&c, ch, argv);
		}
	}
	if ((status = ccli_vm_name_arg(&c, argc, argv, &name)))
		return status;
	if (!have_cpu) {
		ccli_msg(&c, "nothing to change: give --cpu MODEL");
		fprintf(stderr, "Try 'kvmove vm set --help'.\n");
		return KV_EXIT_USAGE;
	}
	if ((status = ccli_open(&c)))
		return status;
	for (int attempt = 0; attempt < 5; attempt++) {
		status = set_once(&c, name, &cpu, was, sizeof(was), &same, &spec);
		if (status != -1)
			break;
	}
	if (status == -1) {
		ccli_msg(&c, "%s's definition keeps changing under us (or it was started): "
			 "nothing was changed; see kvmove vm show %s", name, name);
		status = KV_EXIT_FAIL;
	}
	if (status)
		goto out;
	if (c.json)
		ccli_print_json(spec);
	else if (same)
		printf("%s: CPU model %s already; nothing changed\n", name, cpu.spec);
	else
		printf("%s: CPU model %s (was %s), from its next start\n", name, cpu.spec, was);
out:
	json_decref(spec);
	ccli_close(&c);
	return status;
}
