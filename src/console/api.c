/*
 * api.c - the console's JSON API (docs/API.md): reads and state changes
 * through the CLI verbs of the same name, the audit log in etcd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli/cli.h"
#include "cluster/records.h"
#include "console/console_int.h"
#include "console/runcli.h"

#define AUDIT_PREFIX "/kvmove/audit/"
#define AUDIT_KEEP 500
#define AUDIT_SHOW 200
#define READ_TIMEOUT_MS 30000
#define WRITE_TIMEOUT_MS 120000

void answer_json(struct console_answer *a, int status, json_t *j)
{
	a->status = status;
	a->type = "application/json";
	a->body = j ? json_dumps(j, JSON_COMPACT) : strdup("null");
	json_decref(j);
}

void answer_error(struct console_answer *a, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	answer_json(a, status, json_pack("{s:s}", "error", msg));
}

/* The last non-empty line of a verb's stderr, without "kvmove VERB: ". */
static void last_line(const char *text, char *out, size_t cap)
{
	const char *end = text + strlen(text), *start;

	while (end > text && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	start = end;
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(out, cap, "%.*s", (int)(end - start), start);
}

/* A verb's exit status as HTTP (cli.h's codes). */
static int http_status(int status)
{
	switch (status) {
	case KV_EXIT_OK: return 200;
	case KV_EXIT_USAGE: return 400;
	case KV_EXIT_UNREACHABLE: return 503;
	case KV_EXIT_INDETERMINATE: return 504;
	case -1: return 504;
	default: return 409;	/* failed, refused, cancelled: the cluster said no */
	}
}

static int run(struct console *c, const char *const *args, bool json, unsigned timeout_ms,
	       struct cli_result *res, struct console_answer *a)
{
	const char *argv[CONSOLE_MAX_ARGS + 5];
	size_t n = 0;
	struct kv_err err;

	argv[n++] = "kvmove";
	for (size_t i = 0; args[i] && n <= CONSOLE_MAX_ARGS; i++)
		argv[n++] = args[i];
	argv[n++] = "--etcd";
	argv[n++] = c->o.etcd;
	if (json)
		argv[n++] = "--json";
	argv[n] = NULL;
	if (console_run_cli(c->self, argv, timeout_ms, res, &err)) {
		answer_error(a, 500, "%s", err.msg);
		return -1;
	}
	return 0;
}

json_t *console_cli_json(struct console *c, const char *const *args, struct console_answer *a)
{
	struct cli_result res;
	json_t *j = NULL;
	char msg[1024];

	if (run(c, args, true, READ_TIMEOUT_MS, &res, a))
		return NULL;
	if (res.status != KV_EXIT_OK) {
		last_line(res.err, msg, sizeof(msg));
		answer_error(a, http_status(res.status), "%s", msg[0] ? msg : "failed");
	} else if (!(j = json_loads(res.out, 0, NULL))) {
		answer_error(a, 500, "kvmove %s printed no JSON", args[0]);
	}
	cli_result_free(&res);
	return j;
}

static void read_verb(struct console *c, const char *const *args, struct console_answer *a)
{
	json_t *j = console_cli_json(c, args, a);

	if (j)
		answer_json(a, 200, j);
}

/* ---- the audit log ---- */

static double wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void console_audit(struct console *c, const struct console_user *u, const char *action,
		  const char *target, json_t *args, const struct console_answer *a)
{
	json_t *body = a->body ? json_loads(a->body, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(body, "error")) ?:
			  json_string_value(json_object_get(body, "result")) ?: "";
	json_t *rec = json_pack("{s:f, s:s, s:s, s:s, s:s, s:O?, s:i, s:s}", "t", wall(), "who",
				u->name, "role", console_role_name(u->role), "action", action,
				"target", target, "args", args, "status", a->status, "result", msg);
	char key[96], *val = json_dumps(rec, JSON_COMPACT);
	struct timespec ts;
	struct store_list l = { 0 };
	struct kv_err err;
	uint16_t rnd = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0)
		rnd = (uint16_t)ts.tv_nsec;
	snprintf(key, sizeof(key), AUDIT_PREFIX "%013lld-%04x",
		 (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, rnd);
	if (!val || store_put(c->st, key, val, 0, NULL, &err))
		fprintf(stderr, "kvmove console: audit record not written: %s\n",
			val ? err.msg : "out of memory");
	free(val);
	json_decref(rec);
	json_decref(body);
	/* keep the last AUDIT_KEEP */
	if (!store_list(c->st, AUDIT_PREFIX, &l, &err)) {
		for (size_t i = 0; l.n > AUDIT_KEEP && i < l.n - AUDIT_KEEP; i++)
			store_delete(c->st, l.kvs[i].key, &err);
		store_list_free(&l);
	}
	fprintf(stderr, "kvmove console: %s (%s) %s %s: %d\n", u->name,
		console_role_name(u->role), action, target, a->status);
}

json_t *console_drains(struct console *c)
{
	struct store_list l = { 0 };
	struct kv_err err;
	json_t *out = json_object();

	if (store_list(c->st, "/kvmove/drains/", &l, &err))
		return out;
	for (size_t i = 0; i < l.n; i++) {
		json_t *d = json_loadb(l.kvs[i].value, l.kvs[i].vlen, 0, NULL);
		if (json_is_object(d))
			json_object_set_new(out, l.kvs[i].key + strlen("/kvmove/drains/"), d);
		else
			json_decref(d);
	}
	store_list_free(&l);
	return out;
}

/* The nodes of `node list` with what `node show` adds, for the page in one
 * read: "drain" (or null) and "slots" {"K": migration ID}. */
static void add_drains_slots(struct console *c, json_t *nodes)
{
	json_t *drains = console_drains(c), *n;
	struct store_list l = { 0 };
	struct kv_err err;
	bool have_slots = !store_list(c->st, "/kvmove/slots/", &l, &err);
	size_t i;

	json_array_foreach(nodes, i, n) {
		const char *name = json_string_value(json_object_get(n, "name"));
		char prefix[128];
		size_t plen;
		json_t *slots = json_object();

		if (!name) {
			json_decref(slots);
			continue;
		}
		json_object_set(n, "drain", json_object_get(drains, name) ?: json_null());
		plen = (size_t)snprintf(prefix, sizeof(prefix), "/kvmove/slots/%s/", name);
		for (size_t k = 0; have_slots && k < l.n; k++)
			if (!strncmp(l.kvs[k].key, prefix, plen) && !strchr(l.kvs[k].key + plen, '/'))
				json_object_set_new(slots, l.kvs[k].key + plen,
						    json_string(l.kvs[k].value));
		json_object_set_new(n, "slots", slots);
	}
	if (have_slots)
		store_list_free(&l);
	json_decref(drains);
}

json_t *console_audit_list(struct console *c);
json_t *console_audit_list(struct console *c)
{
	struct store_list l = { 0 };
	struct kv_err err;
	json_t *out = json_array();

	if (store_list(c->st, AUDIT_PREFIX, &l, &err))
		return out;
	for (size_t i = l.n; i-- > 0 && json_array_size(out) < AUDIT_SHOW;) {
		json_t *e = json_loadb(l.kvs[i].value, l.kvs[i].vlen, 0, NULL);
		if (json_is_object(e))
			json_array_append_new(out, e);
		else
			json_decref(e);
	}
	store_list_free(&l);
	return out;
}

/* ---- state changes ---- */

void console_write_verb(struct console *c, const char *const *args, int ok_status,
		       struct console_answer *a)
{
	struct cli_result res;
	char msg[1024];

	if (run(c, args, false, WRITE_TIMEOUT_MS, &res, a))
		return;
	last_line(res.status == KV_EXIT_OK ? res.out : res.err, msg, sizeof(msg));
	if (res.status == KV_EXIT_OK)
		answer_json(a, ok_status, json_pack("{s:s}", "result", msg));
	else
		answer_error(a, http_status(res.status), "%s", msg[0] ? msg : "failed");
	cli_result_free(&res);
}

/* The body: an object with only these keys (NULL: no body allowed but {}). */
json_t *console_body_object(const char *body, size_t n, const char *const *keys,
			   struct console_answer *a)
{
	json_error_t je;
	json_t *j;
	const char *k;
	json_t *v;

	if (!n)
		return json_object();
	if (!(j = json_loadb(body, n, 0, &je))) {
		answer_error(a, 400, "malformed JSON: %s (line %d)", je.text, je.line);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		answer_error(a, 400, "the body must be a JSON object");
		return NULL;
	}
	json_object_foreach(j, k, v) {
		bool known = false;
		for (size_t i = 0; keys && keys[i]; i++)
			known |= !strcmp(keys[i], k);
		if (!known) {
			answer_error(a, 400, "unknown field '%s'", k);
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

/* Does /kvmove/KIND/NAME[/spec] exist? 404 or 503 filled if not. */
bool console_exists(struct console *c, const char *kind, const char *name, const char *suffix,
		   struct console_answer *a, const char *what)
{
	char key[256];
	struct store_kv kv = { 0 };
	struct kv_err err;
	int r;

	snprintf(key, sizeof(key), "/kvmove/%s/%s%s", kind, name, suffix);
	r = store_get(c->st, key, &kv, NULL, &err);
	store_kv_free(&kv);
	if (r == -ENOENT)
		answer_error(a, 404, "no %s named %s", what, name);
	else if (r)
		answer_error(a, 503, "etcd at %s: %s", store_endpoints(c->st), err.msg);
	return r == 0;
}

static void vm_migrate(struct console *c, const char *vm, const char *body, size_t n,
		       struct console_answer *a, json_t **args_out)
{
	static const char *const keys[] = { "to", "quick", "downtime_ms", NULL };
	json_t *j = console_body_object(body, n, keys, a), *to, *quick, *dt;
	const char *argv[16];
	char dts[24];
	size_t k = 0;
	struct cli_result res;

	if (!j)
		return;
	*args_out = json_incref(j);
	to = json_object_get(j, "to");
	quick = json_object_get(j, "quick");
	dt = json_object_get(j, "downtime_ms");
	if (to && !(json_is_string(to) && (!strcmp(json_string_value(to), "best") ||
					   cluster_node_name_ok(json_string_value(to))))) {
		answer_error(a, 400, "'to' must be a node name or \"best\"");
		goto out;
	}
	if (quick && !json_is_boolean(quick)) {
		answer_error(a, 400, "'quick' must be true or false");
		goto out;
	}
	if (dt && (!json_is_integer(dt) || json_integer_value(dt) < 1 ||
		   json_integer_value(dt) > 3600000)) {
		answer_error(a, 400, "'downtime_ms' must be an integer 1..3600000");
		goto out;
	}
	argv[k++] = "vm";
	argv[k++] = "migrate";
	argv[k++] = vm;
	if (to && strcmp(json_string_value(to), "best")) {
		argv[k++] = "--to";
		argv[k++] = json_string_value(to);
	}
	if (json_is_true(quick))
		argv[k++] = "--quick";
	if (dt) {
		snprintf(dts, sizeof(dts), "%" JSON_INTEGER_FORMAT, json_integer_value(dt));
		argv[k++] = "--downtime-ms";
		argv[k++] = dts;
	}
	argv[k++] = "--no-wait";
	argv[k] = NULL;
	if (run(c, argv, true, WRITE_TIMEOUT_MS, &res, a))
		goto out;
	if (res.status == KV_EXIT_OK) {
		json_t *rec = json_loads(res.out, 0, NULL);
		if (rec)
			answer_json(a, 202, rec);
		else
			answer_error(a, 500, "kvmove vm migrate printed no record");
	} else {
		char msg[1024];
		last_line(res.err, msg, sizeof(msg));
		answer_error(a, http_status(res.status), "%s", msg[0] ? msg : "failed");
	}
	cli_result_free(&res);
out:
	json_decref(j);
}

static void node_maintenance(struct console *c, const char *node, const char *body, size_t n,
			     struct console_answer *a, json_t **args_out)
{
	static const char *const keys[] = { "on", "quick_fallback", NULL };
	json_t *j = console_body_object(body, n, keys, a), *on, *qf;
	const char *argv[8];
	size_t k = 0;

	if (!j)
		return;
	*args_out = json_incref(j);
	on = json_object_get(j, "on");
	qf = json_object_get(j, "quick_fallback");
	if (!json_is_boolean(on)) {
		answer_error(a, 400, "'on' (true or false) is required");
	} else if (qf && !json_is_boolean(qf)) {
		answer_error(a, 400, "'quick_fallback' must be true or false");
	} else if (qf && json_is_true(qf) && !json_is_true(on)) {
		answer_error(a, 400, "'quick_fallback' goes with \"on\": true");
	} else {
		argv[k++] = "node";
		argv[k++] = "maintenance";
		argv[k++] = node;
		argv[k++] = json_is_true(on) ? "on" : "off";
		if (json_is_true(qf))
			argv[k++] = "--quick-fallback";
		argv[k] = NULL;
		console_write_verb(c, argv, 200, a);
	}
	json_decref(j);
}

/* "vms/web1/migrate" -> {"vms", "web1", "migrate"}; false if more than 3
 * parts or an empty one. */
static bool split(const char *path, char parts[3][128], size_t *np)
{
	const char *p = path;

	*np = 0;
	while (*p) {
		const char *e = strchrnul(p, '/');
		if (*np == 3 || e == p || (size_t)(e - p) >= sizeof(parts[0]))
			return false;
		memcpy(parts[*np], p, (size_t)(e - p));
		parts[(*np)++][e - p] = '\0';
		p = *e ? e + 1 : e;
	}
	return *np > 0;
}

static bool name_ok(const char *kind, const char *s, struct console_answer *a)
{
	bool ok = !strcmp(kind, "vms") ? cluster_vm_name_ok(s) :
		  !strcmp(kind, "nodes") ? cluster_node_name_ok(s) :
		  !strcmp(kind, "migrations") ? cluster_migration_id_ok(s) :
		  !strcmp(kind, "tips") ? cluster_tip_id_ok(s) : false;

	if (!ok)
		answer_error(a, 400, "'%s' is not a valid %s name", s,
			     !strcmp(kind, "vms") ? "VM" : !strcmp(kind, "nodes") ? "node" :
			     !strcmp(kind, "migrations") ? "migration ID" : "tip ID");
	return ok;
}

static void get(struct console *c, char parts[3][128], size_t np, bool all,
		struct console_answer *a)
{
	static const char *const balancer[] = { "cluster", "balancer", NULL };
	static const char *const nodes[] = { "node", "list", NULL };
	static const char *const vms_[] = { "vm", "list", NULL };
	static const char *const migs[] = { "migration", "list", NULL };
	static const char *const migs_all[] = { "migration", "list", "--all", NULL };
	static const char *const tips[] = { "cluster", "tips", NULL };
	static const char *const tips_all[] = { "cluster", "tips", "--all", NULL };
	const char *const *args = NULL;
	const char *argv[6] = { 0 };

	if (np == 1 && !strcmp(parts[0], "whoami"))
		return;		/* answered by the caller, who knows the user */
	if (np == 1 && !strcmp(parts[0], "audit")) {
		answer_json(a, 200, console_audit_list(c));
		return;
	}
	if (np == 1 && !strcmp(parts[0], "cluster")) {
		static const struct {
			const char *field;
			const char *const args[4];
		} parts_of[] = {
			{ "nodes", { "node", "list", NULL } },
			{ "vms", { "vm", "list", NULL } },
			{ "migrations", { "migration", "list", NULL } },
			{ "tips", { "cluster", "tips", "--all", NULL } },
		};
		json_t *out = json_object(), *v;
		struct store_list l = { 0 };
		struct kv_err err;

		/* any read answers with the store's revision: a small one */
		if (!store_list(c->st, "/kvmove/balancer", &l, &err)) {
			json_object_set_new(out, "rev", json_integer(l.rev));
			store_list_free(&l);
		}
		for (size_t i = 0; i < sizeof(parts_of) / sizeof(parts_of[0]); i++) {
			if (!(v = console_cli_json(c, parts_of[i].args, a))) {
				json_decref(out);
				return;
			}
			if (i == 0)
				add_drains_slots(c, v);
			json_object_set_new(out, parts_of[i].field, v);
		}
		json_object_set_new(out, "audit", console_audit_list(c));
		answer_json(a, 200, out);
		return;
	}
	if (np == 1 && !strcmp(parts[0], "balancer"))
		args = balancer;
	else if (np == 1 && !strcmp(parts[0], "nodes"))
		args = nodes;
	else if (np == 1 && !strcmp(parts[0], "vms"))
		args = vms_;
	else if (np == 1 && !strcmp(parts[0], "migrations"))
		args = all ? migs_all : migs;
	else if (np == 1 && !strcmp(parts[0], "tips"))
		args = all ? tips_all : tips;
	if (args) {
		read_verb(c, args, a);
		return;
	}
	if (np == 2 && (!strcmp(parts[0], "nodes") || !strcmp(parts[0], "vms"))) {
		if (!name_ok(parts[0], parts[1], a))
			return;
		if (!strcmp(parts[0], "vms") && !console_exists(c, "vms", parts[1], "/spec", a, "VM"))
			return;
		argv[0] = !strcmp(parts[0], "nodes") ? "node" : "vm";
		argv[1] = "show";
		argv[2] = parts[1];
		read_verb(c, argv, a);
		/* node show: exit 3 is "no such node" */
		if (a->status == 409 && !strcmp(parts[0], "nodes"))
			a->status = 404;
		return;
	}
	answer_error(a, 404, "no such path: GET /api/%s%s%s%s%s", parts[0], np > 1 ? "/" : "",
		     np > 1 ? parts[1] : "", np > 2 ? "/" : "", np > 2 ? parts[2] : "");
}

static void post(struct console *c, char parts[3][128], size_t np,
		 const struct console_user *u, const char *body, size_t n,
		 struct console_answer *a)
{
	static const char *const none[] = { NULL };
	const char *argv[8] = { 0 };
	char action[64], target[128];
	json_t *args = NULL, *j;

	if (np != 3) {
		answer_error(a, 404, "no such path: POST /api/%s", parts[0]);
		return;
	}
	snprintf(action, sizeof(action), "%.20s.%.30s", parts[0], parts[2]);
	snprintf(target, sizeof(target), "%s", parts[1]);
	if (!name_ok(parts[0], parts[1], a))
		goto audit;
	if (u->role != CONSOLE_ADMIN) {
		answer_error(a, 403, "%s may only read (role read): %s needs an admin", u->name,
			     action);
		goto audit;
	}
	if (!strcmp(parts[0], "vms") && (!strcmp(parts[2], "start") || !strcmp(parts[2], "stop"))) {
		if (!(j = console_body_object(body, n, none, a)))
			goto audit;
		json_decref(j);
		if (!console_exists(c, "vms", parts[1], "/spec", a, "VM"))
			goto audit;
		argv[0] = "vm";
		argv[1] = parts[2];
		argv[2] = parts[1];
		console_write_verb(c, argv, 200, a);
	} else if (!strcmp(parts[0], "vms") && !strcmp(parts[2], "migrate")) {
		if (console_exists(c, "vms", parts[1], "/spec", a, "VM"))
			vm_migrate(c, parts[1], body, n, a, &args);
	} else if (!strcmp(parts[0], "nodes") && !strcmp(parts[2], "maintenance")) {
		node_maintenance(c, parts[1], body, n, a, &args);
	} else if (!strcmp(parts[0], "tips") && !strcmp(parts[2], "apply")) {
		if (!(j = console_body_object(body, n, none, a)))
			goto audit;
		json_decref(j);
		if (!console_exists(c, "tips", parts[1], "", a, "tip"))
			goto audit;
		argv[0] = "cluster";
		argv[1] = "tips";
		argv[2] = "apply";
		argv[3] = parts[1];
		console_write_verb(c, argv, 202, a);
	} else if (!strcmp(parts[0], "migrations") && !strcmp(parts[2], "cancel")) {
		if (!(j = console_body_object(body, n, none, a)))
			goto audit;
		json_decref(j);
		if (!console_exists(c, "migrations", parts[1], "", a, "migration"))
			goto audit;
		argv[0] = "migration";
		argv[1] = "cancel";
		argv[2] = parts[1];
		console_write_verb(c, argv, 200, a);
	} else {
		answer_error(a, 404, "no such action: POST /api/%s/%s/%s", parts[0], parts[1],
			     parts[2]);
		return;		/* nothing to record: no such thing */
	}
audit:
	console_audit(c, u, action, target, args, a);
	json_decref(args);
}

void console_api(struct console *c, const char *method, const char *path, bool all,
		 const struct console_user *u, const char *body, size_t n,
		 struct console_answer *a)
{
	char parts[3][128];
	size_t np;

	if (!split(path, parts, &np)) {
		answer_error(a, 404, "no such path: /api/%.200s", path);
		return;
	}
	if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) {
		if (np == 3 || (np == 2 && strcmp(parts[0], "nodes") && strcmp(parts[0], "vms")))
			answer_error(a, 404, "no such path: GET /api/%.200s", path);
		else
			get(c, parts, np, all, a);
	} else if (!strcmp(method, "POST") && np == 3 && strcmp(parts[2], "set")) {
		post(c, parts, np, u, body, n, a);
	} else if (!strcmp(method, "POST") || !strcmp(method, "DELETE")) {
		console_define(c, method, parts, np, u, body, n, a);
	} else {
		answer_error(a, 405, "method %s is not allowed here (GET, POST or DELETE)", method);
	}
}
