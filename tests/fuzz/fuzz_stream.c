/*
 * fuzz_stream - the migration stream reader (src/state/stream.c) on any
 * bytes, read every way the receivers read it, until the first error.
 *
 * Input: one options byte, then the bytes of the stream.
 *   bit 0     recompute each complete record's check before reading: XXH3
 *             cannot be forged by mutation, and without this nearly every
 *             input would stop at the first record's checksum
 *   bit 1     a 4 KiB record limit instead of MIG_MAX_RECORD
 *   bit 2     serve the bytes through a non-blocking pipe whose writer stays
 *             open, with a 0 ms timeout: the end of the bytes is a silent
 *             peer (ETIMEDOUT through poll), not an end of file; only for
 *             inputs that fit in the pipe
 *   bits 3-7  where the rotation of read styles starts (record i is read
 *             with style (bits + i) % 4):
 *             0 stream_read()
 *             1 stream_read_head() + stream_read_body()
 *             2 head, two stream_read_part()s, stream_read_rest_v() over
 *               three pieces
 *             3 head, then a RAM record through ram_receive() into a fake
 *               VM's memory, any other record through stream_read_rest_v()
 *               with empty pieces in between
 * Checks: results are 0 or a negative errno with a message; errors are
 * sticky (the next read returns the same one); the reader never takes more
 * bytes than the input holds nor a record longer than its limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "core/vm.h"
#include "fuzz.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "state/stream.h"

#define OPT_FIX_CHECK 0x01
#define OPT_SMALL_LIMIT 0x02
#define OPT_PIPE 0x04
#define SMALL_LIMIT 4096
#define MAX_RECORDS 4096	/* inputs are far shorter; a bound all the same */

static struct vm *vm;
static int memfd = -1;
static uint8_t *fixed;		/* the input with its checks recomputed */
static size_t fixed_cap;
static uint8_t scratch[MIG_MAX_RECORD + STREAM_TRAILER_SIZE];

static void fix_checks(uint8_t *b, size_t n)
{
	size_t pos = 0;

	while (n - pos >= STREAM_HDR_SIZE) {
		uint64_t len = st_get32(b + pos + 4);

		if (len + STREAM_HDR_SIZE + STREAM_TRAILER_SIZE > n - pos)
			break;
		st_put64(b + pos + STREAM_HDR_SIZE + len,
			 XXH3_64bits(b + pos, STREAM_HDR_SIZE + (size_t)len));
		pos += STREAM_HDR_SIZE + STREAM_TRAILER_SIZE + (size_t)len;
	}
}

/* A file descriptor that yields exactly these bytes; *keep: a pipe's write
 * end that must stay open until the reading is done (or -1). */
static int source(const uint8_t *b, size_t n, bool pipe_mode, int *keep)
{
	int p[2];

	*keep = -1;
	if (pipe_mode && n <= 65536 && pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0) {
		if ((size_t)write(p[1], b, n) == n) {
			*keep = p[1];
			return p[0];
		}
		close(p[0]);
		close(p[1]);
	}
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, b, n, 0) != (ssize_t)n ||
	    lseek(memfd, 0, SEEK_SET) != 0)
		fuzz_fail("memfd: %m");
	return memfd;
}

static void check_result(int r, const struct kv_err *err, const char *what)
{
	FUZZ_CHECK(r <= 0 && r > -4096, "%s returned %d", what, r);
	FUZZ_CHECK(r == 0 || err->msg[0], "%s failed (%d) without a message", what, r);
}

/* style 2: the payload in three reads of the caller's choosing */
static int read_pieces(struct stream *s, const struct stream_rec *rec, unsigned i,
		       struct kv_err *err)
{
	uint32_t a = rec->len < 4 ? rec->len : 4, rest, b;
	struct iovec iov[3];
	int r;

	if ((r = stream_read_part(s, scratch, a, err)))
		return r;
	b = 8 + (i * 37) % 64;
	if (b > rec->len - a)
		b = rec->len - a;
	if ((r = stream_read_part(s, scratch + a, b, err)))
		return r;
	rest = rec->len - a - b;
	iov[0] = (struct iovec){ scratch + a + b, rest / 3 };
	iov[1] = (struct iovec){ scratch + a + b + rest / 3, rest / 3 };
	iov[2] = (struct iovec){ scratch + a + b + 2 * (rest / 3), rest - 2 * (rest / 3) };
	return stream_read_rest_v(s, iov, 3, err);
}

/* style 3, not RAM: the whole payload as one scattered read with empty
 * pieces around it (readv_exact must step over them) */
static int read_scattered(struct stream *s, const struct stream_rec *rec, struct kv_err *err)
{
	uint32_t half = rec->len / 2;
	struct iovec iov[5] = {
		{ scratch, 0 }, { scratch, half }, { scratch + half, 0 },
		{ scratch + half, rec->len - half }, { scratch + rec->len, 0 },
	};

	return stream_read_rest_v(s, iov, 5, err);
}

static int read_one(struct stream *s, unsigned style, unsigned i, bool *touched,
		    struct kv_err *err)
{
	struct stream_rec rec = { 0 };
	uint64_t pages = 0;
	int r;

	if (style == 0) {
		r = stream_read(s, &rec, err);
		FUZZ_CHECK(r || (rec.payload && rec.len <= s->max_record),
			   "a record of %u bytes was accepted (limit %zu)", rec.len, s->max_record);
		return r;
	}
	if ((r = stream_read_head(s, &rec, err)))
		return r;
	FUZZ_CHECK(rec.len <= s->max_record, "a header of %u bytes was accepted", rec.len);
	switch (style) {
	case 1:
		r = stream_read_body(s, &rec, err);
		FUZZ_CHECK(r || rec.payload, "a body was read without a payload");
		return r;
	case 2:
		return read_pieces(s, &rec, i, err);
	default:
		if (rec.type != MIG_REC_RAM)
			return read_scattered(s, &rec, err);
		*touched = true;
		r = ram_receive(vm, s, &rec, NULL, &pages, NULL, err);
		FUZZ_CHECK(r || (pages >= 1 && pages <= MIG_RAM_BATCH),
			   "a RAM record was received with %llu pages", (unsigned long long)pages);
		return r;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream s;
	struct kv_err err = { "" }, again = { "" };
	struct stream_rec rec;
	bool touched = false;
	uint8_t opt;
	int fd, keep, r = 0, r2;
	unsigned i;

	if (!vm) {
		vm = fuzz_vm_new(FUZZ_MEM_SMALL, FUZZ_VM_BARE);
		memfd = memfd_create("fuzz-stream", MFD_CLOEXEC);
		if (memfd < 0)
			fuzz_fail("memfd_create: %m");
	}
	if (size < 1)
		return 0;
	opt = data[0];
	data++;
	size--;
	if ((opt & OPT_FIX_CHECK) && size) {
		if (size > fixed_cap) {
			free(fixed);
			fixed_cap = size;
			fixed = malloc(fixed_cap);
			if (!fixed)
				fuzz_fail("out of memory");
		}
		memcpy(fixed, data, size);
		fix_checks(fixed, size);
		data = fixed;
	}
	fd = source(data, size, opt & OPT_PIPE, &keep);
	if (stream_init(&s, fd, opt & OPT_SMALL_LIMIT ? SMALL_LIMIT : MIG_MAX_RECORD, &err))
		fuzz_fail("stream_init: %s", err.msg);
	if (keep >= 0)
		s.timeout_ms = 0;

	for (i = 0; i < MAX_RECORDS && !r; i++) {
		r = read_one(&s, ((opt >> 3) + i) % 4, i, &touched, &err);
		check_result(r, &err, "reading a record");
		FUZZ_CHECK(s.bytes_in <= size, "read %llu bytes of %zu",
			   (unsigned long long)s.bytes_in, size);
	}
	if (s.rerr.code) {
		/* a stream error is sticky: whatever comes next, the same one
		 * (a RAM record's own refusal is the receiver's, not the
		 * stream's: the receiver stops there) */
		FUZZ_CHECK(r == s.rerr.code, "stream error %d, but the read returned %d",
			   s.rerr.code, r);
		r2 = stream_read(&s, &rec, &again);
		FUZZ_CHECK(r2 == r && !strcmp(again.msg, s.rerr.msg),
			   "error %d (%s) was followed by %d (%s)", r, s.rerr.msg, r2, again.msg);
	}
	stream_destroy(&s);
	if (fd != memfd)
		close(fd);
	if (keep >= 0)
		close(keep);
	if (touched)
		fuzz_mem_reset(&vm->mem);
	return 0;
}
