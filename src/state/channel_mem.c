/*
 * channel_mem.c - in-memory channels: a connected pair of ends (a byte
 * queue per direction, one lock and condition for both), or one end that
 * reads a fixed buffer and keeps what is written to it (a file in memory).
 * Tests drive the stream and protocol code through these without sockets,
 * and can cut, stall or fill a link at will.
 */
#define _GNU_SOURCE
#include "state/channel.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct mem_dir {
	uint8_t *buf;
	size_t off, len, alloc;	/* unread bytes: buf[off .. len) */
	size_t cap;		/* most bytes queued; 0 = no bound */
	bool eof;		/* the writer is gone: end of stream once drained */
	bool nobody_reads;	/* the reader is gone: writes fail with EPIPE */
};

struct mem_link {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct mem_dir dir[2];	/* end i reads dir[i] and writes dir[1 - i] */
	int refs;
};

struct mem_end {
	struct channel ch;
	struct mem_link *l;
	int i;
};

static void link_free(struct mem_link *l);

static struct mem_dir *rx(struct mem_end *e)
{
	return &e->l->dir[e->i];
}

static struct mem_dir *tx(struct mem_end *e)
{
	return &e->l->dir[1 - e->i];
}

static bool readable(const struct mem_dir *d)
{
	return d->len > d->off || d->eof;
}

static bool writable(const struct mem_dir *d)
{
	return d->nobody_reads || d->eof || !d->cap || d->len - d->off < d->cap;
}

static ssize_t mem_readv(struct channel *ch, const struct iovec *iov, int cnt,
			 struct kv_err *err)
{
	struct mem_end *e = (struct mem_end *)ch;
	struct mem_dir *d;
	size_t got = 0;
	ssize_t r;

	pthread_mutex_lock(&e->l->mu);
	d = rx(e);
	for (int i = 0; i < cnt && d->off < d->len; i++) {
		size_t n = d->len - d->off < iov[i].iov_len ? d->len - d->off : iov[i].iov_len;
		memcpy(iov[i].iov_base, d->buf + d->off, n);
		d->off += n;
		got += n;
	}
	if (d->off == d->len)
		d->off = d->len = 0;
	r = got ? (ssize_t)got : d->eof ? 0 : -EAGAIN;
	if (got)
		pthread_cond_broadcast(&e->l->cv);
	pthread_mutex_unlock(&e->l->mu);
	return r;
}

/* Room for n more bytes at the end of d->buf; -ENOMEM if there is none. */
static int make_room(struct mem_dir *d, size_t n)
{
	size_t want;
	uint8_t *b;

	if (d->alloc - d->len >= n)
		return 0;
	if (d->off) {		/* slide the unread bytes down first */
		memmove(d->buf, d->buf + d->off, d->len - d->off);
		d->len -= d->off;
		d->off = 0;
		if (d->alloc - d->len >= n)
			return 0;
	}
	want = d->alloc ? d->alloc : 4096;
	while (want - d->len < n)
		want *= 2;
	b = realloc(d->buf, want);
	if (!b)
		return -ENOMEM;
	d->buf = b;
	d->alloc = want;
	return 0;
}

static ssize_t mem_writev(struct channel *ch, const struct iovec *iov, int cnt,
			  unsigned flags, struct kv_err *err)
{
	struct mem_end *e = (struct mem_end *)ch;
	struct mem_dir *d;
	size_t put = 0, room;
	bool oom = false;
	ssize_t r;

	if (flags & CHANNEL_WRITE_ZEROCOPY)
		return kv_errf(err, EOPNOTSUPP, "zero-copy writes are not supported by memory "
			       "channels");
	pthread_mutex_lock(&e->l->mu);
	d = tx(e);
	if (d->nobody_reads || d->eof) {
		/* like a socket: EPIPE to a closed peer or after SHUT_WR */
		r = kv_errf(err, EPIPE, "write: %s", strerror(EPIPE));
		goto out;
	}
	room = d->cap ? d->cap - (d->len - d->off) : SIZE_MAX;
	for (int i = 0; i < cnt && room; i++) {
		size_t n = iov[i].iov_len < room ? iov[i].iov_len : room;
		if (make_room(d, n)) {
			oom = true;
			break;
		}
		memcpy(d->buf + d->len, iov[i].iov_base, n);
		d->len += n;
		put += n;
		room -= n;
	}
	if (put) {
		r = (ssize_t)put;
		pthread_cond_broadcast(&e->l->cv);
	} else {
		r = oom ? kv_errf(err, ENOMEM, "write: out of memory") : -EAGAIN;
	}
out:
	pthread_mutex_unlock(&e->l->mu);
	return r;
}

static int mem_wait(struct channel *ch, short events, int timeout_ms, struct kv_err *err)
{
	struct mem_end *e = (struct mem_end *)ch;
	struct timespec until;
	int ready = 0;

	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&e->l->mu);
	for (;;) {
		if ((events & POLLIN) && readable(rx(e)))
			ready |= POLLIN;
		if ((events & POLLOUT) && writable(tx(e)))
			ready |= POLLOUT;
		if (ready || timeout_ms == 0)
			break;
		if (timeout_ms < 0)
			pthread_cond_wait(&e->l->cv, &e->l->mu);
		else if (pthread_cond_timedwait(&e->l->cv, &e->l->mu, &until) == ETIMEDOUT)
			timeout_ms = 0;	/* one last look, then 0 */
	}
	pthread_mutex_unlock(&e->l->mu);
	return ready;
}

static size_t mem_pending(const struct channel *ch)
{
	struct mem_end *e = (struct mem_end *)ch;
	size_t n;

	pthread_mutex_lock(&e->l->mu);
	n = rx(e)->len - rx(e)->off;
	pthread_mutex_unlock(&e->l->mu);
	return n;
}

static void shut(struct mem_end *e, int how)
{
	if (how == SHUT_RD || how == SHUT_RDWR) {
		/* like a socket: our reads see end of stream, the peer's writes fail */
		rx(e)->nobody_reads = true;
		rx(e)->eof = true;
		rx(e)->off = rx(e)->len = 0;
	}
	if (how == SHUT_WR || how == SHUT_RDWR)
		tx(e)->eof = true;
	pthread_cond_broadcast(&e->l->cv);
}

static int mem_shutdown(struct channel *ch, int how, struct kv_err *err)
{
	struct mem_end *e = (struct mem_end *)ch;

	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return kv_errf(err, EINVAL, "shutdown: how=%d", how);
	pthread_mutex_lock(&e->l->mu);
	shut(e, how);
	pthread_mutex_unlock(&e->l->mu);
	return 0;
}

static void mem_close(struct channel *ch)
{
	struct mem_end *e = (struct mem_end *)ch;
	struct mem_link *l = e->l;
	bool last;

	pthread_mutex_lock(&l->mu);
	shut(e, SHUT_RDWR);
	last = --l->refs == 0;
	pthread_mutex_unlock(&l->mu);
	free(e);
	if (last)
		link_free(l);
}

static const struct channel_ops mem_ops = {
	.kind = "mem",
	.readv = mem_readv,
	.writev = mem_writev,
	.wait = mem_wait,
	.pending = mem_pending,
	.shutdown = mem_shutdown,
	.close = mem_close,
};

static struct mem_link *link_new(size_t cap, int refs)
{
	struct mem_link *l = calloc(1, sizeof(*l));
	pthread_condattr_t ca;

	if (!l)
		return NULL;
	pthread_mutex_init(&l->mu, NULL);
	/* timed waits against the monotonic clock: a clock step is no timeout */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	l->dir[0].cap = l->dir[1].cap = cap;
	l->refs = refs;
	return l;
}

static void link_free(struct mem_link *l)
{
	if (!l)
		return;
	free(l->dir[0].buf);
	free(l->dir[1].buf);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static struct mem_end *end_new(struct mem_link *l, int i)
{
	struct mem_end *e = calloc(1, sizeof(*e));

	if (e) {
		e->ch.ops = &mem_ops;
		e->ch.fd = -1;
		e->ch.caps = CHANNEL_CAP_SHUTDOWN;
		e->l = l;
		e->i = i;
	}
	return e;
}

int channel_mem_pair(struct channel **a, struct channel **b, size_t cap, struct kv_err *err)
{
	struct mem_link *l = link_new(cap, 2);
	struct mem_end *ea = l ? end_new(l, 0) : NULL, *eb = ea ? end_new(l, 1) : NULL;

	if (!eb) {
		free(ea);
		link_free(l);
		return kv_errf(err, ENOMEM, "allocating a memory channel");
	}
	*a = &ea->ch;
	*b = &eb->ch;
	return 0;
}

int channel_mem_open(struct channel **out, const void *data, size_t n, struct kv_err *err)
{
	struct mem_link *l = link_new(0, 1);
	struct mem_end *e = l ? end_new(l, 0) : NULL;

	if (!e || (n && make_room(&l->dir[0], n))) {
		free(e);
		link_free(l);
		return kv_errf(err, ENOMEM, "allocating a memory channel of %zu bytes", n);
	}
	if (n)
		memcpy(l->dir[0].buf, data, n);
	l->dir[0].len = n;
	l->dir[0].eof = true;	/* nobody else writes: end of stream after data */
	*out = &e->ch;
	return 0;
}

const uint8_t *channel_mem_written(struct channel *ch, size_t *n)
{
	struct mem_end *e = (struct mem_end *)ch;
	const uint8_t *p;

	if (ch->ops != &mem_ops) {
		*n = 0;
		return NULL;
	}
	pthread_mutex_lock(&e->l->mu);
	*n = tx(e)->len - tx(e)->off;
	p = tx(e)->buf + tx(e)->off;
	pthread_mutex_unlock(&e->l->mu);
	return p;
}
