/*
 * allow.c - the destination's own policy for what an incoming VM may use
 * (allow.h).
 */
#define _GNU_SOURCE
#include "migration/allow.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

bool mig_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || name[0] == '.' || name[0] == '-')
		return false;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
	       == n;
}

/* Absolute, without "." or ".." components or empty ones: then a prefix
 * test against an allowed directory means what it says. */
static bool path_clean(const char *p)
{
	if (p[0] != '/')
		return false;
	for (const char *c = p; *c; ) {
		const char *e;
		size_t len;

		while (*c == '/')
			c++;
		e = strchrnul(c, '/');
		len = (size_t)(e - c);
		if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (*e == '/' && e[1] == '/')
			return false;
		c = e;
	}
	return true;
}

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The allowed entry that covers path: *rel is what follows a directory
 * entry ("" for a file entry).  -1 if none. */
static int find(const struct mig_allow *a, const char *path, const char **rel)
{
	for (unsigned i = 0; i < a->ndisks; i++) {
		const char *e = a->disks[i];
		size_t n = strlen(e);

		while (n > 1 && e[n - 1] == '/')
			n--;
		if (is_dir(e)) {
			if (!strncmp(path, e, n) && path[n] == '/' && path[n + 1]) {
				*rel = path + n + 1;
				return (int)i;
			}
		} else if (!strcmp(path, e)) {
			*rel = "";
			return (int)i;
		}
	}
	return -1;
}

static int refuse(const struct mig_allow *a, const char *path, struct kv_err *err)
{
	char list[256] = "";
	size_t n = 0;

	for (unsigned i = 0; i < a->ndisks && n < sizeof(list); i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
				      a->disks[i]);
	if (!a->ndisks)
		return kv_errf(err, EPERM, "disk %s is not allowed: this destination takes no "
			       "disks (give it --allow-disk PATH or a directory)", path);
	return kv_errf(err, EPERM, "disk %s is not allowed on this destination (allowed: %s)",
		       path, list);
}

int mig_allow_disk(const struct mig_allow *a, const char *path, struct kv_err *err)
{
	const char *rel;

	if (!path_clean(path))
		return kv_errf(err, EPERM, "disk path '%s' must be absolute, without '.' or "
			       "'..' components", path);
	return find(a, path, &rel) < 0 ? refuse(a, path, err) : 0;
}

int mig_allow_open_disk(const struct mig_allow *a, const char *path, bool readonly,
			struct kv_err *err)
{
	int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, i, dfd, fd;
	struct open_how how = { .flags = (uint64_t)flags,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	const char *rel;

	if (mig_allow_disk(a, path, err))
		return -EPERM;
	i = find(a, path, &rel);
	if (!*rel) {
		/* an image the operator named: open that very file */
		fd = open(path, flags);
		return fd < 0 ? kv_errf_sys(err, errno, "disk %s", path) : fd;
	}
	/* beneath an allowed directory: no symlink or ".." may lead out */
	dfd = open(a->disks[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return kv_errf_sys(err, errno, "allowed directory %s", a->disks[i]);
	fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == EXDEV)
		fd = kv_errf(err, EPERM, "disk %s leads outside the allowed directory %s",
			     path, a->disks[i]);
	else if (fd < 0)
		fd = kv_errf_sys(err, errno, "disk %s", path);
	close(dfd);
	return fd;
}

int mig_allow_tap(const struct mig_allow *a, const char *tap, struct kv_err *err)
{
	for (unsigned i = 0; i < a->ntaps; i++)
		if (!strcmp(a->taps[i], tap))
			return 0;
	return kv_errf(err, EPERM, "TAP interface %s is not allowed on this destination (give "
		       "it --allow-tap %s)", tap, tap);
}
