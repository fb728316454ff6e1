/*
 * store_watch.c - store_watch_wait(): one watch on etcd's streaming
 * /v3/watch, read line by line as it arrives (each line one JSON object
 * {"result":{...}} or an error), given up once the first change (or the
 * timeout) arrived.
 */
#define _GNU_SOURCE
#include "cluster/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/store_b64.h"
#include "cluster/store_http.h"

enum watch_state {
	W_RUNNING,	/* nothing decisive yet */
	W_EVENT,	/* a change (or a compaction): event_rev */
	W_FAILED,	/* rc, msg; retry: another member may do better */
};

struct watch {
	const char *ep;
	store_watch_filter filter;	/* NULL: every change counts */
	void *opaque;
	struct store_buf line;		/* the unfinished line */
	enum watch_state state;
	bool created;
	int64_t created_rev, event_rev;
	int rc;
	bool retry;
	char msg[KV_ERR_MAX];
};

__attribute__((format(printf, 4, 5)))
static void watch_fail(struct watch *w, int rc, bool retry, const char *fmt, ...)
{
	va_list ap;

	w->state = W_FAILED;
	w->rc = rc;
	w->retry = retry;
	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
}

/* One line of the stream. */
static void watch_line(struct watch *w, const char *p, size_t len)
{
	char emsg[256];
	json_t *o, *r, *events, *kv;
	int64_t rev, mod = 0, compact = 0;
	int canceled = 0, created = 0, code;
	bool retry;

	while (len && (p[len - 1] == '\r' || p[len - 1] == ' '))
		len--;
	if (!len)
		return;
	o = json_loadb(p, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		watch_fail(w, -EPROTO, false, "etcd at %s: not an etcd watch answer", w->ep);
		return;
	}
	if (store_etcd_error(o, emsg, sizeof(emsg), &code, &retry)) {
		json_decref(o);
		watch_fail(w, -EIO, retry, "%s", emsg);
		return;
	}
	r = json_object_get(o, "result");
	events = json_object_get(r, "events");
	if (!json_is_object(r) || store_header_rev(r, &rev) ||
	    store_json_bool(r, "created", &created) ||
	    store_json_bool(r, "canceled", &canceled) ||
	    store_json_i64(r, "compact_revision", &compact) ||
	    (events && !json_is_null(events) && !json_is_array(events))) {
		json_decref(o);
		watch_fail(w, -EPROTO, false, "etcd at %s: malformed watch answer", w->ep);
		return;
	}
	if (canceled) {
		json_t *why = json_object_get(r, "cancel_reason");

		if (compact > 0) {
			/* start_rev was compacted away: the caller re-reads */
			w->state = W_EVENT;
			w->event_rev = compact;
		} else {
			if (json_is_string(why))
				store_sanitize(emsg, sizeof(emsg), json_string_value(why),
					       json_string_length(why));
			else
				snprintf(emsg, sizeof(emsg), "no reason given");
			watch_fail(w, -EIO, strstr(emsg, "no leader") != NULL,
				   "watch canceled: %s", emsg);
		}
		json_decref(o);
		return;
	}
	if (created && !w->created) {
		w->created = true;
		w->created_rev = rev;
	}
	for (size_t i = 0; i < json_array_size(events) && w->state == W_RUNNING; i++) {
		struct store_kv skv = { 0 };
		bool wanted = true;

		kv = json_object_get(json_array_get(events, i), "kv");
		if (!json_is_object(kv) || store_json_i64(kv, "mod_revision", &mod) || mod < 0 ||
		    (w->filter && store_parse_kv(kv, &skv))) {
			json_decref(o);
			watch_fail(w, -EPROTO, false, "etcd at %s: malformed watch event", w->ep);
			return;
		}
		if (w->filter) {
			/* a delete carries the key only */
			wanted = w->filter(skv.key, skv.value ? skv.value : "",
					   skv.value ? skv.vlen : 0, w->opaque);
			store_kv_free(&skv);
		}
		if (wanted) {
			w->state = W_EVENT;
			w->event_rev = mod ? mod : rev;
		}
	}
	json_decref(o);
}

static size_t watch_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct watch *w = ud;
	size_t len = size * nmemb, done = 0;
	struct store_buf *b = &w->line;

	while (done < len && w->state == W_RUNNING) {
		const char *nl = memchr(ptr + done, '\n', len - done);
		size_t take = nl ? (size_t)(nl - (ptr + done)) : len - done;

		if (take > STORE_MAX_BODY - b->n) {
			watch_fail(w, -EPROTO, false, "etcd at %s: watch answer too large", w->ep);
			break;
		}
		if (b->n + take + 1 > b->cap) {
			size_t cap = b->cap ? b->cap : 4096;
			char *p;

			while (cap < b->n + take + 1)
				cap *= 2;
			p = realloc(b->p, cap);
			if (!p) {
				watch_fail(w, -ENOMEM, false, "etcd at %s: out of memory", w->ep);
				break;
			}
			b->p = p;
			b->cap = cap;
		}
		memcpy(b->p + b->n, ptr + done, take);
		b->n += take;
		done += take;
		if (!nl)
			break;
		done++;			/* the '\n' */
		watch_line(w, b->p, b->n);
		b->n = 0;
	}
	/* returning less than len ends the transfer: done watching */
	return w->state == W_RUNNING ? len : 0;
}

static json_t *watch_request(const char *prefix, int64_t start_rev)
{
	json_t *c = json_object();

	if (!c || store_set_range(c, prefix) ||
	    (start_rev > 0 && store_set_i64(c, "start_revision", start_rev))) {
		json_decref(c);
		return NULL;
	}
	return json_pack("{s:o}", "create_request", c);
}

int store_watch_wait(struct kv_store *st, const char *prefix, int64_t start_rev,
		     unsigned timeout_ms, int64_t *event_rev, struct kv_err *err)
{
	return store_watch_wait_filtered(st, prefix, start_rev, timeout_ms, NULL, NULL,
					 event_rev, err);
}

int store_watch_wait_filtered(struct kv_store *st, const char *prefix, int64_t start_rev,
			      unsigned timeout_ms, store_watch_filter filter, void *opaque,
			      int64_t *event_rev, struct kv_err *err)
{
	uint64_t deadline = store_now_ms() + timeout_ms;
	struct store_failover fo;
	bool ever_created = false;
	unsigned tmo;
	int idx;

	if (event_rev)
		*event_rev = 0;
	if (!prefix)
		return kv_errf(err, EINVAL, "etcd watch: no prefix");
	if (!timeout_ms)
		return kv_errf(err, ETIMEDOUT, "no change under %s in etcd within 0 ms", prefix);
	store_fo_init(&fo, st, timeout_ms, timeout_ms);
	while ((idx = store_fo_next(&fo, &tmo)) >= 0) {
		struct watch w = { .ep = st->ep[idx], .state = W_RUNNING, .filter = filter,
				   .opaque = opaque };
		char errbuf[CURL_ERROR_SIZE], why[KV_ERR_MAX];
		struct curl_slist *hdrs;
		uint64_t now = store_now_ms();
		json_t *req;
		char *body;
		CURLcode cc;
		CURL *h;
		int cls;

		if (now >= deadline)
			break;
		if (tmo > deadline - now)
			tmo = (unsigned)(deadline - now);
		/* start_rev <= 0: from now on (after a watch that ended
		 * without a change: from its creation on, below) */
		req = watch_request(prefix, start_rev);
		body = req ? json_dumps(req, JSON_COMPACT) : NULL;
		json_decref(req);
		h = body ? store_http_easy(st, (unsigned)idx, "/v3/watch", body, strlen(body), tmo, 0,
					   watch_write, &w, errbuf, &hdrs)
			 : NULL;
		if (!h) {
			free(body);
			return kv_errf(err, ENOMEM, "etcd watch: out of memory");
		}
		cc = curl_easy_perform(h);
		if (w.state == W_RUNNING && cc == CURLE_OK && w.line.n)
			watch_line(&w, w.line.p, w.line.n);	/* a last line without '\n' */
		if (w.created) {
			ever_created = true;
			if (start_rev <= 0)
				start_rev = w.created_rev + 1;
		}
		cls = -ECONNRESET;
		snprintf(why, sizeof(why), "the watch stream broke");
		if (w.state == W_RUNNING && cc != CURLE_OK && cc != CURLE_WRITE_ERROR)
			cls = store_curl_class(h, cc, errbuf, tmo, why, sizeof(why));
		curl_easy_cleanup(h);
		curl_slist_free_all(hdrs);
		store_buf_free(&w.line);
		free(body);

		if (w.state == W_EVENT) {
			store_fo_ok(&fo, (unsigned)idx);
			if (event_rev)
				*event_rev = w.event_rev;
			return 0;
		}
		if (w.state == W_FAILED) {
			if (!w.retry) {
				if (w.rc == -EIO)
					return kv_errf(err, EIO, "etcd at %s: %s", w.ep, w.msg);
				return kv_errf(err, w.rc, "%s", w.msg);
			}
			store_fo_fail(&fo, (unsigned)idx, -ETIMEDOUT, true, w.msg);
			continue;
		}
		if (w.created && cc == CURLE_OPERATION_TIMEDOUT) {
			store_fo_ok(&fo, (unsigned)idx);
			return kv_errf(err, ETIMEDOUT, "no change under %s in etcd within %u ms",
				       prefix, timeout_ms);
		}
		if (cc == CURLE_OK || w.created) {
			/* the stream ended without a change: the member went away */
			store_fo_fail(&fo, (unsigned)idx, -ECONNRESET, true,
				      "the watch stream ended");
			continue;
		}
		if (cls == -ENOMEM || cls == -EINVAL)
			return kv_errf(err, cls, "etcd at %s: %s", w.ep, why);
		store_fo_fail(&fo, (unsigned)idx, cls, false, why);
	}
	if (ever_created && store_now_ms() >= deadline)
		return kv_errf(err, ETIMEDOUT, "no change under %s in etcd within %u ms", prefix,
			       timeout_ms);
	return store_fo_error(&fo, err);
}
