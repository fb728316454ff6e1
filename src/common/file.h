/* file.h - small file helpers with size caps (files are untrusted input). */
#ifndef KVMOVE_COMMON_FILE_H
#define KVMOVE_COMMON_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Read a whole regular file, refusing anything larger than max bytes.
 * *buf is malloc'ed (free it). */
int file_read_all(const char *path, size_t max, uint8_t **buf, size_t *len,
		  struct kv_err *err);

#endif
