/*
 * cmd_vm_list.c - kvmove vm list and kvmove vm show NAME: what the store
 * says about the VMs (definition, owner, status, migrations).
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHOW_MIGRATIONS 5

static void usage_list(FILE *f)
{
	fputs("usage: kvmove vm list\n"
	      "\n"
	      "Every VM of the cluster: desired state, actual state, the node that owns\n"
	      "it, RAM and vCPUs.  --json: an array of {\"name\", \"spec\", \"owner\",\n"
	      "\"status\"} with the records as stored.\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 listed, 1 failed, 2 usage error, 5 etcd unreachable\n", f);
}

static void usage_show(FILE *f)
{
	fputs("usage: kvmove vm show NAME\n"
	      "\n"
	      "A VM's definition, owner, status (as its agent reports it) and its last\n"
	      "migrations.\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 shown, 1 failed, 2 usage error, 3 no such VM,\n"
	      "5 etcd unreachable\n", f);
}

/* A record as JSON (null when absent or not an object). */
static json_t *record(const struct store_kv *kv)
{
	json_t *j = NULL;

	if (kv)
		cluster_json_object("record", kv->value, kv->vlen, &j, NULL);
	return j ? j : json_null();
}

/* What the VM does, in a word: from owner and status. */
static void vm_state(const char *owner, json_t *status, char *buf, size_t len)
{
	const char *st = cluster_jstr(status, "state");

	if (!owner[0]) {
		cluster_sanitize(buf, len, !strcmp(st, "failed") ? "failed" : "stopped");
	} else if (!strncmp(owner, "free:", 5)) {
		snprintf(buf, len, "handing over");
	} else if (!strcmp(cluster_jstr(status, "node"), owner) && *st) {
		cluster_sanitize(buf, len, st);
	} else {
		snprintf(buf, len, "starting");
	}
}

int cmd_vm_list(int argc, char **argv)
{
	struct ccli c = { .verb = "vm list" };
	struct store_list l = { 0 };
	struct ccli_table t;
	struct kv_err err;
	json_t *out = json_array();
	const char *name = NULL;
	int status, rc;

	status = ccli_parse_simple(&c, argc, argv, usage_list, CCLI_ARG_NONE, &name);
	if (status) {
		json_decref(out);
		return status < 0 ? KV_EXIT_OK : status;
	}
	if ((status = ccli_open(&c)))
		goto out;
	rc = store_list(c.st, "/kvmove/vms/", &l, &err);
	if (rc) {
		status = ccli_store_fail(&c, rc, &err, NULL);
		goto out;
	}
	/* keys are sorted: each VM's keys are together */
	for (size_t i = 0; i < l.n;) {
		const char *key = l.kvs[i].key + strlen("/kvmove/vms/");
		const char *slash = strchr(key, '/');
		char vm[CLUSTER_VM_NAME_MAX + 2], owner[80];
		struct vm_keys k = { 0 };
		size_t j;

		if (!slash || (size_t)(slash - key) > CLUSTER_VM_NAME_MAX) {
			i++;
			continue;
		}
		snprintf(vm, sizeof(vm), "%.*s", (int)(slash - key), key);
		for (j = i; j < l.n && !strncmp(l.kvs[j].key, l.kvs[i].key,
						(size_t)(slash - l.kvs[i].key) + 1); j++) {
			const char *leaf = l.kvs[j].key + (slash - l.kvs[i].key) + 1;

			if (!strcmp(leaf, "spec"))
				k.spec = &l.kvs[j];
			else if (!strcmp(leaf, "owner"))
				k.owner = &l.kvs[j];
			else if (!strcmp(leaf, "status"))
				k.status = &l.kvs[j];
		}
		i = j;
		if (!cluster_vm_name_ok(vm))
			continue;
		ccli_owner(&k, owner, sizeof(owner));
		json_array_append_new(out, json_pack("{s:s, s:o, s:s?, s:o}", "name", vm,
						     "spec", record(k.spec),
						     "owner", k.owner ? owner : NULL,
						     "status", record(k.status)));
	}
	if (c.json) {
		ccli_print_json(out);
		goto done;
	}
	if (!json_array_size(out)) {
		printf("no VMs (kvmove vm create NAME ...)\n");
		goto done;
	}
	ccli_table_init(&t, 6, "NAME", "DESIRED", "STATE", "NODE", "MEM", "CPUS");
	{
		size_t i;
		json_t *v;

		json_array_foreach(out, i, v) {
			json_t *spec = json_object_get(v, "spec");
			const char *owner = cluster_jstr(v, "owner");
			char state[64], mem[32] = "", cpus[16] = "", desired[24];
			json_int_t m = cluster_jint(spec, "mem", 0), n = cluster_jint(spec, "cpus", 0);

			vm_state(owner, json_object_get(v, "status"), state, sizeof(state));
			if (m > 0)
				ccli_fmt_bytes(mem, sizeof(mem), (uint64_t)m);
			if (n > 0 && n < 100000)
				snprintf(cpus, sizeof(cpus), "%d", (int)n);
			cluster_sanitize(desired, sizeof(desired), cluster_jstr(spec, "desired"));
			ccli_table_add(&t, cluster_jstr(v, "name"), desired, state,
				       strncmp(owner, "free:", 5) ? owner : "", mem, cpus);
		}
	}
	ccli_table_print(&t);
done:
	status = KV_EXIT_OK;
out:
	store_list_free(&l);
	json_decref(out);
	ccli_close(&c);
	return status;
}

/* The VM's migrations, oldest first (IDs sort by time), at most max. */
static int migrations_of(struct ccli *c, const char *vm, size_t max, json_t **out)
{
	struct store_list l;
	struct kv_err err;
	json_t *a = json_array();
	int rc = store_list(c->st, "/kvmove/migrations/", &l, &err);

	if (rc) {
		json_decref(a);
		return ccli_store_fail(c, rc, &err, NULL);
	}
	for (size_t i = 0; i < l.n; i++) {
		json_t *m = NULL;

		if (cluster_json_object("migration", l.kvs[i].value, l.kvs[i].vlen, &m, NULL))
			continue;
		if (!strcmp(cluster_jstr(m, "vm"), vm))
			json_array_append(a, m);
		json_decref(m);
	}
	while (json_array_size(a) > max)
		json_array_remove(a, 0);
	store_list_free(&l);
	*out = a;
	return KV_EXIT_OK;
}

static void show_field(const char *label, const char *value)
{
	char s[512];

	cluster_sanitize(s, sizeof(s), value);
	printf("  %-10s %s\n", label, *s ? s : "-");
}

static void show_human(const char *name, json_t *spec, const char *bad, const char *owner,
		       json_t *st, json_t *migs)
{
	char buf[512], t[32], state[64];
	json_t *d;
	size_t i;

	printf("%s\n", name);
	if (bad) {
		show_field("definition", bad);
		spec = NULL;
	} else {
		ccli_fmt_bytes(t, sizeof(t), (uint64_t)cluster_jint(spec, "mem", 0));
		snprintf(buf, sizeof(buf), "%s, %d vCPU%s", t, (int)cluster_jint(spec, "cpus", 0),
			 cluster_jint(spec, "cpus", 0) == 1 ? "" : "s");
		show_field("size", buf);
		show_field("desired", cluster_jstr(spec, "desired"));
		{
			const char *r = *cluster_jstr(spec, "restart") ? cluster_jstr(spec, "restart")
								       : "never";
			const char *p = *cluster_jstr(spec, "priority") ? cluster_jstr(spec, "priority")
									: "medium";
			if (strcmp(r, "never"))
				snprintf(buf, sizeof(buf), "%s (highly available: failover priority "
					 "%s)", r, p);
			else
				snprintf(buf, sizeof(buf), "%s", r);
			show_field("restart", buf);
		}
		/* a named model: the guest has exactly its features; host: those
		 * of the node it booted on (the status's) */
		show_field("cpu", *cluster_jstr(spec, "cpu") ? cluster_jstr(spec, "cpu") : "host");
	}
	vm_state(owner, st, state, sizeof(state));
	if (owner[0] && strncmp(owner, "free:", 5))
		snprintf(buf, sizeof(buf), "%s on %s", state, owner);
	else
		snprintf(buf, sizeof(buf), "%s", state);
	if (cluster_jint(st, "pid", 0) > 0 && owner[0])
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (pid %lld)",
			 (long long)cluster_jint(st, "pid", 0));
	show_field("state", buf);
	if (*cluster_jstr(st, "reason"))
		show_field("reason", cluster_jstr(st, "reason"));
	if (json_is_object(st)) {
		ccli_fmt_time(t, sizeof(t), cluster_jnum(st, "since", 0));
		snprintf(buf, sizeof(buf), "%s (reported by %s)", t, cluster_jstr(st, "node"));
		show_field("since", buf);
	}
	if (json_is_object(spec)) {
		show_field("kernel", cluster_jstr(spec, "kernel"));
		show_field("initrd", cluster_jstr(spec, "initrd"));
		show_field("append", cluster_jstr(spec, "append"));
		json_array_foreach(json_object_get(spec, "disks"), i, d) {
			snprintf(buf, sizeof(buf), "%s%s", cluster_jstr(d, "path"),
				 cluster_jbool(d, "readonly", false) ? " (readonly)" : "");
			show_field(i ? "" : "disks", buf);
		}
		ccli_fmt_time(t, sizeof(t), cluster_jnum(spec, "created", 0));
		show_field("created", t);
	}
	if (json_array_size(migs)) {
		printf("  migrations (latest last):\n");
		json_array_foreach(migs, i, d) {
			char id[32], from[72], to[72], ms[16], why[160];

			cluster_sanitize(id, sizeof(id), cluster_jstr(d, "id"));
			cluster_sanitize(from, sizeof(from), cluster_jstr(d, "from"));
			cluster_sanitize(to, sizeof(to), *cluster_jstr(d, "to") ?
					 cluster_jstr(d, "to") : cluster_jstr(d, "requested-to"));
			cluster_sanitize(ms, sizeof(ms), cluster_jstr(d, "state"));
			cluster_sanitize(why, sizeof(why), cluster_jstr(d, "reason"));
			printf("    %s  %s -> %s  %s%s%s\n", id, from, *to ? to : "?", ms,
			       *why ? ": " : "", why);
		}
	}
}

int cmd_vm_show(int argc, char **argv)
{
	struct ccli c = { .verb = "vm show" };
	struct vm_keys k = { 0 };
	json_t *spec = NULL, *st = NULL, *migs = NULL;
	const char *name = NULL;
	char owner[80], bad[KV_ERR_MAX + 16] = "";
	struct kv_err err;
	int status;

	status = ccli_parse_simple(&c, argc, argv, usage_show, CCLI_ARG_VM, &name);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if ((status = ccli_open(&c)) || (status = ccli_vm_keys(&c, name, &k)))
		goto out;
	if (!k.l.n) {
		ccli_msg(&c, "no VM named %s (kvmove vm list)", name);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	if ((status = migrations_of(&c, name, SHOW_MIGRATIONS, &migs)))
		goto out;
	ccli_owner(&k, owner, sizeof(owner));
	spec = record(k.spec);
	st = record(k.status);
	if (!k.spec) {
		snprintf(bad, sizeof(bad), "none (only leftover keys)");
	} else {
		struct vm_spec vs;

		if (vm_spec_parse(name, k.spec->value, k.spec->vlen, &vs, &err) == 0)
			vm_spec_free(&vs);
		else
			snprintf(bad, sizeof(bad), "malformed: %s", err.msg);
	}
	if (c.json) {
		json_t *j = json_pack("{s:s, s:O, s:s?, s:O, s:O}", "name", name, "spec", spec,
				      "owner", k.owner ? owner : NULL, "status", st,
				      "migrations", migs);

		ccli_print_json(j);
		json_decref(j);
	} else {
		show_human(name, spec, bad[0] ? bad : NULL, owner, st, migs);
	}
	status = KV_EXIT_OK;
out:
	json_decref(spec);
	json_decref(st);
	json_decref(migs);
	ccli_vm_keys_free(&k);
	ccli_close(&c);
	return status;
}
