/*
 * cmd_migration.c - the migration commands of the control socket, with
 * QEMU's names, arguments and result shapes (qapi/migration.json), so that
 * a manager written for QEMU sets a migration up and follows it the same
 * way.  kvmove's own knobs (policy, max-rounds, check-only, via, ...) are
 * extra arguments of migrate; QEMU capabilities kvmove lacks are refused
 * when asked for, never silently ignored.  docs/CONTROL.md has the table.
 */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "control/control.h"
#include "migration/hello.h"
#include "migration/migration.h"
#include "vmm/cmds.h"
#include "vmm/vmm.h"

static void on_mig_event(void *opaque, const char *event, json_t *data)
{
	struct vmm *vmm = opaque;

	if (vmm->ctl)
		ctl_server_emit(vmm->ctl, event, data);
	else
		json_decref(data);
}

static bool in_progress(struct vmm *vmm)
{
	return vmm->mig && !mig_finished(vmm->mig);
}

/* QMP-style: returns at once; progress via query-migrate and MIGRATION /
 * MIGRATION_PASS events.  uri tcp:HOST:PORT (live) or file:PATH (save). */
int qmp_migrate(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct mig_params p;
	int r;

	/* resume: reconnect a paused post-copy (QMP's migrate resume=true) */
	if (json_is_true(json_object_get(args, "resume"))) {
		static const char *const allowed[] = { "uri", "resume", "detach", NULL };
		json_t *u = json_object_get(args, "uri");
		if ((r = check_args(args, allowed, err)))
			return r;
		if (!json_is_string(u))
			return kv_errf(err, EINVAL, "'uri' is required");
		pthread_mutex_lock(&vmm->mig_lock);
		r = vmm->mig ? mig_resume(vmm->mig, json_string_value(u), err)
			     : kv_errf(err, EINVAL, "there is no migration to resume");
		pthread_mutex_unlock(&vmm->mig_lock);
		return r;
	}
	if (json_object_get(args, "resume") && !json_is_boolean(json_object_get(args, "resume")))
		return kv_errf(err, EINVAL, "'resume' must be a boolean");
	json_object_del(args, "resume");	/* resume=false: an ordinary migrate */
	pthread_mutex_lock(&vmm->mig_lock);
	r = mig_params_from_json(args, &vmm->settings, &p, err);
	pthread_mutex_unlock(&vmm->mig_lock);
	if (r)
		return r;
	if (!need_vm(vmm, err))
		return -EAGAIN;
	pthread_mutex_lock(&vmm->mig_lock);
	if (in_progress(vmm)) {
		r = kv_errf(err, EBUSY, "There's a migration process in progress");
	} else if (vmm->mig && mig_migrated(vmm->mig)) {
		r = kv_errf(err, EINVAL, "the VM was migrated away; it runs elsewhere now");
	} else {
		/* mig_start refuses a VM that cannot move (shut down) */
		mig_destroy(vmm->mig);
		vmm->mig = NULL;
		r = mig_start(&vmm->mig, vmm->vm, vmm->arb, &vmm->tls, &p, on_mig_event, vmm,
			      err);
	}
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

int qmp_query_migrate(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	pthread_mutex_lock(&vmm->mig_lock);
	*ret = vmm->mig ? mig_query(vmm->mig) : vmm_incoming_query(vmm);
	pthread_mutex_unlock(&vmm->mig_lock);
	if (!*ret)
		*ret = json_object();	/* QMP: {} before any */
	return 0;
}

int qmp_migrate_cancel(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	pthread_mutex_lock(&vmm->mig_lock);
	/* like QEMU: nothing to cancel is not an error */
	if (in_progress(vmm) && mig_get_status(vmm->mig) != MIG_COMPLETED)
		r = mig_cancel(vmm->mig, err);
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

int qmp_migrate_start_postcopy(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	pthread_mutex_lock(&vmm->mig_lock);
	r = in_progress(vmm) ? mig_start_postcopy(vmm->mig, err)
			     : kv_errf(err, EINVAL, "No migration in progress");
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

int qmp_migrate_continue(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	static const char *const allowed[] = { "state", NULL };
	struct vmm *vmm = opaque;
	const char *st = json_string_value(json_object_get(args, "state"));
	int r = check_args(args, allowed, err);

	if (r)
		return r;
	if (!st || strcmp(st, "pre-switchover"))
		return kv_errf(err, EINVAL, "Migration not in expected state: %s",
			       st ? st : "(missing 'state')");
	pthread_mutex_lock(&vmm->mig_lock);
	r = in_progress(vmm) ? mig_continue(vmm->mig, err)
			     : kv_errf(err, EINVAL, "No migration in progress");
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

/* ---- capabilities ---- */

enum cap_kind { CAP_NONE, CAP_AUTO_CONVERGE, CAP_POSTCOPY, CAP_PAUSE, CAP_MULTIFD, CAP_ALWAYS };

/* QEMU 7.2's MigrationCapability, in its order: what kvmove does with each.
 * CAP_NONE: kvmove does not have it (false is accepted, true refused);
 * CAP_ALWAYS: always on in kvmove (true accepted, false refused). */
static const struct cap {
	const char *name;
	enum cap_kind kind;
} caps[] = {
	{ "xbzrle", CAP_NONE }, { "rdma-pin-all", CAP_NONE },
	{ "auto-converge", CAP_AUTO_CONVERGE }, { "zero-blocks", CAP_NONE },
	{ "compress", CAP_NONE }, { "events", CAP_ALWAYS },
	{ "postcopy-ram", CAP_POSTCOPY }, { "x-colo", CAP_NONE },
	{ "release-ram", CAP_NONE }, { "block", CAP_NONE },
	{ "return-path", CAP_ALWAYS }, { "pause-before-switchover", CAP_PAUSE },
	{ "multifd", CAP_MULTIFD }, { "dirty-bitmaps", CAP_NONE },
	{ "postcopy-blocktime", CAP_NONE }, { "late-block-activate", CAP_NONE },
	{ "x-ignore-shared", CAP_NONE }, { "validate-uuid", CAP_NONE },
	{ "background-snapshot", CAP_NONE }, { "zero-copy-send", CAP_NONE },
	{ "postcopy-preempt", CAP_NONE },
};

static bool *cap_flag(struct mig_settings *s, enum cap_kind k)
{
	switch (k) {
	case CAP_AUTO_CONVERGE: return &s->auto_converge;
	case CAP_POSTCOPY: return &s->postcopy_ram;
	case CAP_PAUSE: return &s->pause_before_switchover;
	case CAP_MULTIFD: return &s->multifd;
	default: return NULL;
	}
}

static bool cap_state(struct mig_settings *s, const struct cap *c)
{
	bool *f = cap_flag(s, c->kind);

	return f ? *f : c->kind == CAP_ALWAYS;
}

int qmp_migrate_set_capabilities(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	static const char *const allowed[] = { "capabilities", NULL };
	struct vmm *vmm = opaque;
	json_t *list = json_object_get(args, "capabilities"), *e;
	struct mig_settings next;
	size_t i;
	int r = check_args(args, allowed, err);

	if (r)
		return r;
	if (!json_is_array(list))
		return kv_errf(err, EINVAL, "Parameter 'capabilities' is missing or not an array");
	pthread_mutex_lock(&vmm->mig_lock);
	if (in_progress(vmm)) {
		pthread_mutex_unlock(&vmm->mig_lock);
		return kv_errf(err, EBUSY, "There's a migration process in progress");
	}
	next = vmm->settings;	/* all or nothing */
	json_array_foreach(list, i, e) {
		const char *name = json_string_value(json_object_get(e, "capability"));
		json_t *st = json_object_get(e, "state");
		const struct cap *c = NULL;

		if (!json_is_object(e) || json_object_size(e) != 2 || !name || !json_is_boolean(st)) {
			r = kv_errf(err, EINVAL, "each capability is {\"capability\": NAME, "
				    "\"state\": BOOL}");
			break;
		}
		for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++)
			if (!strcmp(caps[k].name, name))
				c = &caps[k];
		if (!c) {
			r = kv_errf(err, EINVAL, "Parameter 'capability' does not accept value '%s'",
				    name);
			break;
		}
		if (cap_flag(&next, c->kind)) {
			*cap_flag(&next, c->kind) = json_is_true(st);
		} else if (json_is_true(st) != (c->kind == CAP_ALWAYS)) {
			r = kv_errf(err, ENOTSUP, c->kind == CAP_ALWAYS ?
				    "capability '%s' is always on in kvmove" :
				    "capability '%s' is not supported by kvmove", name);
			break;
		}
	}
	if (!r)
		vmm->settings = next;
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

int qmp_query_migrate_capabilities(void *opaque, json_t *args, json_t **ret,
				   struct kv_err *err)
{
	struct vmm *vmm = opaque;
	json_t *list;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	list = json_array();
	pthread_mutex_lock(&vmm->mig_lock);
	for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++)
		json_array_append_new(list, json_pack("{s:s, s:b}", "capability", caps[k].name,
						      "state", cap_state(&vmm->settings, &caps[k])));
	pthread_mutex_unlock(&vmm->mig_lock);
	*ret = list;
	return 0;
}

/* ---- parameters ---- */

static int set_int(json_t *v, const char *name, long long lo, long long hi, long long *out,
		   struct kv_err *err)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return kv_errf(err, EINVAL, "Parameter '%s' expects an integer in %lld..%lld",
			       name, lo, hi);
	*out = json_integer_value(v);
	return 0;
}

int qmp_migrate_set_parameters(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct mig_settings next;
	const char *key;
	json_t *v;
	long long n = 0;
	int r = 0;

	pthread_mutex_lock(&vmm->mig_lock);
	next = vmm->settings;
	json_object_foreach(args, key, v) {
		if (!strcmp(key, "downtime-limit")) {
			if (!(r = set_int(v, key, 1, 2000000, &n, err)))
				next.downtime_ms = (uint64_t)n;
		} else if (!strcmp(key, "max-bandwidth")) {
			if (!(r = set_int(v, key, 0, (long long)1 << 50, &n, err)))
				next.bandwidth = (uint64_t)n;
		} else if (!strcmp(key, "cpu-throttle-initial")) {
			if (!(r = set_int(v, key, 1, 99, &n, err)))
				next.throttle_initial = (unsigned)n;
		} else if (!strcmp(key, "cpu-throttle-increment")) {
			if (!(r = set_int(v, key, 1, 99, &n, err)))
				next.throttle_step = (unsigned)n;
		} else if (!strcmp(key, "max-cpu-throttle")) {
			if (!(r = set_int(v, key, 1, 99, &n, err)))
				next.throttle_max = (unsigned)n;
		} else if (!strcmp(key, "multifd-channels")) {
			/* used with the multifd capability, as in QEMU */
			if (!(r = set_int(v, key, 1, MIG_MAX_CHANNELS, &n, err)))
				next.multifd_channels = (unsigned)n;
		} else if (!strcmp(key, "multifd-compression") || !strcmp(key, "x-compress")) {
			/* QEMU's names none and zstd, and kvmove's auto (measured)
			 * and lz4; zlib is slower than both and not offered */
			if (!json_is_string(v))
				r = kv_errf(err, EINVAL, "Parameter '%s' expects off, auto, lz4 or zstd",
					    key);
			else if (!strcmp(json_string_value(v), "zlib"))
				r = kv_errf(err, ENOTSUP, "Parameter '%s': zlib is not supported (zstd "
					    "and lz4 are; auto picks one where it is faster)", key);
			else
				r = ram_compress_parse(json_string_value(v), &next.compress, err);
		} else if (!strcmp(key, "tls-creds") || !strcmp(key, "tls-hostname") ||
			   !strcmp(key, "tls-authz")) {
			r = kv_errf(err, ENOTSUP, "'%s': a kvmove VMM's TLS credentials are set when "
				    "it starts (kvmove run --tls-psk / --tls-creds)", key);
		} else {
			r = kv_errf(err, EINVAL, "Parameter '%s' is unexpected (or not supported by "
				    "kvmove)", key);
		}
		if (r)
			break;
	}
	if (!r)
		vmm->settings = next;	/* all or nothing */
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

int qmp_query_migrate_parameters(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct mig_settings s;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	pthread_mutex_lock(&vmm->mig_lock);
	s = vmm->settings;
	pthread_mutex_unlock(&vmm->mig_lock);
	*ret = json_pack("{s:I, s:I, s:i, s:i, s:i, s:i, s:s, s:s, s:s, s:s}",
			 "downtime-limit", (json_int_t)s.downtime_ms,
			 "max-bandwidth", (json_int_t)s.bandwidth,
			 "cpu-throttle-initial", (int)s.throttle_initial,
			 "cpu-throttle-increment", (int)s.throttle_step,
			 "max-cpu-throttle", (int)s.throttle_max,
			 "multifd-channels", (int)s.multifd_channels,
			 "tls-creds", vmm_tls_creds_name(vmm),
			 "tls-hostname", "",
			 "multifd-compression", s.compress == RAM_COMPRESS_ZSTD ? "zstd" : "none",
			 "x-compress", ram_compress_name(s.compress));
	return 0;
}

/* -incoming defer: the address comes later, like QEMU's. */
int qmp_migrate_incoming(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	static const char *const allowed[] = { "uri", NULL };
	struct vmm *vmm = opaque;
	json_t *u = json_object_get(args, "uri");
	int r = check_args(args, allowed, err);

	if (r)
		return r;
	if (!json_is_string(u) || (strncmp(json_string_value(u), "tcp:", 4) &&
				   strncmp(json_string_value(u), "unix:", 5)))
		return kv_errf(err, EINVAL, "'uri' must be tcp:HOST:PORT or unix:PATH");
	return vmm_incoming_start(vmm, json_string_value(u), err);
}
