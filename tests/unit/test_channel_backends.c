/*
 * The channels without TLS: a caller's fd (socketpair, pipe), a file
 * opened by path, in-memory pairs and buffers; what each promises about
 * -EAGAIN, waits, end of stream, shutdown and who closes the fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "channel_harness.h"

static void test_fd_channel(void **state)
{
	struct channel *a, *b;
	struct kv_err err;
	int sv[2];
	uint8_t buf[16];
	struct iovec v[2] = { { "hello ", 6 }, { "world", 5 } };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(channel_fd_new(&a, sv[0], &err), 0);
	assert_int_equal(channel_fd_new(&b, sv[1], &err), 0);
	assert_int_equal(channel_fd(a), sv[0]);
	assert_true(a->caps & CHANNEL_CAP_SHUTDOWN);
	/* nothing yet: a read would block, a short wait times out */
	v[0].iov_base = buf;
	v[0].iov_len = sizeof(buf);
	assert_int_equal(channel_readv(b, v, 1, &err), -EAGAIN);
	assert_int_equal(channel_wait(b, POLLIN, 10, &err), 0);
	v[0] = (struct iovec){ "hello ", 6 };
	assert_int_equal(channel_writev(a, v, 2, 0, &err), 11);
	assert_int_equal(channel_writev(a, v, 1, CHANNEL_WRITE_ZEROCOPY, &err), -EOPNOTSUPP);
	assert_true(channel_wait(b, POLLIN, 1000, &err) & POLLIN);
	assert_int_equal(channel_pending(b), 0);	/* an fd holds nothing of its own */
	v[0] = (struct iovec){ buf, 6 };
	v[1] = (struct iovec){ buf + 6, 10 };
	assert_int_equal(channel_readv(b, v, 2, &err), 11);
	assert_memory_equal(buf, "hello world", 11);
	/* the peer's SHUT_WR is our end of stream */
	assert_int_equal(channel_shutdown(a, SHUT_WR, &err), 0);
	assert_int_equal(channel_readv(b, v, 1, &err), 0);
	channel_close(a);
	channel_close(b);
	/* the fds were the caller's: still open */
	assert_true(fcntl(sv[0], F_GETFD) >= 0 && fcntl(sv[1], F_GETFD) >= 0);
	close(sv[0]);
	close(sv[1]);
	/* a pipe: writing to a closed reader is EPIPE, with the old message */
	assert_int_equal(pipe(sv), 0);
	close(sv[0]);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(channel_fd_new(&a, sv[1], &err), 0);
	v[0] = (struct iovec){ "x", 1 };
	assert_int_equal(channel_writev(a, v, 1, 0, &err), -EPIPE);
	assert_string_equal(err.msg, "write: Broken pipe");
	channel_close(a);
	close(sv[1]);
	assert_int_equal(channel_fd_new(&a, -1, &err), -EBADF);
}

static void test_file_channel(void **state)
{
	char dir[64], path[128];
	struct channel *ch;
	struct kv_err err;
	uint8_t buf[8];
	struct iovec v = { "12345678", 8 };
	int fd;

	h_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(channel_file_open(&ch, path, O_WRONLY | O_CREAT | O_EXCL, 0600, &err), 0);
	fd = channel_fd(ch);
	assert_int_equal(channel_wait(ch, POLLOUT, -1, &err), POLLOUT);
	assert_int_equal(channel_writev(ch, &v, 1, 0, &err), 8);
	assert_int_equal(channel_shutdown(ch, SHUT_WR, &err), 0);	/* nobody to tell */
	channel_close(ch);
	assert_true(fcntl(fd, F_GETFD) < 0);	/* it owned its fd */
	assert_int_equal(channel_file_open(&ch, path, O_RDONLY, 0, &err), 0);
	v = (struct iovec){ buf, sizeof(buf) };
	assert_int_equal(channel_readv(ch, &v, 1, &err), 8);
	assert_memory_equal(buf, "12345678", 8);
	assert_int_equal(channel_readv(ch, &v, 1, &err), 0);
	channel_close(ch);
	/* errors name the file */
	assert_int_equal(channel_file_open(&ch, path, O_WRONLY | O_CREAT | O_EXCL, 0600, &err),
			 -EEXIST);
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(channel_file_open(&ch, dir, O_RDONLY, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a regular file"));
	h_rm_rf(dir);
}

struct mem_writer {
	struct channel *ch;
	size_t n;
	int rc;
	struct kv_err fe;
};

static void *mem_writer_main(void *arg)
{
	struct mem_writer *w = arg;
	uint8_t *buf = malloc(w->n);
	struct iovec v = { buf, w->n };

	h_fill(buf, w->n, 7);
	w->rc = write_fully(w->ch, &v, 1, &w->fe);
	channel_shutdown(w->ch, SHUT_WR, NULL);
	free(buf);
	return NULL;
}

static void test_mem_channel(void **state)
{
	struct channel *a, *b;
	struct kv_err err;
	uint8_t buf[32], *big, *want;
	struct iovec v = { "0123456789abcde", 15 };
	const uint8_t *w;
	struct mem_writer mw;
	pthread_t t;
	size_t n;

	assert_int_equal(channel_mem_pair(&a, &b, 10, &err), 0);
	assert_int_equal(channel_fd(a), -1);
	/* bounded: 10 bytes fit, then -EAGAIN until the reader takes some */
	assert_int_equal(channel_writev(a, &v, 1, 0, &err), 10);
	assert_int_equal(channel_writev(a, &v, 1, 0, &err), -EAGAIN);
	assert_int_equal(channel_wait(a, POLLOUT, 20, &err), 0);
	assert_int_equal(channel_wait(b, POLLIN | POLLOUT, 0, &err), POLLIN | POLLOUT);
	assert_int_equal(channel_pending(b), 10);
	w = channel_mem_written(a, &n);
	assert_int_equal(n, 10);
	assert_memory_equal(w, "0123456789", 10);
	v = (struct iovec){ buf, 4 };
	assert_int_equal(channel_readv(b, &v, 1, &err), 4);
	assert_int_equal(channel_wait(a, POLLOUT, 0, &err), POLLOUT);
	v = (struct iovec){ "abcde", 5 };
	assert_int_equal(channel_writev(a, &v, 1, 0, &err), 4);
	/* SHUT_WR: the reader drains, then end of stream; the writer gets EPIPE */
	assert_int_equal(channel_shutdown(a, SHUT_WR, &err), 0);
	v = (struct iovec){ buf + 4, sizeof(buf) - 4 };
	assert_int_equal(channel_readv(b, &v, 1, &err), 10);
	assert_memory_equal(buf, "0123456789abcd", 14);
	assert_int_equal(channel_readv(b, &v, 1, &err), 0);
	assert_int_equal(channel_writev(a, &v, 1, 0, &err), -EPIPE);
	/* the other way still works until b goes; then a reads end of stream */
	v = (struct iovec){ "zz", 2 };
	assert_int_equal(channel_writev(b, &v, 1, 0, &err), 2);
	channel_close(b);
	v = (struct iovec){ buf, sizeof(buf) };
	assert_int_equal(channel_readv(a, &v, 1, &err), 2);
	assert_int_equal(channel_readv(a, &v, 1, &err), 0);
	channel_close(a);

	/* a writer thread through a small window: waits wake up both ways */
	assert_int_equal(channel_mem_pair(&a, &b, 4096, &err), 0);
	mw = (struct mem_writer){ .ch = a, .n = 1u << 20 };
	big = malloc(mw.n);
	want = malloc(mw.n);
	h_fill(want, mw.n, 7);
	pthread_create(&t, NULL, mem_writer_main, &mw);
	if (read_fully(b, big, mw.n, &err))
		fail_msg("%s", err.msg);
	assert_memory_equal(big, want, mw.n);
	v = (struct iovec){ buf, 1 };
	assert_true(channel_wait(b, POLLIN, 5000, &err) > 0);
	assert_int_equal(channel_readv(b, &v, 1, &err), 0);
	pthread_join(t, NULL);
	if (mw.rc)
		fail_msg("writer: %s", mw.fe.msg);
	/* SHUT_RD from another thread ends a wait for data */
	assert_int_equal(channel_shutdown(b, SHUT_RD, &err), 0);
	assert_int_equal(channel_wait(b, POLLIN, -1, &err), POLLIN);
	channel_close(a);
	channel_close(b);
	free(big);
	free(want);

	/* a file in memory: reads its bytes, then end; keeps what is written */
	assert_int_equal(channel_mem_open(&a, "abc", 3, &err), 0);
	v = (struct iovec){ buf, sizeof(buf) };
	assert_int_equal(channel_readv(a, &v, 1, &err), 3);
	assert_int_equal(channel_readv(a, &v, 1, &err), 0);
	v = (struct iovec){ "xyz", 3 };
	assert_int_equal(channel_writev(a, &v, 1, 0, &err), 3);
	w = channel_mem_written(a, &n);
	assert_int_equal(n, 3);
	assert_memory_equal(w, "xyz", 3);
	channel_close(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_channel),
		cmocka_unit_test(test_file_channel),
		cmocka_unit_test(test_mem_channel),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
