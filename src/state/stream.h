/*
 * stream.h - the migration stream's record framing, over any fd (a TCP
 * socket for live migration, a file for quick migration).
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
 */
#ifndef KVMOVE_STATE_STREAM_H
#define KVMOVE_STATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/uio.h>

#include "common/err.h"

#define STREAM_HDR_SIZE 8
#define STREAM_TRAILER_SIZE 8
#define STREAM_F_MANDATORY 0x0001	/* a reader that does not know the type must fail */
#define STREAM_KNOWN_FLAGS STREAM_F_MANDATORY

struct stream {
	int fd;
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

int stream_init(struct stream *s, int fd, size_t max_record, struct kv_err *err);
void stream_destroy(struct stream *s);	/* does not close fd */

/* Pace writes to at most bytes_per_sec (0 = no limit). */
void stream_set_rate(struct stream *s, uint64_t bytes_per_sec);

int stream_write(struct stream *s, uint16_t type, uint16_t flags, const void *payload,
		 uint32_t len, struct kv_err *err);
int stream_begin(struct stream *s, uint16_t type, uint16_t flags, uint32_t len,
		 struct kv_err *err);
int stream_append(struct stream *s, const void *data, size_t n, struct kv_err *err);
int stream_end(struct stream *s, struct kv_err *err);
int stream_flush(struct stream *s, struct kv_err *err);

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
