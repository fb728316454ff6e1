/*
 * store_status.c - store_cluster_status(): what each endpoint says about
 * itself (asked in parallel, with a short timeout), the member list, and
 * whether a linearizable read goes through (quorum).
 */
#define _GNU_SOURCE
#include "cluster/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/store_b64.h"
#include "cluster/store_http.h"

#define STATUS_TIMEOUT_MS 1500u

struct status_q {
	CURL *h;
	struct curl_slist *hdrs;
	struct store_buf b;
	char errbuf[CURL_ERROR_SIZE];
	CURLcode cc;
	unsigned tmo;
};

static void hex_id(char *buf, size_t len, uint64_t id)
{
	snprintf(buf, len, "%" PRIx64, id);
}

static json_t *jstr_sanitized(const json_t *s, size_t max)
{
	char buf[256];

	if (!json_is_string(s))
		return json_string("");
	store_sanitize(buf, max < sizeof(buf) ? max : sizeof(buf), json_string_value(s),
		       json_string_length(s));
	return json_string(buf);
}

static json_t *failed_entry(const char *ep, const char *why)
{
	return json_pack("{s:s, s:b, s:s}", "endpoint", ep, "ok", 0, "error", why);
}

static int64_t clamp_u64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* The entry of endpoint i; *leader and *term when it knows a leader. */
static json_t *endpoint_entry(const struct kv_store *st, unsigned i, struct status_q *q,
			      uint64_t *leader, uint64_t *term)
{
	char why[KV_ERR_MAX], emsg[256], mid[24], lid[24];
	uint64_t member = 0, lead = 0, rindex = 0, rterm = 0;
	int64_t dbsize = 0;
	long status = 0;
	json_t *o, *e, *errs;
	int code;
	bool retry;

	*leader = *term = 0;
	if (q->cc != CURLE_OK) {
		if (q->b.too_big)
			snprintf(why, sizeof(why), "answer too large");
		else
			store_curl_class(q->h, q->cc, q->errbuf, q->tmo, why, sizeof(why));
		return failed_entry(st->ep[i], why);
	}
	curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &status);
	o = q->b.n ? json_loadb(q->b.p, q->b.n, JSON_REJECT_DUPLICATES, NULL) : NULL;
	if (!json_is_object(o)) {
		json_decref(o);
		snprintf(why, sizeof(why), "not an etcd answer (HTTP %ld)", status);
		return failed_entry(st->ep[i], why);
	}
	if (store_etcd_error(o, emsg, sizeof(emsg), &code, &retry)) {
		json_decref(o);
		return failed_entry(st->ep[i], emsg);
	}
	errs = json_object_get(o, "errors");
	if (status != 200 || !json_is_object(json_object_get(o, "header")) ||
	    store_json_u64(json_object_get(o, "header"), "member_id", &member) ||
	    store_json_u64(o, "leader", &lead) || store_json_i64(o, "dbSize", &dbsize) ||
	    store_json_u64(o, "raftIndex", &rindex) || store_json_u64(o, "raftTerm", &rterm) ||
	    (errs && !json_is_null(errs) && !json_is_array(errs))) {
		json_decref(o);
		return failed_entry(st->ep[i], "malformed status answer");
	}
	hex_id(mid, sizeof(mid), member);
	hex_id(lid, sizeof(lid), lead);
	e = json_pack("{s:s, s:b, s:s, s:o, s:b, s:o, s:I, s:I, s:I}", "endpoint", st->ep[i],
		      "ok", 1, "member-id", mid, "leader", lead ? json_string(lid) : json_null(),
		      "is-leader", lead && lead == member, "version",
		      jstr_sanitized(json_object_get(o, "version"), 32), "db-size",
		      (json_int_t)dbsize, "raft-index", (json_int_t)clamp_u64(rindex),
		      "raft-term", (json_int_t)clamp_u64(rterm));
	if (e && json_array_size(errs)) {
		/* alarms ("NOSPACE"...) */
		json_t *a = json_array();
		size_t k;
		json_t *v;

		json_array_foreach(errs, k, v) {
			if (k < 16)
				json_array_append_new(a, jstr_sanitized(v, 200));
		}
		json_object_set_new(e, "errors", a);
	}
	json_decref(o);
	*leader = lead;
	*term = rterm;
	return e;
}

/* Every endpoint's /v3/maintenance/status at once. */
static int query_endpoints(struct kv_store *st, json_t *list, uint64_t *leader)
{
	struct status_q q[STORE_MAX_ENDPOINTS];
	unsigned tmo = st->timeout_ms < STATUS_TIMEOUT_MS ? st->timeout_ms : STATUS_TIMEOUT_MS;
	uint64_t best_term = 0;
	CURLM *m = curl_multi_init();
	int running = 0, rc = 0;
	unsigned i;

	memset(q, 0, sizeof(q));
	*leader = 0;
	if (!m)
		return -ENOMEM;
	for (i = 0; i < st->nep; i++) {
		q[i].tmo = tmo;
		q[i].cc = CURLE_GOT_NOTHING;
		q[i].h = store_http_easy(st, i, "/v3/maintenance/status", "{}", 2, tmo,
					 STORE_ANY_MEMBER, NULL, &q[i].b, q[i].errbuf, &q[i].hdrs);
		if (!q[i].h || curl_multi_add_handle(m, q[i].h)) {
			rc = -ENOMEM;
			goto out;
		}
	}
	do {
		CURLMsg *msg;
		int left;

		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			for (i = 0; i < st->nep; i++)
				if (q[i].h == msg->easy_handle)
					q[i].cc = msg->data.result;
		}
		if (running && curl_multi_poll(m, NULL, 0, 100, NULL) != CURLM_OK)
			break;
	} while (running);
	for (i = 0; i < st->nep; i++) {
		uint64_t lead, term;
		json_t *e = endpoint_entry(st, i, &q[i], &lead, &term);

		if (!e || json_array_append_new(list, e)) {
			rc = -ENOMEM;
			break;
		}
		if (lead && term >= best_term) {
			best_term = term;
			*leader = lead;
		}
	}
out:
	for (i = 0; i < st->nep; i++) {
		if (q[i].h) {
			curl_multi_remove_handle(m, q[i].h);
			curl_easy_cleanup(q[i].h);
		}
		curl_slist_free_all(q[i].hdrs);
		store_buf_free(&q[i].b);
	}
	curl_multi_cleanup(m);
	return rc;
}

/* The member list into list; the leader's name into *leader_name. */
static int query_members(struct kv_store *st, json_t *list, uint64_t leader,
			 json_t **leader_name, struct kv_err *err)
{
	json_t *req = json_object(), *resp = NULL, *members, *mb;
	size_t i;
	int rc;

	if (!req)
		return -ENOMEM;
	rc = store_call(st, "/v3/cluster/member/list", req, STORE_ANY_MEMBER, &resp, NULL, err);
	json_decref(req);
	if (rc)
		return rc;
	members = json_object_get(resp, "members");
	if (members && !json_is_null(members) && !json_is_array(members)) {
		json_decref(resp);
		return kv_errf(err, EPROTO, "malformed member list");
	}
	json_array_foreach(members, i, mb) {
		json_t *o, *peers = json_array(), *clients = json_array(), *u;
		const char *names[2] = { "peerURLs", "clientURLs" };
		json_t *dst[2] = { peers, clients };
		uint64_t id;
		char hid[24];
		size_t k;

		if (i >= 64 || !json_is_object(mb) || store_json_u64(mb, "ID", &id)) {
			json_decref(peers);
			json_decref(clients);
			continue;
		}
		for (int j = 0; j < 2; j++)
			json_array_foreach(json_object_get(mb, names[j]), k, u)
				if (k < 16)
					json_array_append_new(dst[j], jstr_sanitized(u, 200));
		hex_id(hid, sizeof(hid), id);
		o = json_pack("{s:s, s:o, s:o, s:o}", "id", hid, "name",
			      jstr_sanitized(json_object_get(mb, "name"), 100), "peer-urls", peers,
			      "client-urls", clients);
		if (!o || json_array_append_new(list, o)) {
			json_decref(resp);
			return -ENOMEM;
		}
		if (leader && id == leader) {
			const char *name = json_string_value(json_object_get(o, "name"));
			json_decref(*leader_name);
			*leader_name = json_string(name && name[0] ? name : hid);
		}
	}
	json_decref(resp);
	return 0;
}

int store_cluster_status(struct kv_store *st, struct json_t **out, struct kv_err *err)
{
	json_t *o, *eps, *mbs, *leader_name = json_null();
	struct kv_err sub;
	uint64_t leader;
	struct store_kv kv;
	int rc;

	*out = NULL;
	o = json_pack("{s:[], s:[]}", "endpoints", "members");
	if (!o)
		return kv_errf(err, ENOMEM, "cluster status: out of memory");
	eps = json_object_get(o, "endpoints");
	mbs = json_object_get(o, "members");
	rc = query_endpoints(st, eps, &leader);
	if (rc)
		goto nomem;
	rc = query_members(st, mbs, leader, &leader_name, &sub);
	if (rc == -ENOMEM)
		goto nomem;
	if (rc && json_object_set_new(o, "members-error", json_string(sub.msg)))
		goto nomem;
	if (!json_is_null(leader_name) || !leader) {
		json_object_set_new(o, "leader", leader_name);
	} else {
		/* a leader no member list names: its id */
		char hid[24];
		hex_id(hid, sizeof(hid), leader);
		json_decref(leader_name);
		json_object_set_new(o, "leader", json_string(hid));
	}
	leader_name = NULL;
	/* quorum: a linearizable read (the store's normal get) goes through */
	rc = store_get(st, "/kvmove/config", &kv, NULL, &sub);
	store_kv_free(&kv);
	if (rc == -ENOMEM)
		goto nomem;
	json_object_set_new(o, "quorum", json_boolean(rc == 0 || rc == -ENOENT));
	if (rc && rc != -ENOENT)
		json_object_set_new(o, "quorum-error", json_string(sub.msg));
	*out = o;
	return 0;
nomem:
	json_decref(leader_name);
	json_decref(o);
	return kv_errf(err, ENOMEM, "cluster status: out of memory");
}
