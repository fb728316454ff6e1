/*
 * store_http.c - HTTP requests to etcd's JSON gateway with endpoint failover
 * (store_http.h).
 */
#define _GNU_SOURCE
#include "cluster/store_http.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int store_http_init(struct kv_err *err)
{
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return kv_errf(err, EIO, "libcurl: %s", curl_easy_strerror(curl_init_result));
	return 0;
}

uint64_t store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void store_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t i;

	if (!dstlen)
		return;
	for (i = 0; i < srclen && i + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[i] = '\0';
}

/* ------------------------------------------------------------------ */
/* easy handles                                                         */
/* ------------------------------------------------------------------ */

void store_buf_free(struct store_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

static size_t buf_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct store_buf *b = ud;
	size_t len = size * nmemb;

	if (len > STORE_MAX_BODY - b->n) {
		b->too_big = true;
		return 0;
	}
	if (b->n + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->n + len + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, ptr, len);
	b->n += len;
	b->p[b->n] = '\0';
	return len;
}

CURL *store_http_easy(const struct kv_store *st, unsigned idx, const char *path,
		      const char *body, size_t blen, unsigned timeout_ms, unsigned flags,
		      curl_write_callback write, void *ud, char *errbuf,
		      struct curl_slist **hdrs)
{
	char url[512];
	struct curl_slist *h = NULL, *t;
	CURL *c;
	unsigned cto;

	*hdrs = NULL;
	if (!timeout_ms)
		timeout_ms = 1;		/* 0 would be no timeout at all */
	cto = st->connect_timeout_ms < timeout_ms ? st->connect_timeout_ms : timeout_ms;
	snprintf(url, sizeof(url), "%s%s", st->ep[idx], path);
	c = curl_easy_init();
	if (!c)
		return NULL;
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h && (t = curl_slist_append(h, "Expect:")))
		h = t;
	else
		goto fail;
	/* etcd refuses at once when the member has no leader, instead of
	 * waiting for one until its own request timeout */
	if (!(flags & STORE_ANY_MEMBER)) {
		if (!(t = curl_slist_append(h, "Grpc-Metadata-Hasleader: true")))
			goto fail;
		h = t;
	}
	if (curl_easy_setopt(c, CURLOPT_URL, url) ||
	    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
#if LIBCURL_VERSION_NUM >= 0x075500
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") ||
#else
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) ||
#endif
	    curl_easy_setopt(c, CURLOPT_PROXY, "") ||
	    curl_easy_setopt(c, CURLOPT_USERAGENT, "kvmove") ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h) ||
	    curl_easy_setopt(c, CURLOPT_POST, 1L) ||
	    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) ||
	    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen) ||
	    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms) ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(cto ? cto : 1)) ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write ? write : buf_write) ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, ud))
		goto fail;
	errbuf[0] = '\0';
	*hdrs = h;
	return c;
fail:
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

int store_curl_class(CURL *h, CURLcode cc, const char *errbuf, unsigned timeout_ms,
		     char *why, size_t whylen)
{
	long os_errno = 0;
	const char *text = errbuf && errbuf[0] ? errbuf : curl_easy_strerror(cc);

	curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		if (os_errno == EHOSTUNREACH || os_errno == ENETUNREACH) {
			snprintf(why, whylen, "%s", strerror((int)os_errno));
			return -EHOSTUNREACH;
		}
		if (os_errno == ECONNREFUSED) {
			snprintf(why, whylen, "connection refused");
			return -ECONNREFUSED;
		}
		snprintf(why, whylen, "%s", text);
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(why, whylen, "no answer within %u ms", timeout_ms);
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(why, whylen, "%s", text);
		return -EHOSTUNREACH;
	case CURLE_OUT_OF_MEMORY:
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		snprintf(why, whylen, "%s", text);
		return -EINVAL;
	default:
		snprintf(why, whylen, "%s", text);
		return -ECONNRESET;
	}
}

/* ------------------------------------------------------------------ */
/* failover                                                             */
/* ------------------------------------------------------------------ */

void store_fo_init(struct store_failover *fo, struct kv_store *st, unsigned per_try_ms,
		   unsigned total_ms)
{
	memset(fo, 0, sizeof(*fo));
	fo->st = st;
	fo->per_try_ms = per_try_ms;
	fo->deadline = store_now_ms() + total_ms;
	fo->start = atomic_load(&st->preferred) % st->nep;
	snprintf(fo->why, sizeof(fo->why), "no endpoint tried");
}

int store_fo_next(struct store_failover *fo, unsigned *timeout_ms)
{
	uint64_t now = store_now_ms();
	unsigned n = fo->st->nep;

	if (fo->i == n) {
		/* a whole pass failed: again only if some member answered
		 * (an election may be under way) and time is left */
		if (!fo->answered || now + 100 >= fo->deadline)
			return -1;
		sleep_ms(100);
		now = store_now_ms();
		fo->i = 0;
		fo->pass++;
		fo->answered = false;
		fo->start = atomic_load(&fo->st->preferred) % n;
	}
	*timeout_ms = fo->per_try_ms;
	if (fo->pass > 0) {
		if (now >= fo->deadline)
			return -1;
		if (fo->deadline - now < *timeout_ms)
			*timeout_ms = (unsigned)(fo->deadline - now);
	}
	return (int)((fo->start + fo->i++) % n);
}

void store_fo_fail(struct store_failover *fo, unsigned idx, int cls, bool answered,
		   const char *reason)
{
	if (answered) {
		fo->answered = fo->ever_answered = true;
		fo->other++;
	} else if (cls == -ECONNREFUSED) {
		fo->refused++;
	} else if (cls == -EHOSTUNREACH) {
		fo->unreachable++;
	} else {
		fo->other++;
	}
	/* bounded so that the message always fits (gcc -O3 checks it) */
	if (fo->st->nep > 1)
		snprintf(fo->why, sizeof(fo->why), "%.100s: %.200s", fo->st->ep[idx], reason);
	else
		snprintf(fo->why, sizeof(fo->why), "%.300s", reason);
	if (answered)
		memcpy(fo->why_answered, fo->why, sizeof(fo->why));
}

void store_fo_ok(struct store_failover *fo, unsigned idx)
{
	atomic_store(&fo->st->preferred, idx);
}

int store_fo_error(const struct store_failover *fo, struct kv_err *err)
{
	int rc = -ETIMEDOUT;

	if (!fo->other && fo->refused && !fo->unreachable)
		rc = -ECONNREFUSED;
	else if (!fo->other && fo->unreachable && !fo->refused)
		rc = -EHOSTUNREACH;
	/* a member that answered "no leader" says more than one that is down */
	return kv_errf(err, rc, "etcd at %s: %s: %s", fo->st->endpoints,
		       fo->ever_answered || fo->other ? "no quorum or unreachable" : "unreachable",
		       fo->ever_answered ? fo->why_answered : fo->why);
}

/* ------------------------------------------------------------------ */
/* answers                                                              */
/* ------------------------------------------------------------------ */

int store_etcd_error(const json_t *o, char *msg, size_t msglen, int *code, bool *retry)
{
	json_t *e = json_object_get(o, "error");
	json_t *c = json_object_get(o, "code");
	json_t *m = json_object_get(o, "message");

	*code = -1;
	*retry = false;
	if (json_is_object(e)) {		/* an error inside a stream */
		c = json_object_get(e, "grpc_code");
		m = json_object_get(e, "message");
	} else if (json_object_get(o, "header") || (!e && !c)) {
		return 0;			/* an answer (some have an "error" field) */
	}
	if (!json_is_string(m) || !json_string_length(m))
		m = json_is_string(e) ? e : NULL;
	if (m)
		store_sanitize(msg, msglen, json_string_value(m), json_string_length(m));
	else
		store_sanitize(msg, msglen, "error without a message", 23);
	if (json_is_integer(c) && json_integer_value(c) >= 0 && json_integer_value(c) < 100)
		*code = (int)json_integer_value(c);
	/* Unavailable (no leader, request timed out, leader changed,
	 * stopping), DeadlineExceeded, and too many requests: another member,
	 * or the same one a moment later, may serve it */
	*retry = *code == 14 || *code == 4 || strstr(msg, "no leader") ||
		 strstr(msg, "timed out") || strstr(msg, "too many requests") ||
		 strstr(msg, "leader changed");
	return 1;
}

/* Read one answer: 0 with *resp, or -errno with msg (*retry: try another). */
static int read_answer(const struct kv_store *st, unsigned idx, const struct store_buf *b,
		       long status, unsigned flags, json_t **resp, int *code, bool *retry,
		       char *msg, size_t msglen)
{
	json_error_t jerr;
	size_t len = b->n;
	char emsg[256];
	json_t *o, *r;

	*retry = false;
	if (flags & STORE_STREAM) {
		const char *nl = b->n ? memchr(b->p, '\n', b->n) : NULL;
		if (nl)
			len = (size_t)(nl - b->p);
	}
	o = len ? json_loadb(b->p, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!json_is_object(o)) {
		json_decref(o);
		snprintf(msg, msglen, "etcd at %s: not an etcd answer (HTTP %ld%s)", st->ep[idx],
			 status, len ? "" : ", empty");
		return -EPROTO;
	}
	if (store_etcd_error(o, emsg, sizeof(emsg), code, retry)) {
		json_decref(o);
		snprintf(msg, msglen, "etcd at %s: %s", st->ep[idx], emsg);
		return -EIO;
	}
	if (status != 200) {
		json_decref(o);
		snprintf(msg, msglen, "etcd at %s: HTTP %ld without an error", st->ep[idx], status);
		return -EPROTO;
	}
	if (!(flags & STORE_STREAM)) {
		*resp = o;
		return 0;
	}
	r = json_object_get(o, "result");
	if (!json_is_object(r)) {
		json_decref(o);
		snprintf(msg, msglen, "etcd at %s: a stream answer without a result", st->ep[idx]);
		return -EPROTO;
	}
	*resp = json_incref(r);
	json_decref(o);
	return 0;
}

int store_call(struct kv_store *st, const char *path, const json_t *req, unsigned flags,
	       json_t **resp, int *code, struct kv_err *err)
{
	struct store_failover fo;
	char *body;
	size_t blen;
	unsigned tmo;
	int idx, rc = 0, ecode = -1;

	*resp = NULL;
	if (code)
		*code = -1;
	body = json_dumps(req, JSON_COMPACT);
	if (!body)
		return kv_errf(err, ENOMEM, "etcd request %s: out of memory", path);
	blen = strlen(body);
	store_fo_init(&fo, st, st->timeout_ms, st->timeout_ms);
	while ((idx = store_fo_next(&fo, &tmo)) >= 0) {
		struct store_buf b = { 0 };
		struct curl_slist *hdrs;
		char errbuf[CURL_ERROR_SIZE], msg[KV_ERR_MAX];
		long status = 0;
		bool retry;
		CURLcode cc;
		CURL *h;

		h = store_http_easy(st, (unsigned)idx, path, body, blen, tmo, flags, NULL, &b,
				    errbuf, &hdrs);
		if (!h) {
			rc = kv_errf(err, ENOMEM, "etcd request %s: cannot set up libcurl", path);
			break;
		}
		cc = curl_easy_perform(h);
		if (cc != CURLE_OK) {
			int cls = b.too_big ? -EPROTO
					    : store_curl_class(h, cc, errbuf, tmo, msg, sizeof(msg));
			curl_easy_cleanup(h);
			curl_slist_free_all(hdrs);
			store_buf_free(&b);
			if (cls == -EPROTO) {
				rc = kv_errf(err, EPROTO, "etcd at %s: answer larger than %u MiB",
					     st->ep[idx], STORE_MAX_BODY >> 20);
				break;
			}
			if (cls == -ENOMEM || cls == -EINVAL) {
				rc = kv_errf(err, cls, "etcd at %s: %s", st->ep[idx], msg);
				break;
			}
			store_fo_fail(&fo, (unsigned)idx, cls, false, msg);
			continue;
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(h);
		curl_slist_free_all(hdrs);
		rc = read_answer(st, (unsigned)idx, &b, status, flags, resp, &ecode, &retry,
				 msg, sizeof(msg));
		store_buf_free(&b);
		if (rc == 0) {
			store_fo_ok(&fo, (unsigned)idx);
			break;
		}
		if (retry) {
			/* the member answered but cannot serve: the reason without
			 * the "etcd at EP: " store_fo_fail() adds itself */
			const char *r = strstr(msg, ": ");
			store_fo_fail(&fo, (unsigned)idx, -ETIMEDOUT, true, r ? r + 2 : msg);
			rc = 0;
			continue;
		}
		if (code)
			*code = ecode;
		kv_errf(err, rc, "%s", msg);
		break;
	}
	if (idx < 0)
		rc = store_fo_error(&fo, err);
	free(body);
	return rc;
}
