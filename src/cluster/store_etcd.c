/*
 * store_etcd.c - the cluster store (store.h) on etcd 3.4's v3 JSON gateway:
 * opening, keys, transactions and leases.  The watch is in store_watch.c,
 * `cluster status` in store_status.c, HTTP and failover in store_http.c.
 *
 * Everything etcd answers is checked: JSON shape, base64, int64 strings.
 */
#define _GNU_SOURCE
#include "cluster/store.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/store_b64.h"
#include "cluster/store_http.h"

/* ------------------------------------------------------------------ */
/* open / close                                                         */
/* ------------------------------------------------------------------ */

/* "http://HOST:PORT" (or https), no path; a trailing '/' is dropped. */
static int parse_endpoint(const char *s, size_t len, char **out, struct kv_err *err)
{
	char shown[80];
	size_t skip, i;

	store_sanitize(shown, sizeof(shown), s, len);
	if (len && s[len - 1] == '/')
		len--;
	if (len >= 7 && !strncmp(s, "http://", 7))
		skip = 7;
	else if (len >= 8 && !strncmp(s, "https://", 8))
		skip = 8;
	else
		return kv_errf(err, EINVAL, "etcd endpoint '%s': expected http://HOST:PORT", shown);
	if (len == skip || len > 256 || s[skip] == ':')
		return kv_errf(err, EINVAL, "etcd endpoint '%s': expected http://HOST:PORT", shown);
	for (i = skip; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']' ||
		      c == '%'))
			return kv_errf(err, EINVAL,
				       "etcd endpoint '%s': expected http://HOST:PORT (no path)",
				       shown);
	}
	*out = strndup(s, len);
	return *out ? 0 : kv_errf(err, ENOMEM, "etcd endpoints: out of memory");
}

int store_open(struct kv_store **out, const struct store_options *o, struct kv_err *err)
{
	struct kv_store *st;
	const char *p;
	int rc;

	*out = NULL;
	if (!o || !o->endpoints || !o->endpoints[0])
		return kv_errf(err, EINVAL, "no etcd endpoint given");
	rc = store_http_init(err);
	if (rc)
		return rc;
	st = calloc(1, sizeof(*st));
	if (!st || !(st->endpoints = strdup(o->endpoints))) {
		free(st);
		return kv_errf(err, ENOMEM, "etcd store: out of memory");
	}
	st->timeout_ms = o->timeout_ms ? o->timeout_ms : 3000;
	st->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
	atomic_init(&st->preferred, 0);
	for (p = o->endpoints;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (st->nep == STORE_MAX_ENDPOINTS) {
			rc = kv_errf(err, EINVAL, "more than %d etcd endpoints",
				     STORE_MAX_ENDPOINTS);
			goto fail;
		}
		rc = parse_endpoint(p, len, &st->ep[st->nep], err);
		if (rc)
			goto fail;
		st->nep++;
		if (!comma)
			break;
		p = comma + 1;
	}
	*out = st;
	return 0;
fail:
	store_close(st);
	return rc;
}

void store_close(struct kv_store *st)
{
	if (!st)
		return;
	for (unsigned i = 0; i < st->nep; i++)
		free(st->ep[i]);
	free(st->endpoints);
	free(st);
}

const char *store_endpoints(const struct kv_store *st)
{
	return st->endpoints;
}

/* ------------------------------------------------------------------ */
/* request and answer pieces                                            */
/* ------------------------------------------------------------------ */

static int proto_err(struct kv_store *st, struct kv_err *err, int rc, const char *what)
{
	if (rc == -ENOMEM)
		return kv_errf(err, ENOMEM, "etcd answer: out of memory");
	return kv_errf(err, EPROTO, "etcd at %s: malformed answer to %s", st->endpoints, what);
}

static int bad_key(struct kv_err *err, const char *what)
{
	return kv_errf(err, EINVAL, "etcd %s: empty key", what);
}

void store_kv_free(struct store_kv *kv)
{
	if (!kv)
		return;
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void store_list_free(struct store_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		store_kv_free(&l->kvs[i]);
	free(l->kvs);
	memset(l, 0, sizeof(*l));
}

/* ------------------------------------------------------------------ */
/* keys                                                                 */
/* ------------------------------------------------------------------ */

int store_get(struct kv_store *st, const char *key, struct store_kv *out, int64_t *rev,
	      struct kv_err *err)
{
	json_t *req, *resp = NULL, *kvs;
	int64_t r = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (rev)
		*rev = 0;
	if (!key || !key[0])
		return bad_key(err, "get");
	req = json_object();
	if (!req || store_set_b64(req, "key", key, strlen(key))) {
		json_decref(req);
		return kv_errf(err, ENOMEM, "etcd get: out of memory");
	}
	rc = store_call(st, "/v3/kv/range", req, 0, &resp, NULL, err);
	json_decref(req);
	if (rc)
		return rc;
	kvs = json_object_get(resp, "kvs");
	rc = store_header_rev(resp, &r);
	if (rc || (kvs && !json_is_null(kvs) && !json_is_array(kvs)) || json_array_size(kvs) > 1) {
		rc = proto_err(st, err, rc ?: -EPROTO, "a get");
	} else if (!json_array_size(kvs)) {
		rc = kv_errf(err, ENOENT, "no key %s in etcd", key);
	} else {
		rc = store_parse_kv(json_array_get(kvs, 0), out);
		if (!rc && strcmp(out->key, key)) {
			store_kv_free(out);
			rc = -EPROTO;
		}
		if (rc)
			rc = proto_err(st, err, rc, "a get");
	}
	json_decref(resp);
	if (!rc && rev)
		*rev = r;
	return rc;
}

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct store_kv *)a)->key, ((const struct store_kv *)b)->key);
}

int store_list(struct kv_store *st, const char *prefix, struct store_list *out,
	       struct kv_err *err)
{
	json_t *req, *resp = NULL, *kvs;
	size_t plen, n, i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!prefix)
		return bad_key(err, "list");
	plen = strlen(prefix);
	req = json_object();
	if (!req || store_set_range(req, prefix)) {
		json_decref(req);
		return kv_errf(err, ENOMEM, "etcd list: out of memory");
	}
	rc = store_call(st, "/v3/kv/range", req, 0, &resp, NULL, err);
	json_decref(req);
	if (rc)
		return rc;
	kvs = json_object_get(resp, "kvs");
	rc = store_header_rev(resp, &out->rev);
	if (!rc && kvs && !json_is_null(kvs) && !json_is_array(kvs))
		rc = -EPROTO;
	n = json_array_size(kvs);
	if (!rc && n && !(out->kvs = calloc(n, sizeof(*out->kvs))))
		rc = -ENOMEM;
	for (i = 0; !rc && i < n; i++) {
		rc = store_parse_kv(json_array_get(kvs, i), &out->kvs[i]);
		if (rc)
			break;
		out->n++;
		if (strncmp(out->kvs[i].key, prefix, plen))
			rc = -EPROTO;	/* not what we asked for */
	}
	json_decref(resp);
	if (rc) {
		store_list_free(out);
		return proto_err(st, err, rc, "a list");
	}
	if (out->n > 1)
		qsort(out->kvs, out->n, sizeof(*out->kvs), cmp_kv);
	return 0;
}

/* A one-shot write: POST path with req; *rev the header's revision. */
static int write_call(struct kv_store *st, const char *path, json_t *req, int64_t *rev,
		      const char *what, struct kv_err *err)
{
	json_t *resp = NULL;
	int64_t r;
	int rc;

	if (rev)
		*rev = 0;
	if (!req)
		return kv_errf(err, ENOMEM, "etcd %s: out of memory", what);
	rc = store_call(st, path, req, 0, &resp, NULL, err);
	json_decref(req);
	if (rc)
		return rc;
	rc = store_header_rev(resp, &r);
	json_decref(resp);
	if (rc)
		return proto_err(st, err, rc, what);
	if (rev)
		*rev = r;
	return 0;
}

static json_t *put_request(const char *key, const char *value, int64_t lease)
{
	json_t *o = json_object();

	if (!o || store_set_b64(o, "key", key, strlen(key)) ||
	    store_set_b64(o, "value", value, strlen(value)) ||
	    (lease && store_set_i64(o, "lease", lease))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int store_put(struct kv_store *st, const char *key, const char *value, int64_t lease,
	      int64_t *rev, struct kv_err *err)
{
	if (rev)
		*rev = 0;
	if (!key || !key[0])
		return bad_key(err, "put");
	if (!value)
		return kv_errf(err, EINVAL, "etcd put %s: no value", key);
	return write_call(st, "/v3/kv/put", put_request(key, value, lease), rev, "a put", err);
}

int store_delete(struct kv_store *st, const char *key, struct kv_err *err)
{
	json_t *o;

	if (!key || !key[0])
		return bad_key(err, "delete");
	o = json_object();
	if (o && store_set_b64(o, "key", key, strlen(key))) {
		json_decref(o);
		o = NULL;
	}
	return write_call(st, "/v3/kv/deleterange", o, NULL, "a delete", err);
}

int store_delete_prefix(struct kv_store *st, const char *prefix, struct kv_err *err)
{
	json_t *o;

	/* an empty prefix would be every key of the cluster */
	if (!prefix || !prefix[0])
		return kv_errf(err, EINVAL, "etcd delete: refusing an empty prefix");
	o = json_object();
	if (o && store_set_range(o, prefix)) {
		json_decref(o);
		o = NULL;
	}
	return write_call(st, "/v3/kv/deleterange", o, NULL, "a delete", err);
}

/* ------------------------------------------------------------------ */
/* transactions                                                         */
/* ------------------------------------------------------------------ */

static json_t *cmp_json(const struct store_cmp *c)
{
	static const char *const targets[] = { "VALUE", "CREATE", "MOD", "VERSION" };
	static const char *const results[] = { "EQUAL", "NOT_EQUAL", "LESS", "GREATER" };
	static const char *const fields[] = { "value", "create_revision", "mod_revision",
					      "version" };
	json_t *o;
	int rc;

	if (!c->key || !c->key[0] || (unsigned)c->target > STORE_CMP_VERSION ||
	    (unsigned)c->result > STORE_GT || (c->target == STORE_CMP_VALUE && !c->value))
		return NULL;
	o = json_pack("{s:s, s:s}", "target", targets[c->target], "result",
		      results[c->result]);
	if (!o)
		return NULL;
	rc = store_set_b64(o, "key", c->key, strlen(c->key));
	if (!rc && c->target == STORE_CMP_VALUE)
		rc = store_set_b64(o, "value", c->value, strlen(c->value));
	else if (!rc)
		rc = store_set_i64(o, fields[c->target], c->num);
	if (rc) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *op_json(const struct store_op *op)
{
	json_t *r;

	if (!op->key || !op->key[0])
		return NULL;
	if (op->type == STORE_OP_PUT) {
		if (!op->value)
			return NULL;
		r = put_request(op->key, op->value, op->lease);
		return r ? json_pack("{s:o}", "request_put", r) : NULL;
	}
	if (op->type != STORE_OP_DELETE)
		return NULL;
	r = json_object();
	if (r && store_set_b64(r, "key", op->key, strlen(op->key))) {
		json_decref(r);
		return NULL;
	}
	return r ? json_pack("{s:o}", "request_delete_range", r) : NULL;
}

int store_txn(struct kv_store *st, const struct store_cmp *cmps, size_t ncmp,
	      const struct store_op *then, size_t nthen, const struct store_op *orelse,
	      size_t nelse, bool *ok, int64_t *rev, struct kv_err *err)
{
	json_t *req, *a[3], *resp = NULL;
	int64_t r;
	int succeeded = 0, rc;
	size_t i;

	if (ok)
		*ok = false;
	if (rev)
		*rev = 0;
	if ((ncmp && !cmps) || (nthen && !then) || (nelse && !orelse))
		return kv_errf(err, EINVAL, "etcd transaction: missing compares or operations");
	req = json_pack("{s:[], s:[], s:[]}", "compare", "success", "failure");
	if (!req)
		return kv_errf(err, ENOMEM, "etcd transaction: out of memory");
	a[0] = json_object_get(req, "compare");
	a[1] = json_object_get(req, "success");
	a[2] = json_object_get(req, "failure");
	rc = 0;
	for (i = 0; !rc && i < ncmp; i++)
		rc = json_array_append_new(a[0], cmp_json(&cmps[i]));
	for (i = 0; !rc && i < nthen; i++)
		rc = json_array_append_new(a[1], op_json(&then[i]));
	for (i = 0; !rc && i < nelse; i++)
		rc = json_array_append_new(a[2], op_json(&orelse[i]));
	if (rc) {
		/* NULL from cmp_json/op_json: a bad argument (or no memory) */
		json_decref(req);
		return kv_errf(err, EINVAL, "etcd transaction: invalid compare or operation");
	}
	rc = store_call(st, "/v3/kv/txn", req, 0, &resp, NULL, err);
	json_decref(req);
	if (rc)
		return rc;
	rc = store_header_rev(resp, &r) ?: store_json_bool(resp, "succeeded", &succeeded);
	json_decref(resp);
	if (rc)
		return proto_err(st, err, rc, "a transaction");
	if (ok)
		*ok = succeeded;
	if (rev)
		*rev = r;
	return 0;
}

/* ------------------------------------------------------------------ */
/* leases                                                               */
/* ------------------------------------------------------------------ */

/* A lease call's body that carries etcd's "error": -EIO with it (resp is
 * released then), else 0. */
static int lease_error(struct kv_store *st, json_t *resp, const char *what, struct kv_err *err)
{
	json_t *e = json_object_get(resp, "error");
	char msg[256];

	if (!json_is_string(e) || !json_string_length(e))
		return 0;
	store_sanitize(msg, sizeof(msg), json_string_value(e), json_string_length(e));
	json_decref(resp);
	return kv_errf(err, EIO, "etcd at %s: %s: %s", st->endpoints, what, msg);
}

static json_t *lease_request(int64_t id)
{
	json_t *o = json_object();

	if (o && store_set_i64(o, "ID", id)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int store_lease_grant(struct kv_store *st, int ttl_s, int64_t *id, struct kv_err *err)
{
	json_t *req = json_object(), *resp = NULL;
	int64_t ttl;
	int rc;

	*id = 0;
	if (ttl_s <= 0) {
		json_decref(req);
		return kv_errf(err, EINVAL, "etcd lease: TTL %d s", ttl_s);
	}
	if (!req || store_set_i64(req, "TTL", ttl_s)) {
		json_decref(req);
		return kv_errf(err, ENOMEM, "etcd lease: out of memory");
	}
	rc = store_call(st, "/v3/lease/grant", req, 0, &resp, NULL, err);
	json_decref(req);
	if (rc || (rc = lease_error(st, resp, "lease grant", err)))
		return rc;
	rc = store_json_i64(resp, "ID", id) ?: store_json_i64(resp, "TTL", &ttl);
	json_decref(resp);
	if (!rc && (*id <= 0 || ttl <= 0))
		rc = -EPROTO;
	if (rc) {
		*id = 0;
		return proto_err(st, err, rc, "a lease grant");
	}
	return 0;
}

int store_lease_keepalive(struct kv_store *st, int64_t id, int *ttl_left, struct kv_err *err)
{
	json_t *req, *resp = NULL;
	int64_t ttl, rid;
	int rc;

	if (ttl_left)
		*ttl_left = 0;
	if (id <= 0)
		return kv_errf(err, EINVAL, "etcd lease keepalive: no lease");
	req = lease_request(id);
	rc = store_call(st, "/v3/lease/keepalive", req, STORE_STREAM, &resp, NULL, err);
	json_decref(req);
	if (rc)
		return rc;
	rc = store_json_i64(resp, "TTL", &ttl) ?: store_json_i64(resp, "ID", &rid);
	json_decref(resp);
	if (rc)
		return proto_err(st, err, rc, "a lease keepalive");
	if (ttl <= 0)
		return kv_errf(err, ENOENT, "etcd lease %" PRIx64 " expired or unknown",
			       (uint64_t)id);
	if (rid != id)
		return proto_err(st, err, -EPROTO, "a lease keepalive");
	if (ttl_left)
		*ttl_left = ttl > INT_MAX ? INT_MAX : (int)ttl;
	return 0;
}

/* LeaseTimeToLive: the leader's lessor answers (a follower forwards it), so
 * the TTL is what decides when the lease's keys go. */
int store_lease_ttl(struct kv_store *st, int64_t id, int *ttl_left, int *granted,
		    struct kv_err *err)
{
	json_t *req, *resp = NULL;
	int64_t ttl, gttl = 0;
	int rc;

	*ttl_left = 0;
	if (granted)
		*granted = 0;
	if (id <= 0)
		return kv_errf(err, EINVAL, "etcd lease time-to-live: no lease");
	req = lease_request(id);
	rc = store_call(st, "/v3/lease/timetolive", req, 0, &resp, NULL, err);
	json_decref(req);
	if (rc || (rc = lease_error(st, resp, "lease time-to-live", err)))
		return rc;
	rc = store_json_i64(resp, "TTL", &ttl) ?: store_json_i64(resp, "grantedTTL", &gttl);
	json_decref(resp);
	if (rc)
		return proto_err(st, err, rc, "a lease time-to-live");
	if (granted)
		*granted = gttl < 0 ? 0 : gttl > INT_MAX ? INT_MAX : (int)gttl;
	if (ttl <= 0)
		return kv_errf(err, ENOENT, "etcd lease %" PRIx64 " expired or unknown",
			       (uint64_t)id);
	*ttl_left = ttl > INT_MAX ? INT_MAX : (int)ttl;
	return 0;
}

int store_lease_revoke(struct kv_store *st, int64_t id, struct kv_err *err)
{
	json_t *req, *resp = NULL;
	int code, rc;

	if (id <= 0)
		return kv_errf(err, EINVAL, "etcd lease revoke: no lease");
	req = lease_request(id);
	rc = store_call(st, "/v3/lease/revoke", req, 0, &resp, &code, err);
	json_decref(req);
	if (rc == -EIO && code == 5)	/* NotFound: expired or revoked already */
		return kv_errf(err, ENOENT, "etcd lease %" PRIx64 " expired or unknown",
			       (uint64_t)id);
	json_decref(resp);
	return rc;
}
