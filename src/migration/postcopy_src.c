/*
 * postcopy_src.c - the source's side of post-copy (postcopy.h): announce
 * the stale pages, then push them to a destination that already runs the
 * VM, requested pages first; pause and reconnect when the connection
 * breaks.  The VM stays paused here throughout: it never runs again on
 * this host, whatever happens, because the destination has run it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/vm.h"
#include "migration/postcopy.h"
#include "migration/hello.h"
#include "migration/proto.h"
#include "migration/secure.h"
#include "migration/source_internal.h"

#define RQ_CAP 8192		/* requested pages waiting to be sent */
#define PUSH_BATCH 32		/* background pages per record at most ... */
#define PUSH_BATCH_MS 2		/* ... and at most this long at a capped rate */
#define NOTSENT_LOWAT (128u << 10)	/* unsent bytes a request may wait behind */
#define DONE_TIMEOUT_MS 30000

/* ---- ranges (both directions use them) ---- */

int pc_send_ranges(struct stream *s, uint16_t type, struct vm *vm, const uint64_t *bitmap,
		   bool terminate, struct kv_err *err)
{
	const unsigned max = (MIG_MAX_RECORD - 4) / PC_RANGE_SIZE;
	uint8_t *buf = malloc(4 + (size_t)max * PC_RANGE_SIZE);
	uint64_t npages = vm->mem.npages, p = 0;
	unsigned n = 0;
	int r = 0;

	if (!buf)
		return kv_errf(err, ENOMEM, "range buffer");
	while (!r && p < npages) {
		uint64_t start, gpa;

		if (!(bitmap[p / 64] & (1ull << (p % 64)))) {
			p++;
			continue;
		}
		/* a run of set bits, cut where guest addresses stop following */
		start = p;
		gpa = ram_page_gpa(vm, p);
		while (p < npages && (bitmap[p / 64] & (1ull << (p % 64))) &&
		       ram_page_gpa(vm, p) == gpa + ((p - start) << MEM_PAGE_SHIFT))
			p++;
		st_put64(buf + 4 + (size_t)n * PC_RANGE_SIZE, gpa);
		st_put64(buf + 12 + (size_t)n * PC_RANGE_SIZE, p - start);
		if (++n == max) {
			st_put32(buf, n);
			r = stream_write(s, type, STREAM_F_MANDATORY, buf, 4 + n * PC_RANGE_SIZE, err);
			n = 0;
		}
	}
	if (!r && (n || terminate)) {
		st_put32(buf, n);
		r = stream_write(s, type, STREAM_F_MANDATORY, buf, 4 + n * PC_RANGE_SIZE, err);
	}
	if (!r && n && terminate) {
		st_put32(buf, 0);
		r = stream_write(s, type, STREAM_F_MANDATORY, buf, 4, err);
	}
	free(buf);
	return r;
}

int pc_parse_ranges(struct vm *vm, const struct stream_rec *rec, pc_range_fn fn, void *opaque,
		    unsigned *count, struct kv_err *err)
{
	uint32_t n;

	if (rec->len < 4)
		return kv_errf(err, EBADMSG, "%s record truncated", mig_rec_name(rec->type));
	n = st_get32(rec->payload);
	if ((uint64_t)n * PC_RANGE_SIZE != rec->len - 4)
		return kv_errf(err, EBADMSG, "%s record of %u bytes for %u ranges",
			       mig_rec_name(rec->type), rec->len, n);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa = st_get64(rec->payload + 4 + (size_t)i * PC_RANGE_SIZE);
		uint64_t pages = st_get64(rec->payload + 12 + (size_t)i * PC_RANGE_SIZE);
		int r;

		if (gpa & (MEM_PAGE_SIZE - 1) || pages == 0 || pages > vm->mem.npages ||
		    !mem_gpa_to_hva(&vm->mem, gpa, pages << MEM_PAGE_SHIFT))
			return kv_errf(err, EBADMSG, "%s range 0x%" PRIx64 "+%" PRIu64 " pages is "
				       "not guest RAM", mig_rec_name(rec->type), gpa, pages);
		r = fn(opaque, mem_gpa_to_offset(&vm->mem, gpa) >> MEM_PAGE_SHIFT, pages, err);
		if (r)
			return r;
	}
	*count = n;
	return 0;
}

/* ---- the announce, in stop-and-copy ---- */

int src_postcopy_announce(struct migration *m, struct kv_err *err)
{
	uint64_t n = ram_dirty_count(&m->rs);
	int r;

	r = mig_send_json(&m->s, MIG_REC_POSTCOPY,
			  json_pack("{s:I}", "pages", (json_int_t)n), err);
	if (!r && n)
		r = pc_send_ranges(&m->s, MIG_REC_DISCARD, m->vm, m->rs.dirty, false, err);
	if (!r) {
		pthread_mutex_lock(&m->mu);
		m->remaining = n * MEM_PAGE_SIZE;
		pthread_mutex_unlock(&m->mu);
	}
	return r;
}

/* ---- the return path: a reader thread for the destination's records ---- */

struct rpath {
	struct migration *m;
	struct stream *s;
	pthread_t thread;
	pthread_mutex_t mu;
	uint64_t pages[RQ_CAP];	/* requested, not yet taken by the sender */
	unsigned n;
	bool stop, done, broken;
	char why[KV_ERR_MAX];
	json_t *stats;		/* POSTCOPY_DONE */
};

static void rpath_broken(struct rpath *rp, const char *why)
{
	pthread_mutex_lock(&rp->mu);
	if (!rp->broken && !rp->done) {
		rp->broken = true;
		snprintf(rp->why, sizeof(rp->why), "%s", why);
	}
	pthread_mutex_unlock(&rp->mu);
}

static int take_request(struct rpath *rp, const struct stream_rec *rec, struct kv_err *err)
{
	struct vm *vm = rp->m->vm;
	uint32_t n;

	if (rec->len < 4 || (n = st_get32(rec->payload)) > PC_MAX_REQ ||
	    (uint64_t)n * 8 != rec->len - 4)
		return kv_errf(err, EBADMSG, "malformed PAGE_REQ record (%u bytes)", rec->len);
	pthread_mutex_lock(&rp->mu);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa = st_get64(rec->payload + 4 + 8 * (size_t)i);
		if ((gpa & (MEM_PAGE_SIZE - 1)) || !mem_gpa_to_hva(&vm->mem, gpa, MEM_PAGE_SIZE)) {
			pthread_mutex_unlock(&rp->mu);
			return kv_errf(err, EBADMSG, "PAGE_REQ for 0x%" PRIx64 ", not guest RAM",
				       gpa);
		}
		/* full: the page comes with the background push anyway */
		if (rp->n < RQ_CAP)
			rp->pages[rp->n++] = mem_gpa_to_offset(&vm->mem, gpa) >> MEM_PAGE_SHIFT;
	}
	pthread_mutex_unlock(&rp->mu);
	__atomic_add_fetch(&rp->m->pc_requests, n, __ATOMIC_RELAXED);
	return 0;
}

static void *rpath_main(void *arg)
{
	struct rpath *rp = arg;
	struct kv_err err = { "" };

	for (;;) {
		struct stream_rec rec;
		json_t *j = NULL;
		int r;

		if (__atomic_load_n(&rp->stop, __ATOMIC_ACQUIRE))
			return NULL;
		/* not poll(2) on the fd: TLS may hold decrypted records */
		if (stream_wait(rp->s, POLLIN, 200, NULL) <= 0)
			continue;
		r = stream_read(rp->s, &rec, &err);
		if (!r && rec.type == MIG_REC_PAGE_REQ)
			r = take_request(rp, &rec, &err);
		else if (!r && rec.type == MIG_REC_POSTCOPY_DONE) {
			if (mig_parse_json(&rec, &j, &err) == 0) {
				pthread_mutex_lock(&rp->mu);
				rp->stats = j;
				rp->done = true;
				pthread_mutex_unlock(&rp->mu);
				return NULL;
			}
			r = -EBADMSG;
		} else if (!r && rec.type == MIG_REC_ERROR) {
			const char *d = NULL;
			if (!mig_parse_json(&rec, &j, NULL))
				d = json_string_value(json_object_get(j, "desc"));
			kv_errf(&err, ECANCELED, "the destination reported: %s",
				d ? d : "(no reason)");
			json_decref(j);
			r = -ECANCELED;
		} else if (!r) {
			r = kv_errf(&err, EBADMSG, "unexpected %s record from the destination in "
				    "post-copy", mig_rec_name(rec.type));
		}
		if (r) {
			rpath_broken(rp, err.msg);
			return NULL;
		}
	}
}

static int rpath_start(struct rpath *rp, struct migration *m, struct stream *s,
		       struct kv_err *err)
{
	int r;

	memset(rp, 0, sizeof(*rp));
	rp->m = m;
	rp->s = s;
	pthread_mutex_init(&rp->mu, NULL);
	r = pthread_create(&rp->thread, NULL, rpath_main, rp);
	if (r) {
		pthread_mutex_destroy(&rp->mu);
		return kv_errf_sys(err, r, "starting the post-copy return path");
	}
	return 0;
}

static void rpath_stop(struct rpath *rp)
{
	__atomic_store_n(&rp->stop, true, __ATOMIC_RELEASE);
	stream_shutdown(rp->s, SHUT_RD, NULL);	/* a read in progress ends */
	pthread_join(rp->thread, NULL);
	json_decref(rp->stats);
	pthread_mutex_destroy(&rp->mu);
}

/* ---- the push ---- */

/* Pages to send now: what was asked for, still unsent. */
static unsigned take_urgent(struct rpath *rp, struct migration *m, uint64_t *out,
			    uint64_t *cursor)
{
	unsigned k = 0, i;

	pthread_mutex_lock(&rp->mu);
	for (i = 0; i < rp->n && k < MIG_RAM_BATCH; i++) {
		uint64_t p = rp->pages[i];
		if (m->rs.dirty[p / 64] & (1ull << (p % 64)))
			out[k++] = p;
		*cursor = p + 1;	/* the guest is likely to want what follows */
	}
	/* what did not fit in this record stays for the next: a request
	 * dropped here would wait for the background push */
	memmove(rp->pages, rp->pages + i, (rp->n - i) * sizeof(rp->pages[0]));
	rp->n -= i;
	pthread_mutex_unlock(&rp->mu);
	if (*cursor >= m->vm->mem.npages)
		*cursor = 0;
	return k;
}

static bool rpath_state(struct rpath *rp, bool *done, char *why, size_t whylen)
{
	bool broken;

	pthread_mutex_lock(&rp->mu);
	*done = rp->done;
	broken = rp->broken;
	if (broken && why)
		snprintf(why, whylen, "%s", rp->why);
	pthread_mutex_unlock(&rp->mu);
	return broken;
}

static void publish_remaining(struct migration *m)
{
	uint64_t left = ram_dirty_count(&m->rs);

	pthread_mutex_lock(&m->mu);
	m->remaining = left * MEM_PAGE_SIZE;
	pthread_mutex_unlock(&m->mu);
	src_publish(m);
}

/*
 * Send every page still dirty: requested ones first, then those dirtied in
 * the last round (hot), then the rest from where the last request was.
 * 0 when the destination said POSTCOPY_DONE; -EPIPE (why in err) if the
 * connection broke.
 */
static int push(struct migration *m, struct stream *s, struct kv_err *err)
{
	uint64_t urgent[MIG_RAM_BATCH], cursor = 0, hot_cursor = 0;
	unsigned batch = PUSH_BATCH, lowat = NOTSENT_LOWAT;
	struct rpath rp;
	bool done = false, end_sent = false;
	double t_end = 0;
	int r = rpath_start(&rp, m, s, err);

	if (r)
		return r;
	/*
	 * A requested page must not queue behind much background data: the
	 * kernel keeps at most NOTSENT_LOWAT unsent (we only write background
	 * pages when the socket says it is below that), a background record
	 * takes at most PUSH_BATCH_MS at a capped rate, and requested pages
	 * skip the cap.
	 */
	setsockopt(stream_fd(s), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	if (m->p.bandwidth) {
		uint64_t pages = m->p.bandwidth * PUSH_BATCH_MS / 1000 / MEM_PAGE_SIZE;
		batch = pages < 1 ? 1 : pages < PUSH_BATCH ? (unsigned)pages : PUSH_BATCH;
	}
	stream_set_rate(s, m->p.bandwidth);
	while (!r) {
		unsigned n = take_urgent(&rp, m, urgent, &cursor), sent = 0;

		if (rpath_state(&rp, &done, err->msg, sizeof(err->msg))) {
			r = -EPIPE;
			break;
		}
		if (done)
			break;
		if (n) {
			stream_set_rate(s, 0);
			r = ram_send_list(&m->rs, urgent, n, err);
			if (!r)
				r = stream_flush(s, err);
			stream_set_rate(s, m->p.bandwidth);
		} else if (!end_sent) {
			if (stream_wait(s, POLLOUT, 1, NULL) <= 0)
				continue;	/* the kernel has enough queued: look for requests */
			if (m->hot)
				r = ram_send_next(&m->rs, m->hot, &hot_cursor, batch, &sent, err);
			if (!r && !sent)
				r = ram_send_next(&m->rs, NULL, &cursor, batch, &sent, err);
			if (!r && !sent) {
				r = stream_write(s, MIG_REC_POSTCOPY_END, STREAM_F_MANDATORY, NULL, 0,
						 err);
				end_sent = true;
				t_end = src_now_ms();
			}
			if (!r)
				r = stream_flush(s, err);
		} else {
			if (src_now_ms() - t_end > DONE_TIMEOUT_MS) {
				r = kv_errf(err, ETIMEDOUT, "the destination did not confirm the "
					    "end of post-copy in %d s", DONE_TIMEOUT_MS / 1000);
				break;
			}
			poll(NULL, 0, 1);
		}
		publish_remaining(m);
		if (r)
			r = kv_err_prefix(err, -EPIPE, "post-copy");
	}
	if (done) {
		pthread_mutex_lock(&m->mu);
		json_decref(m->pc_stats);
		m->pc_stats = json_incref(rp.stats);
		pthread_mutex_unlock(&m->mu);
	}
	rpath_stop(&rp);
	return r;
}

/* ---- recovery ---- */

static int mark_needed(void *opaque, uint64_t first, uint64_t n, struct kv_err *err)
{
	uint64_t *bm = opaque;

	for (uint64_t p = first; p < first + n; p++)
		bm[p / 64] |= 1ull << (p % 64);
	return 0;
}

/* Wait for `migrate resume=true` (or the VMM going away). */
static int wait_resume(struct migration *m, char *uri, size_t len, struct kv_err *err)
{
	int r = 0;

	pthread_mutex_lock(&m->mu);
	while (!m->resume_req && !m->abandon)
		pthread_cond_wait(&m->cond, &m->mu);
	if (m->abandon)
		r = -ECANCELED;
	else
		snprintf(uri, len, "%s", m->resume_uri);
	m->resume_req = false;
	pthread_mutex_unlock(&m->mu);
	if (r)
		kv_errf(err, ECANCELED, "the VMM was told to quit during a paused post-copy: the "
			"destination never got %" PRIu64 " of the VM's pages, so the VM there "
			"cannot go on", ram_dirty_count(&m->rs));
	return r;
}

/* Connect to the destination again and learn which pages it still needs. */
static int reconnect(struct migration *m, const char *uri, struct kv_err *err)
{
	struct stream_rec rec;
	json_t *j = NULL;
	unsigned count;
	int fd, r;

	fd = mig_connect(uri, CONNECT_TIMEOUT_MS, err);
	if (fd < 0)
		return fd;
	stream_destroy(&m->s);
	pthread_mutex_lock(&m->mu);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = fd;
	pthread_mutex_unlock(&m->mu);
	/* the same credentials as the first connection */
	if ((r = mig_client_stream(m->tls, fd, uri, CONNECT_TIMEOUT_MS * 2, &m->s, err))) {
		memset(&m->s, 0, sizeof(m->s));
		return r;
	}
	m->s.timeout_ms = PEER_TIMEOUT_MS;
	j = mig_hello_new("source", 0);
	json_object_set_new(j, "vm", json_string(m->vm->cfg.name));
	json_object_set_new(j, "id", json_string(m->id));
	json_object_set_new(j, "resume", json_true());
	r = mig_send_json(&m->s, MIG_REC_HELLO, j, err);
	j = NULL;
	if (!r)
		r = stream_flush(&m->s, err);
	if (!r)
		r = mig_expect(&m->s, MIG_REC_HELLO, &rec, err);
	if (!r)
		r = mig_parse_json(&rec, &j, err);
	if (r)
		return r;
	if (!json_is_true(json_object_get(j, "resume"))) {
		json_decref(j);
		return kv_errf(err, EPROTO, "the peer at %s is not waiting to resume this "
			       "post-copy", uri);
	}
	json_decref(j);
	/* what it still needs replaces what we think it needs */
	memset(m->rs.dirty, 0, ((m->vm->mem.npages + 63) / 64) * sizeof(uint64_t));
	do {
		r = mig_expect(&m->s, MIG_REC_NEEDED, &rec, err);
		if (!r)
			r = pc_parse_ranges(m->vm, &rec, mark_needed, m->rs.dirty, &count, err);
	} while (!r && count);
	return r;
}

int src_postcopy_run(struct migration *m, struct kv_err *err)
{
	char uri[sizeof(m->resume_uri)];
	int r;

	m->t_postcopy = src_now_ms();
	src_set_status(m, MIG_POSTCOPY_ACTIVE);
	for (;;) {
		r = push(m, &m->s, err);
		if (!r)
			break;
		/* The destination runs the VM and lacks pages only we have: keep
		 * them, keep the VM paused here, and wait to be reconnected. */
		publish_remaining(m);
		kv_err_prefix(err, r, "post-copy paused, %" PRIu64 " pages still to send; the VM "
			      "runs on the destination and waits there for them. Reconnect with "
			      "'kvmove migrate --resume --to ADDR' once the destination is "
			      "reachable (if its VMM is gone, the VM is lost: restart it from "
			      "its disks)", ram_dirty_count(&m->rs));
		src_set_fail(m, "postcopy", err, r);
		pthread_mutex_lock(&m->mu);
		snprintf(m->error_desc, sizeof(m->error_desc), "%s", err->msg);	/* the latest */
		pthread_mutex_unlock(&m->mu);
		src_set_status(m, MIG_POSTCOPY_PAUSED);
		for (;;) {
			if ((r = wait_resume(m, uri, sizeof(uri), err)))
				return src_set_fail(m, "postcopy", err, r);
			src_set_status(m, MIG_POSTCOPY_RECOVER);
			r = reconnect(m, uri, err);
			if (!r)
				break;
			kv_err_prefix(err, r, "resuming post-copy through %s", uri);
			pthread_mutex_lock(&m->mu);
			snprintf(m->error_desc, sizeof(m->error_desc), "%s", err->msg);
			pthread_mutex_unlock(&m->mu);
			src_set_status(m, MIG_POSTCOPY_PAUSED);
		}
		pthread_mutex_lock(&m->mu);
		m->error_id = NULL;
		m->error_desc[0] = '\0';
		pthread_mutex_unlock(&m->mu);
		src_set_status(m, MIG_POSTCOPY_ACTIVE);
	}
	pthread_mutex_lock(&m->mu);
	m->postcopy_ms = src_now_ms() - m->t_postcopy;
	m->remaining = 0;
	pthread_mutex_unlock(&m->mu);
	return 0;
}
