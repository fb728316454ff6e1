#define _GNU_SOURCE
#include "migration/dst_channels.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migration/hello.h"
#include "migration/migration.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "migration/secure.h"
#include "state/stream.h"

#define ACCEPT_MS (2 * MIG_HANDSHAKE_TIMEOUT_MS)	/* for all extra channels */

struct dst_chan {
	struct mig_incoming *in;
	unsigned index;
	int fd;
	struct stream s;
	bool have_stream;
	pthread_t thread;
	bool started, joined;
	uint64_t pages;
	uint32_t seq;
	struct ram_decoder dec;
	int rc;
	struct kv_err err;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#define MAX_PENDING 8	/* handshakes in flight while we wait for the channels */

/* Handshakes run in threads, so that a stranger who connects and says
 * nothing cannot hold up the real channels behind it. */
struct accept_ctx;
struct pending {
	int fd;		/* -1: a free slot */
	pthread_t th;
	bool done, ok;
	struct kv_err err;
	struct accept_ctx *ctx;
};
struct accept_ctx {
	struct mig_incoming *in;
	pthread_mutex_t mu;	/* in->chan[] while handshakes run */
	struct pending p[MAX_PENDING];
};

/* One connection on the listening socket: is it one of our channels? */
static int take_one(struct accept_ctx *ctx, int fd, struct kv_err *err)
{
	struct mig_incoming *in = ctx->in;
	struct stream s;
	struct stream_rec rec;
	struct mig_hello h;
	int r = mig_open_server(in->tls, fd, MIG_HANDSHAKE_TIMEOUT_MS, &s, err);

	if (r)
		return r;
	s.timeout_ms = MIG_HANDSHAKE_TIMEOUT_MS;
	r = mig_expect(&s, MIG_REC_HELLO, &rec, err);
	if (!r)
		r = mig_hello_parse(&rec, "channel", &h, err);
	if (!r && (strcmp(h.token, in->chan_token) || strcmp(h.id, in->id)))
		r = kv_errf(err, EPERM, "a channel that does not belong to this migration");
	if (!r && (h.index < 1 || h.index >= in->nchan))
		r = kv_errf(err, EPROTO, "channel index %u (this migration has %u)", h.index,
			    in->nchan);
	pthread_mutex_lock(&ctx->mu);
	if (!r && in->chan[h.index - 1].have_stream)
		r = kv_errf(err, EPROTO, "channel %u arrived twice", h.index + 1);
	if (!r) {
		struct dst_chan *ch = &in->chan[h.index - 1];
		ch->s = s;
		ch->have_stream = true;
		ch->fd = fd;
		ch->s.timeout_ms = MIG_PEER_TIMEOUT_MS;
	}
	pthread_mutex_unlock(&ctx->mu);
	if (r) {
		mig_send_error(&s, "refused", err->msg);
		stream_flush(&s, NULL);
		stream_destroy(&s);
	}
	return r;
}

static void *pending_main(void *arg)
{
	struct pending *p = arg;

	p->ok = !take_one(p->ctx, p->fd, &p->err);
	__atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Join finished handshakes (all: stop the rest first); count the channels. */
static unsigned reap(struct accept_ctx *ctx, bool all)
{
	unsigned got = 0;

	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &ctx->p[i];
		if (p->fd < 0)
			continue;
		if (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE)) {
			if (!all)
				continue;
			shutdown(p->fd, SHUT_RDWR);	/* a stranger still talking */
		}
		pthread_join(p->th, NULL);
		if (p->ok) {
			got++;
		} else {
			fprintf(stderr, "kvmove: refused a connection while waiting for the "
				"migration's channels: %s\n", p->err.msg);
			close(p->fd);
		}
		p->fd = -1;
	}
	return got;
}

int dst_chan_accept(struct mig_incoming *in, struct kv_err *err)
{
	double deadline = now_ms() + ACCEPT_MS;
	struct accept_ctx *ctx;
	unsigned have = 0;
	int r = 0;

	if (in->nchan <= 1)
		return 0;
	in->chan = calloc(in->nchan - 1, sizeof(*in->chan));
	ctx = calloc(1, sizeof(*ctx));
	if (!in->chan || !ctx) {
		free(ctx);
		return kv_errf(err, ENOMEM, "channels");
	}
	for (unsigned i = 0; i + 1 < in->nchan; i++) {
		in->chan[i].in = in;
		in->chan[i].index = i + 1;
		in->chan[i].fd = -1;
	}
	ctx->in = in;
	pthread_mutex_init(&ctx->mu, NULL);
	for (int i = 0; i < MAX_PENDING; i++) {
		ctx->p[i].fd = -1;
		ctx->p[i].ctx = ctx;
	}
	while (!r && (have += reap(ctx, false)) + 1 < in->nchan) {
		struct pollfd pf = { .fd = in->listen_fd, .events = POLLIN };
		double left = deadline - now_ms();
		struct pending *slot = NULL;
		int fd;

		if (left <= 0) {
			r = kv_errf(err, ETIMEDOUT, "%u of the %u extra channels the source asked "
				    "for arrived within %d s", have, in->nchan - 1,
				    ACCEPT_MS / 1000);
			break;
		}
		if (in->cancel && __atomic_load_n(in->cancel, __ATOMIC_ACQUIRE)) {
			r = kv_errf(err, ECANCELED, "stopped while waiting for channels");
			break;
		}
		if (poll(&pf, 1, left < 50 ? (int)left + 1 : 50) <= 0)
			continue;
		fd = accept4(in->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
				r = kv_errf_sys(err, errno, "accept");
			continue;
		}
		for (int i = 0; i < MAX_PENDING && !slot; i++)
			if (ctx->p[i].fd < 0)
				slot = &ctx->p[i];
		if (!slot) {	/* a crowd of strangers: the newest is turned away */
			close(fd);
			continue;
		}
		slot->fd = fd;
		slot->done = slot->ok = false;
		slot->err.msg[0] = 0;
		if ((r = pthread_create(&slot->th, NULL, pending_main, slot))) {
			slot->fd = -1;
			close(fd);
			r = kv_errf_sys(err, r, "starting a handshake thread");
		}
	}
	have += reap(ctx, true);
	pthread_mutex_destroy(&ctx->mu);
	free(ctx);
	return r;
}

static void *rx_main(void *arg)
{
	struct dst_chan *ch = arg;
	struct mig_incoming *in = ch->in;
	struct stream_rec rec;
	struct kv_err err = { "" };
	json_t *j = NULL;
	int r;

	for (;;) {
		r = stream_read_head(&ch->s, &rec, &err);
		if (r == -ECONNRESET)
			r = kv_errf(&err, ECONNRESET, "the source closed it before its end");
		if (!r && rec.type != MIG_REC_RAM)
			r = stream_read_body(&ch->s, &rec, &err);
		if (r)
			break;
		if (rec.type == MIG_REC_RAM) {
			r = ram_receive(in->vm, &ch->s, &rec, in->compress ? &ch->dec : NULL,
					&ch->pages, &ch->seq, &err);
		} else if (rec.type == MIG_REC_CHANNEL_END) {
			json_t *p;
			if (!(r = mig_parse_json(&rec, &j, &err))) {
				p = json_object_get(j, "pages");
				if (!json_is_integer(p) || (uint64_t)json_integer_value(p) != ch->pages)
					r = kv_errf(&err, EBADMSG, "the source put %lld pages on it, "
						    "%" PRIu64 " arrived", json_is_integer(p) ?
						    (long long)json_integer_value(p) : -1LL,
						    ch->pages);
				json_decref(j);
			}
			break;
		} else if (rec.type == MIG_REC_ERROR) {
			const char *d = NULL;
			if (!mig_parse_json(&rec, &j, NULL))
				d = json_string_value(json_object_get(j, "desc"));
			r = kv_errf(&err, ECANCELED, "the source gave up: %s", d ? d : "(no reason)");
			json_decref(j);
		} else {
			r = kv_errf(&err, EBADMSG, "%s record on a RAM channel",
				    mig_rec_name(rec.type));
		}
		if (r)
			break;
	}
	ch->rc = r;
	ch->err = err;
	if (r) {
		int none = 0;
		/* the first to fail wakes the first connection's reader */
		if (__atomic_compare_exchange_n(&in->chan_failed, &none, (int)ch->index, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) && in->main_s)
			stream_shutdown(in->main_s, SHUT_RD, NULL);
	}
	return NULL;
}

int dst_chan_start(struct mig_incoming *in, struct kv_err *err)
{
	for (unsigned i = 0; in->chan && i + 1 < in->nchan; i++) {
		int r = pthread_create(&in->chan[i].thread, NULL, rx_main, &in->chan[i]);
		if (r)
			return kv_errf_sys(err, r, "starting a receiver thread");
		in->chan[i].started = true;
	}
	return 0;
}

int dst_chan_join(struct mig_incoming *in, bool stop, struct kv_err *err)
{
	int failed, r = 0;

	if (!in->chan)
		return 0;
	for (unsigned i = 0; stop && i + 1 < in->nchan; i++)
		if (in->chan[i].fd >= 0 && !in->chan[i].joined)
			shutdown(in->chan[i].fd, SHUT_RDWR);
	for (unsigned i = 0; i + 1 < in->nchan; i++) {
		struct dst_chan *ch = &in->chan[i];
		if (!ch->started || ch->joined)
			continue;
		pthread_join(ch->thread, NULL);
		ch->joined = true;
		in->pages += ch->pages;
		in->chan_bytes += ch->s.bytes_in;
	}
	failed = __atomic_load_n(&in->chan_failed, __ATOMIC_ACQUIRE);
	if (failed) {
		struct dst_chan *ch = &in->chan[failed - 1];
		r = ch->rc ? ch->rc : -EIO;
		kv_errf(err, -r, "channel %u of %u: %s", ch->index + 1, in->nchan, ch->err.msg);
	} else {
		for (unsigned i = 0; i + 1 < in->nchan; i++)
			if (!in->chan[i].started)
				r = kv_errf(err, EPROTO, "channel %u never started", i + 2);
	}
	return r;
}

void dst_chan_close(struct mig_incoming *in)
{
	if (!in->chan)
		return;
	(void)dst_chan_join(in, true, &(struct kv_err){ "" });
	for (unsigned i = 0; i + 1 < in->nchan; i++) {
		if (in->chan[i].have_stream)
			stream_destroy(&in->chan[i].s);
		ram_decoder_destroy(&in->chan[i].dec);
		if (in->chan[i].fd >= 0)
			close(in->chan[i].fd);
	}
	free(in->chan);
	in->chan = NULL;
	in->main_s = NULL;
	__atomic_store_n(&in->chan_failed, 0, __ATOMIC_RELEASE);
}
