/*
 * channel.h - the byte channel under the migration stream.
 *
 * The stream (stream.h) owns framing, checksums, buffering, pacing,
 * timeouts and sticky errors; a channel only moves bytes.  One small ops
 * table, several backends, so that TLS, several connections and zero-copy
 * plug in without touching the framing (QEMU's QIOChannel, Cloud
 * Hypervisor's TlsStream):
 *
 *   channel_fd.c    a caller's fd (TCP socket, pipe); a file opened by path
 *   channel_mem.c   in-memory byte queues: a connected pair, or a buffer
 *                   read like a file (tests, and protocol code without sockets)
 *   channel_tls.c   TLS 1.3 over a caller's socket (GnuTLS; channel_tls.h)
 *
 * Several connections later are several channels, each under its own
 * stream (or one channel that stripes): the framing does not change.
 * Zero-copy later is a writev flag plus flush(): the fd backend will send
 * with MSG_ZEROCOPY and flush() waits for the kernel's completions, after
 * which the caller may reuse its buffers.
 *
 * The I/O calls never block on their own account (a backend over a
 * blocking fd blocks in the kernel, as read(2) would): they return
 * -EAGAIN, and the caller waits with channel_wait() under its own timeout.
 * Like a socket whose user-space buffer may hold a half-sent TLS record:
 * after a short count or -EAGAIN from writev, the next writev must start
 * with the bytes that were not accepted (same memory, unchanged).  The
 * stream always does.
 *
 * Threads: one thread may read while another writes (post-copy's return
 * path).  shutdown(SHUT_RD) may come from any thread, to end a read in
 * progress; SHUT_WR and SHUT_RDWR belong to the writing thread (TLS sends
 * its close_notify there).  A channel made on a caller's fd never closes
 * that fd: its owner does, after channel_close(), as with stream_init().
 */
#ifndef KVMOVE_STATE_CHANNEL_H
#define KVMOVE_STATE_CHANNEL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/err.h"

/* writev flags */
#define CHANNEL_WRITE_ZEROCOPY 0x1	/* reserved: buffers stay untouched until flush() */

/* capabilities (struct channel.caps) */
#define CHANNEL_CAP_ZEROCOPY 0x1	/* writev takes CHANNEL_WRITE_ZEROCOPY */
#define CHANNEL_CAP_SHUTDOWN 0x2	/* shutdown() reaches the peer (a socket, a pair) */
#define CHANNEL_CAP_FDS 0x4		/* carries file descriptors (a UNIX socket) */

/* At most this many fds go with one write, and wait unclaimed on a reader;
 * more from a peer are closed on arrival (a stranger cannot fill our fd
 * table). */
#define CHANNEL_MAX_FDS 16

struct channel;

struct channel_ops {
	const char *kind;	/* "fd", "file", "mem", "tls": for messages */
	/* >0 bytes read, 0 end of stream, -EAGAIN nothing now, else -errno
	 * with err filled ("read: Connection reset by peer"). */
	ssize_t (*readv)(struct channel *ch, const struct iovec *iov, int cnt,
			 struct kv_err *err);
	/* >0 bytes accepted (maybe fewer than offered), -EAGAIN none now,
	 * else -errno with err filled. */
	ssize_t (*writev)(struct channel *ch, const struct iovec *iov, int cnt,
			  unsigned flags, struct kv_err *err);
	/* Optional: push out what writev accepted but still holds (a TLS
	 * record held back by a full socket; later, zero-copy completions).
	 * 0 done, -EAGAIN wait for POLLOUT and call again, else -errno. */
	int (*flush)(struct channel *ch, struct kv_err *err);
	/* Wait until a read or write (POLLIN/POLLOUT in events) can make
	 * progress: >0 the poll(2)-style events that are ready (POLLHUP and
	 * POLLERR count: the next call reports them), 0 on timeout (-1 =
	 * forever), else -errno. */
	int (*wait)(struct channel *ch, short events, int timeout_ms, struct kv_err *err);
	/* Optional: bytes a read returns without touching the fd (decrypted
	 * TLS data, a memory queue).  poll(2) on the fd does not see them. */
	size_t (*pending)(const struct channel *ch);
	/* shutdown(2)'s how: SHUT_RD, SHUT_WR, SHUT_RDWR. */
	int (*shutdown)(struct channel *ch, int how, struct kv_err *err);
	void (*close)(struct channel *ch);	/* frees ch */
	/* Optional (CHANNEL_CAP_FDS): send dups of fds[0..n) with the first
	 * byte of the next writev that accepts any.  0 or -errno. */
	int (*attach_fds)(struct channel *ch, const int *fds, unsigned n, struct kv_err *err);
	/* Optional (CHANNEL_CAP_FDS): the oldest fd that arrived with the
	 * bytes read so far (the caller's to close), -ENOENT if none. */
	int (*take_fd)(struct channel *ch);
};

struct channel {
	const struct channel_ops *ops;
	int fd;			/* for poll(2) and setsockopt by callers; -1 if none */
	unsigned caps;		/* CHANNEL_CAP_* */
};

static inline ssize_t channel_readv(struct channel *ch, const struct iovec *iov, int cnt,
				    struct kv_err *err)
{
	return ch->ops->readv(ch, iov, cnt, err);
}

static inline ssize_t channel_writev(struct channel *ch, const struct iovec *iov, int cnt,
				     unsigned flags, struct kv_err *err)
{
	return ch->ops->writev(ch, iov, cnt, flags, err);
}

static inline int channel_flush(struct channel *ch, struct kv_err *err)
{
	return ch->ops->flush ? ch->ops->flush(ch, err) : 0;
}

static inline int channel_wait(struct channel *ch, short events, int timeout_ms,
			       struct kv_err *err)
{
	return ch->ops->wait(ch, events, timeout_ms, err);
}

static inline size_t channel_pending(const struct channel *ch)
{
	return ch->ops->pending ? ch->ops->pending(ch) : 0;
}

static inline int channel_shutdown(struct channel *ch, int how, struct kv_err *err)
{
	return ch->ops->shutdown(ch, how, err);
}

static inline int channel_attach_fds(struct channel *ch, const int *fds, unsigned n,
				     struct kv_err *err)
{
	if (!ch->ops->attach_fds || !(ch->caps & CHANNEL_CAP_FDS))
		return kv_errf(err, EOPNOTSUPP, "a %s channel cannot carry file descriptors",
			       ch->ops->kind);
	return ch->ops->attach_fds(ch, fds, n, err);
}

static inline int channel_take_fd(struct channel *ch)
{
	return ch->ops->take_fd && (ch->caps & CHANNEL_CAP_FDS) ? ch->ops->take_fd(ch) : -ENOENT;
}

static inline int channel_fd(const struct channel *ch)
{
	return ch->fd;
}

static inline void channel_close(struct channel *ch)
{
	if (ch)
		ch->ops->close(ch);
}

/* ---- channel_fd.c ---- */

/* A channel over a caller's fd (socket, pipe, file), in whatever blocking
 * mode the fd is; the fd stays the caller's.  On a UNIX socket it also
 * carries fds (CHANNEL_CAP_FDS, SCM_RIGHTS): every read takes what came
 * with the bytes and keeps it for channel_take_fd(). */
int channel_fd_new(struct channel **out, int fd, struct kv_err *err);

/* A channel over a file it opens itself (open(2)'s flags and mode; it adds
 * O_CLOEXEC) and closes on channel_close(). Messages name the path. */
int channel_file_open(struct channel **out, const char *path, int flags, mode_t mode,
		      struct kv_err *err);

/* ---- channel_mem.c ---- */

/*
 * Two connected in-memory ends, like socketpair(2): what one writes the
 * other reads.  cap bounds the bytes queued per direction (0 = no bound;
 * writev returns -EAGAIN when full).  Closing or shutting down one end
 * gives the other end of stream (reads) or EPIPE (writes).  Safe across
 * threads; channel_fd() is -1 (use channel_wait()).
 */
int channel_mem_pair(struct channel **a, struct channel **b, size_t cap, struct kv_err *err);

/* A channel that reads a copy of data[0..n), then end of stream, and keeps
 * what is written to it (channel_mem_written): a file in memory. */
int channel_mem_open(struct channel **out, const void *data, size_t n, struct kv_err *err);

/* The bytes this end wrote that its peer has not read (for a
 * channel_mem_open() channel: everything written).  Valid until the next
 * call on the channel. */
const uint8_t *channel_mem_written(struct channel *ch, size_t *n);

#endif
