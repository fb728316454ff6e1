#define _GNU_SOURCE
#include "migration/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

const char *mig_rec_name(uint16_t type)
{
	static const char *const names[] = {
		[MIG_REC_HELLO] = "HELLO", [MIG_REC_CONFIG] = "CONFIG",
		[MIG_REC_PREFLIGHT] = "PREFLIGHT", [MIG_REC_RAM] = "RAM",
		[MIG_REC_ROUND] = "ROUND", [MIG_REC_VM_ARCH] = "VM_ARCH",
		[MIG_REC_VCPU] = "VCPU", [MIG_REC_DEVICE] = "DEVICE",
		[MIG_REC_STATE_END] = "STATE_END", [MIG_REC_READY] = "READY",
		[MIG_REC_GO] = "GO", [MIG_REC_RESUMED] = "RESUMED",
		[MIG_REC_ERROR] = "ERROR", [MIG_REC_END] = "END", [MIG_REC_SAVED] = "SAVED",
		[MIG_REC_PROBE] = "PROBE", [MIG_REC_PROBE_ACK] = "PROBE_ACK",
		[MIG_REC_POSTCOPY] = "POSTCOPY", [MIG_REC_DISCARD] = "DISCARD",
		[MIG_REC_PAGE_REQ] = "PAGE_REQ", [MIG_REC_POSTCOPY_END] = "POSTCOPY_END",
		[MIG_REC_POSTCOPY_DONE] = "POSTCOPY_DONE", [MIG_REC_NEEDED] = "NEEDED",
		[MIG_REC_CHANNEL_END] = "CHANNEL_END", [MIG_REC_LOCAL] = "LOCAL",
		[MIG_REC_LOCAL_BUILT] = "LOCAL_BUILT",
	};
	return type < sizeof(names) / sizeof(names[0]) && names[type] ? names[type] : "unknown";
}

int mig_send_json(struct stream *s, uint16_t type, json_t *obj, struct kv_err *err)
{
	char *txt = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	int r;

	json_decref(obj);
	if (!txt)
		return kv_errf(err, ENOMEM, "encoding %s", mig_rec_name(type));
	r = stream_write(s, type, STREAM_F_MANDATORY, txt, (uint32_t)strlen(txt), err);
	free(txt);
	return r;
}

int mig_parse_json(const struct stream_rec *rec, json_t **out, struct kv_err *err)
{
	json_error_t je;
	json_t *j;

	if (rec->len > MIG_MAX_JSON)
		return kv_errf(err, EMSGSIZE, "%s record of %u bytes is too large",
			       mig_rec_name(rec->type), rec->len);
	j = json_loadb((const char *)rec->payload, rec->len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return kv_errf(err, EBADMSG, "%s record: bad JSON: %s", mig_rec_name(rec->type),
			       je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return kv_errf(err, EBADMSG, "%s record is not a JSON object",
			       mig_rec_name(rec->type));
	}
	*out = j;
	return 0;
}

int mig_send_end(struct stream *s, uint16_t type, const struct mig_end *e, struct kv_err *err)
{
	json_t *j = json_pack("{s:I}", "pages", (json_int_t)e->pages);

	if (type == MIG_REC_STATE_END)
		json_object_set_new(j, "paused", json_boolean(e->paused));
	return mig_send_json(s, type, j, err);
}

int mig_check_end(const struct stream_rec *rec, uint64_t pages, struct mig_end *e,
		  struct kv_err *err)
{
	json_t *j, *p, *z;
	int r = mig_parse_json(rec, &j, err);
	size_t want = rec->type == MIG_REC_STATE_END ? 2 : 1;

	if (r)
		return r;
	p = json_object_get(j, "pages");
	z = json_object_get(j, "paused");
	if (json_object_size(j) != want || !json_is_integer(p) ||
	    (want == 2 && !json_is_boolean(z)))
		r = kv_errf(err, EBADMSG, "%s record: expected {\"pages\": N%s}",
			    mig_rec_name(rec->type), want == 2 ? ", \"paused\": BOOL" : "");
	else if ((uint64_t)json_integer_value(p) != pages)
		r = kv_errf(err, EBADMSG, "%s: the sender put %lld pages in the stream, %llu "
			    "arrived (records lost, replayed or forged)", mig_rec_name(rec->type),
			    (long long)json_integer_value(p), (unsigned long long)pages);
	else if (e) {
		e->pages = pages;
		e->paused = json_is_true(z);
	}
	json_decref(j);
	return r;
}

int mig_expect(struct stream *s, uint16_t type, struct stream_rec *rec,
	       struct kv_err *err)
{
	int r = stream_read(s, rec, err);

	if (r) {
		if (r == -ECONNRESET)
			return kv_errf(err, ECONNRESET, "peer closed the connection while we "
				       "waited for %s", mig_rec_name(type));
		return r;
	}
	if (rec->type == MIG_REC_ERROR && type != MIG_REC_ERROR) {
		json_t *j = NULL;
		const char *desc = NULL;
		if (!mig_parse_json(rec, &j, NULL))
			desc = json_string_value(json_object_get(j, "desc"));
		r = kv_errf(err, ECANCELED, "peer gave up: %s", desc ? desc : "(no reason given)");
		json_decref(j);
		return r;
	}
	if (rec->type != type)
		return kv_errf(err, EPROTO, "expected a %s record, got %s (type %u)",
			       mig_rec_name(type), mig_rec_name(rec->type), rec->type);
	return 0;
}

void mig_send_error(struct stream *s, const char *id, const char *desc)
{
	mig_send_json(s, MIG_REC_ERROR, json_pack("{s:s, s:s}", "id", id, "desc", desc), NULL);
	stream_flush(s, NULL);
}

static int parse_uri(const char *uri, char *host, size_t hostlen, char *port,
		     size_t portlen, struct kv_err *err)
{
	const char *h, *colon;

	if (strncmp(uri, "tcp:", 4))
		return kv_errf(err, EINVAL, "unsupported address '%s' (use tcp:HOST:PORT, or unix:PATH on the same host)", uri);
	h = uri + 4;
	if (*h == '[') {	/* [v6]:port */
		const char *close = strchr(h, ']');
		if (!close || close[1] != ':')
			return kv_errf(err, EINVAL, "bad address '%s'", uri);
		if ((size_t)(close - h - 1) >= hostlen)
			return kv_errf(err, EINVAL, "host name too long in '%s'", uri);
		memcpy(host, h + 1, (size_t)(close - h - 1));
		host[close - h - 1] = 0;
		colon = close + 1;
	} else {
		colon = strrchr(h, ':');
		if (!colon || (size_t)(colon - h) >= hostlen)
			return kv_errf(err, EINVAL, "bad address '%s' (use tcp:HOST:PORT)", uri);
		memcpy(host, h, (size_t)(colon - h));
		host[colon - h] = 0;
	}
	if (!colon[1] || strlen(colon + 1) >= portlen)
		return kv_errf(err, EINVAL, "no port in '%s'", uri);
	strcpy(port, colon + 1);
	return 0;
}

static void tune(int fd)
{
	int one = 1, buf = 4 << 20;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

bool mig_uri_is_local(const char *uri)
{
	return !strncmp(uri, "unix:", 5);
}

static int unix_addr(const char *uri, struct sockaddr_un *sa, struct kv_err *err)
{
	const char *path = uri + 5;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path)
		return kv_errf(err, EINVAL, "no path in '%s' (use unix:PATH)", uri);
	if (strlen(path) >= sizeof(sa->sun_path))
		return kv_errf(err, ENAMETOOLONG, "'%s': a UNIX socket path has at most %zu "
			       "bytes", uri, sizeof(sa->sun_path) - 1);
	strcpy(sa->sun_path, path);
	return 0;
}

/*
 * A UNIX connect does not wait in the kernel the way TCP's does: with the
 * listener's backlog full (it serves one connection at a time) a
 * non-blocking connect says EAGAIN at once, and a blocking one would sleep
 * until it accepts, however long.  So: non-blocking, retried until
 * timeout_ms.
 */
static int unix_connect(const char *uri, int timeout_ms, struct kv_err *err)
{
	struct sockaddr_un sa;
	int fd, e, r = unix_addr(uri, &sa, err);
	struct timespec t0, t;

	if (r)
		return r;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return kv_errf_sys(err, errno, "socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		e = errno;
		close(fd);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (e != EAGAIN || (t.tv_sec - t0.tv_sec) * 1000 +
				   (t.tv_nsec - t0.tv_nsec) / 1000000 >= timeout_ms)
			break;
		poll(NULL, 0, 10);
	}
	if (e == EAGAIN)
		return kv_errf(err, ETIMEDOUT, "cannot reach %s: it accepts no connection (busy "
			       "with another?)", uri);
	return kv_errf_sys(err, e, "cannot reach %s", uri);
}

static int unix_listen(const char *uri, struct kv_err *err)
{
	struct sockaddr_un sa;
	struct stat st;
	mode_t old;
	int fd, r = unix_addr(uri, &sa, err);

	if (r)
		return r;
	/* a socket left by an earlier VMM is replaced; one somebody listens on,
	 * or a file, is not ours */
	if (lstat(sa.sun_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return kv_errf(err, EEXIST, "%s exists and is not a socket", sa.sun_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd >= 0) {
			r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
			close(fd);
			if (r)
				return kv_errf(err, EADDRINUSE, "another process listens on %s",
					       sa.sun_path);
		}
		if (unlink(sa.sun_path) < 0)
			return kv_errf_sys(err, errno, "removing the old socket %s", sa.sun_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kv_errf_sys(err, errno, "socket");
	/* 0600 from the start: no window for others.  umask is the process's:
	 * this runs when the VMM starts listening, before it has files to make */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 1) < 0) {
		r = kv_errf_sys(err, errno, "listening on %s", uri);
		close(fd);
		return r;
	}
	return fd;
}

int mig_check_local_peer(int fd, struct kv_err *err)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return kv_errf_sys(err, errno, "SO_PEERCRED");
	if (cr.uid != 0 && cr.uid != geteuid())
		return kv_errf(err, EPERM, "a process of uid %u (pid %d) connected: only this "
			       "user (uid %u) and root may hand a VM over", (unsigned)cr.uid,
			       (int)cr.pid, (unsigned)geteuid());
	return 0;
}

int mig_connect(const char *uri, int timeout_ms, struct kv_err *err)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int r, fd = -1, e = 0;

	if (mig_uri_is_local(uri))
		return unix_connect(uri, timeout_ms, err);
	r = parse_uri(uri, host, sizeof(host), port, sizeof(port), err);
	if (r)
		return r;
	r = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (r)
		return kv_errf(err, EHOSTUNREACH, "%s: %s", uri, gai_strerror(r));
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd p;
		socklen_t len = sizeof(e);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		e = errno;
		if (e == EINPROGRESS) {
			p = (struct pollfd){ .fd = fd, .events = POLLOUT };
			if (poll(&p, 1, timeout_ms) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0)
				break;
			if (!e)
				e = ETIMEDOUT;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return kv_errf_sys(err, e ? e : ECONNREFUSED, "cannot reach %s", uri);
	/* non-blocking stays: the stream polls with its peer timeout */
	tune(fd);
	return fd;
}

int mig_listen(const char *uri, struct kv_err *err)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
	int r, fd, one = 1;

	if (mig_uri_is_local(uri))
		return unix_listen(uri, err);
	r = parse_uri(uri, host, sizeof(host), port, sizeof(port), err);
	if (r)
		return r;
	r = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (r)
		return kv_errf(err, EINVAL, "%s: %s", uri, gai_strerror(r));
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = kv_errf_sys(err, errno, "socket");
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		r = kv_errf_sys(err, errno, "listening on %s", uri);
		close(fd);
		goto out;
	}
	r = fd;
out:
	freeaddrinfo(res);
	return r;
}
