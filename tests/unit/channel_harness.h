/*
 * channel_harness.h - what the channel tests share (test_channel.c,
 * test_channel_x509.c): two ends of a socketpair in two threads, each
 * doing a TLS handshake and then some work, and a scratch directory.
 * Included by one test file each, hence static functions.
 */
#ifndef KVMOVE_TESTS_CHANNEL_HARNESS_H
#define KVMOVE_TESTS_CHANNEL_HARNESS_H

#include <dirent.h>
#include <poll.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "state/channel.h"
#include "state/channel_tls.h"
#include "state/stream.h"

#define BIG_RECORD (2u << 20)	/* the migration's record limit */

struct side {
	/* in */
	bool server;
	struct tls_creds *creds;
	const char *peer_name;
	int timeout_ms;
	int (*work)(struct side *sd, struct channel *ch);	/* after the handshake */
	void *arg;
	/* out */
	int fd;
	int rc;			/* the handshake's */
	int work_rc;
	struct kv_err err;	/* the handshake's message */
	struct kv_err work_err;
	char peer[256], dn[1024], desc[192];
	double ms;		/* how long the handshake took */
};

static inline double h_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline void *side_main(void *arg)
{
	struct side *sd = arg;
	struct channel *ch = NULL;
	double t0 = h_now_ms();

	sd->err.msg[0] = sd->work_err.msg[0] = '\0';
	sd->rc = sd->server ? channel_tls_server(&ch, sd->fd, sd->creds, sd->timeout_ms, &sd->err)
			    : channel_tls_client(&ch, sd->fd, sd->creds, sd->peer_name,
						 sd->timeout_ms, &sd->err);
	sd->ms = h_now_ms() - t0;
	if (sd->rc) {
		/* what a real endpoint does next: close, so the peer learns */
		shutdown(sd->fd, SHUT_RDWR);
		return NULL;
	}
	snprintf(sd->peer, sizeof(sd->peer), "%s", channel_tls_peer(ch));
	snprintf(sd->dn, sizeof(sd->dn), "%s", channel_tls_peer_dn(ch));
	snprintf(sd->desc, sizeof(sd->desc), "%s", channel_tls_desc(ch));
	if (sd->work)
		sd->work_rc = sd->work(sd, ch);
	channel_close(ch);
	shutdown(sd->fd, SHUT_RDWR);
	return NULL;
}

/* Run a and b (either may be NULL: then fn_b runs instead) on the two ends
 * of a socketpair, each in its own thread, and wait for both. */
static inline void run_two(struct side *a, struct side *b, void *(*fn_b)(void *), void *arg_b)
{
	int sv[2];
	pthread_t ta, tb;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	a->fd = sv[0];
	if (b)
		b->fd = sv[1];
	else
		*(int *)arg_b = sv[1];	/* fn_b's argument starts with its fd */
	pthread_create(&ta, NULL, side_main, a);
	pthread_create(&tb, NULL, b ? side_main : fn_b, b ? (void *)b : arg_b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	close(sv[0]);
	close(sv[1]);
}

/* ---- a scratch directory ---- */

static inline void h_mkdtemp(char *dir, size_t n)
{
	snprintf(dir, n, "/tmp/kvmove-chan-XXXXXX");
	if (!mkdtemp(dir))
		abort();
}

static inline void h_rm_rf(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char sub[4096];

	if (lstat(path, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	d = opendir(path);
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) < (int)sizeof(sub))
			h_rm_rf(sub);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

static inline void h_write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	fchmod(fd, mode);
	close(fd);
}

/* ---- a deterministic payload both sides can regenerate ---- */

static inline void h_fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

/*
 * Worker threads must not use cmocka's asserts (they jump to the main
 * thread's stack): they note the first failure in *fe and return -1, and
 * the main thread asserts on that.
 */
#define T_CHECK(cond, ...)							\
	do {									\
		if (!(cond)) {							\
			kv_errf(fe, EINVAL, __VA_ARGS__);			\
			return -1;						\
		}								\
	} while (0)

/* Write all of iov through ch, waiting as the channel contract says. */
static inline int write_fully(struct channel *ch, struct iovec *iov, int n, struct kv_err *fe)
{
	struct kv_err err;

	while (n > 0) {
		ssize_t w = channel_writev(ch, iov, n, 0, &err);
		if (w == -EAGAIN) {
			T_CHECK(channel_wait(ch, POLLOUT, 5000, &err) > 0, "wait to write");
			continue;
		}
		T_CHECK(w > 0, "writev: %s", err.msg);
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	for (int r; (r = channel_flush(ch, &err)) != 0;) {
		T_CHECK(r == -EAGAIN, "flush: %s", err.msg);
		T_CHECK(channel_wait(ch, POLLOUT, 5000, &err) > 0, "wait to flush");
	}
	return 0;
}

static inline int read_fully(struct channel *ch, uint8_t *p, size_t n, struct kv_err *fe)
{
	struct kv_err err;

	while (n) {
		struct iovec v = { p, n };
		ssize_t r = channel_readv(ch, &v, 1, &err);
		if (r == -EAGAIN) {
			T_CHECK(channel_wait(ch, POLLIN, 5000, &err) > 0, "wait to read");
			continue;
		}
		T_CHECK(r > 0, "readv: %zd %s", r, r ? err.msg : "end of stream");
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

#endif
