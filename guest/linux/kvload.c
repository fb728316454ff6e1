/*
 * kvload - the Linux guest's workload, run as PID 1's child from the
 * initramfs (guest/linux/mkinitramfs.sh).  Built with the host's
 * `gcc -static`; no libraries beyond libc.
 *
 *   kvload [hb_ms=N] [wss_mb=N] [rate_mb=N] [file=PATH] [file_kb=N]
 *
 * Defaults: hb_ms=100, wss_mb=64, rate_mb=32 (MiB/s of pages rewritten),
 * no file, file_kb=1024.
 *
 * It prints, on stdout (the serial console), lines a migration test reads:
 *   KVLOAD START wss_mb=... hb_ms=... file=...
 *   KVLOAD HB <seq> <monotonic_us>          every hb_ms milliseconds
 *   KVLOAD VERIFY OK <pass> pages=<n>       after a full verification pass
 *                                           (at most one line a second)
 *   KVLOAD VERIFY FAIL page=<i> want=<g> got=<g>
 *   KVLOAD FILE WROTE <round>               file rewritten (O_DIRECT, fsync)
 *   KVLOAD FILE OK <round>                  file read back (O_DIRECT) intact
 *   KVLOAD FILE FAIL <round> <why>
 *   KVLOAD ERROR <what>
 * Heartbeat sequence numbers are consecutive: a gap or a repeat after a
 * migration means lost or duplicated console output.
 *
 * Memory: wss_mb of anonymous memory, one generation counter per page kept
 * apart from the pages.  The writer stamps a page with (index, generation)
 * at both ends and increments its counter; the verifier checks every page
 * holds exactly its counter's generation.  A page a migration loses holds
 * an older generation and is reported.
 *
 * File: file_kb of 4 KiB blocks, each stamped (magic, round, block) with a
 * checksum; written in one round, read back and checked before the next
 * round is written, so a round written on the source is verified on the
 * destination when a migration falls in between.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define FILE_MAGIC 0x4b564c4f41444631ULL	/* "KVLOADF1" */

struct opts {
	unsigned hb_ms, wss_mb, rate_mb, file_kb;
	const char *file;
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* one write per line: lines from one process never interleave */
	if (write(STDOUT_FILENO, buf, (size_t)n) < 0) {
		/* nowhere else to report it */
	}
}

static unsigned num(const char *s, const char *name)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end || v > 1000000) {
		say("KVLOAD ERROR bad %s '%s'", name, s);
		exit(2);
	}
	return (unsigned)v;
}

static void parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){ .hb_ms = 100, .wss_mb = 64, .rate_mb = 32, .file_kb = 1024 };
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "hb_ms=", 6))
			o->hb_ms = num(argv[i] + 6, "hb_ms");
		else if (!strncmp(argv[i], "wss_mb=", 7))
			o->wss_mb = num(argv[i] + 7, "wss_mb");
		else if (!strncmp(argv[i], "rate_mb=", 8))
			o->rate_mb = num(argv[i] + 8, "rate_mb");
		else if (!strncmp(argv[i], "file_kb=", 8))
			o->file_kb = num(argv[i] + 8, "file_kb");
		else if (!strncmp(argv[i], "file=", 5))
			o->file = argv[i][5] ? argv[i] + 5 : NULL;
		else {
			say("KVLOAD ERROR unknown argument '%s'", argv[i]);
			exit(2);
		}
	}
	if (!o->hb_ms)
		o->hb_ms = 1;
	if (!o->file_kb)
		o->file = NULL;
}

/* ---- memory ---- */

struct mem {
	uint8_t *pages;
	uint32_t *gen;
	size_t npages, next_write, next_verify;
	uint64_t pass, last_report_us;
	bool failed;
};

static void stamp(uint8_t *p, uint64_t idx, uint32_t g)
{
	uint64_t w[2] = { idx, g };

	memcpy(p, w, sizeof(w));
	memcpy(p + PAGE - sizeof(w), w, sizeof(w));
}

static bool check(const uint8_t *p, uint64_t idx, uint32_t g, uint64_t *got)
{
	uint64_t a[2], b[2];

	memcpy(a, p, sizeof(a));
	memcpy(b, p + PAGE - sizeof(b), sizeof(b));
	*got = a[1];
	return a[0] == idx && a[1] == g && b[0] == idx && b[1] == g;
}

static int mem_init(struct mem *m, unsigned wss_mb)
{
	memset(m, 0, sizeof(*m));
	m->npages = (size_t)wss_mb * (1024 * 1024 / PAGE);
	if (!m->npages)
		return 0;
	m->pages = mmap(NULL, m->npages * PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	m->gen = calloc(m->npages, sizeof(*m->gen));
	if (m->pages == MAP_FAILED || !m->gen)
		return -ENOMEM;
	for (size_t i = 0; i < m->npages; i++)
		stamp(m->pages + i * PAGE, i, 0);
	return 0;
}

/* Some writes and some verification: a slice of work between heartbeats. */
static void mem_step(struct mem *m, size_t writes, size_t checks)
{
	if (!m->npages || m->failed)
		return;
	for (size_t k = 0; k < writes; k++) {
		size_t i = m->next_write;
		stamp(m->pages + i * PAGE, i, ++m->gen[i]);
		m->next_write = (i + 7919) % m->npages;	/* a prime stride */
	}
	for (size_t k = 0; k < checks; k++) {
		size_t i = m->next_verify;
		uint64_t got;

		if (!check(m->pages + i * PAGE, i, m->gen[i], &got)) {
			say("KVLOAD VERIFY FAIL page=%zu want=%" PRIu32 " got=%" PRIu64,
			    i, m->gen[i], got);
			m->failed = true;
			return;
		}
		if (++m->next_verify == m->npages) {
			m->next_verify = 0;
			m->pass++;
			if (now_us() - m->last_report_us >= 1000000u) {
				m->last_report_us = now_us();
				say("KVLOAD VERIFY OK %" PRIu64 " pages=%zu", m->pass, m->npages);
			}
		}
	}
}

/* ---- file ---- */

struct file {
	const char *path;
	size_t blocks;
	uint64_t round;
	bool written, failed;
	uint8_t *buf;
};

static uint64_t sum64(const uint64_t *w, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ w[i]) * 1099511628211ULL;
	return h;
}

static void fill_block(uint8_t *b, uint64_t round, uint64_t blk)
{
	uint64_t *w = (uint64_t *)b;
	size_t n = PAGE / 8;

	w[0] = FILE_MAGIC;
	w[1] = round;
	w[2] = blk;
	for (size_t i = 3; i < n - 1; i++)
		w[i] = round * 0x9e3779b97f4a7c15ULL + blk * 131 + i;
	w[n - 1] = sum64(w, n - 1);
}

static const char *check_block(const uint8_t *b, uint64_t round, uint64_t blk)
{
	const uint64_t *w = (const uint64_t *)b;
	size_t n = PAGE / 8;

	if (w[0] != FILE_MAGIC)
		return "bad magic";
	if (w[1] != round)
		return "stale round";
	if (w[2] != blk)
		return "misplaced block";
	if (w[n - 1] != sum64(w, n - 1))
		return "bad checksum";
	return NULL;
}

/* Alternates: write round r (all blocks, fsync), then read it back. */
static void file_step(struct file *f)
{
	int fd;

	if (!f->path || f->failed)
		return;
	fd = open(f->path, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
	if (fd < 0) {
		say("KVLOAD FILE FAIL %" PRIu64 " open %s: %s", f->round, f->path, strerror(errno));
		f->failed = true;
		return;
	}
	for (size_t blk = 0; blk < f->blocks; blk++) {
		const char *why;
		ssize_t n;

		if (!f->written) {
			fill_block(f->buf, f->round + 1, blk);
			n = pwrite(fd, f->buf, PAGE, (off_t)(blk * PAGE));
		} else {
			n = pread(fd, f->buf, PAGE, (off_t)(blk * PAGE));
		}
		if (n != PAGE) {
			say("KVLOAD FILE FAIL %" PRIu64 " %s block %zu: %s", f->round + !f->written,
			    f->written ? "read" : "write", blk, n < 0 ? strerror(errno) : "short");
			f->failed = true;
			break;
		}
		if (f->written && (why = check_block(f->buf, f->round, blk))) {
			say("KVLOAD FILE FAIL %" PRIu64 " block %zu: %s", f->round, blk, why);
			f->failed = true;
			break;
		}
	}
	if (!f->failed && !f->written && fsync(fd) < 0) {
		say("KVLOAD FILE FAIL %" PRIu64 " fsync: %s", f->round + 1, strerror(errno));
		f->failed = true;
	}
	close(fd);
	if (f->failed)
		return;
	if (!f->written) {
		f->round++;
		f->written = true;
		say("KVLOAD FILE WROTE %" PRIu64, f->round);
	} else {
		f->written = false;
		say("KVLOAD FILE OK %" PRIu64, f->round);
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	struct mem m;
	struct file f = { 0 };
	uint64_t seq = 0, next_hb, start, written = 0;
	unsigned since_file = 0;

	parse(argc, argv, &o);
	say("KVLOAD START wss_mb=%u rate_mb=%u hb_ms=%u file=%s file_kb=%u", o.wss_mb,
	    o.rate_mb, o.hb_ms, o.file ? o.file : "-", o.file_kb);
	if (mem_init(&m, o.wss_mb)) {
		say("KVLOAD ERROR cannot allocate %u MiB", o.wss_mb);
		return 1;
	}
	if (o.file) {
		f.path = o.file;
		f.blocks = o.file_kb / 4 ? o.file_kb / 4 : 1;
		if (posix_memalign((void **)&f.buf, PAGE, PAGE)) {
			say("KVLOAD ERROR cannot allocate an O_DIRECT buffer");
			return 1;
		}
	}
	start = next_hb = now_us();
	for (;;) {
		uint64_t t = now_us();
		/* pages the dirty rate allows by now */
		uint64_t due = (t - start) * o.rate_mb / 1000000u * (1024 * 1024 / PAGE);

		if (t >= next_hb) {
			say("KVLOAD HB %" PRIu64 " %" PRIu64, seq++, t);
			next_hb += (uint64_t)o.hb_ms * 1000u;
			if (next_hb < t)	/* we were not scheduled for a while */
				next_hb = t + (uint64_t)o.hb_ms * 1000u;
			/* the file every ~2 s: cheap enough to keep heartbeats on time */
			if (++since_file * o.hb_ms >= 2000) {
				since_file = 0;
				file_step(&f);
			}
			continue;
		}
		if (due > written) {
			size_t n = due - written > 64 ? 64 : (size_t)(due - written);
			mem_step(&m, n, 4 * n);
			written += n;
		} else if (m.npages) {
			mem_step(&m, 0, 64);	/* spare time: verify */
		} else {
			usleep(1000);
		}
	}
}
