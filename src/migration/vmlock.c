#define _GNU_SOURCE
#include "migration/vmlock.h"

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
