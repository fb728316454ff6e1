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
 *
 * Quick (file:PATH): pause, write CONFIG, RAM and state to PATH.tmp, fsync,
 * rename, release the lock, stop.
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
#include "migration/migration.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "migration/vmlock.h"
#include "state/stream.h"

#define CONNECT_TIMEOUT_MS 5000
#define PEER_TIMEOUT_MS 30000

struct migration {
	struct vm *vm;
	struct vmlock *lock;
	struct mig_params p;
	mig_event_fn ev;
	void *ev_opaque;
	pthread_t thread;
	int cancel;		/* atomic: set by mig_cancel */

	pthread_mutex_t mu;	/* guards everything below */
	enum mig_status status;
	bool finished, go_sent;
	int fd;
	double t_start, setup_ms, total_ms, downtime_ms, expected_ms, dest_load_ms;
	uint64_t rounds, remaining, transferred, normal, zero;
	double mbps, dirty_pps;
	unsigned throttle;
	const char *error_id;
	char error_desc[KV_ERR_MAX];
	json_t *preflight;

	/* thread-private */
	struct stream s;
	struct ram_sender rs;
	bool paused;
	double t_pause;		/* when the VM was paused for the last time */
};

static double now_ms(void)
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
	case MIG_SWITCHOVER: return "pre-switchover";
	case MIG_COMPLETED: return "completed";
	case MIG_FAILED: return "failed";
	case MIG_CANCELLING: return "cancelling";
	case MIG_CANCELLED: return "cancelled";
	case MIG_INDETERMINATE: return "indeterminate";
	}
	return "unknown";
}

static void set_status(struct migration *m, enum mig_status st)
{
	pthread_mutex_lock(&m->mu);
	/* a cancel request wins over progress reports until the thread acts on it */
	if (m->status == MIG_CANCELLING && st != MIG_CANCELLED && st != MIG_FAILED &&
	    st != MIG_COMPLETED && st != MIG_INDETERMINATE) {
		pthread_mutex_unlock(&m->mu);
		return;
	}
	m->status = st;
	pthread_mutex_unlock(&m->mu);
	if (m->ev) {
		json_t *data = json_pack("{s:s}", "status", mig_status_name(st));
		/* The last word carries the full stats: a source that completed
		 * exits right after, so a client may never get to ask. */
		if (st == MIG_COMPLETED || st == MIG_FAILED || st == MIG_CANCELLED ||
		    st == MIG_INDETERMINATE)
			json_object_set_new(data, "stats", mig_query(m));
		m->ev(m->ev_opaque, "MIGRATION", data);
	}
}

/* Copy the thread's counters where query-migrate can see them. */
static void publish(void *opaque)
{
	struct migration *m = opaque;

	pthread_mutex_lock(&m->mu);
	m->transferred = m->s.bytes_out;
	m->normal = m->rs.st.normal;
	m->zero = m->rs.st.zero;
	m->total_ms = now_ms() - m->t_start;
	pthread_mutex_unlock(&m->mu);
}

static int set_fail(struct migration *m, const char *id, struct kv_err *err, int rc)
{
	pthread_mutex_lock(&m->mu);
	if (!m->error_id) {
		m->error_id = id;
		snprintf(m->error_desc, sizeof(m->error_desc), "%s", err->msg);
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static bool is_cancelled(struct migration *m)
{
	return __atomic_load_n(&m->cancel, __ATOMIC_ACQUIRE);
}

/* ---- 1-2: handshake and preflight ---- */

static int handshake(struct migration *m, struct stream *ps, struct kv_err *err)
{
	struct stream_rec rec;
	json_t *j = NULL, *cfg, *res;
	const char *proto, *role;
	json_int_t ver;
	int r;

	r = mig_send_json(ps, MIG_REC_HELLO,
			  json_pack("{s:s, s:i, s:s, s:s, s:[]}", "protocol", MIG_PROTOCOL,
				    "version", MIG_VERSION, "role", "source", "vm",
				    m->vm->cfg.name, "capabilities"), err);
	if (!r)
		r = stream_flush(ps, err);
	if (!r)
		r = mig_expect(ps, MIG_REC_HELLO, &rec, err);
	if (!r)
		r = mig_parse_json(&rec, &j, err);
	if (r)
		return set_fail(m, "protocol", err, r);
	r = json_unpack(j, "{s:s, s:I, s:s}", "protocol", &proto, "version", &ver, "role", &role);
	if (r || strcmp(proto, MIG_PROTOCOL) || ver != MIG_VERSION || strcmp(role, "destination")) {
		json_decref(j);
		r = kv_errf(err, EPROTO, "the peer is not a kvmove destination speaking version %d",
			    MIG_VERSION);
		return set_fail(m, "protocol", err, r);
	}
	json_decref(j);

	cfg = mig_config_to_json(m->vm, m->lock != NULL);
	json_object_set_new(cfg, "check-only", json_boolean(m->p.check_only));
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
		return set_fail(m, "protocol", err, r);
	if (!json_is_boolean(json_object_get(res, "ok")) ||
	    !json_is_array(json_object_get(res, "failures"))) {
		json_decref(res);
		r = kv_errf(err, EPROTO, "malformed preflight answer");
		return set_fail(m, "protocol", err, r);
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
		return set_fail(m, "preflight", err, r);
	}
	return 0;
}

/* ---- 3: pre-copy ---- */

static void emit_pass(struct migration *m, uint64_t round, double expected_ms)
{
	if (m->ev)
		m->ev(m->ev_opaque, "MIGRATION_PASS",
		      json_pack("{s:I, s:I, s:f, s:f, s:i}", "pass", (json_int_t)round,
				"remaining", (json_int_t)m->remaining, "expected-downtime",
				expected_ms, "dirty-pages-rate", m->dirty_pps,
				"cpu-throttle-percentage", (int)m->throttle));
}

static int precopy(struct migration *m, struct kv_err *err)
{
	double t0 = now_ms(), round_start = t0;
	unsigned behind = 0;
	int r;

	set_status(m, MIG_ACTIVE);
	if ((r = dirty_log_start(m->vm, err)))
		return set_fail(m, "kvm", err, r);
	stream_set_rate(&m->s, m->p.bandwidth);
	if ((r = ram_send_all(&m->rs, err)) || (r = stream_flush(&m->s, err)))
		return set_fail(m, is_cancelled(m) ? "cancelled" : "io", err, r);

	for (uint64_t round = 1;; round++) {
		double t = now_ms(), dt = (t - round_start) / 1e3;
		double bw = (double)m->s.bytes_out / ((t - t0) / 1e3);	/* bytes/s */
		int64_t newly = dirty_sync(m->vm, m->rs.dirty, err);
		double expected;

		if (newly < 0)
			return set_fail(m, "kvm", err, (int)newly);
		pthread_mutex_lock(&m->mu);
		m->rounds = round;
		m->remaining = ram_dirty_count(&m->rs) * MEM_PAGE_SIZE;
		m->mbps = bw * 8 / 1e6;
		m->dirty_pps = dt > 0 ? (double)newly / dt : 0;
		expected = bw > 0 ? (double)m->remaining / bw * 1e3 : (m->remaining ? 1e9 : 0);
		m->expected_ms = expected;
		pthread_mutex_unlock(&m->mu);
		publish(m);
		emit_pass(m, round, expected);

		if (expected <= (double)m->p.downtime_ms)
			return 0;	/* the rest fits the downtime target */
		if (round >= m->p.max_rounds) {
			if (m->p.policy == MIG_POLICY_FORCE)
				return 0;	/* switch over anyway; stats show the cost */
			r = kv_errf(err, ETIME, "did not converge in %u rounds: %" PRIu64 " MiB "
				    "still dirty, expected downtime %.0f ms > target %" PRIu64
				    " ms (dirty rate %.0f MiB/s, bandwidth %.0f MiB/s)",
				    m->p.max_rounds, m->remaining >> 20, expected,
				    m->p.downtime_ms, m->dirty_pps * 4096 / 1048576, bw / 1048576);
			return set_fail(m, "converge", err, r);
		}
		/* Falling behind: the guest dirties more than half of what we send. */
		behind = (m->dirty_pps * (double)MEM_PAGE_SIZE > bw / 2) ? behind + 1 : 0;
		if (behind >= 2 && m->p.policy == MIG_POLICY_AUTO_CONVERGE && m->throttle < 99) {
			m->throttle = m->throttle ? m->throttle + 10 : 20;
			if (m->throttle > 99)
				m->throttle = 99;
			if ((r = vm_set_throttle(m->vm, m->throttle, err)))
				return set_fail(m, "kvm", err, r);
		}
		if (behind >= 3 && m->p.policy == MIG_POLICY_FAIL &&
		    m->dirty_pps * (double)MEM_PAGE_SIZE >= bw) {
			r = kv_errf(err, ETIME, "the guest dirties %.0f MiB/s, at or above the "
				    "%.0f MiB/s the link carries; giving up (policy fail)",
				    m->dirty_pps * 4096 / 1048576, bw / 1048576);
			return set_fail(m, "converge", err, r);
		}
		round_start = now_ms();
		if ((r = ram_send_dirty(&m->rs, err)) || (r = stream_flush(&m->s, err)))
			return set_fail(m, is_cancelled(m) ? "cancelled" : "io", err, r);
	}
}

/* ---- 4: stop and copy ---- */

static int stop_and_copy(struct migration *m, struct kv_err *err)
{
	struct stream_rec rec;
	int64_t n;
	int r;

	set_status(m, MIG_DEVICE);
	m->s.timeout_ms = PEER_TIMEOUT_MS;
	m->t_pause = now_ms();
	if ((r = vm_pause(m->vm, err)))
		return set_fail(m, "kvm", err, r);
	m->paused = true;
	vm_set_throttle(m->vm, 0, NULL);
	stream_set_rate(&m->s, 0);	/* the downtime window is not paced */
	n = dirty_sync(m->vm, m->rs.dirty, err);
	if (n < 0)
		return set_fail(m, "kvm", err, (int)n);
	if ((r = ram_send_dirty(&m->rs, err)) || (r = devstate_send_all(m->vm, &m->s, err)) ||
	    (r = stream_write(&m->s, MIG_REC_STATE_END, STREAM_F_MANDATORY, NULL, 0, err)) ||
	    (r = stream_flush(&m->s, err)))
		return set_fail(m, is_cancelled(m) ? "cancelled" : "io", err, r);
	pthread_mutex_lock(&m->mu);
	m->remaining = 0;
	pthread_mutex_unlock(&m->mu);
	publish(m);
	if ((r = mig_expect(&m->s, MIG_REC_READY, &rec, err)))
		return set_fail(m, is_cancelled(m) ? "cancelled" : "destination", err, r);
	return 0;
}

/* ---- 5: switchover ---- */

static void finish_completed(struct migration *m, const char *how)
{
	pthread_mutex_lock(&m->mu);
	m->total_ms = now_ms() - m->t_start;
	pthread_mutex_unlock(&m->mu);
	publish(m);
	set_status(m, MIG_COMPLETED);
	vm_request_shutdown(m->vm, VM_SHUTDOWN_MIGRATED, 0, "%s", how);
}

/*
 * Past the point of no return: release the lock, send GO (or, for a quick
 * migration, SAVED with the file), wait for RESUMED.  If the channel breaks
 * now, the lock decides who runs the VM.
 */
static void hand_over(struct migration *m, struct stream *ps, uint16_t type, json_t *payload)
{
	struct stream_rec rec;
	struct kv_err err = { "" };
	json_t *j = NULL;
	int r;

	set_status(m, MIG_SWITCHOVER);
	pthread_mutex_lock(&m->mu);
	m->go_sent = true;	/* from here on, cancel is refused */
	pthread_mutex_unlock(&m->mu);
	if (m->lock)
		vmlock_release(m->lock);
	if (payload)
		r = mig_send_json(ps, type, payload, &err);
	else
		r = stream_write(ps, type, STREAM_F_MANDATORY, NULL, 0, &err);
	if (!r)
		r = stream_flush(ps, &err);
	if (!r)
		r = mig_expect(ps, MIG_REC_RESUMED, &rec, &err);
	if (!r) {
		pthread_mutex_lock(&m->mu);
		m->downtime_ms = now_ms() - m->t_pause;
		if (!mig_parse_json(&rec, &j, NULL)) {
			json_t *l = json_object_get(j, "load-ms");
			if (json_is_number(l))
				m->dest_load_ms = json_number_value(l);
			json_decref(j);
		}
		pthread_mutex_unlock(&m->mu);
		finish_completed(m, "migrated to the destination");
		return;
	}

	/* The channel broke after GO: who runs the VM now? */
	if (m->lock) {
		struct kv_err lerr;
		if (vmlock_acquire(m->lock, &lerr) == 0) {
			/* We hold the lock, so the destination can never take it:
			 * it will not run the guest.  Run it here again. */
			kv_errf(&err, EIO, "lost the destination after GO (%s); it never took "
				"the VM, which runs on here", err.msg);
			set_fail(m, "switchover", &err, -EIO);
			vm_resume(m->vm, NULL);
			m->paused = false;
			set_status(m, MIG_FAILED);
			return;
		}
		pthread_mutex_lock(&m->mu);
		m->downtime_ms = -1;	/* unknown: the confirmation was lost */
		pthread_mutex_unlock(&m->mu);
		finish_completed(m, "migrated (the destination holds the VM lock)");
		return;
	}
	kv_errf(&err, EIO, "lost the destination after GO (%s) and there is no lock to ask. "
		"The VM is paused here. Check the destination: if it runs the VM, stop this "
		"one ('kvmove stop'); if not, resume this one ('kvmove resume')", err.msg);
	set_fail(m, "indeterminate", &err, -EIO);
	set_status(m, MIG_INDETERMINATE);
}

/* Any failure before GO: the VM keeps (or resumes) running here. */
static void rollback(struct migration *m, struct stream *ps, struct kv_err *err)
{
	bool cancelled = is_cancelled(m);

	/* tell the destination to give up (it exits); not needed after a refusal */
	if (ps && ps->wbuf && m->error_id && strcmp(m->error_id, "preflight"))
		mig_send_error(ps, cancelled ? "cancelled" : m->error_id, err->msg);
	vm_set_throttle(m->vm, 0, NULL);
	if (m->vm->slot_dirty)
		dirty_log_stop(m->vm);
	if (m->paused) {
		vm_resume(m->vm, NULL);
		m->paused = false;
	}
	if (cancelled) {
		pthread_mutex_lock(&m->mu);
		m->error_id = "cancelled";
		snprintf(m->error_desc, sizeof(m->error_desc), "cancelled by the user");
		pthread_mutex_unlock(&m->mu);
	}
	publish(m);
	set_status(m, cancelled ? MIG_CANCELLED : MIG_FAILED);
}

/* Connect and shake hands; on success *ps is a live stream to the peer. */
static int open_peer(struct migration *m, struct stream *ps, struct kv_err *err)
{
	int fd, r;

	fd = mig_connect(m->p.uri, CONNECT_TIMEOUT_MS, err);
	if (fd < 0)
		return set_fail(m, "unreachable", err, fd);
	pthread_mutex_lock(&m->mu);
	m->fd = fd;
	pthread_mutex_unlock(&m->mu);
	if (is_cancelled(m))
		shutdown(fd, SHUT_RDWR);
	if ((r = stream_init(ps, fd, MIG_MAX_RECORD, err)))
		return set_fail(m, "internal", err, r);
	ps->timeout_ms = PEER_TIMEOUT_MS;
	r = handshake(m, ps, err);
	pthread_mutex_lock(&m->mu);
	m->setup_ms = now_ms() - m->t_start;
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int init_sender(struct migration *m, struct stream *s, struct kv_err *err)
{
	int r = ram_sender_init(&m->rs, m->vm, s, &m->cancel, err);

	if (r)
		return set_fail(m, "internal", err, r);
	m->rs.progress = publish;
	m->rs.progress_opaque = m;
	return 0;
}

static void run_live(struct migration *m)
{
	struct kv_err err = { "" };

	if (open_peer(m, &m->s, &err) || init_sender(m, &m->s, &err)) {
		rollback(m, &m->s, &err);
		return;
	}
	if (m->p.check_only) {
		stream_write(&m->s, MIG_REC_END, STREAM_F_MANDATORY, NULL, 0, NULL);
		stream_flush(&m->s, NULL);
		publish(m);
		set_status(m, MIG_COMPLETED);	/* preflight passed; nothing moved */
		return;
	}
	if (precopy(m, &err) || stop_and_copy(m, &err)) {
		rollback(m, &m->s, &err);
		return;
	}
	hand_over(m, &m->s, MIG_REC_GO, NULL);
}

/* ---- quick migration: the whole VM into a file ---- */

/* Pause the VM and write it to path (via path.tmp, fsync, rename).  On
 * failure the VM stays paused (the caller rolls back) and no file is left. */
static int save_file(struct migration *m, const char *path, struct kv_err *err)
{
	char tmp[PATH_MAX];
	int fd, r;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return set_fail(m, "io", err, kv_errf(err, ENAMETOOLONG, "path too long"));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return set_fail(m, "io", err, kv_errf_sys(err, errno, "cannot write %s", tmp));
	if ((r = stream_init(&m->s, fd, MIG_MAX_RECORD, err)) || (r = init_sender(m, &m->s, err)))
		goto fail;
	set_status(m, MIG_DEVICE);
	m->t_pause = now_ms();
	if ((r = vm_pause(m->vm, err)))
		goto fail;
	m->paused = true;
	if ((r = mig_send_json(&m->s, MIG_REC_HELLO,
			       json_pack("{s:s, s:i, s:s, s:s, s:[]}", "protocol", MIG_PROTOCOL,
					 "version", MIG_VERSION, "role", "file", "vm",
					 m->vm->cfg.name, "capabilities"), err)) ||
	    (r = mig_send_json(&m->s, MIG_REC_CONFIG, mig_config_to_json(m->vm, m->lock != NULL),
			       err)) ||
	    (r = ram_send_all(&m->rs, err)) || (r = devstate_send_all(m->vm, &m->s, err)) ||
	    (r = stream_write(&m->s, MIG_REC_STATE_END, STREAM_F_MANDATORY, NULL, 0, err)) ||
	    (r = mig_send_json(&m->s, MIG_REC_END,
			       json_pack("{s:I}", "pages", (json_int_t)m->rs.st.normal), err)) ||
	    (r = stream_flush(&m->s, err)))
		goto fail;
	publish(m);
	r = fsync(fd) < 0 ? -errno : 0;
	if (close(fd) < 0 && !r)
		r = -errno;
	fd = -1;
	if (r) {
		kv_errf_sys(err, r, "writing %s", tmp);
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		r = kv_errf_sys(err, errno, "renaming %s to %s", tmp, path);
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return set_fail(m, is_cancelled(m) ? "cancelled" : "io", err, r);
}

/* kvmove save: the VM stops here and lives on in the file. */
static void run_save(struct migration *m)
{
	struct kv_err err = { "" };

	if (save_file(m, m->p.uri + 5, &err)) {
		rollback(m, NULL, &err);
		return;
	}
	pthread_mutex_lock(&m->mu);
	m->downtime_ms = now_ms() - m->t_pause;	/* until the file is safe */
	pthread_mutex_unlock(&m->mu);
	if (m->lock)
		vmlock_release(m->lock);
	finish_completed(m, "saved to a file");
}

/*
 * Quick migration through shared storage: preflight with the destination
 * first (a refusal costs nothing), then save to the shared directory and
 * tell the destination where the file is; it restores and resumes.
 */
static void run_quick_via(struct migration *m)
{
	struct stream ps;
	struct kv_err err = { "" };
	char path[PATH_MAX];

	memset(&ps, 0, sizeof(ps));
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.kvmstate", m->p.via, m->vm->cfg.name) >=
	    sizeof(path)) {
		kv_errf(&err, ENAMETOOLONG, "--via path too long");
		set_fail(m, "internal", &err, -ENAMETOOLONG);
		rollback(m, NULL, &err);
		return;
	}
	if (open_peer(m, &ps, &err) || save_file(m, path, &err)) {
		rollback(m, &ps, &err);
		stream_destroy(&ps);
		return;
	}
	hand_over(m, &ps, MIG_REC_SAVED, json_pack("{s:s}", "path", path));
	stream_destroy(&ps);
}

static void *source_main(void *arg)
{
	struct migration *m = arg;

	set_status(m, MIG_SETUP);
	if (!strncmp(m->p.uri, "file:", 5))
		run_save(m);
	else if (m->p.via[0])
		run_quick_via(m);
	else
		run_live(m);
	ram_sender_destroy(&m->rs);
	stream_destroy(&m->s);
	pthread_mutex_lock(&m->mu);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->total_ms = now_ms() - m->t_start;
	m->finished = true;
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

int mig_start(struct migration **out, struct vm *vm, struct vmlock *lock,
	      const struct mig_params *p, mig_event_fn ev, void *ev_opaque,
	      struct kv_err *err)
{
	struct migration *m;
	int r;

	if (vm_get_state(vm) != VM_STATE_RUNNING)
		return kv_errf(err, EINVAL, "the VM must be running to migrate (it is %s)",
			       vm_state_name(vm_get_state(vm)));
	if (strncmp(p->uri, "tcp:", 4) && strncmp(p->uri, "file:", 5))
		return kv_errf(err, EINVAL, "unsupported destination '%s' (tcp:HOST:PORT or "
			       "file:PATH)", p->uri);
	m = calloc(1, sizeof(*m));
	if (!m)
		return kv_errf(err, ENOMEM, "migration");
	m->vm = vm;
	m->lock = lock && lock->fd >= 0 ? lock : NULL;
	m->p = *p;
	m->ev = ev;
	m->ev_opaque = ev_opaque;
	m->fd = -1;
	m->t_start = now_ms();
	pthread_mutex_init(&m->mu, NULL);
	r = pthread_create(&m->thread, NULL, source_main, m);
	if (r) {
		pthread_mutex_destroy(&m->mu);
		free(m);
		return kv_errf_sys(err, r, "starting the migration thread");
	}
	*out = m;
	return 0;
}

int mig_cancel(struct migration *m, struct kv_err *err)
{
	int r = 0;

	pthread_mutex_lock(&m->mu);
	if (m->finished || m->status == MIG_COMPLETED || m->status == MIG_FAILED ||
	    m->status == MIG_CANCELLED || m->status == MIG_INDETERMINATE)
		r = kv_errf(err, EINVAL, "no migration in progress");
	else if (m->go_sent)
		r = kv_errf(err, EBUSY, "too late to cancel: the VM is being handed over");
	else {
		__atomic_store_n(&m->cancel, 1, __ATOMIC_RELEASE);
		m->status = MIG_CANCELLING;
		if (m->fd >= 0)
			shutdown(m->fd, SHUT_RDWR);	/* wake blocked I/O */
	}
	pthread_mutex_unlock(&m->mu);
	if (!r && m->ev)
		m->ev(m->ev_opaque, "MIGRATION", json_pack("{s:s}", "status", "cancelling"));
	return r;
}

enum mig_status mig_get_status(struct migration *m)
{
	enum mig_status st;

	pthread_mutex_lock(&m->mu);
	st = m->status;
	pthread_mutex_unlock(&m->mu);
	return st;
}

bool mig_finished(struct migration *m)
{
	bool f;

	pthread_mutex_lock(&m->mu);
	f = m->finished;
	pthread_mutex_unlock(&m->mu);
	return f;
}

json_t *mig_query(struct migration *m)
{
	json_t *o, *ram;
	uint64_t total;

	pthread_mutex_lock(&m->mu);
	total = m->vm->mem.size;
	ram = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}",
			"transferred", (json_int_t)m->transferred, "total", (json_int_t)total,
			"duplicate", (json_int_t)m->zero, "normal", (json_int_t)m->normal,
			"normal-bytes", (json_int_t)(m->normal * MEM_PAGE_SIZE),
			"remaining", (json_int_t)m->remaining,
			"dirty-sync-count", (json_int_t)m->rounds, "mbps", m->mbps,
			"dirty-pages-rate", m->dirty_pps);
	o = json_pack("{s:s, s:I, s:I, s:o}", "status", mig_status_name(m->status),
		      "total-time", (json_int_t)m->total_ms, "setup-time",
		      (json_int_t)m->setup_ms, "ram", ram);
	if (m->status == MIG_COMPLETED || m->downtime_ms > 0)
		json_object_set_new(o, "downtime", json_integer((json_int_t)m->downtime_ms));
	if (m->status == MIG_ACTIVE)
		json_object_set_new(o, "expected-downtime",
				    json_integer((json_int_t)m->expected_ms));
	if (m->throttle)
		json_object_set_new(o, "cpu-throttle-percentage", json_integer(m->throttle));
	if (m->error_id) {
		json_object_set_new(o, "error-desc", json_string(m->error_desc));
		json_object_set_new(o, "x-error-id", json_string(m->error_id));
	}
	if (m->preflight)
		json_object_set(o, "x-preflight", m->preflight);
	if (m->dest_load_ms > 0)
		json_object_set_new(o, "x-destination-load-ms", json_real(m->dest_load_ms));
	json_object_set_new(o, "x-check-only", json_boolean(m->p.check_only));
	json_object_set_new(o, "x-policy",
			    json_string(m->p.policy == MIG_POLICY_FAIL ? "fail" :
					m->p.policy == MIG_POLICY_FORCE ? "force" : "auto-converge"));
	json_object_set_new(o, "x-downtime-target", json_integer((json_int_t)m->p.downtime_ms));
	pthread_mutex_unlock(&m->mu);
	return o;
}

void mig_destroy(struct migration *m)
{
	if (!m)
		return;
	pthread_join(m->thread, NULL);
	json_decref(m->preflight);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

int mig_params_from_json(json_t *args, struct mig_params *p, struct kv_err *err)
{
	const char *key;
	json_t *v;

	memset(p, 0, sizeof(*p));
	p->downtime_ms = 100;
	p->max_rounds = 30;
	p->policy = MIG_POLICY_AUTO_CONVERGE;
	json_object_foreach(args, key, v) {
		if (!strcmp(key, "uri")) {
			if (!json_is_string(v) || json_string_length(v) >= sizeof(p->uri) ||
			    strlen(json_string_value(v)) != json_string_length(v))
				return kv_errf(err, EINVAL, "'uri' must be a string");
			strcpy(p->uri, json_string_value(v));
		} else if (!strcmp(key, "downtime-ms")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 3600000)
				return kv_errf(err, EINVAL, "'downtime-ms' must be 1..3600000");
			p->downtime_ms = (uint64_t)json_integer_value(v);
		} else if (!strcmp(key, "bandwidth")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 1000000)
				return kv_errf(err, EINVAL, "'bandwidth' (MiB/s) must be 0..1000000");
			p->bandwidth = (uint64_t)json_integer_value(v) << 20;
		} else if (!strcmp(key, "max-rounds")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 10000)
				return kv_errf(err, EINVAL, "'max-rounds' must be 1..10000");
			p->max_rounds = (unsigned)json_integer_value(v);
		} else if (!strcmp(key, "policy")) {
			const char *s = json_string_value(v);
			if (s && !strcmp(s, "fail"))
				p->policy = MIG_POLICY_FAIL;
			else if (s && !strcmp(s, "force"))
				p->policy = MIG_POLICY_FORCE;
			else if (s && !strcmp(s, "auto-converge"))
				p->policy = MIG_POLICY_AUTO_CONVERGE;
			else
				return kv_errf(err, EINVAL, "'policy' must be fail, force or "
					       "auto-converge");
		} else if (!strcmp(key, "via")) {
			if (!json_is_string(v) || json_string_length(v) == 0 ||
			    json_string_length(v) >= sizeof(p->via) ||
			    strlen(json_string_value(v)) != json_string_length(v))
				return kv_errf(err, EINVAL, "'via' must be a directory path");
			strcpy(p->via, json_string_value(v));
		} else if (!strcmp(key, "check-only")) {
			if (!json_is_boolean(v))
				return kv_errf(err, EINVAL, "'check-only' must be a boolean");
			p->check_only = json_is_true(v);
		} else {
			return kv_errf(err, EINVAL, "Parameter '%s' is unexpected", key);
		}
	}
	if (!p->uri[0])
		return kv_errf(err, EINVAL, "'uri' is required");
	if (p->via[0] && strncmp(p->uri, "tcp:", 4))
		return kv_errf(err, EINVAL, "'via' (quick migration through shared storage) "
			       "needs a tcp: destination");
	return 0;
}
