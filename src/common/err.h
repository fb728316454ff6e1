/*
 * err.h - the error path every kvmove function uses.
 *
 * Functions return 0 on success or a negative errno, and on failure fill a
 * caller-owned struct kv_err with a message a user can read ("memory slot 1:
 * KVM_SET_USER_MEMORY_REGION: Invalid argument").  Nothing below main()
 * prints-and-exits.
 */
#ifndef KVMOVE_COMMON_ERR_H
#define KVMOVE_COMMON_ERR_H

#include <stddef.h>

#define KV_ERR_MAX 512

struct kv_err {
	char msg[KV_ERR_MAX];
};

/*
 * Fill err (if not NULL) with a formatted message and return -errnum
 * (errnum may be given positive or negative; 0 becomes -EINVAL).
 */
int kv_errf(struct kv_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like kv_errf, but appends ": strerror(errnum)". */
int kv_errf_sys(struct kv_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "ctx: old message". Returns rc unchanged. */
int kv_err_prefix(struct kv_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline void kv_err_clear(struct kv_err *err)
{
	if (err)
		err->msg[0] = '\0';
}

#endif
