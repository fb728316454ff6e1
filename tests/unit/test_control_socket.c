/*
 * test_control_socket.c - the control server and client over a real UNIX
 * socket in a temporary directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "control/control.h"
#include "control/protocol.h"

/* ------------------------------------------------------------------ */
/* server and client over a socket                                     */
/* ------------------------------------------------------------------ */

struct fixture {
	char dir[64];
	char path[128];
	struct ctl_server *srv;
	int calls;
	atomic_int in_slow;	/* the slow handler has started */
};

static int h_nothing(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	return 0;
}

static int h_emit(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct fixture *f = opaque;

	ctl_server_emit(f->srv, "STOP", NULL);
	return 0;
}

static int h_count(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct fixture *f = opaque;

	f->calls++;
	*ret = json_pack("{s:i}", "calls", f->calls);
	return 0;
}

static int h_slow(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct fixture *f = opaque;
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	atomic_store(&f->in_slow, 1);

	nanosleep(&ts, NULL);
	*ret = json_pack("{s:s}", "slept", "yes");
	return 0;
}

static const struct ctl_cmd sock_cmds[] = {
	{ "emit-stop", h_emit, "emit a STOP event", NULL },
	{ "count", h_count, "count calls", NULL },
	{ "slow", h_slow, "take 200 ms", NULL },
};

static int setup_server(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct kv_err err;

	strcpy(f->dir, "/tmp/kvmove-ctl-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
	if (ctl_server_create(&f->srv, f->path, sock_cmds, 3, f, &err) < 0) {
		print_error("ctl_server_create: %s\n", err.msg);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown_server(void **state)
{
	struct fixture *f = *state;

	ctl_server_destroy(f->srv);
	/* destroy removes the socket */
	assert_int_equal(access(f->path, F_OK), -1);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Read one line (up to cap-1 bytes) with a 5 s timeout; returns its length,
 * 0 on EOF. */
static size_t raw_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		assert_int_equal(poll(&p, 1, 5000), 1);
		r = read(fd, buf + n, 1);
		if (r <= 0)
			break;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return n;
}

static void raw_send(int fd, const void *buf, size_t n)
{
	assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void raw_sends(int fd, const char *s)
{
	raw_send(fd, s, strlen(s));
}

static void test_socket_basic(void **state)
{
	struct fixture *f = *state;
	struct ctl_client *c;
	struct kv_err err;
	json_t *ret, *ev;
	char *cls;
	struct stat st;

	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(ctl_client_connect(&c, f->path, 5000, &err), 0);
	assert_int_equal(ctl_client_execute(c, "count", NULL, &ret, NULL, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(ret, "calls")), 1);
	json_decref(ret);

	assert_int_equal(ctl_client_execute(c, "nope", NULL, &ret, &cls, &err), -EREMOTEIO);
	assert_null(ret);
	assert_string_equal(cls, "CommandNotFound");
	assert_string_equal(err.msg, "The command nope has not been found");
	free(cls);

	/* an event emitted inside a handler arrives before the reply and is
	 * queued by the client */
	assert_int_equal(ctl_client_execute(c, "emit-stop", NULL, NULL, NULL, &err), 0);
	assert_int_equal(ctl_client_next_event(c, 5000, &ev, &err), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "event")), "STOP");
	assert_true(json_is_integer(json_object_get(json_object_get(ev, "timestamp"),
						    "seconds")));
	json_decref(ev);

	/* an event from another thread (here: this one) */
	ctl_server_emit(f->srv, "RESUME", json_pack("{s:i}", "x", 1));
	assert_int_equal(ctl_client_next_event(c, 5000, &ev, &err), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "event")), "RESUME");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "data"), "x")), 1);
	json_decref(ev);

	assert_int_equal(ctl_client_next_event(c, 50, &ev, &err), -ETIMEDOUT);
	ctl_client_close(c);
}

static void test_socket_events_only_negotiated(void **state)
{
	struct fixture *f = *state;
	int fd = raw_connect(f->path);
	char buf[1024];

	assert_true(raw_line(fd, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"QMP\""));
	ctl_server_emit(f->srv, "STOP", NULL);
	raw_sends(fd, "{\"execute\": \"count\", \"id\": 1}\n");
	raw_line(fd, buf, sizeof(buf));
	/* the reply, not the event */
	assert_non_null(strstr(buf, "CommandNotFound"));
	raw_sends(fd, "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"count\",\"id\":2}");
	raw_line(fd, buf, sizeof(buf));
	assert_string_equal(buf, "{\"return\": {}}\n");
	raw_line(fd, buf, sizeof(buf));
	assert_string_equal(buf, "{\"return\": {\"calls\": 1}, \"id\": 2}\n");
	ctl_server_emit(f->srv, "STOP", NULL);
	raw_line(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "{\"event\": \"STOP\""));
	close(fd);
}

static void test_socket_garbage(void **state)
{
	struct fixture *f = *state;
	struct ctl_client *c;
	struct kv_err err;
	json_t *ret;
	char buf[4096];
	int fd;

	/* garbage of all kinds on one connection, which stays usable */
	fd = raw_connect(f->path);
	raw_line(fd, buf, sizeof(buf));
	raw_sends(fd, "{\"execute\":\"qmp_capabilities\"}\n");
	raw_line(fd, buf, sizeof(buf));
	raw_sends(fd, "garbage\n");
	raw_line(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "JSON parse error"));
	raw_sends(fd, "{\"a\":\"\xff\xfe\"}\n");
	raw_line(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "JSON parse error"));
	raw_send(fd, "{\"a\":\"\0\"}\n", 10);
	raw_line(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "JSON parse error"));
	raw_sends(fd, "[1]\n");
	raw_line(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "must be a JSON object"));
	{
		char deep[2 * 1000 + 1];

		memset(deep, '[', 1000);
		memset(deep + 1000, ']', 1000);
		deep[2000] = '\n';
		raw_send(fd, deep, sizeof(deep));
		raw_line(fd, buf, sizeof(buf));
		assert_non_null(strstr(buf, "nesting too deep"));
	}
	raw_sends(fd, "{\"execute\":\"count\",\"id\":9}\n");
	raw_line(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"return\": {\"calls\": 1}, \"id\": 9"));

	/* half a request, then disconnect */
	raw_sends(fd, "{\"execute\":\"cou");
	close(fd);

	/* oversized: an error, then the connection is closed */
	fd = raw_connect(f->path);
	raw_line(fd, buf, sizeof(buf));
	{
		size_t n = CTL_MAX_REQUEST + 4096;
		char *big = malloc(n);

		memset(big, ' ', n);
		static const char head[] = "{\"execute\": \"count\", \"arguments\": {\"x\": \"";

		memcpy(big, head, sizeof(head) - 1);
		memset(big + sizeof(head) - 1, 'x', n - (sizeof(head) - 1));
		/* the server may close before reading everything */
		(void)send(fd, big, n, MSG_NOSIGNAL);
		free(big);
	}
	raw_line(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "too large"));
	assert_int_equal(raw_line(fd, buf, sizeof(buf)), 0);	/* EOF */
	close(fd);

	/* a second client is served normally */
	assert_int_equal(ctl_client_connect(&c, f->path, 5000, &err), 0);
	assert_int_equal(ctl_client_execute(c, "count", NULL, &ret, NULL, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(ret, "calls")), 2);
	json_decref(ret);
	ctl_client_close(c);
}

static void test_socket_many_clients(void **state)
{
	struct fixture *f = *state;
	struct ctl_client *c[100];
	struct kv_err err;
	json_t *ret, *ev;

	for (int i = 0; i < 100; i++)
		assert_int_equal(ctl_client_connect(&c[i], f->path, 5000, &err), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(ctl_client_execute(c[i], "count", NULL, &ret, NULL, &err), 0);
		json_decref(ret);
	}
	assert_int_equal(f->calls, 100);
	ctl_server_emit(f->srv, "SHUTDOWN", json_pack("{s:b}", "guest", 1));
	for (int i = 0; i < 100; i++) {
		assert_int_equal(ctl_client_next_event(c[i], 5000, &ev, &err), 0);
		json_decref(ev);
	}
	for (int i = 0; i < 100; i++)
		ctl_client_close(c[i]);
}

/* A client that pipelines requests and never reads must not block the
 * server for others, and is dropped once it has too much unread output. */
static void test_socket_slow_reader(void **state)
{
	struct fixture *f = *state;
	struct ctl_client *c;
	struct kv_err err;
	json_t *ret;
	char line[] = "{\"execute\":\"query-commands\"}\n";
	int fd = raw_connect(f->path);
	int i;

	raw_sends(fd, "{\"execute\":\"qmp_capabilities\"}\n");
	for (i = 0; i < 20000; i++) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (poll(&p, 1, 100) != 1 || (p.revents & (POLLERR | POLLHUP)))
			break;
		if (send(fd, line, sizeof(line) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			break;
	}
	/* flood events too */
	for (i = 0; i < 20000; i++)
		ctl_server_emit(f->srv, "STOP", NULL);

	assert_int_equal(ctl_client_connect(&c, f->path, 5000, &err), 0);
	assert_int_equal(ctl_client_execute(c, "count", NULL, &ret, NULL, &err), 0);
	json_decref(ret);
	ctl_client_close(c);
	close(fd);
}

struct slow_result {
	struct fixture *f;
	int connect_rc, exec_rc, closed_rc;
	char slept[8];
};

/* Runs on its own thread: no cmocka asserts here, the main thread checks. */
static void *call_slow(void *arg)
{
	struct slow_result *r = arg;
	struct ctl_client *c;
	struct kv_err err;
	json_t *ret = NULL;

	r->connect_rc = ctl_client_connect(&c, r->f->path, 5000, &err);
	if (r->connect_rc < 0)
		return NULL;
	r->exec_rc = ctl_client_execute(c, "slow", NULL, &ret, NULL, &err);
	if (ret && json_is_string(json_object_get(ret, "slept")))
		snprintf(r->slept, sizeof(r->slept), "%s",
			 json_string_value(json_object_get(ret, "slept")));
	json_decref(ret);
	r->closed_rc = ctl_client_wait_closed(c, 5000, &err);
	ctl_client_close(c);
	return NULL;
}

/* destroy while a handler runs (like quit): its reply still goes out. */
static void test_socket_destroy_during_reply(void **state)
{
	char dir[] = "/tmp/kvmove-ctl-XXXXXX";
	struct fixture f = { 0 };
	struct slow_result r = { .f = &f, .connect_rc = 1, .exec_rc = 1, .closed_rc = 1 };
	struct kv_err err;
	pthread_t th;

	assert_non_null(mkdtemp(dir));
	snprintf(f.path, sizeof(f.path), "%s/s", dir);
	assert_int_equal(ctl_server_create(&f.srv, f.path, sock_cmds, 3, &f, &err), 0);
	assert_int_equal(pthread_create(&th, NULL, call_slow, &r), 0);
	for (int i = 0; i < 5000 && !atomic_load(&f.in_slow); i++) {
		struct timespec ts = { 0, 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	assert_true(atomic_load(&f.in_slow));
	ctl_server_destroy(f.srv);
	pthread_join(th, NULL);
	assert_int_equal(r.connect_rc, 0);
	assert_int_equal(r.exec_rc, 0);
	assert_string_equal(r.slept, "yes");
	assert_int_equal(r.closed_rc, 0);
	assert_int_equal(access(f.path, F_OK), -1);
	rmdir(dir);
}

static void test_socket_paths(void **state)
{
	char dir[] = "/tmp/kvmove-ctl-XXXXXX";
	char path[128], bad[160];
	struct ctl_server *s1, *s2;
	struct kv_err err;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s", dir);

	/* missing directory: clear error, nothing created */
	snprintf(bad, sizeof(bad), "%s/nodir/s", dir);
	assert_int_equal(ctl_server_create(&s1, bad, sock_cmds, 3, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "directory does not exist"));

	/* a stale socket (nobody listening) is replaced */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(ctl_server_create(&s1, path, sock_cmds, 3, NULL, &err), 0);

	/* a live one is not */
	assert_int_equal(ctl_server_create(&s2, path, sock_cmds, 3, NULL, &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "another VMM is already listening on"));
	ctl_server_destroy(s1);
	assert_int_equal(access(path, F_OK), -1);

	/* a regular file is never removed */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(ctl_server_create(&s1, path, sock_cmds, 3, NULL, &err), -EEXIST);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);

	/* reserved names refused */
	{
		static const struct ctl_cmd bad_cmds[] = { { "query-commands", h_nothing, "", NULL } };

		assert_int_equal(ctl_server_create(&s1, path, bad_cmds, 1, NULL, &err), -EINVAL);
	}

	/* client errors */
	{
		struct ctl_client *c;

		assert_int_equal(ctl_client_connect(&c, path, 1000, &err), -ENOENT);
		assert_non_null(strstr(err.msg, "no such file"));
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(ctl_client_connect(&c, path, 1000, &err), -ECONNREFUSED);
		assert_non_null(strstr(err.msg, "connection refused"));
		/* listening but never answering: timeout */
		assert_int_equal(listen(fd, 1), 0);
		assert_int_equal(ctl_client_connect(&c, path, 200, &err), -ETIMEDOUT);
		close(fd);
		unlink(path);
	}
	ctl_server_destroy(NULL);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_basic, setup_server, teardown_server),
		cmocka_unit_test_setup_teardown(test_socket_events_only_negotiated,
						setup_server, teardown_server),
		cmocka_unit_test_setup_teardown(test_socket_garbage, setup_server, teardown_server),
		cmocka_unit_test_setup_teardown(test_socket_many_clients, setup_server,
						teardown_server),
		cmocka_unit_test_setup_teardown(test_socket_slow_reader, setup_server,
						teardown_server),
		cmocka_unit_test(test_socket_destroy_during_reply),
		cmocka_unit_test(test_socket_paths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
