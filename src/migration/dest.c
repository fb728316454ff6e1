/*
 * dest.c - the receiving side: one reader for a live socket and for a saved
 * file, so quick and live migration share every check.
 *
 * Live: accept, HELLO both ways, CONFIG -> preflight verdict (a check-only
 * source is answered and then we wait for the next connection), build the
 * VM, load RAM and state records until STATE_END, READY, wait for GO, take
 * the lock, resume, RESUMED.
 * File: HELLO, CONFIG (checked by the same preflight), records, STATE_END,
 * END; take the lock, resume.
 * Any malformed record, any page outside the VM, any state the VM cannot
 * take ends the receive with a message; the VM never runs then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/vm.h"
#include "devices/device.h"
#include "migration/devstate.h"
#include "migration/dst_channels.h"
#include "migration/dst_local.h"
#include "migration/hello.h"
#include "migration/migration.h"
#include "migration/postcopy.h"
#include "migration/proto.h"
#include "migration/secure.h"
#include "migration/ram.h"
#include "migration/arbiter.h"
#include "state/stream.h"


static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int check_hello(struct mig_incoming *in, const struct stream_rec *rec,
		       const char *want_role, struct kv_err *err)
{
	struct mig_hello h;
	int r = mig_hello_parse(rec, want_role, &h, err);

	if (r)
		return r;
	if (h.resume)
		return kv_errf(err, EPROTO, "the source wants to resume a post-copy; there is none "
			       "here");
	/* its id lets the same source (and only it) reconnect a paused post-copy */
	if (h.id[0])
		memcpy(in->id, h.id, sizeof(in->id));
	in->want_channels = h.caps & MIG_CAP_CHANNELS ? h.channels : 1;
	/* we always offer it: compressed pages come only if the source said so */
	in->compress = h.caps & MIG_CAP_COMPRESS;
	/* memory goes over as an fd only on a UNIX socket */
	in->local = (h.caps & MIG_CAP_LOCAL) && in->conn_local;
	if ((h.caps & MIG_CAP_LOCAL) && !in->conn_local)
		return kv_errf(err, EPROTO, "a same-host hand-over needs a unix: address");
	return 0;
}

/* Read CONFIG and run the preflight on it. *verdict: failures array. */
static int read_config(struct mig_incoming *in, struct stream *s, struct mig_vm_config *cfg,
		       bool *check_only, bool *quick, json_t **verdict, struct kv_err *err)
{
	struct stream_rec rec;
	json_t *j;
	bool local;
	int r = mig_expect(s, MIG_REC_CONFIG, &rec, err);

	if (!r)
		r = mig_parse_json(&rec, &j, err);
	if (r)
		return r;
	*check_only = json_is_true(json_object_get(j, "check-only"));
	if (quick)
		*quick = json_is_true(json_object_get(j, "quick"));
	local = json_is_true(json_object_get(j, "local"));
	json_object_del(j, "check-only");
	json_object_del(j, "quick");
	json_object_del(j, "local");
	r = mig_config_from_json(j, cfg, err);
	json_decref(j);
	if (r)
		return r;
	if (local != in->local)
		return kv_errf(err, EPROTO, "CONFIG and HELLO disagree on a same-host hand-over");
	if (local) {
		cfg->local = true;
		cfg->ram_fd = -1;
		for (unsigned i = 0; i < MIG_MAX_DEVICES; i++)
			cfg->dev_fd[i] = -1;
	}
	/* not the VM this destination was told to take: not ours to judge */
	if (in->host.allow && in->host.allow->expect && strcmp(cfg->name, in->host.allow->expect))
		return kv_errf(err, EPERM, "this destination does not take VM %s (it was "
			       "started for another VM)", cfg->name);
	*verdict = mig_preflight(cfg, &in->host);
	if (quick && *quick && !(in->host.allow && in->host.allow->via))
		json_array_append_new(*verdict, json_pack(
			"{s:s, s:s}", "id", "quick", "reason", "this destination takes no quick "
			"migrations (start it with --via DIR, the shared directory)"));
	return 0;
}

static void print_refusal(json_t *failures)
{
	size_t i;
	json_t *f;

	fprintf(stderr, "kvmove: preflight refused the incoming VM:\n");
	json_array_foreach(failures, i, f)
		fprintf(stderr, "  [%s] %s\n", json_string_value(json_object_get(f, "id")),
			json_string_value(json_object_get(f, "reason")));
}

/* The devices the stream will describe must be the ones we built. */
static int check_devices(struct vm *vm, const struct mig_vm_config *cfg, struct kv_err *err)
{
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		bool found = false;
		for (unsigned d = 0; d < vm->ndevices; d++)
			if (!strcmp(vm->devices[d]->name, cfg->devices[i].name) &&
			    !strcmp(vm->devices[d]->ops->type, cfg->devices[i].type))
				found = true;
		if (!found)
			return kv_errf(err, ENODEV, "device %s (%s) cannot be created here",
				       cfg->devices[i].name, cfg->devices[i].type);
	}
	return 0;
}

/* RAM and state records until STATE_END. */
static int receive_records(struct mig_incoming *in, struct stream *s, struct kv_err *err)
{
	struct devstate_rx *rx = calloc(1, sizeof(*rx));
	struct stream_rec rec;
	int r;

	if (!rx)
		return kv_errf(err, ENOMEM, "receive state");
	for (;;) {
		r = stream_read_head(s, &rec, err);
		if (r == -ECONNRESET)
			r = kv_errf(err, ECONNRESET, "the source closed the stream before "
				    "sending all state");
		/* RAM goes straight into guest memory; the rest is read whole */
		if (!r && rec.type != MIG_REC_RAM)
			r = stream_read_body(s, &rec, err);
		if (r) {
			/* an extra channel failed and woke us: its reason is the one */
			if (__atomic_load_n(&in->chan_failed, __ATOMIC_ACQUIRE))
				r = dst_chan_join(in, true, err);
			break;
		}
		/* Device state, post-copy's discard and the end need all of RAM:
		 * the extra channels have ended before the source sent them. */
		if (rec.type != MIG_REC_RAM && rec.type != MIG_REC_ROUND &&
		    rec.type != MIG_REC_ERROR && (r = dst_chan_join(in, false, err)))
			break;
		switch (rec.type) {
		case MIG_REC_RAM:
			if (in->status == MIG_SETUP)
				mig_incoming_status(in, MIG_ACTIVE, NULL);
			if (in->pc)
				r = kv_errf(err, EBADMSG, "RAM record after POSTCOPY, before the VM "
					    "runs");
			else if (in->local)
				r = kv_errf(err, EBADMSG, "RAM record in a same-host hand-over");
			else
				r = ram_receive(in->vm, s, &rec, in->compress ? &in->dec : NULL,
						&in->pages, &in->ram_seq, err);
			break;
		case MIG_REC_ROUND:
			break;
		case MIG_REC_POSTCOPY:
			r = pc_dst_begin(in, &rec, err);
			break;
		case MIG_REC_DISCARD:
			r = pc_dst_discard(in, &rec, err);
			break;
		case MIG_REC_VM_ARCH:
		case MIG_REC_VCPU:
		case MIG_REC_DEVICE:
			if (!in->t_state) {
				in->t_state = now_ms();
				mig_incoming_status(in, MIG_DEVICE, NULL);
			}
			r = devstate_apply(in->vm, rx, rec.type, rec.payload, rec.len, err);
			break;
		case MIG_REC_STATE_END:
			r = mig_check_end(&rec, in->pages, &in->end, err);
			if (!r)
				r = devstate_complete(in->vm, rx, err);
			if (!r && in->pc)
				r = pc_dst_arm(in, err);
			free(rx);
			return r;
		case MIG_REC_ERROR: {
			json_t *j = NULL;
			const char *d = NULL;
			if (!mig_parse_json(&rec, &j, NULL))
				d = json_string_value(json_object_get(j, "desc"));
			r = kv_errf(err, ECANCELED, "the source gave up: %s", d ? d : "(no reason)");
			json_decref(j);
			break;
		}
		default:
			if (rec.flags & STREAM_F_MANDATORY)
				r = kv_errf(err, EBADMSG, "unknown mandatory record type %u", rec.type);
			break;	/* optional records we do not know are skipped */
		}
		if (r) {
			/* an extra channel that failed wakes us by shutting this
			 * connection's reading side: a RAM record cut short here is
			 * that wake-up, and the channel's reason is the one */
			if (__atomic_load_n(&in->chan_failed, __ATOMIC_ACQUIRE))
				r = dst_chan_join(in, true, err);
			break;
		}
	}
	free(rx);
	return r;
}

static int build(struct mig_incoming *in, const struct mig_vm_config *cfg, struct kv_err *err)
{
	int r = in->build(in->opaque, cfg, &in->vm, err);

	if (!r)
		r = check_devices(in->vm, cfg, err);
	return r;
}

/* Take the VM: the lock first (the arbiter), then run it. */
static int take_and_resume(struct mig_incoming *in, struct kv_err *err)
{
	int r;

	if (in->arb) {
		/* the commit point: in a cluster, the CAS on the owner key.  An
		 * arbiter we cannot reach is asked again until it answers: giving
		 * up with an unknown outcome could leave the VM nowhere */
		r = arbiter_acquire(in->arb, in->id, ARBITER_WAIT_FOREVER, err);
		if (r)
			return kv_err_prefix(err, r, "not resuming");
	}
	r = vm_acquire_resources(in->vm, err);
	if (!r) {
		/* a VM that was paused at the source arrives paused */
		r = vm_start_as(in->vm, in->end.paused, err);
		if (r)
			vm_release_resources(in->vm);
	} else {
		kv_err_prefix(err, r, "not resuming");
	}
	/* Holding the locks means "I run the VM": never keep them if we don't,
	 * or the source would believe we do and the VM would be lost. */
	if (r && in->arb)
		(void)arbiter_release(in->arb, in->id, NULL);
	return r;
}

int mig_wait_accept(struct mig_incoming *in, struct kv_err *err)
{
	for (;;) {
		struct pollfd p = { .fd = in->listen_fd, .events = POLLIN };
		int r = poll(&p, 1, 500), fd;

		if (in->cancel && __atomic_load_n(in->cancel, __ATOMIC_ACQUIRE))
			return kv_errf(err, ECANCELED, "stopped while waiting for a migration");
		if (r <= 0)
			continue;
		fd = accept4(in->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0)
			return fd;
		if (errno != EINTR && errno != ECONNABORTED)
			return kv_errf_sys(err, errno, "accept");
	}
}

/*
 * Restore from a saved file.  consume: remove it once the VM runs (a second
 * restore would run the VM again, against disks the first one changed); the
 * file is locked while we read it, so two restores cannot race for it.
 */
static int run_file(struct mig_incoming *in, bool consume, struct kv_err *err)
{
	struct stream s;
	struct stream_rec rec;
	struct mig_vm_config cfg = { 0 };
	json_t *verdict = NULL;
	bool check_only;
	int fd, r;

	fd = open(in->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kv_errf_sys(err, errno, "%s", in->file);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		close(fd);
		return kv_errf(err, EBUSY, "%s is being restored by another VMM", in->file);
	}
	r = stream_init(&s, fd, MIG_MAX_RECORD, err);
	if (r) {
		close(fd);
		return r;
	}
	r = mig_expect(&s, MIG_REC_HELLO, &rec, err);
	if (!r)
		r = check_hello(in, &rec, "file", err);
	if (!r)
		r = read_config(in, &s, &cfg, &check_only, NULL, &verdict, err);
	if (!r && json_array_size(verdict)) {
		print_refusal(verdict);
		in->refused = true;
		r = kv_errf(err, EPERM, "this host cannot run the saved VM");
	}
	if (!r)
		r = build(in, &cfg, err);
	if (!r)
		r = receive_records(in, &s, err);
	if (!r)
		r = mig_expect(&s, MIG_REC_END, &rec, err);
	if (!r)
		r = mig_check_end(&rec, in->pages, NULL, err);
	if (!r && stream_read(&s, &rec, err) != -ECONNRESET)
		r = kv_errf(err, EBADMSG, "data after the end of the saved state");
	in->bytes = s.bytes_in;
	if (!r)
		r = take_and_resume(in, err);
	in->load_ms = now_ms() - in->t_state;
	if (!r && consume && unlink(in->file) < 0)
		fprintf(stderr, "kvmove: warning: could not remove %s after restoring it (%s): "
			"do not restore it again\n", in->file, strerror(errno));
	if (r)
		kv_err_prefix(err, r, "restoring %s", in->file);
	json_decref(verdict);
	mig_config_free(&cfg);
	stream_destroy(&s);
	close(fd);
	return r;
}

/*
 * Quick migration through shared storage: the source saves the VM into the
 * shared directory and sends SAVED (its GO); we restore DIR/NAME.kvmstate
 * from our own --via DIR and the name we expect (never a path from the
 * stream), with every check a saved file gets, take the lock, resume, say
 * RESUMED.  A failure is reported to the source by its class only: the
 * peer learns nothing about this host's files.
 */
static int quick_restore(struct mig_incoming *in, struct stream *s,
			 const struct mig_vm_config *cfg, struct kv_err *err)
{
	struct stream_rec rec;
	char path[PATH_MAX];
	int r;

	s->timeout_ms = -1;	/* saving takes as long as the VM is large */
	r = mig_expect(s, MIG_REC_SAVED, &rec, err);
	if (r)
		return kv_err_prefix(err, r, "quick migration (the source keeps the VM)");
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.kvmstate", in->host.allow->via,
			     cfg->name) >= sizeof(path))
		return kv_errf(err, ENAMETOOLONG, "--via path too long");
	in->file = path;
	r = run_file(in, false, err);	/* removed after RESUMED, below */
	in->file = NULL;
	if (r) {
		fprintf(stderr, "kvmove: quick migration: %s\n", err->msg);
		mig_send_error(s, "restore", in->refused ? "the destination refused the saved VM "
			       "(see its log)" : "the destination could not restore the saved VM "
			       "from its --via directory (see its log)");
		return r;
	}
	mig_send_json(s, MIG_REC_RESUMED, json_pack("{s:f}", "load-ms", in->load_ms), NULL);
	stream_flush(s, NULL);
	/* After RESUMED: removing a multi-GiB file is not downtime.  The image
	 * is an artifact of this hand-over; a stale VM image must not linger
	 * where someone could restore it later. */
	unlink(path);
	return 0;
}

/*
 * After a check-only preflight: read the source's link probe (filler
 * records, discarded; an empty one is answered with PROBE_ACK) until END.
 */
static int serve_probe(struct stream *s, struct kv_err *err)
{
	struct stream_rec rec;
	uint64_t bytes = 0;

	for (;;) {
		int r = stream_read(s, &rec, err);

		if (r)
			return r;
		if (rec.type == MIG_REC_END)
			return 0;
		if (rec.type != MIG_REC_PROBE)
			return kv_errf(err, EBADMSG, "unexpected %s record after a check-only "
				       "preflight", mig_rec_name(rec.type));
		bytes += rec.len;
		if (rec.len)
			continue;
		if ((r = mig_send_json(s, MIG_REC_PROBE_ACK,
				       json_pack("{s:I}", "bytes", (json_int_t)bytes), err)) ||
		    (r = stream_flush(s, err)))
			return r;
	}
}

/* Our HELLO: what we offer; with channels, how many we grant and the token
 * the extra connections must bring. */
static json_t *dst_hello(struct mig_incoming *in)
{
	json_t *j = mig_hello_new("destination", MIG_CAP_CHANNELS | MIG_CAP_COMPRESS |
				  (in->postcopy_ok ? MIG_CAP_POSTCOPY : 0) |
				  (in->conn_local ? MIG_CAP_LOCAL : 0));
	unsigned n = in->want_channels;

	if (n > MIG_MAX_CHANNELS)
		n = MIG_MAX_CHANNELS;
	in->nchan = n ? n : 1;
	/* no token, no extra channels: RAM goes over this one connection */
	if (in->nchan > 1 && mig_random_hex(in->chan_token))
		in->nchan = 1;
	json_object_set_new(j, "channels", json_integer(in->nchan));
	if (in->nchan > 1)
		json_object_set_new(j, "token", json_string(in->chan_token));
	return j;
}

/*
 * One connection.  Returns 1 to keep listening: a check-only probe, or a
 * connection refused before anything was built (garbage, silence, a peer
 * that is not our source or wants another VM: strangers cannot end or hold
 * a destination).  0 when the VM runs here; <0 when the expected VM failed
 * (refused at preflight, or lost while it was being received).
 */
static int run_conn(struct mig_incoming *in, struct stream *s, struct kv_err *err)
{
	struct stream_rec rec;
	struct mig_vm_config cfg = { 0 };
	json_t *verdict = NULL;
	bool check_only = false, quick = false;
	int r;

	/* a few seconds to say who it is and what it brings */
	s->timeout_ms = MIG_HANDSHAKE_TIMEOUT_MS;
	r = mig_expect(s, MIG_REC_HELLO, &rec, err);
	if (!r)
		r = check_hello(in, &rec, "source", err);
	if (!r)
		r = mig_send_json(s, MIG_REC_HELLO, dst_hello(in), err);
	if (!r)
		r = stream_flush(s, err);
	if (!r)
		r = read_config(in, s, &cfg, &check_only, &quick, &verdict, err);
	if (r) {
		if (r == -EPERM)	/* another VM: a refusal the source can show */
			mig_send_json(s, MIG_REC_PREFLIGHT, json_pack(
				"{s:b, s:[{s:s, s:s}]}", "ok", 0, "failures", "id", "identity",
				"reason", err->msg), NULL);
		else
			mig_send_error(s, "refused", err->msg);
		stream_flush(s, NULL);
		fprintf(stderr, "kvmove: refused a connection: %s; still waiting for %s\n",
			err->msg, in->host.allow && in->host.allow->expect ?
			in->host.allow->expect : "the migration");
		mig_incoming_status(in, MIG_NONE, err->msg);
		r = 1;
		goto out;
	}
	s->timeout_ms = MIG_PEER_TIMEOUT_MS;
	r = mig_send_json(s, MIG_REC_PREFLIGHT,
			  json_pack("{s:b, s:O}", "ok", json_array_size(verdict) == 0,
				    "failures", verdict), err);
	if (!r)
		r = stream_flush(s, err);
	if (r)
		goto out;
	if (json_array_size(verdict)) {
		print_refusal(verdict);
		in->refused = true;
		r = kv_errf(err, EPERM, "refused the VM at preflight");
		goto out;
	}
	if (check_only) {
		/* nothing was built: whatever the probe does, keep waiting */
		if (serve_probe(s, err))
			fprintf(stderr, "kvmove: check-only source: %s\n", err->msg);
		fprintf(stderr, "kvmove: preflight check from the source passed; still waiting "
			"for the migration\n");
		r = 1;
		goto out;
	}
	if (quick) {
		r = quick_restore(in, s, &cfg, err);
		goto out;
	}
	in->main_s = s;
	/* same host: built around the handed-over memory before the source
	 * pauses the VM, so that building is no downtime */
	if ((in->local && (r = dst_local_receive(s, &cfg, err))) ||
	    (r = dst_chan_accept(in, err)) || (r = build(in, &cfg, err)) ||
	    (in->local && ((r = stream_write(s, MIG_REC_LOCAL_BUILT, STREAM_F_MANDATORY, NULL, 0,
					     err)) || (r = stream_flush(s, err)))) ||
	    (r = dst_chan_start(in, err)) || (r = receive_records(in, s, err))) {
		mig_send_error(s, "load", err->msg);
		goto out;
	}
	r = stream_write(s, MIG_REC_READY, STREAM_F_MANDATORY, NULL, 0, err);
	if (!r)
		r = stream_flush(s, err);
	if (!r)
		r = mig_expect(s, MIG_REC_GO, &rec, err);
	if (r) {
		kv_err_prefix(err, r, "before GO (the source keeps the VM)");
		goto out;
	}
	r = take_and_resume(in, err);
	if (r) {
		mig_send_error(s, "lock", err->msg);
		goto out;
	}
	in->load_ms = now_ms() - in->t_state;
	/* Best effort: the VM runs here whatever happens to this message. */
	mig_send_json(s, MIG_REC_RESUMED, json_pack("{s:f}", "load-ms", in->load_ms), NULL);
	stream_flush(s, NULL);
	if (in->pc) {
		if (in->on_resumed)
			in->on_resumed(in->opaque);
		r = pc_dst_run(in, s, err);
	}
out:
	dst_chan_close(in);
	if (!quick)
		in->bytes = s->bytes_in + in->chan_bytes;	/* quick: run_file counted the file */
	json_decref(verdict);
	mig_config_free(&cfg);
	return r;
}

void mig_incoming_init(struct mig_incoming *in)
{
	in->listen_fd = in->conn_fd = -1;
	in->status = MIG_NONE;
	pthread_mutex_init(&in->mu, NULL);
}

void mig_incoming_destroy(struct mig_incoming *in)
{
	pc_dst_destroy(in);
	ram_decoder_destroy(&in->dec);
	pthread_mutex_destroy(&in->mu);
}

void mig_incoming_status(struct mig_incoming *in, enum mig_status st, const char *desc)
{
	json_t *data;

	pthread_mutex_lock(&in->mu);
	in->status = st;
	snprintf(in->error, sizeof(in->error), "%s", desc ? desc : "");
	pthread_mutex_unlock(&in->mu);
	if (!in->ev)
		return;
	data = json_pack("{s:s}", "status", mig_status_name(st));
	if (desc)
		json_object_set_new(data, "error-desc", json_string(desc));
	in->ev(in->ev_opaque, "MIGRATION", data);
}

json_t *mig_incoming_query(struct mig_incoming *in)
{
	json_t *o;

	pthread_mutex_lock(&in->mu);
	o = json_pack("{s:s, s:{s:I, s:I}}", "status", mig_status_name(in->status), "ram",
		      "transferred", (json_int_t)__atomic_load_n(&in->bytes, __ATOMIC_RELAXED),
		      "normal", (json_int_t)__atomic_load_n(&in->pages, __ATOMIC_RELAXED));
	if (in->error[0])
		json_object_set_new(o, "error-desc", json_string(in->error));
	pthread_mutex_unlock(&in->mu);
	if (in->pc)
		json_object_set_new(o, "x-postcopy", pc_dst_stats(in));
	return o;
}

/*
 * Our migration failed and we said why (ERROR).  Closing a socket with
 * unread data (the source was still sending pages) makes the kernel reset
 * the connection, and a reset throws away what we sent last: the source
 * would see a broken pipe instead of our reason.  So: end our side after
 * the ERROR (FIN), and read and discard until the source closes too, for
 * at most a second.
 */
static void linger_close(int fd)
{
	char buf[65536];
	double end = now_ms() + 1000;

	if (shutdown(fd, SHUT_WR) < 0)
		return;
	for (double left; (left = end - now_ms()) > 0;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, (int)left + 1) <= 0)
			return;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return;
	}
}

int mig_incoming_run(struct mig_incoming *in, struct kv_err *err)
{
	int r;

	if (in->file)
		return run_file(in, !in->keep_file, err);
	/* migrate-incoming (defer) listens before it answers: a source may
	 * connect the moment it has */
	if (in->listen_fd < 0)
		in->listen_fd = mig_listen(in->uri, err);
	if (in->listen_fd < 0)
		return in->listen_fd;
	for (;;) {
		struct stream s;
		int fd = mig_wait_accept(in, err);

		if (fd < 0) {
			r = fd;
			break;
		}
		__atomic_store_n(&in->conn_fd, fd, __ATOMIC_RELEASE);
		in->conn_local = mig_uri_is_local(in->uri);
		in->local = false;
		mig_incoming_status(in, MIG_SETUP, NULL);
		/* TLS (and the peer it must be) before a byte of the stream; a
		 * stranger only ends its own connection */
		r = mig_open_server(in->tls, fd, MIG_HANDSHAKE_TIMEOUT_MS, &s, err);
		if (r) {
			fprintf(stderr, "kvmove: refused a connection: %s; still waiting\n",
				err->msg);
			mig_incoming_status(in, MIG_NONE, err->msg);
			r = 1;
		} else {
			s.timeout_ms = MIG_PEER_TIMEOUT_MS;
			r = run_conn(in, &s, err);
			/* failed, ERROR sent: end our side cleanly (TLS says
			 * close_notify) so that the ERROR is read, not lost */
			if (r < 0)
				stream_shutdown(&s, SHUT_WR, NULL);
			stream_destroy(&s);
		}
		__atomic_store_n(&in->conn_fd, -1, __ATOMIC_RELEASE);
		if (r < 0)
			linger_close(fd);
		close(fd);
		if (r != 1)
			break;
	}
	close(in->listen_fd);
	in->listen_fd = -1;
	if (mig_uri_is_local(in->uri))
		unlink(in->uri + 5);	/* nobody connects to a finished destination */
	if (r)
		mig_incoming_status(in, MIG_FAILED, err->msg);
	else
		mig_incoming_status(in, MIG_COMPLETED, NULL);
	return r;
}
