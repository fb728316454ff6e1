/*
 * store_b64.h - private to the etcd store: the gateway's JSON encoding.
 * Base64 (keys and values), strict decoding of the proto3-JSON fields etcd
 * sends, and the request/answer pieces every call shares.
 * Everything etcd sends is untrusted: these functions never accept a
 * malformed field, and a missing (or null) field means 0 / empty, as proto3
 * JSON defines.
 */
#ifndef KVMOVE_CLUSTER_STORE_B64_H
#define KVMOVE_CLUSTER_STORE_B64_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cluster/store.h"

/* Standard base64 with padding; malloc'd and NUL-terminated, NULL on ENOMEM. */
char *store_b64_encode(const void *p, size_t n);

/* Canonical standard base64 (padding, no whitespace, zero trailing bits).
 * *out is malloc'd with a NUL after its *outlen bytes.  -EINVAL when s is
 * not canonical base64, -ENOMEM. */
int store_b64_decode(const char *s, size_t slen, char **out, size_t *outlen);

/* Field name of obj: a base64 string (missing = empty).  -EPROTO, -ENOMEM. */
int store_json_bytes(const json_t *obj, const char *name, char **out, size_t *outlen);
/* Field name of obj: an int64 given as a decimal string (or a JSON integer);
 * missing = 0.  -EPROTO when malformed or out of range. */
int store_json_i64(const json_t *obj, const char *name, int64_t *out);
/* The same for uint64 fields (member ids). */
int store_json_u64(const json_t *obj, const char *name, uint64_t *out);
/* Field name of obj: a bool (missing = false).  -EPROTO. */
int store_json_bool(const json_t *obj, const char *name, int *out);

/* Request fields: name = base64 of p[0..n), an int64 as a decimal string,
 * "key" and "range_end" for every key under prefix.  -ENOMEM. */
int store_set_b64(json_t *o, const char *name, const void *p, size_t n);
int store_set_i64(json_t *o, const char *name, int64_t v);
int store_set_range(json_t *o, const char *prefix);

/* Answer pieces: header.revision of an answer; one mvccpb.KeyValue (keys
 * must be non-empty and free of NUL bytes).  -EPROTO, -ENOMEM. */
int store_header_rev(const json_t *resp, int64_t *rev);
int store_parse_kv(const json_t *j, struct store_kv *kv);

#endif
