#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, size_t max, uint8_t **buf, size_t *len,
		  struct kv_err *err)
{
	struct stat st;
	uint8_t *b;
	size_t off = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kv_errf_sys(err, errno, "%s", path);
	if (fstat(fd, &st) < 0) {
		r = kv_errf_sys(err, errno, "%s: fstat", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = kv_errf(err, EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		r = kv_errf(err, EFBIG, "%s: %lld bytes, larger than the %zu allowed", path,
			    (long long)st.st_size, max);
		goto out;
	}
	b = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!b) {
		r = kv_errf(err, ENOMEM, "%s: out of memory", path);
		goto out;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, b + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? kv_errf_sys(err, errno, "%s: read", path)
				  : kv_errf(err, EIO, "%s: file shrank while reading", path);
			free(b);
			goto out;
		}
		off += (size_t)n;
	}
	*buf = b;
	*len = off;
	r = 0;
out:
	close(fd);
	return r;
}
