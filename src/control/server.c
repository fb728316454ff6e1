/*
 * server.c - the control socket server: one thread, poll() over the
 * listening socket, the clients and an eventfd that wakes it for
 * destroy and for events queued by other threads.
 *
 * Locking: s->lock protects the client list, every client's output queue,
 * its negotiated/dead flags and all writes to client sockets, so that
 * ctl_server_emit() may run on any thread, including inside a handler on
 * the control thread (the lock is never held while a handler runs).  Only
 * the control thread adds or removes clients and reads from them, so it
 * may walk the list without the lock.
 *
 * Nothing a client does may block the thread: sockets are non-blocking,
 * output goes through a bounded per-client queue (a client that lets it
 * overflow is dropped), and a client's next request is not read until its
 * previous reply has left the queue, which bounds the input buffer too.
 */
#define _GNU_SOURCE
#include "control/control.h"
#include "control/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Most clients served at once; more are told so and closed. */
#define CTL_MAX_CLIENTS 256
/* Output a client may leave unread (beyond its socket buffer) before it is
 * disconnected. */
#define CTL_MAX_PENDING_OUT (256 * 1024)
/* How long destroy waits for queued replies/events to reach clients. */
#define CTL_DRAIN_MS 1000
#define READ_CHUNK 16384

struct conn {
	struct conn *next;
	int fd;
	bool negotiated;	/* under lock (written by the thread only) */
	bool dead;		/* under lock: close at the next reap */
	bool eof;		/* thread only: client shut down its side */
	struct ctl_stream in;	/* thread only */
	char *out;		/* under lock */
	size_t out_off, out_len, out_cap;
};

struct ctl_server {
	const struct ctl_cmd *cmds;
	size_t ncmds;
	void *opaque;
	char *path;
	dev_t sock_dev;
	ino_t sock_ino;
	int listen_fd;
	int wake_fd;
	pthread_t thread;
	pthread_mutex_t lock;
	struct conn *conns;
	size_t nconns;
	atomic_bool stop;
};

/* ---- output (lock held) ---- */

static void conn_kill(struct conn *c)
{
	if (!c->dead) {
		c->dead = true;
		/* Wakes the control thread's poll with POLLHUP; it closes. */
		shutdown(c->fd, SHUT_RDWR);
	}
}

static void conn_flush(struct conn *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_kill(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
}

static void conn_queue(struct conn *c, const char *text)
{
	size_t n = strlen(text);

	if (c->dead)
		return;
	if (c->out_off) {	/* compact */
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + n > CTL_MAX_PENDING_OUT) {
		conn_kill(c);	/* not reading: never let it block us */
		return;
	}
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *nb;

		while (cap < c->out_len + n)
			cap *= 2;
		nb = realloc(c->out, cap);
		if (!nb) {
			conn_kill(c);
			return;
		}
		c->out = nb;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, n);
	c->out_len += n;
	conn_flush(c);
}

static bool conn_out_pending(struct conn *c)
{
	return !c->dead && c->out_off < c->out_len;
}

static void wake(struct ctl_server *s)
{
	uint64_t one = 1;
	ssize_t n = write(s->wake_fd, &one, sizeof(one));

	(void)n;	/* EAGAIN: the counter is already non-zero */
}

void ctl_server_emit(struct ctl_server *s, const char *event, json_t *data)
{
	struct timespec ts;
	char *text;
	bool pending = false;

	if (!s) {
		json_decref(data);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	text = ctl_fmt_event(event, data, (long long)ts.tv_sec, ts.tv_nsec / 1000);
	json_decref(data);
	if (!text)
		return;
	pthread_mutex_lock(&s->lock);
	for (struct conn *c = s->conns; c; c = c->next) {
		if (!c->negotiated || c->dead)
			continue;
		conn_queue(c, text);
		pending |= conn_out_pending(c);
	}
	pthread_mutex_unlock(&s->lock);
	free(text);
	if (pending)
		wake(s);	/* the thread must poll for POLLOUT */
}

/* ---- clients (control thread) ---- */

static void conn_free(struct conn *c)
{
	close(c->fd);
	ctl_stream_fini(&c->in);
	free(c->out);
	free(c);
}

static void accept_clients(struct ctl_server *s, int *backoff_ms)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;
		char *greeting;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* EMFILE and friends: the listening socket stays
			 * readable, so back off instead of spinning. */
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				*backoff_ms = 100;
			return;
		}
		if (s->nconns >= CTL_MAX_CLIENTS) {
			static const char msg[] = "{\"error\": {\"class\": \"GenericError\", "
				"\"desc\": \"too many control clients\"}}\n";
			ssize_t n = send(fd, msg, sizeof(msg) - 1,
					 MSG_DONTWAIT | MSG_NOSIGNAL);
			(void)n;
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		greeting = ctl_fmt_greeting();
		if (!c || !greeting) {
			free(c);
			free(greeting);
			close(fd);
			continue;
		}
		c->fd = fd;
		ctl_stream_init(&c->in, CTL_MAX_REQUEST);
		pthread_mutex_lock(&s->lock);
		c->next = s->conns;
		s->conns = c;
		s->nconns++;
		conn_queue(c, greeting);
		pthread_mutex_unlock(&s->lock);
		free(greeting);
	}
}

/* Queue a reply (from the thread) and flush it at once. */
static void reply(struct ctl_server *s, struct conn *c, char *text)
{
	pthread_mutex_lock(&s->lock);
	if (text)
		conn_queue(c, text);
	else
		conn_kill(c);	/* out of memory: drop the client, not the VMM */
	pthread_mutex_unlock(&s->lock);
	free(text);
}

/*
 * Answer the complete requests buffered for c, one at a time, stopping while
 * a reply is still queued (the client is slow to read: wait for POLLOUT
 * rather than buffer without bound).
 */
static void conn_process(struct ctl_server *s, struct conn *c)
{
	struct ctl_table t = { s->cmds, s->ncmds, s->opaque };

	for (;;) {
		const char *text, *why;
		size_t len;
		bool busy, negotiated;
		enum ctl_tok tok;
		char *out;

		pthread_mutex_lock(&s->lock);
		busy = c->dead || conn_out_pending(c);
		negotiated = c->negotiated;
		pthread_mutex_unlock(&s->lock);
		if (busy || atomic_load(&s->stop))
			return;

		tok = ctl_stream_next(&c->in, &text, &len, &why);
		switch (tok) {
		case CTL_TOK_NONE:
			return;
		case CTL_TOK_TOOBIG:
			/* Let the error go out, then drop the client: there
			 * is no safe way to find the start of the next
			 * request.  Discard its input and stop reading. */
			reply(s, c, ctl_reply_toobig());
			ctl_stream_fini(&c->in);
			ctl_stream_init(&c->in, CTL_MAX_REQUEST);
			c->eof = true;
			return;
		case CTL_TOK_BAD:
			reply(s, c, ctl_reply_bad(why));
			break;
		case CTL_TOK_TEXT:
			/* The handler runs without the lock: it may emit. */
			out = ctl_dispatch(&t, &negotiated, text, len);
			pthread_mutex_lock(&s->lock);
			c->negotiated = negotiated;
			pthread_mutex_unlock(&s->lock);
			reply(s, c, out);
			break;
		}
	}
}

static void conn_read(struct ctl_server *s, struct conn *c)
{
	char buf[READ_CHUNK];
	ssize_t n;

	n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		pthread_mutex_lock(&s->lock);
		conn_kill(c);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (n == 0) {
		/* Half-close (e.g. `socat`, `nc -N`): answer what was sent,
		 * then close once the replies are out. */
		c->eof = true;
		return;
	}
	if (ctl_stream_feed(&c->in, buf, (size_t)n) < 0) {
		pthread_mutex_lock(&s->lock);
		conn_kill(c);
		pthread_mutex_unlock(&s->lock);
	}
}

/* Close clients that are dead, or finished (EOF) with nothing left to send. */
static void reap(struct ctl_server *s)
{
	struct conn **pp = &s->conns;

	pthread_mutex_lock(&s->lock);
	while (*pp) {
		struct conn *c = *pp;

		if (c->dead || (c->eof && !conn_out_pending(c))) {
			*pp = c->next;
			s->nconns--;
			conn_free(c);
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* On destroy: give queued output (a quit's reply, a SHUTDOWN event) a
 * bounded chance to reach the clients. */
static void drain(struct ctl_server *s)
{
	long long deadline = now_ms() + CTL_DRAIN_MS;

	for (;;) {
		struct pollfd pfd[CTL_MAX_CLIENTS];
		struct conn *who[CTL_MAX_CLIENTS];
		nfds_t n = 0;
		long long left;

		pthread_mutex_lock(&s->lock);
		for (struct conn *c = s->conns; c && n < CTL_MAX_CLIENTS; c = c->next) {
			conn_flush(c);
			if (conn_out_pending(c)) {
				pfd[n].fd = c->fd;
				pfd[n].events = POLLOUT;
				who[n++] = c;
			}
		}
		pthread_mutex_unlock(&s->lock);
		left = deadline - now_ms();
		if (n == 0 || left <= 0)
			return;
		if (poll(pfd, n, (int)left) < 0 && errno != EINTR)
			return;
		pthread_mutex_lock(&s->lock);
		for (nfds_t i = 0; i < n; i++)
			if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL))
				conn_kill(who[i]);
		pthread_mutex_unlock(&s->lock);
	}
}

static void *server_thread(void *arg)
{
	struct ctl_server *s = arg;
	struct pollfd *pfd = NULL;
	struct conn **who = NULL;
	size_t cap = 0;
	int backoff_ms = 0;

	while (!atomic_load(&s->stop)) {
		nfds_t n = 0;
		int timeout = -1;

		if (cap < s->nconns + 2) {
			size_t ncap = s->nconns + 2 + 16;
			struct pollfd *np = realloc(pfd, ncap * sizeof(*np));

			if (np)
				pfd = np;
			struct conn **nw = realloc(who, ncap * sizeof(*nw));
			if (nw)
				who = nw;
			if (!np || !nw) {	/* retry later; keep serving */
				struct timespec ts = { 0, 10 * 1000 * 1000 };
				nanosleep(&ts, NULL);
				continue;
			}
			cap = ncap;
		}
		pfd[n++] = (struct pollfd){ .fd = s->wake_fd, .events = POLLIN };
		if (backoff_ms == 0)
			pfd[n++] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
		else
			timeout = backoff_ms;
		backoff_ms = 0;

		pthread_mutex_lock(&s->lock);
		for (struct conn *c = s->conns; c; c = c->next) {
			short ev = 0;

			if (conn_out_pending(c))
				ev = POLLOUT;
			else if (!c->eof)
				ev = POLLIN;
			who[n] = c;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		pthread_mutex_unlock(&s->lock);

		if (poll(pfd, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;	/* cannot happen with valid fds; don't spin */
		}
		for (nfds_t i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (pfd[i].fd == s->wake_fd) {
				uint64_t v;
				ssize_t r = read(s->wake_fd, &v, sizeof(v));
				(void)r;
			} else if (pfd[i].fd == s->listen_fd) {
				accept_clients(s, &backoff_ms);
			} else {
				struct conn *c = who[i];

				if (pfd[i].revents & (POLLOUT | POLLHUP | POLLERR)) {
					pthread_mutex_lock(&s->lock);
					conn_flush(c);
					pthread_mutex_unlock(&s->lock);
				}
				if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
					if (!c->eof)
						conn_read(s, c);
				if (pfd[i].revents & POLLNVAL) {
					pthread_mutex_lock(&s->lock);
					conn_kill(c);
					pthread_mutex_unlock(&s->lock);
				}
				conn_process(s, c);
			}
		}
		reap(s);
	}
	free(pfd);
	free(who);
	drain(s);
	return NULL;
}

/* ---- create / destroy ---- */

/* If path exists: replace a stale socket, refuse a live one or a non-socket. */
static int clear_stale(const char *path, const struct sockaddr_un *sa,
		       struct kv_err *err)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return kv_errf_sys(err, errno, "control socket %s", path);
	}
	if (!S_ISSOCK(st.st_mode))
		return kv_errf(err, EEXIST,
			       "control socket %s: file exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return kv_errf_sys(err, errno, "socket");
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		return kv_errf(err, EADDRINUSE,
			       "another VMM is already listening on %s", path);
	}
	rc = errno;
	close(fd);
	if (rc != ECONNREFUSED)
		return kv_errf_sys(err, rc, "control socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return kv_errf_sys(err, errno, "removing stale control socket %s", path);
	return 0;
}

static int make_listener(struct ctl_server *s, const char *path, struct kv_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (!path || !*path)
		return kv_errf(err, EINVAL, "control socket path is empty");
	if (strlen(path) >= sizeof(sa.sun_path))
		return kv_errf(err, ENAMETOOLONG,
			       "control socket path too long (%zu bytes, at most %zu): %s",
			       strlen(path), sizeof(sa.sun_path) - 1, path);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	rc = clear_stale(path, &sa, err);
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return kv_errf_sys(err, errno, "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = errno;
		close(fd);
		if (rc == ENOENT || rc == ENOTDIR)
			return kv_errf(err, rc,
				       "control socket %s: directory does not exist", path);
		if (rc == EADDRINUSE)
			return kv_errf(err, rc,
				       "another VMM is already listening on %s", path);
		return kv_errf_sys(err, rc, "control socket %s: bind", path);
	}
	/* Owner only: the socket controls the VM. (There is a short window
	 * with the umask's mode between bind and chmod.) */
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
		rc = kv_errf_sys(err, errno, "control socket %s: chmod", path);
		unlink(path);
		close(fd);
		return rc;
	}
	if (listen(fd, 64) < 0) {
		rc = kv_errf_sys(err, errno, "control socket %s: listen", path);
		unlink(path);
		close(fd);
		return rc;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	s->listen_fd = fd;
	return 0;
}

int ctl_server_create(struct ctl_server **out, const char *path,
		      const struct ctl_cmd *cmds, size_t ncmds, void *opaque,
		      struct kv_err *err)
{
	struct ctl_server *s;
	int rc;

	*out = NULL;
	for (size_t i = 0; i < ncmds; i++) {
		if (!cmds[i].name || !cmds[i].fn ||
		    !strcmp(cmds[i].name, "qmp_capabilities") ||
		    !strcmp(cmds[i].name, "query-commands"))
			return kv_errf(err, EINVAL, "control command %zu (%s) is invalid",
				       i, cmds[i].name ? cmds[i].name : "NULL");
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return kv_errf(err, ENOMEM, "out of memory");
	s->cmds = cmds;
	s->ncmds = ncmds;
	s->opaque = opaque;
	s->listen_fd = -1;
	atomic_init(&s->stop, false);
	s->path = strdup(path ? path : "");
	if (!s->path) {
		rc = kv_errf(err, ENOMEM, "out of memory");
		goto fail_free;
	}
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->wake_fd < 0) {
		rc = kv_errf_sys(err, errno, "eventfd");
		goto fail_path;
	}
	rc = make_listener(s, path, err);
	if (rc < 0)
		goto fail_wake;
	rc = pthread_mutex_init(&s->lock, NULL);
	if (rc) {
		rc = kv_errf_sys(err, rc, "pthread_mutex_init");
		goto fail_listen;
	}
	rc = pthread_create(&s->thread, NULL, server_thread, s);
	if (rc) {
		rc = kv_errf_sys(err, rc, "control thread");
		goto fail_mutex;
	}
	*out = s;
	return 0;

fail_mutex:
	pthread_mutex_destroy(&s->lock);
fail_listen:
	close(s->listen_fd);
	unlink(s->path);
fail_wake:
	close(s->wake_fd);
fail_path:
	free(s->path);
fail_free:
	free(s);
	return rc;
}

void ctl_server_destroy(struct ctl_server *s)
{
	struct stat st;

	if (!s)
		return;
	atomic_store(&s->stop, true);
	wake(s);
	pthread_join(s->thread, NULL);

	/* No more clients may connect; only then drop them. */
	close(s->listen_fd);
	/* Unlink only our own socket, not one a newer VMM put there. */
	if (stat(s->path, &st) == 0 && st.st_dev == s->sock_dev &&
	    st.st_ino == s->sock_ino)
		unlink(s->path);
	while (s->conns) {
		struct conn *c = s->conns;

		s->conns = c->next;
		conn_free(c);
	}
	close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}
