/*
 * channel_fd.c - channels over a plain fd: a caller's socket or pipe
 * ("fd"), or a file opened by path ("file").  The stream over an fd
 * channel does exactly the system calls it did before channels existed.
 */
#define _GNU_SOURCE
#include "state/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fd_channel {
	struct channel ch;
	bool owns_fd;
	char name[PATH_MAX + 8];	/* "" for a caller's fd: messages as before */
};

static const char *prefix(const struct fd_channel *f)
{
	return f->name[0] ? f->name : "";
}

static const char *sep(const struct fd_channel *f)
{
	return f->name[0] ? ": " : "";
}

static ssize_t fd_readv(struct channel *ch, const struct iovec *iov, int cnt, struct kv_err *err)
{
	struct fd_channel *f = (struct fd_channel *)ch;
	ssize_t r;

	do
		r = readv(ch->fd, iov, cnt);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return -EAGAIN;
	return kv_errf(err, errno, "%s%sread: %s", prefix(f), sep(f), strerror(errno));
}

static ssize_t fd_writev(struct channel *ch, const struct iovec *iov, int cnt, unsigned flags,
			 struct kv_err *err)
{
	struct fd_channel *f = (struct fd_channel *)ch;
	ssize_t r;

	if (flags & CHANNEL_WRITE_ZEROCOPY)
		return kv_errf(err, EOPNOTSUPP, "%s%szero-copy writes are not supported yet",
			       prefix(f), sep(f));
	do
		r = writev(ch->fd, iov, cnt);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return -EAGAIN;
	return kv_errf(err, errno, "%s%swrite: %s", prefix(f), sep(f), strerror(errno));
}

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int fd_wait(struct channel *ch, short events, int timeout_ms, struct kv_err *err)
{
	struct pollfd p = { .fd = ch->fd, .events = events };
	int64_t deadline = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;
	int r;

	for (;;) {
		int left = timeout_ms < 0 ? -1 : (int)(deadline - now_ms());

		if (timeout_ms >= 0 && left < 0)
			left = 0;
		r = poll(&p, 1, left);
		if (r >= 0)
			return r ? (p.revents ? p.revents : events) : 0;
		if (errno != EINTR)
			return kv_errf(err, errno, "poll: %s", strerror(errno));
	}
}

static int fd_shutdown(struct channel *ch, int how, struct kv_err *err)
{
	struct fd_channel *f = (struct fd_channel *)ch;

	if (shutdown(ch->fd, how) < 0)
		return kv_errf(err, errno, "%s%sshutdown: %s", prefix(f), sep(f), strerror(errno));
	return 0;
}

static void fd_close(struct channel *ch)
{
	struct fd_channel *f = (struct fd_channel *)ch;

	if (f->owns_fd)
		close(ch->fd);
	free(f);
}

static const struct channel_ops fd_ops = {
	.kind = "fd",
	.readv = fd_readv,
	.writev = fd_writev,
	.wait = fd_wait,
	.shutdown = fd_shutdown,
	.close = fd_close,
};

/* A regular file is always ready: poll(2) would say so too, but a file
 * channel says it without a system call per wait. */
static int file_wait(struct channel *ch, short events, int timeout_ms, struct kv_err *err)
{
	return events;
}

static int file_shutdown(struct channel *ch, int how, struct kv_err *err)
{
	return 0;	/* nobody on the other side to tell */
}

static const struct channel_ops file_ops = {
	.kind = "file",
	.readv = fd_readv,
	.writev = fd_writev,
	.wait = file_wait,
	.shutdown = file_shutdown,
	.close = fd_close,
};

int channel_fd_new(struct channel **out, int fd, struct kv_err *err)
{
	struct fd_channel *f;
	struct stat st;

	if (fd < 0)
		return kv_errf(err, EBADF, "channel on fd %d", fd);
	f = calloc(1, sizeof(*f));
	if (!f)
		return kv_errf(err, ENOMEM, "allocating a channel");
	f->ch.ops = &fd_ops;
	f->ch.fd = fd;
	if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
		f->ch.caps = CHANNEL_CAP_SHUTDOWN;
	*out = &f->ch;
	return 0;
}

int channel_file_open(struct channel **out, const char *path, int flags, mode_t mode,
		      struct kv_err *err)
{
	struct fd_channel *f;
	struct stat st;
	int fd;

	if (strlen(path) >= PATH_MAX)
		return kv_errf(err, ENAMETOOLONG, "%.64s...: path too long", path);
	fd = open(path, flags | O_CLOEXEC, mode);
	if (fd < 0)
		return kv_errf_sys(err, errno, "%s", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return kv_errf(err, EINVAL, "%s: not a regular file", path);
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		close(fd);
		return kv_errf(err, ENOMEM, "allocating a channel");
	}
	f->ch.ops = &file_ops;
	f->ch.fd = fd;
	f->owns_fd = true;
	snprintf(f->name, sizeof(f->name), "%s", path);
	*out = &f->ch;
	return 0;
}
