/*
 * client.c - a small synchronous QMP client for the CLI verbs and tests.
 *
 * Each call has a deadline; replies are matched to requests by "id" and
 * events that arrive meanwhile are queued for ctl_client_next_event().
 */
#define _GNU_SOURCE
#include "control/control.h"
#include "control/protocol.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Largest reply we accept from a VMM. */
#define CLIENT_MAX_REPLY (16 * 1024 * 1024)

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

struct ctl_client {
	int fd;
	int pidfd;		/* the VMM process, or -1 if unknown */
	int timeout_ms;
	bool closed;		/* the server closed the connection */
	char *path;
	struct ctl_stream in;
	json_t *events;		/* queue (array) */
	json_int_t next_id;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int left_ms(long long deadline)
{
	long long left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	return left < 0 ? 0 : (left > 1000000 ? 1000000 : (int)left);
}

/* Wait for fd to be ready for events; -ETIMEDOUT when the deadline passes. */
static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int ms = left_ms(deadline), rc;

		rc = poll(&p, 1, ms);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc == 0 && ms == 0)
			return -ETIMEDOUT;
		if (rc == 0 && deadline >= 0 && left_ms(deadline) == 0)
			return -ETIMEDOUT;
	}
}

/* Read the next JSON object from the server. */
static int read_value(struct ctl_client *c, long long deadline, json_t **out,
		      struct kv_err *err)
{
	*out = NULL;
	for (;;) {
		const char *text, *why;
		size_t len;
		json_error_t je;
		char buf[16384];
		ssize_t n;
		int rc;

		switch (ctl_stream_next(&c->in, &text, &len, &why)) {
		case CTL_TOK_TEXT:
			*out = json_loadb(text, len, 0, &je);
			if (!*out)
				return kv_errf(err, EPROTO,
					       "%s: malformed reply from the VMM: %s",
					       c->path, je.text);
			return 0;
		case CTL_TOK_BAD:
			return kv_errf(err, EPROTO, "%s: malformed reply from the VMM: %s",
				       c->path, why);
		case CTL_TOK_TOOBIG:
			return kv_errf(err, EPROTO, "%s: reply from the VMM too large",
				       c->path);
		case CTL_TOK_NONE:
			break;
		}
		if (c->closed)
			return kv_errf(err, ECONNRESET,
				       "%s: connection closed by the VMM", c->path);
		rc = wait_fd(c->fd, POLLIN, deadline);
		if (rc == -ETIMEDOUT)
			return kv_errf(err, ETIMEDOUT,
				       "%s: timed out waiting for the VMM", c->path);
		if (rc < 0)
			return kv_errf_sys(err, rc, "%s: poll", c->path);
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			if (errno == ECONNRESET) {
				c->closed = true;
				continue;
			}
			return kv_errf_sys(err, errno, "%s: recv", c->path);
		}
		if (n == 0) {
			c->closed = true;
			continue;
		}
		rc = ctl_stream_feed(&c->in, buf, (size_t)n);
		if (rc < 0)
			return kv_errf(err, EPROTO, "%s: reply from the VMM too large",
				       c->path);
	}
}

static int send_all(struct ctl_client *c, const char *buf, size_t len,
		    long long deadline, struct kv_err *err)
{
	while (len) {
		ssize_t n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		int rc;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				if (errno == EPIPE || errno == ECONNRESET)
					return kv_errf(err, ECONNRESET,
						       "%s: connection closed by the VMM",
						       c->path);
				return kv_errf_sys(err, errno, "%s: send", c->path);
			}
			rc = wait_fd(c->fd, POLLOUT, deadline);
			if (rc == -ETIMEDOUT)
				return kv_errf(err, ETIMEDOUT,
					       "%s: timed out sending to the VMM", c->path);
			if (rc < 0)
				return kv_errf_sys(err, rc, "%s: poll", c->path);
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static bool is_event(json_t *v)
{
	return json_is_string(json_object_get(v, "event"));
}

int ctl_client_execute(struct ctl_client *c, const char *cmd, json_t *args,
		       json_t **ret, char **err_class, struct kv_err *err)
{
	long long deadline = deadline_of(c->timeout_ms);
	json_int_t id = ++c->next_id;
	json_t *req, *v = NULL;
	char *text;
	int rc;

	if (ret)
		*ret = NULL;
	if (err_class)
		*err_class = NULL;
	req = json_pack("{s:s,s:I}", "execute", cmd, "id", id);
	if (!req)
		return kv_errf(err, EINVAL, "cannot encode command %s", cmd);
	if (args && json_object_set(req, "arguments", args)) {
		json_decref(req);
		return kv_errf(err, EINVAL, "cannot encode arguments of %s", cmd);
	}
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		return kv_errf(err, ENOMEM, "out of memory");
	rc = send_all(c, text, strlen(text), deadline, err);
	if (rc == 0)
		rc = send_all(c, "\n", 1, deadline, err);
	free(text);
	if (rc < 0)
		return rc;

	for (;;) {
		json_t *rid;

		rc = read_value(c, deadline, &v, err);
		if (rc < 0)
			return kv_err_prefix(err, rc, "%s", cmd);
		if (is_event(v)) {
			json_array_append_new(c->events, v);
			continue;
		}
		rid = json_object_get(v, "id");
		if (!json_is_integer(rid) || json_integer_value(rid) != id) {
			json_decref(v);	/* not ours (a stale reply) */
			continue;
		}
		break;
	}
	if (json_object_get(v, "return")) {
		if (ret)
			*ret = json_incref(json_object_get(v, "return"));
		json_decref(v);
		return 0;
	}
	{
		json_t *e = json_object_get(v, "error");
		const char *cls = json_string_value(json_object_get(e, "class"));
		const char *desc = json_string_value(json_object_get(e, "desc"));

		if (err_class)
			*err_class = strdup(cls ? cls : "GenericError");
		rc = kv_errf(err, EREMOTEIO, "%s", desc ? desc : "unknown error");
	}
	json_decref(v);
	return rc;
}

int ctl_client_next_event(struct ctl_client *c, int timeout_ms, json_t **event,
			  struct kv_err *err)
{
	long long deadline = deadline_of(timeout_ms);

	*event = NULL;
	for (;;) {
		json_t *v;
		int rc;

		if (json_array_size(c->events)) {
			*event = json_incref(json_array_get(c->events, 0));
			json_array_remove(c->events, 0);
			return 0;
		}
		rc = read_value(c, deadline, &v, err);
		if (rc < 0)
			return rc;
		if (is_event(v)) {
			*event = v;
			return 0;
		}
		json_decref(v);
	}
}

static int connect_path(struct ctl_client *c, const char *path, long long deadline,
			struct kv_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path))
		return kv_errf(err, ENAMETOOLONG, "%s: control socket path too long",
			       path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return kv_errf_sys(err, errno, "socket");
	for (;;) {
		if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return 0;
		switch (errno) {
		case EINTR:
			continue;
		case EAGAIN:	/* backlog full: the VMM is busy, retry */
			if (left_ms(deadline) == 0)
				return kv_errf(err, ETIMEDOUT,
					       "%s: timed out connecting to the VMM", path);
			usleep(10 * 1000);
			continue;
		case ENOENT:
			return kv_errf(err, ENOENT,
				       "%s: no such file (is the VMM running?)", path);
		case ECONNREFUSED:
			return kv_errf(err, ECONNREFUSED,
				       "%s: connection refused (stale socket? the VMM is not running)",
				       path);
		default:
			return kv_errf_sys(err, errno, "%s: connect", path);
		}
	}
}

int ctl_client_connect(struct ctl_client **out, const char *path, int timeout_ms,
		       struct kv_err *err)
{
	long long deadline = deadline_of(timeout_ms);
	struct ctl_client *c;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	json_t *greeting = NULL;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return kv_errf(err, ENOMEM, "out of memory");
	c->fd = -1;
	c->pidfd = -1;
	c->timeout_ms = timeout_ms;
	ctl_stream_init(&c->in, CLIENT_MAX_REPLY);
	c->events = json_array();
	c->path = strdup(path);
	if (!c->events || !c->path) {
		rc = kv_errf(err, ENOMEM, "out of memory");
		goto fail;
	}
	rc = connect_path(c, path, deadline, err);
	if (rc < 0)
		goto fail;
	/* The VMM's pid, so that wait_closed can wait for the process. */
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 &&
	    cred.pid > 0 && cred.pid != getpid())
		c->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);

	rc = read_value(c, deadline, &greeting, err);
	if (rc < 0) {
		kv_err_prefix(err, rc, "waiting for the greeting");
		goto fail;
	}
	if (!json_is_object(json_object_get(greeting, "QMP"))) {
		json_decref(greeting);
		rc = kv_errf(err, EPROTO, "%s: not a QMP greeting", path);
		goto fail;
	}
	json_decref(greeting);
	rc = ctl_client_execute(c, "qmp_capabilities", NULL, NULL, NULL, err);
	if (rc < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	ctl_client_close(c);
	return rc;
}

int ctl_client_wait_closed(struct ctl_client *c, int timeout_ms, struct kv_err *err)
{
	long long deadline = deadline_of(timeout_ms);
	int rc;

	while (!c->closed || ctl_stream_pending(&c->in)) {
		json_t *v;

		rc = read_value(c, deadline, &v, err);
		if (rc == -ECONNRESET)
			break;
		if (rc == -ETIMEDOUT)
			return kv_errf(err, ETIMEDOUT,
				       "%s: the VMM did not close its control socket",
				       c->path);
		if (rc < 0)
			return rc;
		if (is_event(v))
			json_array_append_new(c->events, v);
		else
			json_decref(v);
	}
	if (c->pidfd >= 0) {
		rc = wait_fd(c->pidfd, POLLIN, deadline);
		if (rc == -ETIMEDOUT)
			return kv_errf(err, ETIMEDOUT,
				       "%s: the VMM closed its socket but did not exit",
				       c->path);
	}
	return 0;
}

void ctl_client_close(struct ctl_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->pidfd >= 0)
		close(c->pidfd);
	ctl_stream_fini(&c->in);
	json_decref(c->events);
	free(c->path);
	free(c);
}
