/*
 * cmd_info.c - identity and introspection on the control socket, in QMP's
 * shapes: query-version, query-name, query-kvm, query-cpus-fast,
 * query-block, query-blockstats, query-qmp-schema, and system_powerdown.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/version.h"
#include "control/control.h"
#include "core/vm.h"
#include "devices/device.h"
#include "vmm/cmds.h"
#include "vmm/vmm.h"

int qmp_query_version(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	/* kvmove's own version in QMP's shape: a manager must not take kvmove
	 * for a QEMU of some version; query-qmp-schema says what it has */
	*ret = json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "major", KVMOVE_VERSION_MAJOR,
			 "minor", KVMOVE_VERSION_MINOR, "micro", KVMOVE_VERSION_MICRO, "package",
			 "kvmove " KVMOVE_VERSION);
	return 0;
}

int qmp_query_name(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct vm *vm = vmm_vm(vmm);
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	*ret = vm ? json_pack("{s:s}", "name", vm->cfg.name) : json_object();
	return 0;
}

int qmp_query_kvm(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	*ret = json_pack("{s:b, s:b}", "enabled", 1, "present", 1);
	return 0;
}

int qmp_query_cpus_fast(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct vm *vm = vmm_vm(vmm);
	json_t *list = json_array();
	int r = check_args(args, no_args, err);

	if (r) {
		json_decref(list);
		return r;
	}
	for (unsigned i = 0; vm && i < vm->nvcpus; i++) {
		char qom[64];
		snprintf(qom, sizeof(qom), "/machine/unattached/device[%u]", i);
		json_array_append_new(list, json_pack(
			"{s:i, s:s, s:i, s:{s:i, s:i, s:i, s:i}, s:s}", "cpu-index", (int)i,
			"qom-path", qom, "thread-id", vcpu_thread_id(vm->vcpus[i]), "props",
			"core-id", 0, "thread-id", 0, "node-id", 0, "socket-id", (int)i,
			"target", "x86_64"));
	}
	*ret = list;
	return 0;
}

/* The disks, in QMP's BlockInfo shape (one raw image each). */
int qmp_query_block(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct vm *vm = vmm_vm(vmm);
	json_t *list = json_array();
	int r = check_args(args, no_args, err);

	if (r) {
		json_decref(list);
		return r;
	}
	for (unsigned i = 0; vm && i < vm->ndevices; i++) {
		struct device *d = vm->devices[i];
		struct dev_spec sp = { 0 };
		if (!d->ops->blockstats || !d->ops->spec)
			continue;
		d->ops->spec(d, &sp);
		json_array_append_new(list, json_pack(
			"{s:s, s:s, s:b, s:b, s:s, s:{s:s, s:b, s:s, s:b, s:s, s:i, s:b, s:i}}",
			"device", "", "qdev", d->name, "locked", 0, "removable", 0, "type",
			"unknown", "inserted", "file", sp.path, "ro", sp.readonly, "drv", "raw",
			"encrypted", 0, "node-name", d->name, "backing_file_depth", 0,
			"write_threshold", 0, "cache", 0));
		/* QEMU's "cache" is an object; ours: writes are synced on flush */
		json_object_set_new(json_object_get(json_array_get(list, json_array_size(list) - 1),
						    "inserted"), "cache",
				    json_pack("{s:b, s:b, s:b}", "writeback", 1, "direct", 0,
					      "no-flush", 0));
	}
	*ret = list;
	return 0;
}

int qmp_query_blockstats(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	static const char *const allowed[] = { "query-nodes", NULL };
	struct vmm *vmm = opaque;
	struct vm *vm = vmm_vm(vmm);
	json_t *list = json_array();
	int r = check_args(args, allowed, err);

	if (r) {
		json_decref(list);
		return r;
	}
	for (unsigned i = 0; vm && i < vm->ndevices; i++) {
		struct device *d = vm->devices[i];
		struct dev_blockstats st = { 0 };
		if (!d->ops->blockstats)
			continue;
		d->ops->blockstats(d, &st);
		json_array_append_new(list, json_pack(
			"{s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "device", "",
			"qdev", d->name, "node-name", d->name, "stats",
			"rd_bytes", (json_int_t)st.rd_bytes, "wr_bytes", (json_int_t)st.wr_bytes,
			"rd_operations", (json_int_t)st.rd_ops,
			"wr_operations", (json_int_t)st.wr_ops,
			"flush_operations", (json_int_t)st.flush_ops,
			"failed_rd_operations", (json_int_t)0,
			"failed_wr_operations", (json_int_t)st.failed_ops));
	}
	*ret = list;
	return 0;
}

int qmp_system_powerdown(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	return kv_errf(err, ENOTSUP, "system_powerdown needs an ACPI power button, which "
		       "kvmove does not emulate yet; use 'quit' (the guest gets no warning)");
}

/* ---- query-qmp-schema: what this VMM implements, in QAPI's
 * introspection format (SchemaInfo): commands with their argument
 * objects, events, and the builtin types they use ---- */

static const char *json_type_of(const char *t)
{
	if (!strcmp(t, "str")) return "string";
	if (!strcmp(t, "int")) return "int";
	if (!strcmp(t, "number")) return "number";
	if (!strcmp(t, "bool")) return "boolean";
	return "value";
}

/* "uri:str ?detach:bool" -> an object type's members */
static json_t *members_of(const char *spec)
{
	json_t *m = json_array();
	char buf[512], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		bool opt = tok[0] == '?';
		char *colon = strchr(tok, ':');
		json_t *o;
		if (!colon)
			continue;
		*colon = '\0';
		o = json_pack("{s:s, s:s}", "name", tok + opt, "type", colon + 1);
		if (opt)
			json_object_set_new(o, "default", json_null());
		json_array_append_new(m, o);
	}
	return m;
}

static const struct { const char *name, *args; } events[] = {
	{ "STOP", NULL }, { "RESUME", NULL },
	{ "SHUTDOWN", "guest:bool reason:str" },
	{ "MIGRATION", "status:str ?stats:any ?error-desc:str" },
	{ "MIGRATION_PASS", "pass:int ?remaining:int ?expected-downtime:int "
			    "?dirty-pages-rate:int ?cpu-throttle-percentage:int" },
};

int qmp_query_qmp_schema(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	static const char *const builtins[] = { "str", "int", "number", "bool", "any" };
	const struct ctl_cmd *cmds;
	json_t *s = json_array();
	size_t n;
	char t[64];
	int r = check_args(args, no_args, err);

	if (r) {
		json_decref(s);
		return r;
	}
	cmds = vmm_commands(&n);
	for (size_t i = 0; i < n; i++) {
		snprintf(t, sizeof(t), "args-%s", cmds[i].name);
		json_array_append_new(s, json_pack("{s:s, s:s, s:s, s:s}", "name", cmds[i].name,
						   "meta-type", "command", "arg-type", t,
						   "ret-type", "any"));
		json_array_append_new(s, json_pack("{s:s, s:s, s:o}", "name", t, "meta-type",
						   "object", "members", members_of(cmds[i].args)));
	}
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		snprintf(t, sizeof(t), "data-%s", events[i].name);
		json_array_append_new(s, json_pack("{s:s, s:s, s:s}", "name", events[i].name,
						   "meta-type", "event", "arg-type", t));
		json_array_append_new(s, json_pack("{s:s, s:s, s:o}", "name", t, "meta-type",
						   "object", "members", members_of(events[i].args)));
	}
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		json_array_append_new(s, json_pack("{s:s, s:s, s:s}", "name", builtins[i],
						   "meta-type", "builtin", "json-type",
						   json_type_of(builtins[i])));
	*ret = s;
	return 0;
}
