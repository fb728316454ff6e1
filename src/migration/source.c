/*
 * source.c - the sending side of a migration, in its own thread.
 *
 * Live (tcp:HOST:PORT), the steps of docs/PROTOCOL.md:
 *   1. connect, HELLO both ways
 *   2. CONFIG (VM config + preflight request) -> PREFLIGHT verdict
 *   3. pre-copy: dirty logging on, every page with data, then dirty rounds
 *      until the rest fits the downtime target at the measured bandwidth,
 *      or the policy (auto-converge / force / fail) decides
 *   4. stop and copy: pause, last dirty pages, irqchip/clock, vCPUs, devices,
 *      STATE_END -> READY
 *   5. switchover: release the lock, GO -> RESUMED; the source stops
 * Before GO any failure resumes the VM here.  After GO the lock decides.
 * Quick migration (file:PATH, via=DIR) is in save.c; the API in control.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/dirty.h"
#include "core/vm.h"
#include "migration/devstate.h"
#include "migration/hello.h"
#include "migration/migration.h"
#include "migration/postcopy.h"
#include "migration/proto.h"
#include "migration/secure.h"
#include "migration/ram.h"
#include "migration/arbiter.h"
#include "migration/source_internal.h"
#include "state/stream.h"

double src_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const char *mig_status_name(enum mig_status st)
{
	switch (st) {
	case MIG_NONE: return "none";
	case MIG_SETUP: return "setup";
	case MIG_ACTIVE: return "active";
	case MIG_DEVICE: return "device";
	case MIG_PRE_SWITCHOVER: return "pre-switchover";
	case MIG_SWITCHOVER: return "device";	/* QMP has no name for "GO sent" */
	case MIG_POSTCOPY_ACTIVE: return "postcopy-active";
	case MIG_POSTCOPY_PAUSED: return "postcopy-paused";
	case MIG_POSTCOPY_RECOVER: return "postcopy-recover";
	case MIG_COMPLETED: return "completed";
	case MIG_FAILED: return "failed";
	case MIG_CANCELLING: return "cancelling";
	case MIG_CANCELLED: return "cancelled";
	case MIG_INDETERMINATE: return "indeterminate";
	}
	return "unknown";
}

void src_set_status(struct migration *m, enum mig_status st)
{
	bool same_name;

	pthread_mutex_lock(&m->ev_mu);
	pthread_mutex_lock(&m->mu);
	/* a cancel request wins over progress reports until the thread acts on it */
	if (m->status == MIG_CANCELLING && st != MIG_CANCELLED && st != MIG_FAILED &&
	    st != MIG_COMPLETED && st != MIG_INDETERMINATE) {
		pthread_mutex_unlock(&m->mu);
		pthread_mutex_unlock(&m->ev_mu);
		return;
	}
	/* two of ours can be one of QMP's (device, then GO sent: "device") */
	same_name = !strcmp(mig_status_name(m->status), mig_status_name(st)) && m->status != st;
	m->status = st;
	pthread_mutex_unlock(&m->mu);
	if (m->ev && !same_name) {
		json_t *data = json_pack("{s:s}", "status", mig_status_name(st));
		/* The last word carries the full stats: a client that only follows
		 * events learns the outcome (and a paused post-copy's state). */
		if (st == MIG_COMPLETED || st == MIG_FAILED || st == MIG_CANCELLED ||
		    st == MIG_INDETERMINATE || st == MIG_POSTCOPY_PAUSED)
			json_object_set_new(data, "stats", mig_query(m));
		m->ev(m->ev_opaque, "MIGRATION", data);
	}
	pthread_mutex_unlock(&m->ev_mu);
}

void src_mark(struct migration *m, unsigned step)
{
	double t = src_now_ms() - m->t_pause;

	pthread_mutex_lock(&m->mu);
	if (step < SRC_SW_N)
		m->sw[step] = t > 0 ? t : 1e-3;
	pthread_mutex_unlock(&m->mu);
}

/* Copy the thread's counters where query-migrate can see them. */
void src_publish(void *opaque)
{
	struct migration *m = opaque;

	double now = src_now_ms();

	uint64_t bytes, normal, zero, entries;
	struct ram_codec_stats codec;

	src_chan_totals(m, &bytes, &normal, &zero, &entries);
	src_chan_codec_totals(m, &codec);
	pthread_mutex_lock(&m->mu);
	m->codec = codec;
	m->transferred = bytes;
	m->chan_bytes = bytes - m->s.bytes_out;
	m->normal = normal;
	m->zero = zero;
	m->total_ms = now - m->t_start;
	/* the first pass: what is left of it, and how fast it goes, so that a
	 * progress bar moves from the start */
	if (m->status == MIG_ACTIVE && m->rounds == 0 && m->t_active > 0 && now > m->t_active) {
		uint64_t done = (m->normal + m->zero) * MEM_PAGE_SIZE;
		double bw = (double)m->transferred / ((now - m->t_active) / 1e3);
		m->remaining = m->fp_total > done ? m->fp_total - done : 0;
		m->mbps = bw * 8 / 1e6;
		m->expected_ms = bw > 0 ? (double)m->remaining / bw * 1e3 : 0;
	}
	pthread_mutex_unlock(&m->mu);
}

int src_set_fail(struct migration *m, const char *id, struct kv_err *err, int rc)
{
	pthread_mutex_lock(&m->mu);
	if (!m->error_id) {
		m->error_id = id;
		snprintf(m->error_desc, sizeof(m->error_desc), "%s", err->msg);
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void src_resume_vm(struct migration *m)
{
	if (m->paused)		/* a VM paused before the migration stays paused */
		vm_resume(m->vm, NULL);
	m->paused = false;
}

bool src_is_cancelled(struct migration *m)
{
	return __atomic_load_n(&m->cancel, __ATOMIC_ACQUIRE);
}

/* ---- 1-2: handshake and preflight ---- */

static int handshake(struct migration *m, struct stream *ps, struct kv_err *err)
{
	struct stream_rec rec;
	struct mig_hello h;
	json_t *j, *cfg, *res;
	int r;

	j = mig_hello_new("source", m->local ? MIG_CAP_LOCAL : MIG_CAP_CHANNELS | MIG_CAP_COMPRESS);
	json_object_set_new(j, "vm", json_string(m->vm->cfg.name));
	json_object_set_new(j, "id", json_string(m->id));
	json_object_set_new(j, "channels", json_integer(m->p.channels));
	r = mig_send_json(ps, MIG_REC_HELLO, j, err);
	if (!r)
		r = stream_flush(ps, err);
	if (!r)
		r = mig_expect(ps, MIG_REC_HELLO, &rec, err);
	if (!r && (r = mig_hello_parse(&rec, "destination", &h, err)))
		kv_err_prefix(err, r, "the peer is not a kvmove destination we can talk to");
	if (r)
		return src_set_fail(m, "protocol", err, r);
	m->peer_postcopy = h.caps & MIG_CAP_POSTCOPY;
	if (m->local && !(h.caps & MIG_CAP_LOCAL)) {
		r = kv_errf(err, EPROTO, "the destination at %s does not take same-host "
			    "hand-overs (an older kvmove?)", m->p.uri);
		return src_set_fail(m, "protocol", err, r);
	}
	/* RAM goes over as many connections as both ends want (hello.h) */
	m->nchan = 1;
	if ((h.caps & MIG_CAP_CHANNELS) && h.channels > 1 && h.token[0]) {
		m->nchan = h.channels < m->p.channels ? h.channels : m->p.channels;
		memcpy(m->chan_token, h.token, sizeof(m->chan_token));
	}
	pthread_mutex_lock(&m->mu);
	m->granted = m->nchan;
	pthread_mutex_unlock(&m->mu);
	/* compressed pages only to a destination that reads them */
	m->compress = !m->local && (h.caps & MIG_CAP_COMPRESS) ? m->p.compress : RAM_COMPRESS_OFF;

	cfg = mig_config_to_json(m->vm, m->arb != NULL);
	json_object_set_new(cfg, "check-only", json_boolean(m->p.check_only));
	if (m->local)
		json_object_set_new(cfg, "local", json_true());
	if (m->p.via[0])
		json_object_set_new(cfg, "quick", json_true());
	r = mig_send_json(ps, MIG_REC_CONFIG, cfg, err);
	if (!r)
		r = stream_flush(ps, err);
	if (!r)
		r = mig_expect(ps, MIG_REC_PREFLIGHT, &rec, err);
	if (!r)
		r = mig_parse_json(&rec, &res, err);
	if (r)
		return src_set_fail(m, "protocol", err, r);
	if (!json_is_boolean(json_object_get(res, "ok")) ||
	    !json_is_array(json_object_get(res, "failures"))) {
		json_decref(res);
		r = kv_errf(err, EPROTO, "malformed preflight answer");
		return src_set_fail(m, "protocol", err, r);
	}
	pthread_mutex_lock(&m->mu);
	m->preflight = res;
	pthread_mutex_unlock(&m->mu);
	if (!json_is_true(json_object_get(res, "ok"))) {
		char buf[KV_ERR_MAX] = "";
		size_t i, n = 0;
		json_t *f;
		json_array_foreach(json_object_get(res, "failures"), i, f) {
			const char *id = json_string_value(json_object_get(f, "id"));
			const char *why = json_string_value(json_object_get(f, "reason"));
			n += (size_t)snprintf(buf + n, n < sizeof(buf) ? sizeof(buf) - n : 0,
					      "%s[%s] %s", i ? "; " : "", id ? id : "?",
					      why ? why : "?");
			if (n >= sizeof(buf))
				break;
		}
		r = kv_errf(err, EPERM, "destination refused the VM: %s", buf);
		return src_set_fail(m, "preflight", err, r);
	}
	return 0;
}

/* ---- 4: stop and copy ---- */

int src_stop_and_copy(struct migration *m, bool postcopy, struct kv_err *err)
{
	struct stream_rec rec;
	int64_t n;
	int r;

	/* the disks' dirty page cache goes out now, while the guest runs: the
	 * flush in the pause below, which is downtime, finds little left */
	vm_flush_devices(m->vm);
	src_set_status(m, MIG_DEVICE);
	m->s.timeout_ms = PEER_TIMEOUT_MS;
	m->t_pause = src_now_ms();
	m->was_paused = vm_get_state(m->vm) == VM_STATE_PAUSED;
	uint64_t bytes = src_bytes_out(m), normal, zero, entries;

	pthread_mutex_lock(&m->mu);
	m->bytes_paused = bytes;
	pthread_mutex_unlock(&m->mu);
	if ((r = vm_pause(m->vm, err)))
		return src_set_fail(m, "kvm", err, r);
	m->paused = !m->was_paused;	/* ours to undo on failure */
	src_mark(m, SRC_SW_PAUSED);
	vm_set_throttle(m->vm, 0, NULL);
	src_set_rate(m, 0);	/* the downtime window is not paced */
	/* same host: the destination maps the very pages; nothing to send */
	n = m->local ? 0 : dirty_sync(m->vm, m->rs.dirty, err);
	if (n < 0)
		return src_set_fail(m, "kvm", err, (int)n);
	/* post-copy: the pages dirty now stay here for later; the destination
	 * learns which of its copies are stale */
	r = postcopy || m->local ? 0 : src_ram_pass(m, false, err);
	/* the extra channels end here: what follows goes on the first one */
	if (!r)
		r = src_chan_end(m, err);
	if (!r && postcopy)
		r = src_postcopy_announce(m, err);
	if (!r)
		src_mark(m, SRC_SW_LAST_PAGES);
	src_chan_totals(m, &bytes, &normal, &zero, &entries);
	if (r || (r = devstate_send_all(m->vm, &m->s, err)) ||
	    (r = mig_send_end(&m->s, MIG_REC_STATE_END, &(struct mig_end){
			entries, m->was_paused }, err)) ||
	    (r = stream_flush(&m->s, err)))
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "io", err, r);
	src_mark(m, SRC_SW_STATE_SENT);
	if (!postcopy) {
		pthread_mutex_lock(&m->mu);
		m->remaining = 0;
		pthread_mutex_unlock(&m->mu);
	}
	src_publish(m);
	if ((r = mig_expect(&m->s, MIG_REC_READY, &rec, err)))
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "destination", err, r);
	src_mark(m, SRC_SW_READY);
	return 0;
}

/* ---- 5: switchover ---- */

/*
 * The VM runs elsewhere now.  QMP's way: this VMM stays, with the VM
 * stopped (postmigrate), so that a manager can read the final stats and
 * quit it; it never runs the VM again unless the arbiter (the lock) gives
 * it back.  With --exit-after-migration it ends here instead.
 */
void src_finish_completed(struct migration *m, const char *how)
{
	pthread_mutex_lock(&m->mu);
	m->total_ms = src_now_ms() - m->t_start;
	pthread_mutex_unlock(&m->mu);
	src_publish(m);
	src_set_status(m, MIG_COMPLETED);
	if (m->p.exit_after)
		vm_request_shutdown(m->vm, VM_SHUTDOWN_MIGRATED, 0, "%s", how);
	else
		fprintf(stderr, "kvmove: %s: %s; the VM stays stopped here (postmigrate) until "
			"'quit'\n", m->vm->cfg.name, how);
}

/* Capability pause-before-switchover: the destination has everything and
 * waits for GO; so do we, for migrate-continue (or a cancel). */
int src_pre_switchover(struct migration *m, struct kv_err *err)
{
	int r = 0;

	if (!m->p.pause_before_switchover)
		return 0;
	src_set_status(m, MIG_PRE_SWITCHOVER);
	pthread_mutex_lock(&m->mu);
	while (!m->continue_req && !src_is_cancelled(m))
		pthread_cond_wait(&m->cond, &m->mu);
	pthread_mutex_unlock(&m->mu);
	if (src_is_cancelled(m))
		r = src_set_fail(m, "cancelled", err, kv_errf(err, ECANCELED, "cancelled"));
	return r;
}

/*
 * Past the point of no return: release the lock, send GO (or, for a quick
 * migration, SAVED with the file), wait for RESUMED.  If the channel breaks
 * now, the lock decides who runs the VM.  Returns 0 when the destination
 * confirmed it runs the VM (the caller completes the migration), 1 when the
 * outcome was decided and reported here.
 */
int src_hand_over(struct migration *m, struct stream *ps, uint16_t type, json_t *payload)
{
	struct stream_rec rec;
	struct kv_err err = { "" };
	json_t *j = NULL;
	int r;

	src_set_status(m, MIG_SWITCHOVER);
	pthread_mutex_lock(&m->mu);
	m->go_sent = true;	/* from here on, cancel is refused */
	pthread_mutex_unlock(&m->mu);
	/* let go of everything that says "I run this VM": disks, then the
	 * arbiter.  An arbiter that cannot be released (etcd unreachable) ends
	 * the hand-over before GO: the destination never takes the VM without
	 * GO, so it goes on here */
	vm_release_resources(m->vm);
	if (m->arb && (r = arbiter_release(m->arb, m->id, &err))) {
		char why[KV_ERR_MAX];
		snprintf(why, sizeof(why), "%s", err.msg);
		/* taken back, or the store is unreachable: either way nobody else
		 * can take the VM (the destination waits for GO).  Only when the
		 * store names another owner does the VM stay paused here. */
		r = arbiter_acquire(m->arb, m->id, 5000, NULL);
		json_decref(payload);
		if (r == -EAGAIN) {
			kv_errf(&err, EIO, "could not hand the VM over (%s), and the cluster "
				"says it belongs elsewhere: it stays paused here", why);
			mig_send_error(ps, "switchover", err.msg);
			src_set_fail(m, "switchover", &err, -EIO);
			src_set_status(m, MIG_FAILED);
			return 1;
		}
		(void)vm_acquire_resources(m->vm, NULL);
		kv_errf(&err, EIO, "could not hand the VM over (%s); it runs on here", why);
		mig_send_error(ps, "switchover", err.msg);	/* the destination gives up */
		src_set_fail(m, "switchover", &err, -EIO);
		dirty_log_stop(m->vm);
		src_resume_vm(m);
		src_set_status(m, MIG_FAILED);
		return 1;
	}
	if (payload)
		r = mig_send_json(ps, type, payload, &err);
	else
		r = stream_write(ps, type, STREAM_F_MANDATORY, NULL, 0, &err);
	if (!r)
		r = stream_flush(ps, &err);
	if (!r)
		src_mark(m, SRC_SW_RELEASED);
	if (!r)
		r = mig_expect(ps, MIG_REC_RESUMED, &rec, &err);
	if (!r) {
		src_mark(m, SRC_SW_RESUMED);
		pthread_mutex_lock(&m->mu);
		m->downtime_ms = src_now_ms() - m->t_pause;
		m->bytes_resumed = ps == &m->s ? src_bytes_out(m) : ps->bytes_out;
		if (!mig_parse_json(&rec, &j, NULL)) {
			json_t *l = json_object_get(j, "load-ms");
			if (json_is_number(l))
				m->dest_load_ms = json_number_value(l);
			json_decref(j);
		}
		pthread_mutex_unlock(&m->mu);
		return 0;
	}

	/* The destination said it will not run the VM (ERROR: it could not
	 * take the lock, or not restore the image): it exits without running
	 * it, so the VM resumes here, its resources taken back first. */
	if (r == -ECANCELED && !m->postcopy &&
	    (!m->arb || !arbiter_acquire(m->arb, m->id, ARBITER_WAIT_FOREVER, NULL)) &&
	    !vm_acquire_resources(m->vm, NULL)) {
		char why[KV_ERR_MAX];
		snprintf(why, sizeof(why), "%s", err.msg);
		kv_errf(&err, EIO, "the destination did not take the VM (%s); it runs on here",
			why);
		src_set_fail(m, "switchover", &err, -EIO);
		dirty_log_stop(m->vm);
		src_resume_vm(m);
		src_set_status(m, MIG_FAILED);
		return 1;
	}

	/* The channel broke after GO: who runs the VM now?  The arbiter (the
	 * owner key in etcd, the VM lock file) and the disk locks: the
	 * destination takes all of them before it runs the guest, so if we can
	 * take all of them back, it never will.  An arbiter we cannot reach is
	 * asked until it answers: the VM stays paused meanwhile, never runs
	 * twice. */
	if (m->arb || vm_has_resources(m->vm)) {
		struct kv_err lerr;
		int rl = m->arb ? arbiter_acquire(m->arb, m->id, ARBITER_WAIT_FOREVER, &lerr) : 0;
		int rr = rl ? rl : vm_acquire_resources(m->vm, &lerr);

		char why[KV_ERR_MAX];

		snprintf(why, sizeof(why), "%s", err.msg);	/* err is rewritten below */
		if (!rl && !rr) {
			kv_errf(&err, EIO, "lost the destination after GO (%s); it never took "
				"the VM, which runs on here", why);
			src_set_fail(m, "switchover", &err, -EIO);
			dirty_log_stop(m->vm);
			src_resume_vm(m);
			src_set_status(m, MIG_FAILED);
			return 1;
		}
		if (!rl && m->arb)
			(void)arbiter_release(m->arb, m->id, NULL);	/* it holds the disks */
		if (m->postcopy)
			return 0;	/* it runs the VM and needs our pages */
		pthread_mutex_lock(&m->mu);
		m->downtime_ms = -1;	/* unknown: the confirmation was lost */
		pthread_mutex_unlock(&m->mu);
		src_finish_completed(m, "migrated (the destination holds the VM's locks)");
		return 1;
	}
	/* Post-copy: it may run the VM and need our pages; pause and wait to
	 * be reconnected (src_postcopy_run finds the channel broken).  The VM
	 * never resumes here without a lock to say the destination let go. */
	if (m->postcopy)
		return 0;
	{
		char why[KV_ERR_MAX];
		snprintf(why, sizeof(why), "%s", err.msg);
		kv_errf(&err, EIO, "lost the destination after GO (%s) and there is no lock to "
			"ask. The VM is paused here. Check the destination: if it runs the VM, "
			"stop this one ('kvmove stop'); if not, resume this one ('kvmove resume')",
			why);
	}
	src_set_fail(m, "indeterminate", &err, -EIO);
	src_set_status(m, MIG_INDETERMINATE);
	return 1;
}

/* Any failure before GO: the VM keeps (or resumes) running here. */
/*
 * Our write failed (a broken pipe): the destination usually said why before
 * it hung up.  Look for its ERROR record, briefly, and report that instead.
 */
static void explain_io_error(struct migration *m, struct stream *ps)
{
	struct stream_rec rec;
	json_t *j = NULL;

	if (!ps || !ps->rbuf || !m->error_id || strcmp(m->error_id, "io"))
		return;
	ps->timeout_ms = 200;
	for (int i = 0; i < 64 && stream_read(ps, &rec, NULL) == 0; i++) {
		const char *d;
		if (rec.type != MIG_REC_ERROR || mig_parse_json(&rec, &j, NULL))
			continue;
		d = json_string_value(json_object_get(j, "desc"));
		pthread_mutex_lock(&m->mu);
		m->error_id = "destination";
		snprintf(m->error_desc, sizeof(m->error_desc), "the destination gave up: %s",
			 d ? d : "(no reason given)");
		pthread_mutex_unlock(&m->mu);
		json_decref(j);
		return;
	}
}

void src_rollback(struct migration *m, struct stream *ps, struct kv_err *err)
{
	bool cancelled = src_is_cancelled(m);

	explain_io_error(m, ps);

	/* tell the destination to give up (it exits); not needed after a refusal */
	if (ps && ps->wbuf && m->error_id && strcmp(m->error_id, "preflight"))
		mig_send_error(ps, cancelled ? "cancelled" : m->error_id, err->msg);
	vm_set_throttle(m->vm, 0, NULL);
	if (m->vm->slot_dirty)
		dirty_log_stop(m->vm);
	src_resume_vm(m);
	pthread_mutex_lock(&m->mu);
	if (m->abandon) {
		m->error_id = "shutdown";
		snprintf(m->error_desc, sizeof(m->error_desc), "the source VMM was told to quit "
			 "during the migration: the VM is shut down and runs nowhere");
		cancelled = false;
	} else if (cancelled) {
		m->error_id = "cancelled";
		snprintf(m->error_desc, sizeof(m->error_desc), "cancelled by the user");
	}
	pthread_mutex_unlock(&m->mu);
	src_publish(m);
	src_set_status(m, cancelled ? MIG_CANCELLED : MIG_FAILED);
}

/* Connect and shake hands; on success *ps is a live stream to the peer. */
int src_open_peer(struct migration *m, struct stream *ps, struct kv_err *err)
{
	int fd, r;

	fd = mig_connect(m->p.uri, CONNECT_TIMEOUT_MS, err);
	if (fd < 0)
		return src_set_fail(m, "unreachable", err, fd);
	pthread_mutex_lock(&m->mu);
	m->fd = fd;
	pthread_mutex_unlock(&m->mu);
	if (src_is_cancelled(m))
		shutdown(fd, SHUT_RDWR);
	/* TLS unless this VMM runs --insecure (secure.c) */
	if ((r = mig_client_stream(m->tls, fd, m->p.uri, CONNECT_TIMEOUT_MS * 2, ps, err)))
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "tls", err, r);
	ps->timeout_ms = PEER_TIMEOUT_MS;
	r = handshake(m, ps, err);
	pthread_mutex_lock(&m->mu);
	m->setup_ms = src_now_ms() - m->t_start;
	pthread_mutex_unlock(&m->mu);
	return r;
}

int src_init_sender(struct migration *m, struct stream *s, struct kv_err *err)
{
	int r = ram_sender_init(&m->rs, m->vm, s, &m->cancel, err);

	if (!r && (r = ram_sender_set_compress(&m->rs, m->compress, err)))
		ram_sender_destroy(&m->rs);
	if (r)
		return src_set_fail(m, "internal", err, r);
	m->rs.progress = src_publish;
	m->rs.progress_opaque = m;
	return 0;
}

void src_run_live(struct migration *m)
{
	struct kv_err err = { "" };

	if (src_open_peer(m, &m->s, &err) || src_init_sender(m, &m->s, &err) ||
	    (!m->p.check_only && src_chan_open(m, &err))) {
		src_rollback(m, &m->s, &err);
		return;
	}
	if (m->p.check_only) {
		if (src_check_only(m, &err)) {
			src_rollback(m, &m->s, &err);
			return;
		}
		stream_write(&m->s, MIG_REC_END, STREAM_F_MANDATORY, NULL, 0, NULL);
		stream_flush(&m->s, NULL);
		src_publish(m);
		src_set_status(m, MIG_COMPLETED);	/* preflight passed; nothing moved */
		return;
	}
	/* same host: hand the memory over while the VM runs on; then only
	 * the state moves, with the VM paused */
	if ((m->local ? src_local_send_fds(m, &err) : src_precopy(m, &m->postcopy, &err)) ||
	    src_stop_and_copy(m, m->postcopy, &err) ||
	    src_pre_switchover(m, &err)) {
		src_rollback(m, &m->s, &err);
		return;
	}
	if (src_hand_over(m, &m->s, MIG_REC_GO, NULL))
		return;
	/* From RESUMED on, the destination runs the VM: a post-copy that
	 * cannot finish pauses (both sides wait); it never comes back here. */
	if (m->postcopy && src_postcopy_run(m, &err)) {
		src_set_status(m, MIG_INDETERMINATE);	/* abandoned: see error-desc */
		return;
	}
	src_finish_completed(m, "migrated to the destination");
}
