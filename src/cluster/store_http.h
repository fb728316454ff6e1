/*
 * store_http.h - private to the etcd store: the HTTP side (libcurl), the
 * endpoint failover and etcd's error answers.  store_etcd.c builds requests
 * and reads answers; this file moves them.
 */
#ifndef KVMOVE_CLUSTER_STORE_HTTP_H
#define KVMOVE_CLUSTER_STORE_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cluster/store.h"
#include "common/err.h"

/* The most a single answer may hold (a watch stream: each line). */
#define STORE_MAX_BODY (64u << 20)

struct kv_store {
	char *endpoints;			/* as given */
	char *ep[STORE_MAX_ENDPOINTS];		/* "http://host:port", no trailing '/' */
	unsigned nep;
	unsigned timeout_ms, connect_timeout_ms;
	atomic_uint preferred;			/* the endpoint that last answered */
};

/* curl_global_init, once per process. */
int store_http_init(struct kv_err *err);

uint64_t store_now_ms(void);

/* Request flags */
#define STORE_ANY_MEMBER	1u	/* a member without a leader may answer */
#define STORE_STREAM		2u	/* the answer is a stream: {"result":...} lines */

/* A growing answer body, capped at STORE_MAX_BODY. */
struct store_buf {
	char *p;
	size_t n, cap;
	bool too_big;
};
void store_buf_free(struct store_buf *b);

/* A configured easy handle for POST ep+path with body (which must outlive
 * it); *hdrs is to be freed with curl_slist_free_all after the transfer.
 * write/ud: the write callback (NULL: collect into the store_buf ud). */
CURL *store_http_easy(const struct kv_store *st, unsigned idx, const char *path,
		      const char *body, size_t blen, unsigned timeout_ms, unsigned flags,
		      curl_write_callback write, void *ud, char *errbuf,
		      struct curl_slist **hdrs);

/*
 * Endpoint failover: try the endpoint that last answered first, then the
 * others.  An endpoint that did not answer (or answered "no leader", "timed
 * out", "too many requests") is a failure; after a pass over every endpoint
 * in which some member answered, another pass follows while the deadline
 * (the call's timeout) allows - a leader election is short.
 */
struct store_failover {
	struct kv_store *st;
	uint64_t deadline;
	unsigned per_try_ms;		/* first pass: each endpoint gets this */
	unsigned start, i, pass;
	bool answered;			/* some member answered in this pass */
	bool ever_answered;
	unsigned refused, unreachable, other;
	char why[320];			/* the last failure, for the message */
	char why_answered[320];		/* the last "cannot serve" answer */
};
void store_fo_init(struct store_failover *fo, struct kv_store *st, unsigned per_try_ms,
		   unsigned total_ms);
/* The next endpoint to try and its timeout, or -1 when it is time to give up. */
int store_fo_next(struct store_failover *fo, unsigned *timeout_ms);
/* Record a failure of endpoint idx.  cls: -ECONNREFUSED, -EHOSTUNREACH,
 * -ETIMEDOUT ...; answered: a member answered (but could not serve). */
void store_fo_fail(struct store_failover *fo, unsigned idx, int cls, bool answered,
		   const char *reason);
void store_fo_ok(struct store_failover *fo, unsigned idx);
/* The final error: -ECONNREFUSED / -EHOSTUNREACH / -ETIMEDOUT, message
 * "etcd at EPS: no quorum or unreachable: REASON". */
int store_fo_error(const struct store_failover *fo, struct kv_err *err);

/* A transfer that failed below HTTP: the errno class, reason in why. */
int store_curl_class(CURL *h, CURLcode cc, const char *errbuf, unsigned timeout_ms,
		     char *why, size_t whylen);

/*
 * If o is one of etcd's error answers ({"error","message","code"} or, in a
 * stream, {"error":{"grpc_code","message"}}): 1 with the (sanitized)
 * message in msg, the gRPC code in *code (-1 if none) and *retry set when
 * another member may do better.  0 when o is not an error.
 */
int store_etcd_error(const json_t *o, char *msg, size_t msglen, int *code, bool *retry);

/* Copy untrusted text for a message: printable ASCII only, capped. */
void store_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen);

/*
 * One call: POST path with req to the endpoints (failover above).  0 with
 * *resp the answer object (for STORE_STREAM: the first result, unwrapped),
 * -EIO with etcd's message for an error answer, -EPROTO for an answer that
 * is not JSON, or store_fo_error().  *code (may be NULL) gets the gRPC code
 * of an error answer.
 */
int store_call(struct kv_store *st, const char *path, const json_t *req, unsigned flags,
	       json_t **resp, int *code, struct kv_err *err);

#endif
