#define _GNU_SOURCE
#include "migration/vmlock.h"

#include <stdlib.h>

#include "migration/arbiter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int vmlock_open(struct vmlock *l, const char *path, struct kv_err *err)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (strlen(path) >= sizeof(l->path))
		return kv_errf(err, ENAMETOOLONG, "lock path too long");
	snprintf(l->path, sizeof(l->path), "%s", path);
	l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (l->fd < 0)
		return kv_errf_sys(err, errno, "lock file %s", path);
	return 0;
}

int vmlock_acquire(struct vmlock *l, struct kv_err *err)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	if (l->fd < 0)
		return kv_errf(err, EBADF, "no lock file");
	if (l->held)
		return 0;
	if (fcntl(l->fd, F_OFD_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			return kv_errf(err, EAGAIN, "VM lock %s is held by another process "
				       "(is this VM running elsewhere?)", l->path);
		return kv_errf_sys(err, errno, "locking %s", l->path);
	}
	l->held = true;
	return 0;
}

void vmlock_release(struct vmlock *l)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };

	if (l->fd >= 0 && l->held && fcntl(l->fd, F_OFD_SETLK, &fl) == 0)
		l->held = false;
}

void vmlock_close(struct vmlock *l)
{
	if (l->fd >= 0)
		close(l->fd);	/* closing the description drops the lock */
	l->fd = -1;
	l->held = false;
}

/* ---- the lock file as an arbiter (arbiter.h); tokens mean nothing here ---- */

static int lf_acquire(struct arbiter *a, const char *token, unsigned wait_ms,
		      struct kv_err *err)
{
	return vmlock_acquire(a->priv, err);
}

static int lf_release(struct arbiter *a, const char *token, struct kv_err *err)
{
	vmlock_release(a->priv);
	return 0;
}

static int lf_held(struct arbiter *a)
{
	return ((struct vmlock *)a->priv)->held;
}

static void lf_destroy(struct arbiter *a)
{
	vmlock_close(a->priv);
	free(a->priv);
	free(a);
}

static const struct arbiter_ops lockfile_ops = {
	.name = "lock file",
	.acquire = lf_acquire,
	.release = lf_release,
	.held = lf_held,
	.destroy = lf_destroy,
};

int arbiter_lockfile_new(struct arbiter **out, const char *path, struct kv_err *err)
{
	struct arbiter *a = calloc(1, sizeof(*a));
	struct vmlock *l = calloc(1, sizeof(*l));
	int r;

	if (!a || !l) {
		free(a);
		free(l);
		return kv_errf(err, ENOMEM, "lock");
	}
	r = vmlock_open(l, path, err);
	if (r) {
		free(a);
		free(l);
		return r;
	}
	a->ops = &lockfile_ops;
	a->priv = l;
	*out = a;
	return 0;
}
