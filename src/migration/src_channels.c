/*
 * src_channels.c - RAM over several connections (--channels N).
 *
 * The first connection carries the whole protocol, as with one channel.
 * After the preflight, N-1 more connect to the same address and present
 * the token the destination gave in its HELLO (over TLS like the first:
 * each is authenticated on its own).  Each extra channel has a sender
 * thread that sends the RAM stripes of its index (ram.h); the migration
 * thread sends stripe 0 on the first connection.  A pass (the first one, or
 * a dirty round) is fork-join: the thread posts the pass to every channel,
 * sends its own share, and waits for all of them, so the round logic of
 * precopy.c sees one pass whatever N is.  At the stop-and-copy, after the
 * last pages, every extra channel sends CHANNEL_END with its page count and
 * its thread ends; the device state and STATE_END follow on the first one.
 *
 * One channel that fails fails the pass (and so the migration, before GO,
 * exactly as one broken stream does): the other channels are shut down so
 * that nothing waits on them.  Cancel shuts every connection down.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/vm.h"
#include "migration/hello.h"
#include "migration/proto.h"
#include "migration/secure.h"
#include "migration/source_internal.h"

enum chan_job { CHAN_IDLE, CHAN_ALL, CHAN_DIRTY, CHAN_END, CHAN_QUIT };
#define FIRST_FAILED_MAIN (~0u)	/* m->chan_failed: the first connection failed first */

struct src_chan {
	struct migration *m;
	unsigned index;
	int fd;			/* under m->mu (cancel shuts it down) */
	struct stream s;
	bool have_stream, running;
	struct ram_sender rs;
	pthread_t thread;
	enum chan_job job;	/* under m->mu: posted by the migration thread,
				 * back to IDLE when done */
	int rc;			/* the last job's result (under m->mu) */
	struct kv_err err;
	/* published after every record (atomics): for progress and totals */
	uint64_t bytes, normal, zero, entries;
	uint64_t zpages[RAM_CODEC_N], zin, zout;	/* its codec's numbers */
};

static void chan_progress(void *opaque)
{
	struct src_chan *ch = opaque;

	__atomic_store_n(&ch->bytes, ch->s.bytes_out, __ATOMIC_RELAXED);
	__atomic_store_n(&ch->normal, ch->rs.st.normal, __ATOMIC_RELAXED);
	__atomic_store_n(&ch->zero, ch->rs.st.zero, __ATOMIC_RELAXED);
	__atomic_store_n(&ch->entries, ch->rs.st.entries, __ATOMIC_RELAXED);
	for (unsigned k = 0; k < RAM_CODEC_N; k++)
		__atomic_store_n(&ch->zpages[k], ch->rs.codec.st.pages[k], __ATOMIC_RELAXED);
	__atomic_store_n(&ch->zin, ch->rs.codec.st.in_bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&ch->zout, ch->rs.codec.st.out_bytes, __ATOMIC_RELAXED);
}

/* Under m->mu: wake every blocked send or receive on the extra channels. */
void src_chan_shutdown_locked(struct migration *m)
{
	for (unsigned i = 0; m->chan && i + 1 < m->nchan; i++)
		if (m->chan[i].fd >= 0)
			shutdown(m->chan[i].fd, SHUT_RDWR);
}

static int send_end(struct src_chan *ch, struct kv_err *err)
{
	return mig_send_json(&ch->s, MIG_REC_CHANNEL_END,
			     json_pack("{s:I}", "pages", (json_int_t)ch->rs.st.entries), err);
}

static void *chan_main(void *arg)
{
	struct src_chan *ch = arg;
	struct migration *m = ch->m;

	pthread_mutex_lock(&m->mu);
	for (;;) {
		enum chan_job job;
		struct kv_err err = { "" };
		int r = 0;

		while (ch->job == CHAN_IDLE)
			pthread_cond_wait(&m->chan_cv, &m->mu);
		job = ch->job;
		if (job == CHAN_QUIT)
			break;
		pthread_mutex_unlock(&m->mu);
		if (job == CHAN_ALL)
			r = ram_send_all(&ch->rs, &err);
		else if (job == CHAN_DIRTY)
			r = ram_send_dirty(&ch->rs, &err);
		else
			r = send_end(ch, &err);
		if (!r)
			r = stream_flush(&ch->s, &err);
		chan_progress(ch);
		pthread_mutex_lock(&m->mu);
		ch->rc = r;
		ch->err = err;
		if (ch->job == CHAN_QUIT)	/* told to stop meanwhile */
			break;
		if (r && !m->chan_failed) {
			/* the first to fail: nobody waits on the others */
			m->chan_failed = ch->index;
			src_chan_shutdown_locked(m);
		}
		if (r || job == CHAN_END)
			break;
		ch->job = CHAN_IDLE;
		pthread_cond_broadcast(&m->chan_cv);
	}
	ch->running = false;
	pthread_cond_broadcast(&m->chan_cv);
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

static int open_one(struct migration *m, struct src_chan *ch, struct kv_err *err)
{
	json_t *j;
	int fd, r;

	fd = mig_connect(m->p.uri, CONNECT_TIMEOUT_MS, err);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&m->mu);
	ch->fd = fd;
	if (src_is_cancelled(m))
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&m->mu);
	if ((r = mig_client_stream(m->tls, fd, m->p.uri, CONNECT_TIMEOUT_MS * 2, &ch->s, err)))
		return r;
	ch->have_stream = true;
	ch->s.timeout_ms = PEER_TIMEOUT_MS;
	j = mig_hello_new("channel", 0);
	json_object_set_new(j, "id", json_string(m->id));
	json_object_set_new(j, "token", json_string(m->chan_token));
	json_object_set_new(j, "index", json_integer(ch->index));
	if ((r = mig_send_json(&ch->s, MIG_REC_HELLO, j, err)) ||
	    (r = stream_flush(&ch->s, err)))
		return r;
	if ((r = ram_sender_init_stripe(&ch->rs, &m->rs, &ch->s, ch->index, m->nchan, err)))
		return r;
	ch->rs.progress = chan_progress;
	ch->rs.progress_opaque = ch;
	if ((r = pthread_create(&ch->thread, NULL, chan_main, ch)))
		return kv_errf_sys(err, r, "starting a sender thread");
	ch->running = true;
	return 0;
}

int src_chan_open(struct migration *m, struct kv_err *err)
{
	struct src_chan *chan;
	int r = 0;

	if (m->nchan <= 1)
		return 0;
	chan = calloc(m->nchan - 1, sizeof(*chan));
	if (!chan)
		return src_set_fail(m, "internal", err, kv_errf(err, ENOMEM, "channels"));
	for (unsigned i = 0; i + 1 < m->nchan; i++) {
		chan[i].m = m;
		chan[i].index = i + 1;
		chan[i].fd = -1;
	}
	pthread_mutex_lock(&m->mu);
	m->chan = chan;
	pthread_mutex_unlock(&m->mu);
	for (unsigned i = 0; !r && i + 1 < m->nchan; i++)
		if ((r = open_one(m, &chan[i], err)))
			kv_err_prefix(err, r, "channel %u of %u", i + 2, m->nchan);
	if (r)
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "unreachable", err, r);
	return 0;
}

/* Post job to every running channel. */
static void post(struct migration *m, enum chan_job job)
{
	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i + 1 < m->nchan; i++)
		if (m->chan[i].running)
			m->chan[i].job = job;
	pthread_cond_broadcast(&m->chan_cv);
	pthread_mutex_unlock(&m->mu);
}

/* Wait until every channel is done with its job (publishing progress
 * meanwhile); the first failure becomes ours. */
static int join(struct migration *m, int r, struct kv_err *err)
{
	unsigned first;

	pthread_mutex_lock(&m->mu);
	for (;;) {
		bool busy = false;
		struct timespec ts;

		for (unsigned i = 0; i + 1 < m->nchan; i++)
			busy |= m->chan[i].running && m->chan[i].job != CHAN_IDLE;
		if (!busy)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&m->chan_cv, &m->mu, &ts);
		pthread_mutex_unlock(&m->mu);
		src_publish(m);
		pthread_mutex_lock(&m->mu);
	}
	first = m->chan_failed;
	/* an extra channel that failed first is the cause (our own write on
	 * the first connection then fails because the destination gave up) */
	if (first && first != FIRST_FAILED_MAIN && (!r || !src_is_cancelled(m))) {
		struct src_chan *ch = &m->chan[first - 1];
		r = ch->rc ? ch->rc : -EIO;
		kv_errf(err, -r, "channel %u of %u: %s", first + 1, m->nchan, ch->err.msg);
	}
	pthread_mutex_unlock(&m->mu);
	return r;
}

int src_ram_pass(struct migration *m, bool all, struct kv_err *err)
{
	int r;

	if (m->nchan <= 1 || !m->chan)
		return all ? ram_send_all(&m->rs, err) : ram_send_dirty(&m->rs, err);
	post(m, all ? CHAN_ALL : CHAN_DIRTY);
	m->rs.stripe = 0;
	m->rs.nstripes = m->nchan;
	r = all ? ram_send_all(&m->rs, err) : ram_send_dirty(&m->rs, err);
	m->rs.nstripes = 1;
	if (r) {		/* ours failed: the others need not go on */
		pthread_mutex_lock(&m->mu);
		if (!m->chan_failed)
			m->chan_failed = FIRST_FAILED_MAIN;
		src_chan_shutdown_locked(m);
		pthread_mutex_unlock(&m->mu);
	}
	return join(m, r, err);
}

int src_chan_end(struct migration *m, struct kv_err *err)
{
	int r;

	if (m->nchan <= 1 || !m->chan)
		return 0;
	post(m, CHAN_END);
	r = join(m, 0, err);
	for (unsigned i = 0; i + 1 < m->nchan; i++)
		if (m->chan[i].thread && !r) {
			pthread_join(m->chan[i].thread, NULL);
			m->chan[i].thread = 0;
		}
	return r;
}

void src_chan_totals(struct migration *m, uint64_t *bytes, uint64_t *normal, uint64_t *zero,
		     uint64_t *entries)
{
	*bytes = m->s.bytes_out;
	*normal = m->rs.st.normal;
	*zero = m->rs.st.zero;
	*entries = m->rs.st.entries;
	for (unsigned i = 0; m->chan && i + 1 < m->nchan; i++) {
		*bytes += __atomic_load_n(&m->chan[i].bytes, __ATOMIC_RELAXED);
		*normal += __atomic_load_n(&m->chan[i].normal, __ATOMIC_RELAXED);
		*zero += __atomic_load_n(&m->chan[i].zero, __ATOMIC_RELAXED);
		*entries += __atomic_load_n(&m->chan[i].entries, __ATOMIC_RELAXED);
	}
}

void src_chan_codec_totals(struct migration *m, struct ram_codec_stats *st)
{
	*st = m->rs.codec.st;
	for (unsigned i = 0; m->chan && i + 1 < m->nchan; i++) {
		for (unsigned k = 0; k < RAM_CODEC_N; k++)
			st->pages[k] += __atomic_load_n(&m->chan[i].zpages[k], __ATOMIC_RELAXED);
		st->in_bytes += __atomic_load_n(&m->chan[i].zin, __ATOMIC_RELAXED);
		st->out_bytes += __atomic_load_n(&m->chan[i].zout, __ATOMIC_RELAXED);
	}
}

uint64_t src_bytes_out(struct migration *m)
{
	uint64_t b, n, z, e;

	src_chan_totals(m, &b, &n, &z, &e);
	return b;
}

void src_set_rate(struct migration *m, uint64_t bytes_per_sec)
{
	uint64_t each = bytes_per_sec / (m->nchan ? m->nchan : 1);

	if (bytes_per_sec && !each)
		each = 1;
	stream_set_rate(&m->s, each);
	/* the channels are idle between passes: theirs to set now */
	for (unsigned i = 0; m->chan && i + 1 < m->nchan; i++)
		if (m->chan[i].have_stream)
			stream_set_rate(&m->chan[i].s, each);
}

void src_chan_close(struct migration *m)
{
	struct src_chan *chan;

	if (!m->chan)
		return;
	pthread_mutex_lock(&m->mu);
	src_chan_shutdown_locked(m);
	for (unsigned i = 0; i + 1 < m->nchan; i++)
		if (m->chan[i].running)
			m->chan[i].job = CHAN_QUIT;
	pthread_cond_broadcast(&m->chan_cv);
	pthread_mutex_unlock(&m->mu);
	for (unsigned i = 0; i + 1 < m->nchan; i++)
		if (m->chan[i].thread)
			pthread_join(m->chan[i].thread, NULL);
	pthread_mutex_lock(&m->mu);
	chan = m->chan;
	for (unsigned i = 0; i + 1 < m->nchan; i++) {
		if (chan[i].have_stream)
			stream_destroy(&chan[i].s);
		if (chan[i].fd >= 0)
			close(chan[i].fd);
		chan[i].fd = -1;
		ram_sender_destroy(&chan[i].rs);
	}
	m->chan = NULL;
	pthread_mutex_unlock(&m->mu);
	free(chan);
}
