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
	/* a UNIX socket's fds: to go with the next write, and come with reads */
	int out_fds[CHANNEL_MAX_FDS], in_fds[CHANNEL_MAX_FDS];
	unsigned nout, nin;
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

/* Room for the most fds one message carries, aligned for cmsghdr. */
union fd_cmsg {
	char buf[CMSG_SPACE(sizeof(int) * CHANNEL_MAX_FDS)];
	struct cmsghdr align;
};

/* A UNIX socket's read: the bytes, and the fds that came with them.  Fds
 * nobody asked for wait in in_fds (closed with the channel); beyond
 * CHANNEL_MAX_FDS they are closed at once. */
static ssize_t unix_readv(struct channel *ch, const struct iovec *iov, int cnt,
			  struct kv_err *err)
{
	struct fd_channel *f = (struct fd_channel *)ch;
	union fd_cmsg ctl;
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt,
			     .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	ssize_t r;

	do
		r = recvmsg(ch->fd, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return kv_errf(err, errno, "read: %s", strerror(errno));
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t n;
		int fds[CHANNEL_MAX_FDS];

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (n > CHANNEL_MAX_FDS)
			n = CHANNEL_MAX_FDS;
		memcpy(fds, CMSG_DATA(c), n * sizeof(int));
		for (size_t i = 0; i < n; i++) {
			if (f->nin < CHANNEL_MAX_FDS)
				f->in_fds[f->nin++] = fds[i];
			else
				close(fds[i]);
		}
	}
	/* more fds than our buffer holds: the kernel closed the rest */
	if (mh.msg_flags & MSG_CTRUNC)
		return kv_errf(err, EPROTO, "the peer sent more than %d file descriptors at once",
			       CHANNEL_MAX_FDS);
	return r;
}

static ssize_t unix_writev(struct channel *ch, const struct iovec *iov, int cnt, unsigned flags,
			   struct kv_err *err)
{
	struct fd_channel *f = (struct fd_channel *)ch;
	union fd_cmsg ctl;
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt };
	ssize_t r;

	if (flags & CHANNEL_WRITE_ZEROCOPY)
		return kv_errf(err, EOPNOTSUPP, "zero-copy writes are not supported yet");
	if (f->nout) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * f->nout);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * f->nout);
		memcpy(CMSG_DATA(c), f->out_fds, sizeof(int) * f->nout);
	}
	do
		r = sendmsg(ch->fd, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r > 0 && f->nout) {
		for (unsigned i = 0; i < f->nout; i++)
			close(f->out_fds[i]);	/* the peer has its own now */
		f->nout = 0;
	}
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return -EAGAIN;
	return kv_errf(err, errno, "write: %s", strerror(errno));
}

static int unix_attach_fds(struct channel *ch, const int *fds, unsigned n, struct kv_err *err)
{
	struct fd_channel *f = (struct fd_channel *)ch;

	if (n > CHANNEL_MAX_FDS - f->nout)
		return kv_errf(err, E2BIG, "more than %d file descriptors in one message",
			       CHANNEL_MAX_FDS);
	for (unsigned i = 0; i < n; i++) {
		int d = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);

		if (d < 0)
			return kv_errf_sys(err, errno, "dup of fd %d", fds[i]);
		f->out_fds[f->nout++] = d;
	}
	return 0;
}

static int unix_take_fd(struct channel *ch)
{
	struct fd_channel *f = (struct fd_channel *)ch;
	int fd;

	if (!f->nin)
		return -ENOENT;
	fd = f->in_fds[0];
	memmove(f->in_fds, f->in_fds + 1, --f->nin * sizeof(int));
	return fd;
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

	for (unsigned i = 0; i < f->nin; i++)
		close(f->in_fds[i]);
	for (unsigned i = 0; i < f->nout; i++)
		close(f->out_fds[i]);

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

/* A UNIX socket: the same, and fds travel with the bytes. */
static const struct channel_ops unix_ops = {
	.kind = "unix",
	.readv = unix_readv,
	.writev = unix_writev,
	.wait = fd_wait,
	.shutdown = fd_shutdown,
	.close = fd_close,
	.attach_fds = unix_attach_fds,
	.take_fd = unix_take_fd,
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
	if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
		int dom = 0;
		socklen_t len = sizeof(dom);

		f->ch.caps = CHANNEL_CAP_SHUTDOWN;
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 && dom == AF_UNIX) {
			f->ch.ops = &unix_ops;
			f->ch.caps |= CHANNEL_CAP_FDS;
		}
	}
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
