/* Stream framing: round trips, every truncation, every flipped bit, size
 * limits, unknown flags, sticky errors; each over an fd (memfd, pipe) and
 * again over an in-memory channel, so the framing's verdicts do not depend
 * on what is under it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "state/channel.h"
#include "state/stream.h"

#define MAXREC 4096

/* What the stream runs over: an fd (stream_init) or a memory channel
 * (stream_init_channel).  Each test runs once with each. */
struct medium {
	bool mem;
};
static struct medium over_fd = { false }, over_mem = { true };

/* One end the stream runs on, and what to release after it. */
struct end {
	int fd;
	struct channel *ch;
};

static int mem_fd(const uint8_t *b, size_t n)
{
	int fd = memfd_create("r", 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* A stream reading b[0..n) and then end of stream. */
static void open_reader(const struct medium *m, struct stream *s, struct end *e,
			const uint8_t *b, size_t n, size_t maxrec)
{
	struct kv_err err;

	*e = (struct end){ .fd = -1 };
	if (m->mem) {
		assert_int_equal(channel_mem_open(&e->ch, b, n, &err), 0);
		assert_int_equal(stream_init_channel(s, e->ch, maxrec, &err), 0);
		assert_int_equal(stream_fd(s), -1);
	} else {
		e->fd = mem_fd(b, n);
		assert_int_equal(stream_init(s, e->fd, maxrec, &err), 0);
		assert_int_equal(stream_fd(s), e->fd);
	}
}

/* A stream writing into an empty file (in memory, or a memfd). */
static void open_writer(const struct medium *m, struct stream *s, struct end *e, size_t maxrec)
{
	struct kv_err err;

	*e = (struct end){ .fd = -1 };
	if (m->mem) {
		assert_int_equal(channel_mem_open(&e->ch, NULL, 0, &err), 0);
		assert_int_equal(stream_init_channel(s, e->ch, maxrec, &err), 0);
	} else {
		e->fd = memfd_create("w", 0);
		assert_int_equal(stream_init(s, e->fd, maxrec, &err), 0);
	}
}

/* What a writer's stream put out: a malloc'ed copy. */
static uint8_t *written(struct end *e, size_t *len)
{
	uint8_t *out;

	if (e->ch) {
		const uint8_t *p = channel_mem_written(e->ch, len);
		out = malloc(*len ? *len : 1);
		memcpy(out, p, *len);
	} else {
		*len = (size_t)lseek(e->fd, 0, SEEK_CUR);
		out = malloc(*len ? *len : 1);
		assert_int_equal(pread(e->fd, out, *len, 0), (ssize_t)*len);
	}
	return out;
}

static void close_end(struct stream *s, struct end *e)
{
	stream_destroy(s);
	channel_close(e->ch);	/* after the stream: it was the caller's */
	if (e->fd >= 0)
		close(e->fd);
}

/* Write some records, return their bytes. */
static uint8_t *make_stream(const struct medium *m, size_t *len)
{
	struct stream s;
	struct end e;
	struct kv_err err;
	uint8_t page[1000];
	uint8_t *out;

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7);
	open_writer(m, &s, &e, MAXREC);
	assert_int_equal(stream_write(&s, 1, STREAM_F_MANDATORY, "hello", 5, &err), 0);
	assert_int_equal(stream_begin(&s, 2, 0, 1000 + 4, &err), 0);
	assert_int_equal(stream_append(&s, "abcd", 4, &err), 0);
	assert_int_equal(stream_append(&s, page, 1000, &err), 0);
	assert_int_equal(stream_end(&s, &err), 0);
	assert_int_equal(stream_write(&s, 3, 0, NULL, 0, &err), 0);
	assert_int_equal(stream_flush(&s, &err), 0);
	out = written(&e, len);
	assert_int_equal(*len, 3 * 16 + 5 + 1004);
	assert_int_equal(s.bytes_out, *len);
	close_end(&s, &e);
	return out;
}

/* One record the way the RAM receiver reads one: the header, the first
 * 4 bytes, then the rest into 3 pieces of caller memory with one readv. */
static int read_pieces(struct stream *s, struct stream_rec *rec, uint8_t *buf,
		       struct kv_err *err)
{
	struct iovec iov[3];
	uint32_t first, rest;
	int r = stream_read_head(s, rec, err);

	if (r)
		return r;
	first = rec->len < 4 ? 0 : 4;
	rest = rec->len - first;
	if (first && (r = stream_read_part(s, buf, first, err)))
		return r;
	iov[0] = (struct iovec){ buf + first, rest / 3 };
	iov[1] = (struct iovec){ buf + first + rest / 3, rest / 3 };
	iov[2] = (struct iovec){ buf + first + 2 * (rest / 3), rest - 2 * (rest / 3) };
	if ((r = stream_read_rest_v(s, iov, 3, err)))
		return r;
	rec->payload = buf;
	return 0;
}

/* Read every record (whole, or in pieces); return 0 at clean end or the
 * first error. */
static int read_all_mode(const struct medium *m, const uint8_t *b, size_t n, int *nrec,
			 size_t maxrec, bool pieces)
{
	struct stream s;
	struct end e;
	struct stream_rec rec;
	struct kv_err err;
	uint8_t *buf = malloc(maxrec);
	int r;

	*nrec = 0;
	open_reader(m, &s, &e, b, n, maxrec);
	while ((r = pieces ? read_pieces(&s, &rec, buf, &err) : stream_read(&s, &rec, &err)) == 0)
		(*nrec)++;
	/* sticky: a second read fails the same way */
	assert_int_equal(pieces ? read_pieces(&s, &rec, buf, &err) : stream_read(&s, &rec, &err), r);
	close_end(&s, &e);
	free(buf);
	return r == -ECONNRESET ? 0 : r;
}

static int read_all(const struct medium *m, const uint8_t *b, size_t n, int *nrec,
		    size_t maxrec)
{
	int whole = read_all_mode(m, b, n, nrec, maxrec, false), nrec2;

	/* read in pieces, the same bytes give the same verdict */
	assert_int_equal(read_all_mode(m, b, n, &nrec2, maxrec, true), whole);
	assert_int_equal(nrec2, *nrec);
	return whole;
}

static void test_roundtrip(void **state)
{
	const struct medium *m = *state;
	size_t n;
	uint8_t *b = make_stream(m, &n);
	struct stream s;
	struct end e;
	struct stream_rec rec;
	struct kv_err err;

	open_reader(m, &s, &e, b, n, MAXREC);
	assert_int_equal(stream_read(&s, &rec, &err), 0);
	assert_int_equal(rec.type, 1);
	assert_int_equal(rec.flags, STREAM_F_MANDATORY);
	assert_int_equal(rec.len, 5);
	assert_memory_equal(rec.payload, "hello", 5);
	assert_int_equal(stream_read(&s, &rec, &err), 0);
	assert_int_equal(rec.len, 1004);
	assert_memory_equal(rec.payload, "abcd", 4);
	assert_int_equal(rec.payload[4 + 999], (uint8_t)(999 * 7));
	assert_int_equal(stream_read(&s, &rec, &err), 0);
	assert_int_equal(rec.type, 3);
	assert_int_equal(rec.len, 0);
	assert_int_equal(stream_read(&s, &rec, &err), -ECONNRESET);	/* clean end */
	close_end(&s, &e);
	free(b);
}

static void test_pieces(void **state)
{
	const struct medium *m = *state;
	size_t n;
	uint8_t *b = make_stream(m, &n), buf[MAXREC], head[4];
	struct stream s;
	struct end e;
	struct stream_rec rec;
	struct kv_err err;
	struct iovec iov[2];

	open_reader(m, &s, &e, b, n, MAXREC);
	assert_int_equal(stream_read(&s, &rec, &err), 0);		/* "hello" */
	/* the 1004-byte record: 4 bytes, then 1000 straight into two places */
	assert_int_equal(stream_read_head(&s, &rec, &err), 0);
	assert_int_equal(rec.len, 1004);
	assert_int_equal(stream_read_part(&s, head, 4, &err), 0);
	assert_memory_equal(head, "abcd", 4);
	iov[0] = (struct iovec){ buf, 600 };
	iov[1] = (struct iovec){ buf + 2000, 400 };
	assert_int_equal(stream_read_rest_v(&s, iov, 2, &err), 0);
	assert_int_equal(buf[599], (uint8_t)(599 * 7));
	assert_int_equal(buf[2000 + 399], (uint8_t)(999 * 7));
	assert_int_equal(stream_read(&s, &rec, &err), 0);		/* type 3, empty */
	assert_int_equal(rec.type, 3);
	close_end(&s, &e);

	/* reading past the record, or leaving bytes of it unread, is refused */
	open_reader(m, &s, &e, b, n, MAXREC);
	assert_int_equal(stream_read_head(&s, &rec, &err), 0);
	assert_int_equal(stream_read_part(&s, buf, 6, &err), -EBADMSG);
	assert_int_equal(stream_read(&s, &rec, &err), -EBADMSG);	/* sticky */
	close_end(&s, &e);
	open_reader(m, &s, &e, b, n, MAXREC);
	assert_int_equal(stream_read_head(&s, &rec, &err), 0);
	iov[0] = (struct iovec){ buf, 4 };
	assert_int_equal(stream_read_rest_v(&s, iov, 1, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "bytes left"));
	close_end(&s, &e);
	free(b);
}

static void test_truncation_every_offset(void **state)
{
	const struct medium *m = *state;
	size_t n;
	uint8_t *b = make_stream(m, &n);
	int nrec;

	for (size_t cut = 0; cut < n; cut++) {
		int r = read_all(m, b, cut, &nrec, MAXREC);
		/* a cut exactly at a record boundary is a clean (short) end;
		 * anywhere else it is truncation */
		bool boundary = cut == 0 || cut == 21 || cut == 21 + 1020;
		if (boundary)
			assert_int_equal(r, 0);
		else
			assert_int_equal(r, -EPIPE);
	}
	free(b);
}

static void test_every_bit_flip(void **state)
{
	const struct medium *m = *state;
	size_t n;
	uint8_t *b = make_stream(m, &n);
	int nrec;

	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			int r;
			b[i] ^= (uint8_t)(1 << bit);
			r = read_all(m, b, n, &nrec, MAXREC);
			/* a flipped bit must never go unnoticed: checksum, length,
			 * flags or truncation catch it */
			if (r == 0)
				fail_msg("flip of bit %d at byte %zu went unnoticed", bit, i);
			b[i] ^= (uint8_t)(1 << bit);
		}
	}
	free(b);
}

static void test_limits(void **state)
{
	const struct medium *m = *state;
	size_t n;
	uint8_t *b = make_stream(m, &n);
	struct stream s;
	struct end e;
	struct kv_err err;
	int nrec;
	uint8_t big[100];

	/* a reader with a smaller limit refuses the 1004-byte record up front */
	assert_int_equal(read_all(m, b, n, &nrec, 1000), -EMSGSIZE);
	assert_int_equal(nrec, 1);
	/* unknown flag bits */
	b[2] = 0x02;
	assert_int_equal(read_all(m, b, n, &nrec, MAXREC), -EBADMSG);
	/* a writer cannot exceed its own limit, nor append past or short of
	 * what it announced */
	open_writer(m, &s, &e, 50);
	assert_int_equal(stream_write(&s, 1, 0, big, 51, &err), -EMSGSIZE);
	close_end(&s, &e);
	open_writer(m, &s, &e, 500);
	assert_int_equal(stream_begin(&s, 1, 0, 10, &err), 0);
	assert_int_equal(stream_append(&s, big, 11, &err), -EINVAL);
	assert_int_equal(stream_write(&s, 1, 0, big, 1, &err), -EINVAL);	/* sticky */
	close_end(&s, &e);
	open_writer(m, &s, &e, 500);
	assert_int_equal(stream_begin(&s, 1, 0, 10, &err), 0);
	assert_int_equal(stream_append(&s, big, 9, &err), 0);
	assert_int_equal(stream_end(&s, &err), -EINVAL);
	close_end(&s, &e);
	free(b);
}

/* Two connected ends: a pipe, or a memory pair; the reader side first. */
static void open_link(const struct medium *m, struct end *r, struct end *w)
{
	struct kv_err err;
	int p[2];

	*r = *w = (struct end){ .fd = -1 };
	if (m->mem) {
		assert_int_equal(channel_mem_pair(&r->ch, &w->ch, 0, &err), 0);
	} else {
		assert_int_equal(pipe2(p, O_NONBLOCK), 0);
		r->fd = p[0];
		w->fd = p[1];
	}
}

static void stream_on(struct stream *s, struct end *e, size_t maxrec)
{
	struct kv_err err;

	if (e->ch)
		assert_int_equal(stream_init_channel(s, e->ch, maxrec, &err), 0);
	else
		assert_int_equal(stream_init(s, e->fd, maxrec, &err), 0);
}

static void test_peer_closed(void **state)
{
	const struct medium *m = *state;
	struct stream s;
	struct end r, w;
	struct kv_err err;
	uint8_t buf[100] = { 0 };

	open_link(m, &r, &w);
	channel_close(r.ch);	/* the reader goes away */
	if (r.fd >= 0)
		close(r.fd);
	signal(SIGPIPE, SIG_IGN);
	stream_on(&s, &w, 500);
	assert_int_equal(stream_write(&s, 1, 0, buf, sizeof(buf), &err), 0);	/* buffered */
	assert_int_equal(stream_flush(&s, &err), -EPIPE);
	assert_non_null(strstr(err.msg, "write"));
	close_end(&s, &w);
}

static void test_timeout(void **state)
{
	const struct medium *m = *state;
	struct stream s;
	struct stream_rec rec;
	struct end r, w;
	struct kv_err err;
	struct iovec half = { "\x01\x00", 2 };

	open_link(m, &r, &w);
	stream_on(&s, &r, 500);
	s.timeout_ms = 50;
	/* half a header, then silence */
	if (w.ch)
		assert_int_equal(channel_writev(w.ch, &half, 1, 0, &err), 2);
	else
		assert_int_equal(write(w.fd, half.iov_base, 2), 2);
	assert_int_equal(stream_read(&s, &rec, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "peer silent for 50 ms"));
	close_end(&s, &r);
	channel_close(w.ch);
	if (w.fd >= 0)
		close(w.fd);
}

/* The stream's own answer to a TLS peer when it speaks plaintext. */
static void test_tls_peer(void **state)
{
	const struct medium *m = *state;
	/* the first 8 bytes of a TLS 1.3 ClientHello, and a TLS alert */
	const uint8_t hello[8] = { 0x16, 0x03, 0x01, 0x01, 0x2c, 0x01, 0x00, 0x01 };
	const uint8_t alert[7] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x30 };
	struct stream s;
	struct end e;
	struct stream_rec rec;
	struct kv_err err;

	open_reader(m, &s, &e, hello, sizeof(hello), MAXREC);
	assert_int_equal(stream_read(&s, &rec, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "the peer wants TLS"));
	close_end(&s, &e);
	open_reader(m, &s, &e, alert, sizeof(alert), MAXREC);
	assert_int_equal(stream_read(&s, &rec, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "the peer answered in TLS"));
	assert_int_equal(stream_read(&s, &rec, &err), -EPROTO);	/* sticky */
	close_end(&s, &e);
}

/* The accessors callers use instead of s->fd. */
static void test_accessors(void **state)
{
	const struct medium *m = *state;
	struct stream s;
	struct end r, w;
	struct kv_err err;
	struct stream_rec rec;

	open_link(m, &r, &w);
	stream_on(&s, &r, 500);
	assert_int_equal(stream_wait(&s, POLLIN, 0, &err), 0);
	assert_int_equal(stream_pending(&s), 0);
	if (w.ch) {
		struct iovec v = { "abc", 3 };
		assert_int_equal(channel_writev(w.ch, &v, 1, 0, &err), 3);
		assert_int_equal(stream_pending(&s), 3);	/* a memory queue holds them */
		assert_ptr_equal(stream_channel(&s), r.ch);
	} else {
		assert_int_equal(write(w.fd, "abc", 3), 3);
		assert_int_equal(stream_pending(&s), 0);	/* an fd holds nothing of its own */
		assert_int_equal(stream_fd(&s), r.fd);
	}
	assert_true(stream_wait(&s, POLLIN, 1000, &err) & POLLIN);
	/* SHUT_RD ends a read in progress, from any thread: here, before it */
	if (r.ch)
		assert_int_equal(stream_shutdown(&s, SHUT_RD, &err), 0);
	else
		assert_int_equal(stream_shutdown(&s, SHUT_RD, &err), -ENOTSOCK);	/* a pipe */
	if (r.ch)
		assert_int_equal(stream_read(&s, &rec, &err), -ECONNRESET);
	close_end(&s, &r);
	channel_close(w.ch);
	if (w.fd >= 0)
		close(w.fd);
}

#define BOTH(t) { #t " (fd)", t, NULL, NULL, &over_fd }, { #t " (mem)", t, NULL, NULL, &over_mem }

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_roundtrip),
		BOTH(test_pieces),
		BOTH(test_truncation_every_offset),
		BOTH(test_every_bit_flip),
		BOTH(test_limits),
		BOTH(test_peer_closed),
		BOTH(test_timeout),
		BOTH(test_tls_peer),
		BOTH(test_accessors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
