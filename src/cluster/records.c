/*
 * records.c - names and JSON records of the cluster store, checked
 * (records.h).
 */
#define _GNU_SOURCE
#include "cluster/records.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cluster/store.h"
#include "migration/config.h"

static bool lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool alnum(char c)
{
	return lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

bool cluster_vm_name_ok(const char *s)
{
	size_t n;

	if (!s || !lower_alnum(s[0]))
		return false;
	for (n = 1; s[n]; n++)
		if (n >= CLUSTER_VM_NAME_MAX || (!lower_alnum(s[n]) && s[n] != '-'))
			return false;
	return true;
}

bool cluster_node_name_ok(const char *s)
{
	size_t n;

	if (!s || !alnum(s[0]))
		return false;
	for (n = 1; s[n]; n++)
		if (n >= CLUSTER_NODE_NAME_MAX ||
		    (!alnum(s[n]) && s[n] != '-' && s[n] != '.' && s[n] != '_'))
			return false;
	return true;
}

bool cluster_ifname_ok(const char *s)
{
	size_t n;

	if (!s || !*s)
		return false;
	for (n = 0; s[n]; n++)
		if (n >= 15 || !(isalnum((unsigned char)s[n]) || strchr("_.-", s[n])))
			return false;
	return true;
}

bool cluster_path_ok(const char *s, size_t max)
{
	size_t n;

	if (!s || s[0] != '/')
		return false;
	for (n = 0; s[n]; n++)
		if (n >= max || (unsigned char)s[n] < 0x20 || s[n] == 0x7f)
			return false;
	return true;
}

int cluster_json_object(const char *what, const char *text, size_t len, json_t **out,
			struct kv_err *err)
{
	json_error_t je;
	json_t *j;

	*out = NULL;
	if (!text)
		return kv_errf(err, EPROTO, "%s: no value", what);
	if (len > CLUSTER_RECORD_MAX)
		return kv_errf(err, EPROTO, "%s: %zu bytes, more than the %d a record may have",
			       what, len, CLUSTER_RECORD_MAX);
	j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return kv_errf(err, EPROTO, "%s: not JSON (%s)", what, je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return kv_errf(err, EPROTO, "%s: not a JSON object", what);
	}
	*out = j;
	return 0;
}

const char *cluster_jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

json_int_t cluster_jint(json_t *o, const char *key, json_int_t dflt)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

double cluster_jnum(json_t *o, const char *key, double dflt)
{
	json_t *v = json_object_get(o, key);
	double d;

	if (!json_is_number(v))
		return dflt;
	d = json_number_value(v);
	return isfinite(d) ? d : dflt;
}

double cluster_jbytes(json_t *o, const char *key)
{
	double d = cluster_jnum(o, key, 0);

	return d >= 0 && d <= 1152921504606846976.0 ? d : 0;
}

bool cluster_jbool(json_t *o, const char *key, bool dflt)
{
	json_t *v = json_object_get(o, key);

	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

void cluster_sanitize(char *dst, size_t len, const char *s)
{
	size_t i = 0;

	if (!len)
		return;
	for (; s && *s && i + 1 < len; s++)
		dst[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	dst[i] = '\0';
}

/* A member that must be an integer in [lo, hi]. */
static int int_field(json_t *j, const char *what, const char *key, json_int_t lo,
		     json_int_t hi, json_int_t *out, struct kv_err *err)
{
	json_t *v = json_object_get(j, key);

	if (!v)
		return kv_errf(err, EPROTO, "%s: \"%s\" is missing", what, key);
	if (!json_is_integer(v))
		return kv_errf(err, EPROTO, "%s: \"%s\" is not an integer", what, key);
	*out = json_integer_value(v);
	if (*out < lo || *out > hi)
		return kv_errf(err, EPROTO, "%s: \"%s\" is %lld, outside %lld..%lld", what, key,
			       (long long)*out, (long long)lo, (long long)hi);
	return 0;
}

/* A member that must be an absolute path (or, if nullable, null/absent). */
static int path_field(json_t *j, const char *what, const char *key, size_t max,
		      bool nullable, const char **out, struct kv_err *err)
{
	json_t *v = json_object_get(j, key);

	*out = NULL;
	if ((!v || json_is_null(v)) && nullable)
		return 0;
	if (!json_is_string(v) || !cluster_path_ok(json_string_value(v), max))
		return kv_errf(err, EPROTO, "%s: \"%s\" is not an absolute path of at most %zu "
			       "bytes", what, key, max);
	*out = json_string_value(v);
	return 0;
}

static const char *const restart_names[] = {
	[VM_RESTART_NEVER] = "never", [VM_RESTART_ON_FAILURE] = "on-failure",
	[VM_RESTART_ALWAYS] = "always",
};

const char *vm_restart_name(enum vm_restart r)
{
	return (unsigned)r < 3 ? restart_names[r] : "?";
}

int vm_restart_parse(const char *s, enum vm_restart *out)
{
	for (unsigned i = 0; i < 3; i++)
		if (s && !strcmp(s, restart_names[i])) {
			*out = (enum vm_restart)i;
			return 0;
		}
	return -EINVAL;
}

static const char *const priority_names[] = {
	[VM_PRIORITY_LOW] = "low", [VM_PRIORITY_MEDIUM] = "medium", [VM_PRIORITY_HIGH] = "high",
};

const char *vm_priority_name(enum vm_priority p)
{
	return (unsigned)p < 3 ? priority_names[p] : "?";
}

int vm_priority_parse(const char *s, enum vm_priority *out)
{
	for (unsigned i = 0; i < 3; i++)
		if (s && !strcmp(s, priority_names[i])) {
			*out = (enum vm_priority)i;
			return 0;
		}
	return -EINVAL;
}

int cluster_vm_cpu(json_t *spec, const char *what, struct cpu_model *m, struct kv_err *err)
{
	json_t *v = json_object_get(spec, "cpu");
	struct kv_err e;
	char msg[KV_ERR_MAX];

	if (!v || json_is_null(v))
		return cpu_model_parse("host", m, err);
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return kv_errf(err, EPROTO, "%s: \"cpu\" is not a string", what);
	if (cpu_model_parse(json_string_value(v), m, &e)) {
		/* the message quotes the value: etcd's bytes, made printable */
		cluster_sanitize(msg, sizeof(msg), e.msg);
		return kv_errf(err, EPROTO, "%s: \"cpu\": %s", what, msg);
	}
	return 0;
}

int vm_spec_parse(const char *vm, const char *text, size_t len, struct vm_spec *out,
		  struct kv_err *err)
{
	char what[96];
	json_t *j, *v, *disks;
	json_int_t n;
	const char *s;
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "/kvmove/vms/%s/spec", vm);
	rc = cluster_json_object(what, text, len, &j, err);
	if (rc)
		return rc;
	s = json_string_value(json_object_get(j, "name"));
	if (s && strcmp(s, vm)) {
		rc = kv_errf(err, EPROTO, "%s: names another VM", what);
		goto bad;
	}
	if ((rc = int_field(j, what, "mem", (json_int_t)CLUSTER_VM_MEM_MIN,
			    (json_int_t)CLUSTER_VM_MEM_MAX, &n, err)))
		goto bad;
	out->mem = (uint64_t)n;
	if ((rc = int_field(j, what, "cpus", 1, CLUSTER_VM_CPUS_MAX, &n, err)))
		goto bad;
	out->cpus = (unsigned)n;
	if ((rc = path_field(j, what, "kernel", CLUSTER_FILE_PATH_MAX, false, &out->kernel,
			     err)) ||
	    (rc = path_field(j, what, "initrd", CLUSTER_FILE_PATH_MAX, true, &out->initrd,
			     err)))
		goto bad;
	v = json_object_get(j, "append");
	out->append = "";
	if (json_is_string(v) && json_string_length(v) <= CLUSTER_APPEND_MAX &&
	    strlen(json_string_value(v)) == json_string_length(v))
		out->append = json_string_value(v);
	else if (v && !json_is_null(v)) {
		rc = kv_errf(err, EPROTO, "%s: \"append\" is not a string of at most %d bytes",
			     what, CLUSTER_APPEND_MAX);
		goto bad;
	}
	disks = json_object_get(j, "disks");
	if (disks && !json_is_null(disks)) {
		size_t i;

		if (!json_is_array(disks) || json_array_size(disks) > CLUSTER_VM_DISKS_MAX) {
			rc = kv_errf(err, EPROTO, "%s: \"disks\" is not an array of at most %d",
				     what, CLUSTER_VM_DISKS_MAX);
			goto bad;
		}
		json_array_foreach(disks, i, v) {
			const char *p;
			json_t *ro = json_object_get(v, "readonly");

			if (!json_is_object(v) ||
			    path_field(v, what, "path", CLUSTER_DISK_PATH_MAX, false, &p, err) ||
			    (ro && !json_is_boolean(ro))) {
				rc = kv_errf(err, EPROTO, "%s: disk %zu is not {\"path\": absolute "
					     "path, \"readonly\": bool}", what, i);
				goto bad;
			}
		}
		out->ndisks = json_array_size(disks);
	}
	disks = json_object_get(j, "nets");
	if (disks && !json_is_null(disks)) {
		size_t i;

		if (!json_is_array(disks) || json_array_size(disks) > CLUSTER_VM_NETS_MAX) {
			rc = kv_errf(err, EPROTO, "%s: \"nets\" is not an array of at most %d",
				     what, CLUSTER_VM_NETS_MAX);
			goto bad;
		}
		json_array_foreach(disks, i, v) {
			json_t *mac = json_object_get(v, "mac");
			uint8_t m[6];

			if (!json_is_object(v) ||
			    !cluster_ifname_ok(json_string_value(json_object_get(v, "bridge"))) ||
			    (mac && !json_is_null(mac) &&
			     (!json_is_string(mac) || mig_parse_mac(json_string_value(mac), m)))) {
				rc = kv_errf(err, EPROTO, "%s: NIC %zu is not {\"bridge\": interface "
					     "name, \"mac\": MAC or absent}", what, i);
				goto bad;
			}
		}
		out->nnets = json_array_size(disks);
	}
	s = cluster_jstr(j, "desired");
	if (*s && strcmp(s, "running") && strcmp(s, "stopped")) {
		rc = kv_errf(err, EPROTO, "%s: \"desired\" is neither \"running\" nor \"stopped\"",
			     what);
		goto bad;
	}
	out->running = !strcmp(s, "running");
	v = json_object_get(j, "restart");
	if (v && !json_is_null(v) && vm_restart_parse(json_string_value(v), &out->restart)) {
		rc = kv_errf(err, EPROTO, "%s: \"restart\" is not never, on-failure or always",
			     what);
		goto bad;
	}
	out->priority = VM_PRIORITY_MEDIUM;
	v = json_object_get(j, "priority");
	if (v && !json_is_null(v) && vm_priority_parse(json_string_value(v), &out->priority)) {
		rc = kv_errf(err, EPROTO, "%s: \"priority\" is not high, medium or low", what);
		goto bad;
	}
	if ((rc = cluster_vm_cpu(j, what, &out->cpu, err)))
		goto bad;
	out->j = j;
	return 0;
bad:
	json_decref(j);
	memset(out, 0, sizeof(*out));
	return rc;
}

void vm_spec_free(struct vm_spec *s)
{
	json_decref(s->j);
	memset(s, 0, sizeof(*s));
}

json_t *cluster_migration_queued(const char *id, const char *vm, const char *from,
				 const char *to, bool quick, const char *reason, double now)
{
	return json_pack("{s:s, s:s, s:s, s:s?, s:n, s:b, s:i, s:n, s:s, s:s, s:n, s:[], s:n, "
			 "s:n, s:f, s:n, s:n}",
			 "id", id, "vm", vm, "from", from, "requested-to", to, "to", "quick", quick,
			 "downtime-ms", 300, "policy", "state", "queued", "reason", reason,
			 "network", "attempts", "progress", "stats", "requested", now, "started",
			 "finished");
}

bool cluster_tip_id_ok(const char *s)
{
	char m[64];

	if (!s || s[0] != 't' || strlen(s) >= sizeof(m))
		return false;
	snprintf(m, sizeof(m), "m%s", s + 1);
	return cluster_migration_id_ok(m);
}

int cluster_config_limit(const char *text, size_t len)
{
	json_t *j = NULL;
	json_int_t n;

	if (!text || cluster_json_object("/kvmove/config", text, len, &j, NULL))
		return 1;
	n = cluster_jint(j, "migration-limit", 1);
	json_decref(j);
	return n >= 0 && n <= 64 ? (int)n : 1;
}

bool cluster_migration_id_ok(const char *s)
{
	/* m + 14 digits + '-' + 6 */
	if (!s || strlen(s) != 22 || s[0] != 'm' || s[15] != '-')
		return false;
	for (int i = 1; i < 15; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	for (int i = 16; i < 22; i++)
		if (!lower_alnum(s[i]))
			return false;
	return true;
}

int cluster_migration_id_new(char *buf, size_t len, struct kv_err *err)
{
	static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char rnd[6];
	char suffix[7];
	time_t t = time(NULL);
	struct tm tm;
	size_t got = 0;

	while (got < sizeof(rnd)) {
		ssize_t g = getrandom(rnd + got, sizeof(rnd) - got, 0);

		if (g < 0 && errno == EINTR)
			continue;
		if (g < 0)
			return kv_errf_sys(err, errno, "getrandom");
		got += (size_t)g;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		suffix[i] = digits[rnd[i] % (sizeof(digits) - 1)];
	suffix[6] = '\0';
	if (!gmtime_r(&t, &tm))
		return kv_errf(err, EOVERFLOW, "the clock is out of range");
	if ((size_t)snprintf(buf, len, "m%04d%02d%02d%02d%02d%02d-%s", tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			     suffix) >= len)
		return kv_errf(err, ENAMETOOLONG, "migration ID buffer too small");
	return 0;
}

bool cluster_migration_state_terminal(const char *state)
{
	return state && (!strcmp(state, "completed") || !strcmp(state, "failed") ||
			 !strcmp(state, "cancelled"));
}

int cluster_migration_cancel_queued(struct kv_store *st, const struct store_kv *kv, json_t *rec,
				    const char *why, double now, bool *ok, struct kv_err *err)
{
	const struct store_cmp cmp = { .key = kv->key, .target = STORE_CMP_MOD,
				       .result = STORE_EQ, .num = kv->mod_rev };
	char *text;
	int rc;

	*ok = false;
	json_object_set_new(rec, "state", json_string("cancelled"));
	json_object_set_new(rec, "reason", json_string(why));
	json_object_set_new(rec, "finished", json_real(now));
	text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
	if (!text)
		return kv_errf(err, ENOMEM, "out of memory");
	{
		const struct store_op put = { .type = STORE_OP_PUT, .key = kv->key, .value = text };
		rc = store_txn(st, &cmp, 1, &put, 1, NULL, 0, ok, NULL, err);
	}
	free(text);
	return rc;
}
