/*
 * postcopy_dst.c - the destination's side of post-copy (postcopy.h).
 *
 * Threads: the incoming thread receives pages and places them (UFFDIO_COPY,
 * atomic: nobody sees half a page); a fault thread reads userfaultfd and
 * asks the source for every stale page something touched (a vCPU inside
 * KVM_RUN, a device thread, KVM itself), or fills a never-sent page with
 * zeros.  Both write to the stream: wmu orders them.  If the connection
 * breaks, the vCPUs are held (a faulting one waits for its page anyway),
 * and a source that proves it is the same migration (its id) may reconnect
 * on our incoming address; it learns which pages are still needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/uffd.h"
#include "core/vm.h"
#include "migration/migration.h"
#include "migration/postcopy.h"
#include "migration/hello.h"
#include "migration/proto.h"
#include "migration/secure.h"
#include "migration/ram.h"
#include "state/stream.h"

#define PEND_CAP 4096		/* faults asked for, not yet answered */
#define LAT_CAP 65536		/* latency samples kept */
#define RECOVER_HELLO_MS 5000	/* a reconnecting peer has this long to say who it is */

struct pc_dst {
	struct mig_incoming *in;
	struct vm *vm;
	uint64_t announced, discarded;
	uint64_t *needed;	/* stale here: must come from the source */
	uint64_t *have;		/* placed since (bits set atomically) */
	uint64_t left;		/* needed and not placed (atomic) */
	int uffd, stop_efd;
	pthread_t fault_thread;
	bool thread_on;

	pthread_mutex_t wmu;	/* the stream's write side, s, and all below */
	struct stream *s;	/* NULL while the connection is down */
	uint64_t *asked;	/* requested, not yet placed */
	struct pend { uint64_t page; double t; } pend[PEND_CAP];
	unsigned npend;
	uint64_t requests, faults, zero_fills;
	double *lat;		/* on-demand page latency, us */
	unsigned nlat;
	double t_resume, t_done;
	unsigned recoveries;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Sequentially consistent: place() sets `have` then reads `asked`, the
 * fault thread sets `asked` then reads `have`; one of them sees the other. */
static bool test_bit(const uint64_t *bm, uint64_t p)
{
	return __atomic_load_n(&bm[p / 64], __ATOMIC_SEQ_CST) & (1ull << (p % 64));
}

static void set_bit(uint64_t *bm, uint64_t p)
{
	__atomic_fetch_or(&bm[p / 64], 1ull << (p % 64), __ATOMIC_SEQ_CST);
}

static uint64_t *bitmap_new(const struct vm *vm)
{
	return calloc((vm->mem.npages + 63) / 64, sizeof(uint64_t));
}

/* ---- before the VM runs: POSTCOPY, DISCARD, arm ---- */

int pc_dst_begin(struct mig_incoming *in, const struct stream_rec *rec, struct kv_err *err)
{
	struct pc_dst *pc;
	json_t *j = NULL, *jp;
	int r;

	if (in->pc)
		return kv_errf(err, EBADMSG, "a second POSTCOPY record");
	if (!in->postcopy_ok)
		return kv_errf(err, ENOTSUP, "the source switched to post-copy, which this "
			       "destination did not offer");
	if ((r = mig_parse_json(rec, &j, err)))
		return r;
	jp = json_object_get(j, "pages");
	if (!json_is_integer(jp) || json_integer_value(jp) < 0 ||
	    (uint64_t)json_integer_value(jp) > in->vm->mem.npages) {
		json_decref(j);
		return kv_errf(err, EBADMSG, "POSTCOPY record: 'pages' must be 0..%" PRIu64,
			       in->vm->mem.npages);
	}
	pc = calloc(1, sizeof(*pc));
	if (!pc) {
		json_decref(j);
		return kv_errf(err, ENOMEM, "post-copy state");
	}
	pc->announced = (uint64_t)json_integer_value(jp);
	json_decref(j);
	pc->in = in;
	pc->vm = in->vm;
	pc->uffd = pc->stop_efd = -1;
	pthread_mutex_init(&pc->wmu, NULL);
	pc->needed = bitmap_new(in->vm);
	pc->have = bitmap_new(in->vm);
	pc->asked = bitmap_new(in->vm);
	pc->lat = malloc(LAT_CAP * sizeof(double));
	in->pc = pc;
	if (!pc->needed || !pc->have || !pc->asked || !pc->lat)
		return kv_errf(err, ENOMEM, "post-copy bitmaps");
	return 0;
}

static int discard_range(void *opaque, uint64_t first, uint64_t n, struct kv_err *err)
{
	struct pc_dst *pc = opaque;

	for (uint64_t p = first; p < first + n; p++) {
		if (test_bit(pc->needed, p))
			return kv_errf(err, EBADMSG, "page %" PRIu64 " discarded twice", p);
		set_bit(pc->needed, p);
	}
	pc->discarded += n;
	if (pc->discarded > pc->announced)
		return kv_errf(err, EBADMSG, "more pages discarded than the %" PRIu64
			       " announced", pc->announced);
	/* our copy is stale: make it missing, so a touch faults to us */
	return mem_discard(&pc->vm->mem, first, n, err);
}

int pc_dst_discard(struct mig_incoming *in, const struct stream_rec *rec, struct kv_err *err)
{
	unsigned count;

	if (!in->pc)
		return kv_errf(err, EBADMSG, "DISCARD record outside post-copy");
	return pc_parse_ranges(in->vm, rec, discard_range, in->pc, &count, err);
}

/* ---- the fault thread ---- */

/* Ask for pages (gpas); under wmu.  A broken stream just keeps them
 * pending: they are asked again on the next connection. */
static void send_requests(struct pc_dst *pc, const uint64_t *gpa, unsigned n)
{
	uint8_t buf[4 + 8 * PC_MAX_REQ];

	if (!pc->s || !n)
		return;
	st_put32(buf, n);
	for (unsigned i = 0; i < n; i++)
		st_put64(buf + 4 + 8 * i, gpa[i]);
	if (!stream_write(pc->s, MIG_REC_PAGE_REQ, STREAM_F_MANDATORY, buf, 4 + 8 * n, NULL))
		stream_flush(pc->s, NULL);
}

static void handle_faults(struct pc_dst *pc, const uint64_t *pages, int n)
{
	uint64_t gpa[PC_MAX_REQ];
	unsigned k = 0;
	double t = now_us();

	pthread_mutex_lock(&pc->wmu);
	for (int i = 0; i < n; i++) {
		uint64_t p = pages[i];

		pc->faults++;
		if (test_bit(pc->have, p)) {
			uffd_wake(pc->uffd, &pc->vm->mem, p);	/* it came meanwhile */
			continue;
		}
		if (!test_bit(pc->needed, p)) {
			/* never sent, so zero at the source too */
			uffd_place(pc->uffd, &pc->vm->mem, p, NULL);
			pc->zero_fills++;
			continue;
		}
		if (test_bit(pc->asked, p) || pc->npend == PEND_CAP)
			continue;	/* asked already (or the push brings it) */
		set_bit(pc->asked, p);
		if (test_bit(pc->have, p)) {	/* placed just now: it woke the waiter */
			uffd_wake(pc->uffd, &pc->vm->mem, p);
			continue;
		}
		pc->pend[pc->npend++] = (struct pend){ p, t };
		gpa[k++] = ram_page_gpa(pc->vm, p);
		pc->requests++;
	}
	send_requests(pc, gpa, k);
	pthread_mutex_unlock(&pc->wmu);
}

static void *fault_main(void *arg)
{
	struct pc_dst *pc = arg;
	uint64_t pages[64];

	for (;;) {
		struct pollfd p[2] = { { .fd = pc->uffd, .events = POLLIN },
				       { .fd = pc->stop_efd, .events = POLLIN } };
		int n;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return NULL;
		if (p[1].revents)
			return NULL;
		n = uffd_read_faults(pc->uffd, &pc->vm->mem, pages, 64);
		if (n < 0)
			return NULL;
		if (n > 0)
			handle_faults(pc, pages, n);
	}
}

int pc_dst_arm(struct mig_incoming *in, struct kv_err *err)
{
	struct pc_dst *pc = in->pc;
	int r;

	if (pc->discarded != pc->announced)
		return kv_errf(err, EBADMSG, "post-copy announced %" PRIu64 " stale pages but "
			       "discarded %" PRIu64, pc->announced, pc->discarded);
	pc->left = pc->announced;
	pc->uffd = uffd_register(&pc->vm->mem, err);
	if (pc->uffd < 0)
		return pc->uffd;
	pc->stop_efd = eventfd(0, EFD_CLOEXEC);
	if (pc->stop_efd < 0)
		return kv_errf_sys(err, errno, "eventfd");
	r = pthread_create(&pc->fault_thread, NULL, fault_main, pc);
	if (r)
		return kv_errf_sys(err, r, "starting the post-copy fault thread");
	pc->thread_on = true;
	return 0;
}

/* ---- receiving pages ---- */

static void note_latency(struct pc_dst *pc, uint64_t page)
{
	for (unsigned i = 0; i < pc->npend; i++) {
		if (pc->pend[i].page != page)
			continue;
		if (pc->nlat < LAT_CAP)
			pc->lat[pc->nlat++] = now_us() - pc->pend[i].t;
		pc->pend[i] = pc->pend[--pc->npend];
		return;
	}
}

static int place(void *opaque, uint64_t page, const uint8_t *data, struct kv_err *err)
{
	struct pc_dst *pc = opaque;
	int r;

	if (!test_bit(pc->needed, page))
		return kv_errf(err, EBADMSG, "post-copy page at 0x%" PRIx64 " was not announced "
			       "as stale", ram_page_gpa(pc->vm, page));
	if (test_bit(pc->have, page))
		return 0;	/* sent again after a reconnection */
	r = uffd_place(pc->uffd, &pc->vm->mem, page, data);
	if (r && r != -EEXIST)
		return kv_errf_sys(err, -r, "placing page 0x%" PRIx64, ram_page_gpa(pc->vm, page));
	/* under wmu, as the fault thread tests 'have' and sets 'asked': else
	 * each could miss the other's store, and a request answered here
	 * would stay pending for ever (its slot lost; PEND_CAP of them and no
	 * fault is asked for any more) */
	pthread_mutex_lock(&pc->wmu);
	set_bit(pc->have, page);
	if (test_bit(pc->asked, page))
		note_latency(pc, page);
	pthread_mutex_unlock(&pc->wmu);
	__atomic_sub_fetch(&pc->left, 1, __ATOMIC_ACQ_REL);
	mem_mark_dirty(&pc->vm->mem, ram_page_gpa(pc->vm, page), MEM_PAGE_SIZE);
	return 0;
}

/* Records until POSTCOPY_END with every page in place. */
static int receive(struct pc_dst *pc, struct stream *s, struct kv_err *err)
{
	for (;;) {
		struct stream_rec rec;
		int r = stream_read(s, &rec, err);

		if (r == -ECONNRESET)
			return kv_errf(err, ECONNRESET, "the source closed the connection in "
				       "post-copy");
		if (r)
			return r;
		switch (rec.type) {
		case MIG_REC_RAM:
			if ((r = ram_visit(pc->vm, rec.payload, rec.len, NULL, place, pc, err)))
				return r;
			pc->in->pages += st_get32(rec.payload + 4);	/* after the sequence */
			break;
		case MIG_REC_POSTCOPY_END: {
			uint64_t left = __atomic_load_n(&pc->left, __ATOMIC_ACQUIRE);
			if (left)
				return kv_errf(err, EBADMSG, "the source ended post-copy with %"
					       PRIu64 " stale pages never sent", left);
			return 0;
		}
		case MIG_REC_ERROR: {
			json_t *j = NULL;
			const char *d = NULL;
			if (!mig_parse_json(&rec, &j, NULL))
				d = json_string_value(json_object_get(j, "desc"));
			r = kv_errf(err, ECANCELED, "the source gave up: %s", d ? d : "(no reason)");
			json_decref(j);
			return r;
		}
		default:
			return kv_errf(err, EBADMSG, "unexpected %s record in post-copy",
				       mig_rec_name(rec.type));
		}
	}
}

/* ---- recovery ---- */

/* needed & ~have: what a reconnected source must still send */
static int send_needed(struct pc_dst *pc, struct stream *s, struct kv_err *err)
{
	uint64_t nw = (pc->vm->mem.npages + 63) / 64, *bm = malloc(nw * sizeof(uint64_t));
	int r;

	if (!bm)
		return kv_errf(err, ENOMEM, "post-copy bitmap");
	for (uint64_t w = 0; w < nw; w++)
		bm[w] = pc->needed[w] & ~__atomic_load_n(&pc->have[w], __ATOMIC_ACQUIRE);
	r = pc_send_ranges(s, MIG_REC_NEEDED, pc->vm, bm, true, err);
	free(bm);
	return r;
}

/* One reconnection attempt on fd: 0 if it is our source back (s ready). */
static int try_recover(struct pc_dst *pc, struct stream *s, struct kv_err *err)
{
	struct stream_rec rec;
	json_t *j = NULL;
	const char *id, *role;
	int r;

	s->timeout_ms = RECOVER_HELLO_MS;
	r = mig_expect(s, MIG_REC_HELLO, &rec, err);
	if (!r)
		r = mig_parse_json(&rec, &j, err);
	if (r)
		return r;
	id = json_string_value(json_object_get(j, "id"));
	role = json_string_value(json_object_get(j, "role"));
	if (!json_is_true(json_object_get(j, "resume")) || !role || strcmp(role, "source") ||
	    !id || strcmp(id, pc->in->id)) {
		json_decref(j);
		r = kv_errf(err, EPERM, "this destination is in a paused post-copy and only takes "
			    "its own source back (resume with the same migration)");
		mig_send_error(s, "postcopy-paused", err->msg);
		return r;
	}
	json_decref(j);
	j = mig_hello_new("destination", 0);
	json_object_set_new(j, "resume", json_true());
	r = mig_send_json(s, MIG_REC_HELLO, j, err);
	if (!r)
		r = send_needed(pc, s, err);
	if (!r)
		r = stream_flush(s, err);
	s->timeout_ms = MIG_PEER_TIMEOUT_MS;
	return r;
}

/* Resend every fault still waiting (the old connection may have lost them). */
static void reask(struct pc_dst *pc)
{
	uint64_t gpa[PC_MAX_REQ];
	unsigned k = 0;

	for (unsigned i = 0; i < pc->npend; i++) {
		gpa[k++] = ram_page_gpa(pc->vm, pc->pend[i].page);
		if (k == PC_MAX_REQ) {
			send_requests(pc, gpa, k);
			k = 0;
		}
	}
	send_requests(pc, gpa, k);
}

/* Hold here until our source reconnects (0, *fd and *s are the new
 * connection) or we are told to stop. */
static int wait_recovery(struct pc_dst *pc, struct stream *s, int *fd, struct kv_err *err)
{
	struct mig_incoming *in = pc->in;

	for (;;) {
		struct kv_err why;
		int r, c = mig_wait_accept(in, err);

		if (c < 0)
			return c;
		__atomic_store_n(&in->conn_fd, c, __ATOMIC_RELEASE);
		r = mig_open_server(in->tls, c, RECOVER_HELLO_MS, s, &why);
		if (!r) {
			if (!(r = try_recover(pc, s, &why))) {
				*fd = c;
				return 0;
			}
			stream_destroy(s);
		}
		fprintf(stderr, "kvmove: refused a connection during the paused post-copy: %s\n",
			why.msg);
		__atomic_store_n(&in->conn_fd, -1, __ATOMIC_RELEASE);
		close(c);
	}
}

static void stop_faults(struct pc_dst *pc)
{
	uint64_t one = 1;

	if (!pc->thread_on)
		return;
	if (write(pc->stop_efd, &one, sizeof(one)) < 0) {
		/* an eventfd write cannot fail here */
	}
	pthread_join(pc->fault_thread, NULL);
	pc->thread_on = false;
}

int pc_dst_run(struct mig_incoming *in, struct stream *s, struct kv_err *err)
{
	struct pc_dst *pc = in->pc;
	struct stream rs;
	json_t *stats;
	int rfd = -1, r;

	pc->t_resume = now_us();
	pthread_mutex_lock(&pc->wmu);
	pc->s = s;
	pthread_mutex_unlock(&pc->wmu);
	mig_incoming_status(in, MIG_POSTCOPY_ACTIVE, NULL);
	for (;;) {
		r = receive(pc, s, err);
		if (!r)
			break;
		if (in->cancel && __atomic_load_n(in->cancel, __ATOMIC_ACQUIRE))
			return r;	/* the VMM is stopping: no pause to report */
		/* Paused: the vCPUs stop where they can (one waiting for a page
		 * waits anyway); nothing is thrown away on either side. */
		pthread_mutex_lock(&pc->wmu);
		pc->s = NULL;
		pthread_mutex_unlock(&pc->wmu);
		vm_hold(pc->vm, true);
		kv_err_prefix(err, r, "post-copy paused with %" PRIu64 " pages still missing; the "
			      "guest waits for them. Reconnect the source with 'kvmove migrate "
			      "--resume --to %s' on the source's control socket (if the source "
			      "VMM is gone, this VM cannot go on: stop it and restart the VM from "
			      "its disks)", __atomic_load_n(&pc->left, __ATOMIC_ACQUIRE), in->uri);
		fprintf(stderr, "kvmove: %s\n", err->msg);
		mig_incoming_status(in, MIG_POSTCOPY_PAUSED, err->msg);
		if (rfd >= 0) {
			stream_destroy(&rs);
			close(rfd);
			rfd = -1;
		}
		if ((r = wait_recovery(pc, &rs, &rfd, err)))
			return r;
		s = &rs;
		pc->recoveries++;
		pthread_mutex_lock(&pc->wmu);
		pc->s = s;
		reask(pc);
		pthread_mutex_unlock(&pc->wmu);
		vm_hold(pc->vm, false);
		fprintf(stderr, "kvmove: post-copy resumed: the source reconnected\n");
		mig_incoming_status(in, MIG_POSTCOPY_ACTIVE, NULL);
	}
	pc->t_done = now_us();
	stats = pc_dst_stats(in);
	pthread_mutex_lock(&pc->wmu);
	r = mig_send_json(s, MIG_REC_POSTCOPY_DONE, stats, err);
	if (!r)
		r = stream_flush(s, err);
	pc->s = NULL;
	pthread_mutex_unlock(&pc->wmu);
	if (rfd >= 0) {
		stream_destroy(&rs);
		__atomic_store_n(&in->conn_fd, -1, __ATOMIC_RELEASE);
		close(rfd);
	}
	/* every page is here: guest memory is ordinary memory again */
	stop_faults(pc);
	uffd_unregister(pc->uffd, &pc->vm->mem);
	pc->uffd = -1;
	return 0;	/* DONE lost in transit costs the source a timeout, not the VM */
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

json_t *pc_dst_stats(struct mig_incoming *in)
{
	struct pc_dst *pc = in->pc;
	double p50 = 0, p99 = 0, max = 0, end;
	json_t *o;

	if (!pc)
		return json_object();
	pthread_mutex_lock(&pc->wmu);
	if (pc->nlat) {
		qsort(pc->lat, pc->nlat, sizeof(double), cmp_double);
		p50 = pc->lat[pc->nlat / 2];
		p99 = pc->lat[(size_t)((pc->nlat - 1) * 0.99)];
		max = pc->lat[pc->nlat - 1];
	}
	end = pc->t_done > 0 ? pc->t_done : now_us();
	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
		      "pages", (json_int_t)pc->announced,
		      "missing", (json_int_t)__atomic_load_n(&pc->left, __ATOMIC_ACQUIRE),
		      "requests", (json_int_t)pc->requests, "faults", (json_int_t)pc->faults,
		      "zero-fills", (json_int_t)pc->zero_fills,
		      "fault-latency-p50-us", (json_int_t)p50,
		      "fault-latency-p99-us", (json_int_t)p99,
		      "fault-latency-max-us", (json_int_t)max,
		      "postcopy-time", (json_int_t)(pc->t_resume > 0 ?
						     (end - pc->t_resume) / 1e3 : 0),
		      "recoveries", (int)pc->recoveries);
	pthread_mutex_unlock(&pc->wmu);
	return o;
}

void pc_dst_destroy(struct mig_incoming *in)
{
	struct pc_dst *pc = in->pc;

	if (!pc)
		return;
	stop_faults(pc);
	/* anyone still waiting for a page is let go (the VM is being stopped) */
	uffd_unregister(pc->uffd, &pc->vm->mem);
	if (pc->stop_efd >= 0)
		close(pc->stop_efd);
	pthread_mutex_destroy(&pc->wmu);
	free(pc->needed);
	free(pc->have);
	free(pc->asked);
	free(pc->lat);
	free(pc);
	in->pc = NULL;
}
