#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int norm(int errnum)
{
	if (errnum < 0)
		errnum = -errnum;
	return errnum ? errnum : EINVAL;
}

int kv_errf(struct kv_err *err, int errnum, const char *fmt, ...)
{
	errnum = norm(errnum);
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -errnum;
}

int kv_errf_sys(struct kv_err *err, int errnum, const char *fmt, ...)
{
	errnum = norm(errnum);
	if (err) {
		va_list ap;
		int n;
		va_start(ap, fmt);
		n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < sizeof(err->msg))
			snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s",
				 strerror(errnum));
	}
	return -errnum;
}

int kv_err_prefix(struct kv_err *err, int rc, const char *fmt, ...)
{
	char prefix[KV_ERR_MAX], old[KV_ERR_MAX];
	va_list ap;

	if (!err)
		return rc;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Truncation is fine here; build it piecewise so the compiler can see
	 * that we mean it. */
	{
		size_t n = strnlen(prefix, sizeof(err->msg) - 1);
		memcpy(err->msg, prefix, n);
		if (n + 2 < sizeof(err->msg)) {
			err->msg[n++] = ':';
			err->msg[n++] = ' ';
		}
		size_t m = strnlen(old, sizeof(old));
		if (m > sizeof(err->msg) - 1 - n)
			m = sizeof(err->msg) - 1 - n;
		memcpy(err->msg + n, old, m);
		err->msg[n + m] = '\0';
	}
	return rc;
}
