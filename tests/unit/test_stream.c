/* Stream framing: round trips, every truncation, every flipped bit, size
 * limits, unknown flags, sticky errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "state/stream.h"

#define MAXREC 4096

/* Write some records into a memory file, return its bytes. */
static uint8_t *make_stream(size_t *len)
{
	struct stream s;
	struct kv_err err;
	int fd = memfd_create("s", 0);
	uint8_t page[1000];
	uint8_t *out;

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7);
	assert_int_equal(stream_init(&s, fd, MAXREC, &err), 0);
	assert_int_equal(stream_write(&s, 1, STREAM_F_MANDATORY, "hello", 5, &err), 0);
	assert_int_equal(stream_begin(&s, 2, 0, 1000 + 4, &err), 0);
	assert_int_equal(stream_append(&s, "abcd", 4, &err), 0);
	assert_int_equal(stream_append(&s, page, 1000, &err), 0);
	assert_int_equal(stream_end(&s, &err), 0);
	assert_int_equal(stream_write(&s, 3, 0, NULL, 0, &err), 0);
	assert_int_equal(stream_flush(&s, &err), 0);
	*len = (size_t)lseek(fd, 0, SEEK_CUR);
	assert_int_equal(*len, 3 * 16 + 5 + 1004);
	assert_int_equal(s.bytes_out, *len);
	out = malloc(*len);
	assert_int_equal(pread(fd, out, *len, 0), (ssize_t)*len);
	stream_destroy(&s);
	close(fd);
	return out;
}

static int mem_fd(const uint8_t *b, size_t n)
{
	int fd = memfd_create("r", 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	lseek(fd, 0, SEEK_SET);
	return fd;
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
static int read_all_mode(const uint8_t *b, size_t n, int *nrec, size_t maxrec, bool pieces)
{
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;
	uint8_t *buf = malloc(maxrec);
	int fd = mem_fd(b, n), r;

	*nrec = 0;
	assert_int_equal(stream_init(&s, fd, maxrec, &err), 0);
	while ((r = pieces ? read_pieces(&s, &rec, buf, &err) : stream_read(&s, &rec, &err)) == 0)
		(*nrec)++;
	/* sticky: a second read fails the same way */
	assert_int_equal(pieces ? read_pieces(&s, &rec, buf, &err) : stream_read(&s, &rec, &err), r);
	stream_destroy(&s);
	close(fd);
	free(buf);
	return r == -ECONNRESET ? 0 : r;
}

static int read_all(const uint8_t *b, size_t n, int *nrec, size_t maxrec)
{
	int whole = read_all_mode(b, n, nrec, maxrec, false), nrec2;

	/* read in pieces, the same bytes give the same verdict */
	assert_int_equal(read_all_mode(b, n, &nrec2, maxrec, true), whole);
	assert_int_equal(nrec2, *nrec);
	return whole;
}

static void test_roundtrip(void **state)
{
	size_t n;
	uint8_t *b = make_stream(&n);
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;
	int fd = mem_fd(b, n);

	assert_int_equal(stream_init(&s, fd, MAXREC, &err), 0);
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
	stream_destroy(&s);
	close(fd);
	free(b);
}

static void test_pieces(void **state)
{
	size_t n;
	uint8_t *b = make_stream(&n), buf[MAXREC], head[4];
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;
	struct iovec iov[2];
	int fd = mem_fd(b, n);

	assert_int_equal(stream_init(&s, fd, MAXREC, &err), 0);
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
	stream_destroy(&s);

	/* reading past the record, or leaving bytes of it unread, is refused */
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(stream_init(&s, fd, MAXREC, &err), 0);
	assert_int_equal(stream_read_head(&s, &rec, &err), 0);
	assert_int_equal(stream_read_part(&s, buf, 6, &err), -EBADMSG);
	assert_int_equal(stream_read(&s, &rec, &err), -EBADMSG);	/* sticky */
	stream_destroy(&s);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(stream_init(&s, fd, MAXREC, &err), 0);
	assert_int_equal(stream_read_head(&s, &rec, &err), 0);
	iov[0] = (struct iovec){ buf, 4 };
	assert_int_equal(stream_read_rest_v(&s, iov, 1, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "bytes left"));
	stream_destroy(&s);
	close(fd);
	free(b);
}

static void test_truncation_every_offset(void **state)
{
	size_t n;
	uint8_t *b = make_stream(&n);
	int nrec;

	for (size_t cut = 0; cut < n; cut++) {
		int r = read_all(b, cut, &nrec, MAXREC);
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
	size_t n;
	uint8_t *b = make_stream(&n);
	int nrec;

	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			int r;
			b[i] ^= (uint8_t)(1 << bit);
			r = read_all(b, n, &nrec, MAXREC);
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
	size_t n;
	uint8_t *b = make_stream(&n);
	struct stream s;
	struct kv_err err;
	int nrec, fd = memfd_create("w", 0);
	uint8_t big[100];

	/* a reader with a smaller limit refuses the 1004-byte record up front */
	assert_int_equal(read_all(b, n, &nrec, 1000), -EMSGSIZE);
	assert_int_equal(nrec, 1);
	/* unknown flag bits */
	b[2] = 0x02;
	assert_int_equal(read_all(b, n, &nrec, MAXREC), -EBADMSG);
	/* a writer cannot exceed its own limit, nor append past or short of
	 * what it announced */
	assert_int_equal(stream_init(&s, fd, 50, &err), 0);
	assert_int_equal(stream_write(&s, 1, 0, big, 51, &err), -EMSGSIZE);
	stream_destroy(&s);
	assert_int_equal(stream_init(&s, fd, 500, &err), 0);
	assert_int_equal(stream_begin(&s, 1, 0, 10, &err), 0);
	assert_int_equal(stream_append(&s, big, 11, &err), -EINVAL);
	assert_int_equal(stream_write(&s, 1, 0, big, 1, &err), -EINVAL);	/* sticky */
	stream_destroy(&s);
	assert_int_equal(stream_init(&s, fd, 500, &err), 0);
	assert_int_equal(stream_begin(&s, 1, 0, 10, &err), 0);
	assert_int_equal(stream_append(&s, big, 9, &err), 0);
	assert_int_equal(stream_end(&s, &err), -EINVAL);
	stream_destroy(&s);
	close(fd);
	free(b);
}

static void test_peer_closed(void **state)
{
	struct stream s;
	struct kv_err err;
	int p[2];
	uint8_t buf[100] = { 0 };

	assert_int_equal(pipe(p), 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(stream_init(&s, p[1], 500, &err), 0);
	assert_int_equal(stream_write(&s, 1, 0, buf, sizeof(buf), &err), 0);	/* buffered */
	assert_int_equal(stream_flush(&s, &err), -EPIPE);
	assert_non_null(strstr(err.msg, "write"));
	stream_destroy(&s);
	close(p[1]);
}

static void test_timeout(void **state)
{
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;
	int p[2];

	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(stream_init(&s, p[0], 500, &err), 0);
	s.timeout_ms = 50;
	assert_int_equal(write(p[1], "\x01\x00", 2), 2);	/* half a header, then silence */
	assert_int_equal(stream_read(&s, &rec, &err), -ETIMEDOUT);
	stream_destroy(&s);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_truncation_every_offset),
		cmocka_unit_test(test_every_bit_flip),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_peer_closed),
		cmocka_unit_test(test_timeout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
