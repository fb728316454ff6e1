/*
 * stream.h - the migration stream's record framing, over a channel
 * (channel.h: a TCP socket, TLS, a file for quick migration, memory).
 *
 * A record on the wire (all little-endian; docs/FORMAT.md):
 *   u16 type | u16 flags | u32 length | length bytes of payload | u64 check
 * where check = XXH3-64 (seed 0) over the 8 header bytes and the payload.
 * A reader refuses a length above its limit before reading the payload, a
 * bad checksum, and truncation; errors are sticky: after the first one,
 * every call returns it, so callers check at boundaries.
 *
 * Writes are buffered; records may be built in pieces (begin / append / end)
 * so RAM pages go from guest memory into the buffer with one copy.
 *
 * The stream owns framing, checksums, buffering, pacing, timeouts and
 * sticky errors; it does its I/O only through its channel.  Reads are not
 * buffered ahead (a record is read straight where it belongs), so the
 * only bytes a poll(2) on the fd cannot see are the channel's own
 * (decrypted TLS data): stream_pending(), stream_wait().
 */
#ifndef KVMOVE_STATE_STREAM_H
#define KVMOVE_STATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/uio.h>

#include "common/err.h"

struct channel;

#define STREAM_HDR_SIZE 8
#define STREAM_TRAILER_SIZE 8
#define STREAM_F_MANDATORY 0x0001	/* a reader that does not know the type must fail */
#define STREAM_KNOWN_FLAGS STREAM_F_MANDATORY

struct stream {
	struct channel *ch;	/* all I/O goes through it */
	bool own_ch;		/* made by stream_init(): closed by stream_destroy() */
	int fd;			/* the channel's fd (-1 if none); prefer stream_fd() */
	int timeout_ms;		/* per blocking wait; -1 = forever */
	size_t max_record;	/* largest payload accepted or produced */

	/* write side */
	uint8_t *wbuf;
	size_t wlen, wcap;
	bool in_record;
	size_t rec_hdr_pos;	/* where the open record's header sits in wbuf */
	uint32_t rec_len;
	void *hash;		/* XXH3_state_t of the open record being written */
	uint64_t rate_bps;	/* 0 = unlimited */
	struct timespec rate_t0;
	uint64_t rate_bytes;

	/* read side */
	void *rhash;		/* XXH3_state_t for checking records read */
	uint16_t rtype;		/* the record being read, and its bytes not read yet */
	uint32_t rlen, rremain;
	uint8_t *rbuf;
	size_t rcap;

	uint64_t bytes_out, bytes_in;
	/* Sticky errors, one per direction: after a bad record is read we can
	 * still tell the peer why we stop. */
	struct stream_error {
		int code;	/* negative errno, 0 = fine */
		char msg[KV_ERR_MAX];
	} werr, rerr;
};

struct stream_rec {
	uint16_t type, flags;
	uint32_t len;
	const uint8_t *payload;	/* valid until the next stream_read() */
};

/* A stream over fd (an fd channel the stream makes and frees). */
int stream_init(struct stream *s, int fd, size_t max_record, struct kv_err *err);
/* A stream over the caller's channel: it stays the caller's (close it
 * after stream_destroy()). */
int stream_init_channel(struct stream *s, struct channel *ch, size_t max_record,
			struct kv_err *err);
/* The same, and the stream owns ch from now on (even on failure): it
 * closes it in stream_destroy(). */
int stream_adopt_channel(struct stream *s, struct channel *ch, size_t max_record,
			 struct kv_err *err);
void stream_destroy(struct stream *s);	/* does not close fd, nor a caller's channel */

/*
 * The channel and its fd, for what only a socket can do (setsockopt,
 * shutdown(SHUT_RDWR) from another thread to wake blocked I/O).  Do not
 * poll(2) the fd to ask "is a record coming?": TLS may hold decrypted
 * bytes the fd will never announce; use stream_wait() (or poll only when
 * stream_pending() is 0).  stream_fd() is -1 for a channel without one.
 */
struct channel *stream_channel(const struct stream *s);
int stream_fd(const struct stream *s);
size_t stream_pending(const struct stream *s);
/* Wait until a read (POLLIN) or write (POLLOUT) can make progress: >0
 * ready, 0 after timeout_ms (-1 = forever), <0 error.  Leaves the sticky
 * errors alone. */
int stream_wait(struct stream *s, short events, int timeout_ms, struct kv_err *err);
/* channel_shutdown(): SHUT_RD may come from any thread (it ends a read in
 * progress); SHUT_WR/SHUT_RDWR from the writing thread, after
 * stream_flush() if what is buffered should go out. */
int stream_shutdown(struct stream *s, int how, struct kv_err *err);

/* Pace writes to at most bytes_per_sec (0 = no limit). */
void stream_set_rate(struct stream *s, uint64_t bytes_per_sec);

int stream_write(struct stream *s, uint16_t type, uint16_t flags, const void *payload,
		 uint32_t len, struct kv_err *err);
int stream_begin(struct stream *s, uint16_t type, uint16_t flags, uint32_t len,
		 struct kv_err *err);
int stream_append(struct stream *s, const void *data, size_t n, struct kv_err *err);
int stream_end(struct stream *s, struct kv_err *err);
int stream_flush(struct stream *s, struct kv_err *err);
/* Over a channel that carries fds (a UNIX socket): flush, sending dups of
 * fds[0..n) with the first byte of what was buffered.  Write the record the
 * fds belong to and call this: the peer has them once it has read that
 * record's first byte (stream_take_fd, in the order given).  The record
 * must fit in the write buffer (-EINVAL if nothing is left buffered). */
int stream_flush_fds(struct stream *s, const int *fds, unsigned n, struct kv_err *err);
/* The oldest fd received with what was read so far (the caller's), or
 * -ENOENT. */
int stream_take_fd(struct stream *s);

/* Read the next record. -ECONNRESET with "end of stream" on a clean EOF at
 * a record boundary. */
int stream_read(struct stream *s, struct stream_rec *rec, struct kv_err *err);

/*
 * The same in pieces, so that a payload can land where it belongs (RAM
 * pages straight into guest memory): stream_read_head() reads and checks
 * the header; then either stream_read_body() (the whole payload into the
 * stream's buffer, rec->payload) or any stream_read_part() calls followed by
 * one stream_read_rest_v() for exactly the bytes left.  Both check the
 * checksum at the end; what was read into caller memory before that is
 * untrusted until they return 0.
 */
#define STREAM_MAX_IOV 512
int stream_read_head(struct stream *s, struct stream_rec *rec, struct kv_err *err);
int stream_read_body(struct stream *s, struct stream_rec *rec, struct kv_err *err);
int stream_read_part(struct stream *s, void *p, size_t n, struct kv_err *err);
int stream_read_rest_v(struct stream *s, const struct iovec *iov, unsigned n,
		       struct kv_err *err);

/* Little-endian helpers for payload building/parsing. */
static inline void st_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void st_put32(uint8_t *p, uint32_t v) { st_put16(p, (uint16_t)v); st_put16(p + 2, (uint16_t)(v >> 16)); }
static inline void st_put64(uint8_t *p, uint64_t v) { st_put32(p, (uint32_t)v); st_put32(p + 4, (uint32_t)(v >> 32)); }
static inline uint16_t st_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t st_get32(const uint8_t *p) { return st_get16(p) | (uint32_t)st_get16(p + 2) << 16; }
static inline uint64_t st_get64(const uint8_t *p) { return st_get32(p) | (uint64_t)st_get32(p + 4) << 32; }

#endif
