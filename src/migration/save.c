/*
 * save.c - quick migration: the whole VM into a file.  kvmove save writes
 * it and stops the VM; migrate via=DIR writes it to shared storage after a
 * preflight over TCP and hands the destination the path (SAVED, its GO).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/vm.h"
#include "migration/devstate.h"
#include "migration/hello.h"
#include "migration/proto.h"
#include "migration/source_internal.h"
#include "migration/arbiter.h"


/* Pause the VM and write it to path (via path.tmp, fsync, rename).  On
 * failure the VM stays paused (the caller rolls back) and no file is left. */
static int save_file(struct migration *m, const char *path, struct kv_err *err)
{
	char tmp[PATH_MAX];
	json_t *hello;
	int fd, r;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return src_set_fail(m, "io", err, kv_errf(err, ENAMETOOLONG, "path too long"));
	/* the file is read by a kvmove that takes what its HELLO lists: the
	 * compression asked for (auto: where the writes are measured slower
	 * than compressing, e.g. shared storage over a slow link) */
	m->compress = m->p.compress;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return src_set_fail(m, "io", err, kv_errf_sys(err, errno, "cannot write %s", tmp));
	if ((r = stream_init(&m->s, fd, MIG_MAX_RECORD, err)) || (r = src_init_sender(m, &m->s, err)))
		goto fail;
	src_set_status(m, MIG_DEVICE);
	m->t_pause = src_now_ms();
	m->was_paused = vm_get_state(m->vm) == VM_STATE_PAUSED;
	if ((r = vm_pause(m->vm, err)))
		goto fail;
	m->paused = !m->was_paused;	/* ours to undo on failure */
	hello = mig_hello_new("file", m->compress != RAM_COMPRESS_OFF ? MIG_CAP_COMPRESS : 0);
	json_object_set_new(hello, "vm", json_string(m->vm->cfg.name));
	if ((r = mig_send_json(&m->s, MIG_REC_HELLO, hello, err)) ||
	    (r = mig_send_json(&m->s, MIG_REC_CONFIG, mig_config_to_json(m->vm, m->arb != NULL),
			       err)) ||
	    (r = ram_send_all(&m->rs, err)) || (r = devstate_send_all(m->vm, &m->s, err)) ||
	    (r = mig_send_end(&m->s, MIG_REC_STATE_END, &(struct mig_end){
			m->rs.st.entries, m->was_paused }, err)) ||
	    (r = mig_send_end(&m->s, MIG_REC_END, &(struct mig_end){ .pages = m->rs.st.entries }, err)) ||
	    (r = stream_flush(&m->s, err)))
		goto fail;
	src_publish(m);
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
	return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "io", err, r);
}

/* kvmove save: the VM stops here and lives on in the file. */
void src_run_save(struct migration *m)
{
	struct kv_err err = { "" };

	if (save_file(m, m->p.uri + 5, &err)) {
		src_rollback(m, NULL, &err);
		return;
	}
	pthread_mutex_lock(&m->mu);
	m->downtime_ms = src_now_ms() - m->t_pause;	/* until the file is safe */
	pthread_mutex_unlock(&m->mu);
	vm_release_resources(m->vm);
	if (m->arb && arbiter_release(m->arb, NULL, &err)) {
		/* we still own the VM: it goes on here, and the file cannot be
		 * restored anywhere (a restore must take the arbiter first) */
		kv_err_prefix(&err, -EIO, "saved, but could not let go of the VM");
		(void)vm_acquire_resources(m->vm, NULL);
		src_rollback(m, NULL, &err);
		return;
	}
	src_finish_completed(m, "saved to a file");
}

/*
 * Quick migration through shared storage: preflight with the destination
 * first (a refusal costs nothing), then save to the shared directory and
 * tell the destination where the file is; it restores and resumes.
 */
void src_run_quick_via(struct migration *m)
{
	struct stream ps;
	struct kv_err err = { "" };
	char path[PATH_MAX];

	memset(&ps, 0, sizeof(ps));
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.kvmstate", m->p.via, m->vm->cfg.name) >=
	    sizeof(path)) {
		kv_errf(&err, ENAMETOOLONG, "--via path too long");
		src_set_fail(m, "internal", &err, -ENAMETOOLONG);
		src_rollback(m, NULL, &err);
		return;
	}
	if (src_open_peer(m, &ps, &err) || save_file(m, path, &err)) {
		src_rollback(m, &ps, &err);
		stream_destroy(&ps);
		return;
	}
	/* no path: the destination restores from its own --via directory */
	if (!src_hand_over(m, &ps, MIG_REC_SAVED, json_object()))
		src_finish_completed(m, "migrated to the destination");
	else if (mig_get_status(m) == MIG_FAILED)
		unlink(path);	/* the VM runs here again: the image is stale */
	stream_destroy(&ps);
}
