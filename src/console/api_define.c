/*
 * api_define.c - the console API's definitions (docs/API.md): create,
 * delete and change a VM's definition, a node's settings, the balancer.
 * Each runs its CLI verb with every value as one "--opt=value" argument,
 * so no value can pass for an option; the verb checks the values.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/records.h"
#include "console/console_int.h"

struct args {
	const char *v[CONSOLE_MAX_ARGS + 1];
	char *owned[CONSOLE_MAX_ARGS];
	size_t n, nowned;
	bool full;
};

static void add(struct args *g, const char *s)
{
	if (g->n < CONSOLE_MAX_ARGS)
		g->v[g->n++] = s;
	else
		g->full = true;
	g->v[g->n] = NULL;
}

/* "--opt=value" */
static void add_opt(struct args *g, const char *opt, const char *value)
{
	char *s;

	if (g->nowned == CONSOLE_MAX_ARGS || asprintf(&s, "--%s=%s", opt, value) < 0) {
		g->full = true;
		return;
	}
	g->owned[g->nowned++] = s;
	add(g, s);
}

static void args_free(struct args *g)
{
	for (size_t i = 0; i < g->nowned; i++)
		free(g->owned[i]);
}

/* An optional string field into "--opt=value"; false (400 answered) if it
 * is there but not a string. */
static bool str_opt(json_t *j, const char *field, const char *opt, struct args *g,
		    struct console_answer *a)
{
	json_t *v = json_object_get(j, field);

	if (!v)
		return true;
	if (!json_is_string(v)) {
		answer_error(a, 400, "'%s' must be a string", field);
		return false;
	}
	add_opt(g, opt, json_string_value(v));
	return true;
}

/* An optional integer field (or a string: "512M", "default") into
 * "--opt=value". */
static bool num_opt(json_t *j, const char *field, const char *opt, bool strings_too,
		    struct args *g, struct console_answer *a)
{
	json_t *v = json_object_get(j, field);
	char buf[32];

	if (!v)
		return true;
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		add_opt(g, opt, buf);
		return true;
	}
	if (strings_too && json_is_string(v)) {
		add_opt(g, opt, json_string_value(v));
		return true;
	}
	answer_error(a, 400, "'%s' must be an integer%s", field, strings_too ? " or a string" : "");
	return false;
}

/* An optional array of strings, each into "--opt=value". */
static bool list_opt(json_t *j, const char *field, const char *opt, struct args *g,
		     struct console_answer *a)
{
	json_t *v = json_object_get(j, field), *e;
	size_t i;

	if (!v)
		return true;
	if (!json_is_array(v)) {
		answer_error(a, 400, "'%s' must be an array of strings", field);
		return false;
	}
	json_array_foreach(v, i, e) {
		if (!json_is_string(e)) {
			answer_error(a, 400, "'%s' must be an array of strings", field);
			return false;
		}
		add_opt(g, opt, json_string_value(e));
	}
	return true;
}

static void vm_create(struct console *c, json_t *j, struct console_answer *a)
{
	const char *name = json_string_value(json_object_get(j, "name"));
	struct args g = { 0 };

	if (!name || !cluster_vm_name_ok(name)) {
		answer_error(a, 400, "'name' (a VM name) is required");
		return;
	}
	add(&g, "vm");
	add(&g, "create");
	add(&g, name);
	if (!num_opt(j, "mem", "mem", true, &g, a) || !num_opt(j, "cpus", "cpus", false, &g, a) ||
	    !str_opt(j, "kernel", "kernel", &g, a) || !str_opt(j, "initrd", "initrd", &g, a) ||
	    !str_opt(j, "append", "append", &g, a) || !list_opt(j, "disks", "disk", &g, a) ||
	    !list_opt(j, "nets", "net", &g, a) || !str_opt(j, "restart", "restart", &g, a) ||
	    !str_opt(j, "priority", "priority", &g, a) || !str_opt(j, "cpu", "cpu", &g, a))
		goto out;
	if (g.full)
		answer_error(a, 400, "too many disks or NICs");
	else
		console_write_verb(c, g.v, 201, a);
out:
	args_free(&g);
}

static void balancer_set(struct console *c, json_t *j, struct console_answer *a)
{
	json_t *mode = json_object_get(j, "mode");
	struct args g = { 0 };

	add(&g, "cluster");
	add(&g, "balancer");
	if (mode && !(json_is_string(mode) && (!strcmp(json_string_value(mode), "off") ||
					       !strcmp(json_string_value(mode), "recommend") ||
					       !strcmp(json_string_value(mode), "automatic")))) {
		answer_error(a, 400, "'mode' must be off, recommend or automatic");
		return;
	}
	if (mode)
		add(&g, json_string_value(mode));
	if (num_opt(j, "cpu_threshold", "cpu-threshold", false, &g, a) &&
	    num_opt(j, "spread", "spread", false, &g, a) &&
	    num_opt(j, "samples", "samples", false, &g, a))
		console_write_verb(c, g.v, 200, a);
	args_free(&g);
}

void console_define(struct console *c, const char *method, char parts[3][128], size_t np,
		    const struct console_user *u, const char *body, size_t n,
		    struct console_answer *a)
{
	static const char *const vm_keys[] = { "name", "mem", "cpus", "kernel", "initrd", "append",
					       "disks", "nets", "restart", "priority", "cpu",
					       NULL };
	static const char *const bal_keys[] = { "mode", "cpu_threshold", "spread", "samples",
						NULL };
	static const char *const cpu_keys[] = { "cpu", NULL };
	static const char *const node_keys[] = { "migration_limit", NULL };
	static const char *const none[] = { NULL };
	bool del = !strcmp(method, "DELETE");
	const char *target = np > 1 ? parts[1] : "";
	char action[64], named[64] = "";
	json_t *j = NULL;

	if (!del && np == 1 && !strcmp(parts[0], "vms"))
		snprintf(action, sizeof(action), "vms.create");
	else if (!del && np == 1 && !strcmp(parts[0], "balancer"))
		snprintf(action, sizeof(action), "balancer.set");
	else if (del && np == 2 && !strcmp(parts[0], "vms"))
		snprintf(action, sizeof(action), "vms.delete");
	else if (!del && np == 3 && !strcmp(parts[2], "set") &&
		 (!strcmp(parts[0], "vms") || !strcmp(parts[0], "nodes")))
		snprintf(action, sizeof(action), "%s.set", parts[0]);
	else {
		answer_error(a, 405, "%s /api/%s%s%s: not a path that takes %s", method, parts[0],
			     np > 1 ? "/" : "", np > 1 ? parts[1] : "", method);
		return;
	}
	if (!strcmp(action, "vms.create")) {
		/* for the audit log, even when refused: the name it asked for */
		json_t *peek = json_loadb(body ? body : "", n, 0, NULL);
		const char *nm = json_string_value(json_object_get(peek, "name"));
		if (nm && cluster_vm_name_ok(nm))
			snprintf(named, sizeof(named), "%s", nm);
		json_decref(peek);
		target = named;
	}
	if (np > 1 && !(!strcmp(parts[0], "vms") ? cluster_vm_name_ok(parts[1]) :
			cluster_node_name_ok(parts[1]))) {
		answer_error(a, 400, "'%s' is not a valid %s name", parts[1],
			     !strcmp(parts[0], "vms") ? "VM" : "node");
		goto audit;
	}
	if (u->role != CONSOLE_ADMIN) {
		answer_error(a, 403, "%s may only read (role read): %s needs an admin", u->name,
			     action);
		goto audit;
	}
	j = console_body_object(body, n, !strcmp(action, "vms.create") ? vm_keys :
				!strcmp(action, "balancer.set") ? bal_keys :
				!strcmp(action, "vms.set") ? cpu_keys :
				!strcmp(action, "nodes.set") ? node_keys : none, a);
	if (!j)
		goto audit;
	if (!strcmp(action, "vms.create")) {
		vm_create(c, j, a);
	} else if (!strcmp(action, "balancer.set")) {
		balancer_set(c, j, a);
	} else if (!strcmp(action, "vms.delete")) {
		const char *const argv[] = { "vm", "delete", parts[1], NULL };
		if (console_exists(c, "vms", parts[1], "/spec", a, "VM"))
			console_write_verb(c, argv, 200, a);
	} else if (!strcmp(action, "vms.set")) {
		struct args g = { 0 };
		add(&g, "vm");
		add(&g, "set");
		add(&g, parts[1]);
		if (!json_object_get(j, "cpu"))
			answer_error(a, 400, "nothing to set: give 'cpu'");
		else if (console_exists(c, "vms", parts[1], "/spec", a, "VM") &&
			 str_opt(j, "cpu", "cpu", &g, a))
			console_write_verb(c, g.v, 200, a);
		args_free(&g);
	} else {
		struct args g = { 0 };
		add(&g, "node");
		add(&g, "set");
		add(&g, parts[1]);
		if (!json_object_get(j, "migration_limit"))
			answer_error(a, 400, "nothing to set: give 'migration_limit'");
		else if (num_opt(j, "migration_limit", "migration-limit", true, &g, a))
			console_write_verb(c, g.v, 200, a);
		args_free(&g);
	}
audit:
	console_audit(c, u, action, target, j, a);
	json_decref(j);
}
