#include "state/stream.h"
#include "state/channel.h"
#include "state/channel_tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define WBUF_SIZE (1u << 20)

/* Record the first error of a direction; every later call returns it. */
static int fail(struct stream_error *e, struct kv_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct stream_error *e, struct kv_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!e->code) {
		e->code = code < 0 ? code : -code;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
	return kv_errf(err, e->code, "%s", e->msg);
}

static int sticky(struct stream_error *e, struct kv_err *err)
{
	return e->code ? kv_errf(err, e->code, "%s", e->msg) : 0;
}

int stream_init_channel(struct stream *s, struct channel *ch, size_t max_record,
			struct kv_err *err)
{
	memset(s, 0, sizeof(*s));
	s->ch = ch;
	s->fd = channel_fd(ch);
	s->timeout_ms = -1;
	s->max_record = max_record;
	s->wcap = WBUF_SIZE;
	s->wbuf = malloc(s->wcap);
	s->rcap = max_record + STREAM_TRAILER_SIZE;
	s->rbuf = malloc(s->rcap);
	s->hash = XXH3_createState();
	s->rhash = XXH3_createState();
	if (!s->wbuf || !s->rbuf || !s->hash || !s->rhash) {
		stream_destroy(s);
		return kv_errf(err, ENOMEM, "allocating stream buffers");
	}
	return 0;
}

int stream_init(struct stream *s, int fd, size_t max_record, struct kv_err *err)
{
	struct channel *ch;
	int r = channel_fd_new(&ch, fd, err);

	if (r)
		return r;
	if ((r = stream_init_channel(s, ch, max_record, err))) {
		channel_close(ch);
		return r;
	}
	s->own_ch = true;
	return 0;
}

int stream_adopt_channel(struct stream *s, struct channel *ch, size_t max_record,
			 struct kv_err *err)
{
	int r = stream_init_channel(s, ch, max_record, err);

	if (r) {
		channel_close(ch);
		return r;
	}
	s->own_ch = true;
	return 0;
}

void stream_destroy(struct stream *s)
{
	free(s->wbuf);
	free(s->rbuf);
	if (s->hash)
		XXH3_freeState(s->hash);
	if (s->rhash)
		XXH3_freeState(s->rhash);
	if (s->own_ch)
		channel_close(s->ch);
	s->wbuf = s->rbuf = NULL;
	s->hash = s->rhash = NULL;
	s->ch = NULL;
	s->own_ch = false;
}

struct channel *stream_channel(const struct stream *s)
{
	return s->ch;
}

int stream_fd(const struct stream *s)
{
	return s->ch ? channel_fd(s->ch) : -1;
}

size_t stream_pending(const struct stream *s)
{
	return s->ch ? channel_pending(s->ch) : 0;
}

int stream_wait(struct stream *s, short events, int timeout_ms, struct kv_err *err)
{
	return channel_wait(s->ch, events, timeout_ms, err);
}

int stream_shutdown(struct stream *s, int how, struct kv_err *err)
{
	return channel_shutdown(s->ch, how, err);
}

void stream_set_rate(struct stream *s, uint64_t bytes_per_sec)
{
	s->rate_bps = bytes_per_sec;
	s->rate_bytes = 0;
	clock_gettime(CLOCK_MONOTONIC, &s->rate_t0);
}

static int wait_ch(struct stream *s, short ev, struct stream_error *e, struct kv_err *err)
{
	struct kv_err why;
	int r = channel_wait(s->ch, ev, s->timeout_ms, &why);

	if (r < 0)
		return fail(e, err, r, "%s", why.msg);
	if (r == 0)
		return fail(e, err, ETIMEDOUT, "peer silent for %d ms", s->timeout_ms);
	return 0;
}

/* Sleep as needed so bytes written since stream_set_rate() stay under the rate. */
static void pace(struct stream *s, size_t n)
{
	struct timespec now;
	double due, elapsed;

	if (!s->rate_bps)
		return;
	s->rate_bytes += n;
	clock_gettime(CLOCK_MONOTONIC, &now);
	elapsed = (double)(now.tv_sec - s->rate_t0.tv_sec) +
		  (double)(now.tv_nsec - s->rate_t0.tv_nsec) / 1e9;
	due = (double)s->rate_bytes / (double)s->rate_bps;
	if (due > elapsed) {
		double d = due - elapsed;
		struct timespec ts = { (time_t)d, (long)((d - (double)(time_t)d) * 1e9) };
		nanosleep(&ts, NULL);
	}
}

static int write_all(struct stream *s, const uint8_t *p, size_t n, struct kv_err *err)
{
	struct kv_err why;

	while (n) {
		/* Write in slices so pacing is smooth under a rate limit. */
		size_t chunk = s->rate_bps ? (n < 65536 ? n : 65536) : n;
		struct iovec v = { (void *)p, chunk };
		ssize_t w = channel_writev(s->ch, &v, 1, 0, &why);

		if (w == -EAGAIN) {
			int r = wait_ch(s, POLLOUT, &s->werr, err);
			if (r)
				return r;
			continue;
		}
		if (w < 0)
			return fail(&s->werr, err, (int)w, "%s", why.msg);
		if (w == 0)
			return fail(&s->werr, err, EPIPE, "write: peer closed");
		p += w;
		n -= (size_t)w;
		s->bytes_out += (uint64_t)w;
		pace(s, (size_t)w);
	}
	return 0;
}

/* What the channel accepted but holds (a TLS record the socket had no room
 * for) goes out before a flush returns: the peer may be waiting for it. */
static int flush_channel(struct stream *s, struct kv_err *err)
{
	struct kv_err why;

	for (;;) {
		int r = channel_flush(s->ch, &why);

		if (r == 0)
			return 0;
		if (r != -EAGAIN)
			return fail(&s->werr, err, r, "%s", why.msg);
		if ((r = wait_ch(s, POLLOUT, &s->werr, err)))
			return r;
	}
}

int stream_flush(struct stream *s, struct kv_err *err)
{
	int r = sticky(&s->werr, err);

	if (r)
		return r;
	/* An open record's bytes may go out early: its header is final. */
	r = write_all(s, s->wbuf, s->wlen, err);
	if (!r)
		s->wlen = 0;
	if (!r)
		r = flush_channel(s, err);
	return r;
}

int stream_flush_fds(struct stream *s, const int *fds, unsigned n, struct kv_err *err)
{
	int r = sticky(&s->werr, err);

	if (r)
		return r;
	if (!s->wlen)
		return kv_errf(err, EINVAL, "file descriptors need a record to go with");
	if ((r = channel_attach_fds(s->ch, fds, n, err)))
		return r;
	return stream_flush(s, err);
}

int stream_take_fd(struct stream *s)
{
	return channel_take_fd(s->ch);
}

/*
 * Copy into the write buffer, hashing the copy (not the source): the source
 * may be guest memory that a running vCPU changes under us, and the check
 * must describe exactly the bytes that go on the wire.
 */
static int wbuf_put(struct stream *s, const void *data, size_t n, bool hash,
		    struct kv_err *err)
{
	const uint8_t *p = data;

	while (n) {
		size_t room = s->wcap - s->wlen, c = n < room ? n : room;
		memcpy(s->wbuf + s->wlen, p, c);
		if (hash)
			XXH3_64bits_update(s->hash, s->wbuf + s->wlen, c);
		s->wlen += c;
		p += c;
		n -= c;
		if (s->wlen == s->wcap) {
			int r = stream_flush(s, err);
			if (r)
				return r;
		}
	}
	return 0;
}

int stream_begin(struct stream *s, uint16_t type, uint16_t flags, uint32_t len,
		 struct kv_err *err)
{
	uint8_t hdr[STREAM_HDR_SIZE];
	int r = sticky(&s->werr, err);

	if (r)
		return r;
	if (s->in_record)
		return fail(&s->werr, err, EINVAL, "record %u begun inside another", type);
	if (len > s->max_record)
		return fail(&s->werr, err, EMSGSIZE, "record of %u bytes exceeds the %zu limit", len,
			    s->max_record);
	st_put16(hdr, type);
	st_put16(hdr + 2, flags);
	st_put32(hdr + 4, len);
	XXH3_64bits_reset(s->hash);
	s->in_record = true;
	s->rec_len = len;
	return wbuf_put(s, hdr, sizeof(hdr), true, err);
}

int stream_append(struct stream *s, const void *data, size_t n, struct kv_err *err)
{
	int r = sticky(&s->werr, err);

	if (r)
		return r;
	if (!s->in_record || n > s->rec_len)
		return fail(&s->werr, err, EINVAL, "record payload longer than announced");
	s->rec_len -= (uint32_t)n;
	return wbuf_put(s, data, n, true, err);
}

int stream_end(struct stream *s, struct kv_err *err)
{
	uint8_t tr[STREAM_TRAILER_SIZE];
	int r = sticky(&s->werr, err);

	if (r)
		return r;
	if (!s->in_record || s->rec_len)
		return fail(&s->werr, err, EINVAL, "record payload shorter than announced");
	s->in_record = false;
	st_put64(tr, XXH3_64bits_digest(s->hash));
	return wbuf_put(s, tr, sizeof(tr), false, err);
}

int stream_write(struct stream *s, uint16_t type, uint16_t flags, const void *payload,
		 uint32_t len, struct kv_err *err)
{
	int r = stream_begin(s, type, flags, len, err);

	if (!r && len)
		r = stream_append(s, payload, len, err);
	if (!r)
		r = stream_end(s, err);
	return r;
}

/* Read exactly total bytes into iov (modified as it fills).  eof_ok: a
 * clean EOF before the first byte is reported as end of stream rather than
 * truncation.  cnt <= STREAM_MAX_IOV + 1, below every kernel's IOV_MAX. */
static int readv_exact(struct stream *s, struct iovec *iov, int cnt, size_t total,
		       bool eof_ok, struct kv_err *err)
{
	size_t got = 0;

	while (cnt > 0 && iov->iov_len == 0) {
		iov++;
		cnt--;
	}
	while (cnt > 0) {
		struct kv_err why;
		ssize_t r = channel_readv(s->ch, iov, cnt, &why);

		if (r == -EAGAIN) {
			int e = wait_ch(s, POLLIN, &s->rerr, err);
			if (e)
				return e;
			continue;
		}
		if (r < 0)
			return fail(&s->rerr, err, (int)r, "%s", why.msg);
		if (r == 0) {
			if (eof_ok && got == 0)
				return fail(&s->rerr, err, ECONNRESET, "end of stream");
			return fail(&s->rerr, err, EPIPE, "stream truncated: the peer closed the "
				    "connection after %zu of %zu bytes", got, total);
		}
		got += (size_t)r;
		s->bytes_in += (uint64_t)r;
		for (size_t left = (size_t)r; cnt > 0 && (left || iov->iov_len == 0);) {
			if (left >= iov->iov_len) {
				left -= iov->iov_len;
				iov++;
				cnt--;
			} else {
				iov->iov_base = (uint8_t *)iov->iov_base + left;
				iov->iov_len -= left;
				left = 0;
			}
		}
	}
	return 0;
}

static int read_exact(struct stream *s, uint8_t *p, size_t n, bool eof_ok,
		      struct kv_err *err)
{
	struct iovec iov = { p, n };

	return readv_exact(s, &iov, 1, n, eof_ok, err);
}

int stream_read_head(struct stream *s, struct stream_rec *rec, struct kv_err *err)
{
	uint8_t hdr[STREAM_HDR_SIZE];
	int r = sticky(&s->rerr, err);

	if (r)
		return r;
	if ((r = read_exact(s, hdr, sizeof(hdr), true, err))) {
		/* a TLS alert (7 bytes) and a close: say so, not "truncated" */
		if (s->bytes_in && s->bytes_in < sizeof(hdr) &&
		    tls_looks_like_record(hdr, (size_t)s->bytes_in)) {
			s->rerr.code = 0;
			return fail(&s->rerr, err, EPROTO, "the peer answered in TLS, but this "
				    "side speaks plaintext: give both sides the same TLS "
				    "credentials");
		}
		return r;
	}
	/* A TLS peer's first bytes are not a record: say what they are rather
	 * than "unknown flags" (the first record is always HELLO). */
	if (s->bytes_in == sizeof(hdr) && tls_looks_like_client_hello(hdr, sizeof(hdr)))
		return fail(&s->rerr, err, EPROTO, "the peer wants TLS (it sent a TLS "
			    "ClientHello), but this side speaks plaintext: give both sides "
			    "the same TLS credentials");
	if (s->bytes_in == sizeof(hdr) && tls_looks_like_record(hdr, sizeof(hdr)))
		return fail(&s->rerr, err, EPROTO, "the peer answered in TLS, but this side "
			    "speaks plaintext: give both sides the same TLS credentials");
	rec->type = st_get16(hdr);
	rec->flags = st_get16(hdr + 2);
	rec->len = st_get32(hdr + 4);
	rec->payload = NULL;
	if (rec->len > s->max_record)
		return fail(&s->rerr, err, EMSGSIZE, "record type %u claims %u bytes; the limit is %zu",
			    rec->type, rec->len, s->max_record);
	if (rec->flags & ~STREAM_KNOWN_FLAGS)
		return fail(&s->rerr, err, EBADMSG, "record type %u has unknown flags 0x%x", rec->type,
			    rec->flags);
	XXH3_64bits_reset(s->rhash);
	XXH3_64bits_update(s->rhash, hdr, sizeof(hdr));
	s->rtype = rec->type;
	s->rlen = rec->len;
	s->rremain = rec->len;
	return 0;
}

static int check_trailer(struct stream *s, const uint8_t *trailer, struct kv_err *err)
{
	uint64_t want = XXH3_64bits_digest(s->rhash);

	s->rremain = 0;
	if (want != st_get64(trailer))
		return fail(&s->rerr, err, EBADMSG, "record type %u (%u bytes): checksum mismatch",
			    s->rtype, s->rlen);
	return 0;
}

int stream_read_body(struct stream *s, struct stream_rec *rec, struct kv_err *err)
{
	uint32_t n = s->rremain;
	int r = sticky(&s->rerr, err);

	if (r)
		return r;
	/* payload and trailer in one read */
	if ((r = read_exact(s, s->rbuf, n + STREAM_TRAILER_SIZE, false, err)))
		return r;
	XXH3_64bits_update(s->rhash, s->rbuf, n);
	if ((r = check_trailer(s, s->rbuf + n, err)))
		return r;
	rec->payload = s->rbuf;
	return 0;
}

int stream_read_part(struct stream *s, void *p, size_t n, struct kv_err *err)
{
	int r = sticky(&s->rerr, err);

	if (r)
		return r;
	if (n > s->rremain)
		return fail(&s->rerr, err, EBADMSG, "record type %u (%u bytes) is shorter than "
			    "its contents", s->rtype, s->rlen);
	if ((r = read_exact(s, p, n, false, err)))
		return r;
	XXH3_64bits_update(s->rhash, p, n);
	s->rremain -= (uint32_t)n;
	return 0;
}

int stream_read_rest_v(struct stream *s, const struct iovec *iov, unsigned n,
		       struct kv_err *err)
{
	struct iovec v[STREAM_MAX_IOV + 1];
	uint8_t trailer[STREAM_TRAILER_SIZE];
	size_t total = 0;
	int r = sticky(&s->rerr, err);

	if (r)
		return r;
	if (n > STREAM_MAX_IOV)
		return fail(&s->rerr, err, EINVAL, "%u pieces in one read (at most %d)", n,
			    STREAM_MAX_IOV);
	for (unsigned i = 0; i < n; i++) {
		v[i] = iov[i];
		total += iov[i].iov_len;
	}
	if (total != s->rremain)
		return fail(&s->rerr, err, EBADMSG, "record type %u (%u bytes): %u bytes left, its "
			    "contents need %zu", s->rtype, s->rlen, s->rremain, total);
	v[n].iov_base = trailer;
	v[n].iov_len = sizeof(trailer);
	if ((r = readv_exact(s, v, (int)n + 1, total + sizeof(trailer), false, err)))
		return r;
	/* hashed where it landed: nothing else writes there before the check */
	for (unsigned i = 0; i < n; i++)
		XXH3_64bits_update(s->rhash, iov[i].iov_base, iov[i].iov_len);
	return check_trailer(s, trailer, err);
}

int stream_read(struct stream *s, struct stream_rec *rec, struct kv_err *err)
{
	int r = stream_read_head(s, rec, err);

	return r ? r : stream_read_body(s, rec, err);
}
