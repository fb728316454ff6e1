/*
 * server.c - the console's HTTP server (console.h): libmicrohttpd with a
 * thread per connection, credentials on every request, the page, the API,
 * the event stream fed by one etcd watch, the metrics.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "console/console_int.h"

#define SSE_KEEPALIVE_S 15
#define SSE_MIN_GAP_MS 250
#define COOKIE "kvmove-token"

struct request {
	char *body;
	size_t n;
	bool too_big;
	int64_t sse_rev;	/* event stream: the revision last sent */
	struct console *c;
};

/* ---- credentials ---- */

/* The user with this token (a copy), the file read again if it changed. */
static bool lookup(struct console *c, const char *tok, struct console_user *out)
{
	const struct console_user *u;
	bool ok = false;

	pthread_mutex_lock(&c->lock);
	if (console_tokens_stale(c->o.tokens, c->tokens)) {
		struct console_tokens *t = calloc(1, sizeof(*t));
		struct kv_err err;
		/* a bad new file: keep serving the users we had, say why */
		if (t && !console_tokens_load(c->o.tokens, t, &err)) {
			free(c->tokens);
			c->tokens = t;
		} else {
			if (t)
				fprintf(stderr, "kvmove console: %s (keeping the previous users)\n",
					err.msg);
			free(t);
		}
	}
	if ((u = console_tokens_find(c->tokens, tok))) {
		*out = *u;
		ok = true;
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

/* The user a request authenticates as (a copy), or false. */
static bool authenticate(struct console *c, struct MHD_Connection *conn,
			 struct console_user *out, bool *by_cookie)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	const char *tok = NULL;

	*by_cookie = false;
	if (h && !strncasecmp(h, "Bearer ", 7))
		tok = h + 7;
	else if ((tok = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE)))
		*by_cookie = true;
	return tok && lookup(c, tok, out);
}

/* ---- answers ---- */

static enum MHD_Result send_answer(struct MHD_Connection *conn, struct console_answer *a,
				   const char *set_cookie)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t len = a->body ? strlen(a->body) : 0;

	r = MHD_create_response_from_buffer(len, a->body ? a->body : (char *)"",
					    a->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	a->body = NULL;
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", a->type ? a->type : "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (a->status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"kvmove\"");
	if (set_cookie)
		MHD_add_response_header(r, "Set-Cookie", set_cookie);
	ret = MHD_queue_response(conn, (unsigned)a->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_asset(struct MHD_Connection *conn, const struct console_asset *as)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(as->len, (void *)as->data,
								 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", as->type);
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	/* nothing but this server: no CDN, no inline script */
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'self'; script-src 'self'; style-src 'self' "
				"'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
				"frame-ancestors 'none'");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- the event stream ---- */

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* One etcd watch for every stream: c->rev is the last revision seen. */
static void *watcher(void *arg)
{
	struct console *c = arg;
	int64_t rev = 0, ev;
	struct kv_err err;

	for (;;) {
		int r;
		pthread_mutex_lock(&c->ev_lock);
		if (c->stopping) {
			pthread_mutex_unlock(&c->ev_lock);
			return NULL;
		}
		pthread_mutex_unlock(&c->ev_lock);
		if (!rev) {
			struct store_list l = { 0 };
			if (store_list(c->st, "/kvmove/balancer", &l, &err)) {
				sleep(1);
				continue;
			}
			rev = l.rev;
			store_list_free(&l);
		}
		r = store_watch_wait(c->st, "/kvmove/", rev + 1, 2000, &ev, &err);
		if (r == -ETIMEDOUT)
			continue;
		if (r) {
			sleep(1);
			rev = 0;	/* read the revision again */
			continue;
		}
		rev = ev;
		pthread_mutex_lock(&c->ev_lock);
		if (ev > c->rev)
			c->rev = ev;
		pthread_cond_broadcast(&c->ev_cond);
		pthread_mutex_unlock(&c->ev_lock);
		usleep(SSE_MIN_GAP_MS * 1000);	/* coalesce a burst */
	}
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct request *rq = cls;
	struct console *c = rq->c;
	long long deadline = mono_ms() + SSE_KEEPALIVE_S * 1000LL;
	int64_t rev = 0;
	int n;

	(void)pos;
	pthread_mutex_lock(&c->ev_lock);
	while (!c->stopping && c->rev <= rq->sse_rev && mono_ms() < deadline) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&c->ev_cond, &c->ev_lock, &ts);
	}
	if (!c->stopping && c->rev > rq->sse_rev)
		rev = rq->sse_rev = c->rev;
	pthread_mutex_unlock(&c->ev_lock);
	if (c->stopping)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (rev)
		n = snprintf(buf, max, "event: change\ndata: {\"rev\": %lld}\n\n", (long long)rev);
	else
		n = snprintf(buf, max, ": keepalive\n\n");
	return n > 0 && (size_t)n < max ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static enum MHD_Result send_events(struct MHD_Connection *conn, struct request *rq)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	pthread_mutex_lock(&rq->c->ev_lock);
	rq->sse_rev = rq->c->rev;
	pthread_mutex_unlock(&rq->c->ev_lock);
	/* the first message at once: the page reads everything on it */
	rq->sse_rev--;
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, sse_read, rq, NULL);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- requests ---- */

static enum MHD_Result login(struct console *c, struct request *rq, struct MHD_Connection *conn,
			     struct console_answer *a)
{
	json_t *j = json_loadb(rq->body ? rq->body : "", rq->n, 0, NULL);
	const char *tok = json_string_value(json_object_get(j, "token"));
	struct console_user copy;
	char cookie[256];

	if (!json_is_object(j) || !tok || json_object_size(j) != 1) {
		json_decref(j);
		answer_error(a, 400, "send {\"token\": \"...\"}");
		return send_answer(conn, a, NULL);
	}
	if (!lookup(c, tok, &copy)) {
		json_decref(j);
		fprintf(stderr, "kvmove console: a login with an unknown token was refused\n");
		answer_error(a, 401, "unknown token");
		return send_answer(conn, a, NULL);
	}
	snprintf(cookie, sizeof(cookie), COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict", tok);
	json_decref(j);
	answer_json(a, 200, json_pack("{s:s, s:s}", "name", copy.name, "role",
				      console_role_name(copy.role)));
	return send_answer(conn, a, cookie);
}

static enum MHD_Result dispatch(struct console *c, struct request *rq,
				struct MHD_Connection *conn, const char *url, const char *method)
{
	struct console_answer a = { 0 };
	struct console_user u;
	bool by_cookie, get = !strcmp(method, "GET") || !strcmp(method, "HEAD");

	for (size_t i = 0; get && i < console_nassets; i++)
		if (!strcmp(url, console_assets[i].path))
			return send_asset(conn, &console_assets[i]);
	if (rq->too_big) {
		answer_error(&a, 413, "the body is over %u bytes", CONSOLE_MAX_BODY);
		return send_answer(conn, &a, NULL);
	}
	if (!strcmp(url, "/api/login") && !strcmp(method, "POST"))
		return login(c, rq, conn, &a);
	if (!strcmp(url, "/api/logout") && !strcmp(method, "POST")) {
		a.status = 204;
		return send_answer(conn, &a, COOKIE "=; Path=/; HttpOnly; SameSite=Strict; "
				   "Max-Age=0");
	}
	if (strcmp(url, "/metrics") && strncmp(url, "/api/", 5)) {
		answer_error(&a, 404, "no such path: %.200s", url);
		return send_answer(conn, &a, NULL);
	}
	if (!authenticate(c, conn, &u, &by_cookie)) {
		answer_error(&a, 401, "authentication required (Authorization: Bearer TOKEN, "
			     "or POST /api/login)");
		return send_answer(conn, &a, NULL);
	}
	if (!get && by_cookie) {
		const char *x = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Kvmove");
		if (!x || strcmp(x, "1")) {
			answer_error(&a, 403, "a change by cookie needs the header X-Kvmove: 1");
			return send_answer(conn, &a, NULL);
		}
	}
	if (!strcmp(url, "/metrics")) {
		if (get)
			console_metrics(c, &a);
		else
			answer_error(&a, 405, "GET /metrics");
		return send_answer(conn, &a, NULL);
	}
	if (!strcmp(url, "/api/events")) {
		if (get)
			return send_events(conn, rq);
		answer_error(&a, 405, "GET /api/events");
		return send_answer(conn, &a, NULL);
	}
	if (!strcmp(url, "/api/whoami") && get) {
		answer_json(&a, 200, json_pack("{s:s, s:s}", "name", u.name, "role",
					       console_role_name(u.role)));
		return send_answer(conn, &a, NULL);
	}
	{
		const char *all = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "all");
		console_api(c, method, url + 5, all && strcmp(all, "0"), &u, rq->body, rq->n, &a);
	}
	if (!a.status)
		answer_error(&a, 500, "no answer");
	return send_answer(conn, &a, NULL);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *data,
			       size_t *size, void **con_cls)
{
	struct console *c = cls;
	struct request *rq = *con_cls;

	(void)version;
	if (!rq) {
		if (!(rq = calloc(1, sizeof(*rq))))
			return MHD_NO;
		rq->c = c;
		*con_cls = rq;
		return MHD_YES;
	}
	if (*size) {
		if (rq->n + *size > CONSOLE_MAX_BODY) {
			rq->too_big = true;
		} else {
			char *nb = realloc(rq->body, rq->n + *size + 1);
			if (!nb)
				return MHD_NO;
			rq->body = nb;
			memcpy(rq->body + rq->n, data, *size);
			rq->n += *size;
			rq->body[rq->n] = '\0';
		}
		*size = 0;
		return MHD_YES;
	}
	return dispatch(c, rq, conn, url, method);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (rq) {
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

static int parse_listen(const char *s, struct sockaddr_in *sa, struct kv_err *err)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;

	memset(sa, 0, sizeof(*sa));
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return kv_errf(err, EINVAL, "--listen '%s': give HOST:PORT", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || port < 1 || port > 65535)
		return kv_errf(err, EINVAL, "--listen '%s': the port must be 1..65535", s);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) != 1)
		return kv_errf(err, EINVAL, "--listen '%s': '%s' is not an IPv4 address", s, host);
	return 0;
}

int console_serve(const struct console_options *o, struct kv_err *err)
{
	struct console *c = calloc(1, sizeof(*c));
	struct store_options so = { .endpoints = o->etcd, .timeout_ms = 5000 };
	struct MHD_Daemon *d = NULL;
	struct sockaddr_in sa;
	sigset_t set;
	int r, sig;

	if (!c)
		return kv_errf(err, ENOMEM, "console");
	c->o = *o;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->ev_lock, NULL);
	pthread_cond_init(&c->ev_cond, NULL);
	c->rev = 1;
	if ((r = parse_listen(o->listen, &sa, err)))
		goto out;
	if (!realpath(o->self, c->self)) {
		r = kv_errf_sys(err, errno, "finding this program (%s)", o->self);
		goto out;
	}
	if (!(c->tokens = calloc(1, sizeof(*c->tokens)))) {
		r = kv_errf(err, ENOMEM, "tokens");
		goto out;
	}
	if ((r = console_tokens_load(o->tokens, c->tokens, err)))
		goto out;
	if (!c->tokens->n)
		fprintf(stderr, "kvmove console: %s has no users yet: add one with 'kvmove console "
			"token add --tokens %s --name NAME --role admin'\n", o->tokens, o->tokens);
	if ((r = store_open(&c->st, &so, err)))
		goto out;
	/* the signals go to sigwait below, not to the server's threads */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (pthread_create(&c->watcher, NULL, watcher, c)) {
		r = kv_errf(err, EAGAIN, "starting the etcd watcher");
		goto out;
	}
	c->watcher_started = true;
	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
			     ntohs(sa.sin_port), NULL, NULL, handler, c,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			     MHD_OPTION_NOTIFY_COMPLETED, completed, c,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)128,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
			     MHD_OPTION_END);
	if (!d) {
		r = kv_errf(err, EADDRINUSE, "cannot listen on %s (in use, or not this host's "
			    "address)", o->listen);
		goto out;
	}
	fprintf(stderr, "kvmove console: serving http://%s/ (etcd %s, users from %s)\n",
		o->listen, o->etcd, o->tokens);
	if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127)
		fprintf(stderr, "kvmove console: WARNING: plain HTTP on %s: tokens and cookies "
			"cross the network in the clear; keep it on a management network or put "
			"it behind a TLS proxy\n", o->listen);
	sigdelset(&set, SIGPIPE);
	while (sigwait(&set, &sig))
		;
	fprintf(stderr, "kvmove console: signal %d, stopping\n", sig);
out:
	pthread_mutex_lock(&c->ev_lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->ev_cond);
	pthread_mutex_unlock(&c->ev_lock);
	if (d)
		MHD_stop_daemon(d);
	if (c->watcher_started)
		pthread_join(c->watcher, NULL);
	if (c->st)
		store_close(c->st);
	free(c->tokens);
	pthread_cond_destroy(&c->ev_cond);
	pthread_mutex_destroy(&c->ev_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return r;
}
