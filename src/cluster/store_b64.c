/*
 * store_b64.c - the etcd gateway's JSON encoding for the store: base64,
 * strict proto3-JSON fields, request and answer pieces (store_b64.h).
 */
#define _GNU_SOURCE
#include "cluster/store_b64.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *store_b64_encode(const void *p, size_t n)
{
	const unsigned char *in = p;
	char *out, *o;
	size_t i;

	if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	out = malloc((n + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	o = out;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = b64_alphabet[v >> 18 & 63];
		*o++ = b64_alphabet[v >> 12 & 63];
		*o++ = b64_alphabet[v >> 6 & 63];
		*o++ = b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		*o++ = b64_alphabet[v >> 18 & 63];
		*o++ = b64_alphabet[v >> 12 & 63];
		*o++ = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int store_b64_decode(const char *s, size_t slen, char **out, size_t *outlen)
{
	size_t pad = 0, n, i, o = 0;
	char *buf;

	*out = NULL;
	*outlen = 0;
	if (slen % 4)
		return -EINVAL;
	if (slen >= 1 && s[slen - 1] == '=')
		pad++;
	if (slen >= 2 && s[slen - 2] == '=')
		pad++;
	n = slen / 4 * 3 - pad;
	buf = malloc(n + 1);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < slen; i += 4) {
		int v[4];
		bool last = i + 4 == slen;
		uint32_t w;

		for (int k = 0; k < 4; k++) {
			v[k] = b64_value((unsigned char)s[i + k]);
			/* '=' only as the padding of the last group */
			if (v[k] < 0 && !(last && k >= 4 - (int)pad))
				goto bad;
		}
		w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12;
		if (last && pad == 2) {
			if (w & 0xffff)		/* canonical: unused bits are 0 */
				goto bad;
			buf[o++] = (char)(w >> 16);
			break;
		}
		w |= (uint32_t)v[2] << 6;
		if (last && pad == 1) {
			if (w & 0xff)
				goto bad;
			buf[o++] = (char)(w >> 16);
			buf[o++] = (char)(w >> 8);
			break;
		}
		w |= (uint32_t)v[3];
		buf[o++] = (char)(w >> 16);
		buf[o++] = (char)(w >> 8);
		buf[o++] = (char)w;
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
bad:
	free(buf);
	return -EINVAL;
}

int store_json_bytes(const json_t *obj, const char *name, char **out, size_t *outlen)
{
	json_t *v = json_object_get(obj, name);

	*out = NULL;
	*outlen = 0;
	if (!v || json_is_null(v)) {
		*out = calloc(1, 1);
		return *out ? 0 : -ENOMEM;
	}
	if (!json_is_string(v))
		return -EPROTO;
	int rc = store_b64_decode(json_string_value(v), json_string_length(v), out, outlen);
	return rc == -EINVAL ? -EPROTO : rc;
}

/* Decimal digits with an optional '-', nothing else; *neg and the magnitude
 * (which must fit in a uint64). */
static int parse_decimal(const char *s, size_t len, bool *neg, uint64_t *mag)
{
	size_t i = 0;
	uint64_t m = 0;

	*neg = false;
	if (len && s[0] == '-') {
		*neg = true;
		i = 1;
	}
	if (i == len || len - i > 20)
		return -EPROTO;
	for (; i < len; i++) {
		unsigned d;
		if (s[i] < '0' || s[i] > '9')
			return -EPROTO;
		d = (unsigned)(s[i] - '0');
		if (m > (UINT64_MAX - d) / 10)
			return -EPROTO;
		m = m * 10 + d;
	}
	*mag = m;
	return 0;
}

/* Field name of obj as a sign and a magnitude: a JSON integer or a decimal
 * string; missing (or null) = 0.  -EPROTO. */
static int json_decimal(const json_t *obj, const char *name, bool *neg, uint64_t *mag)
{
	json_t *v = json_object_get(obj, name);

	*neg = false;
	*mag = 0;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		*neg = i < 0;
		*mag = *neg ? 0 - (uint64_t)i : (uint64_t)i;
		return 0;
	}
	if (!json_is_string(v))
		return -EPROTO;
	return parse_decimal(json_string_value(v), json_string_length(v), neg, mag);
}

int store_json_i64(const json_t *obj, const char *name, int64_t *out)
{
	bool neg;
	uint64_t m;

	*out = 0;
	if (json_decimal(obj, name, &neg, &m) ||
	    (neg ? m > (uint64_t)INT64_MAX + 1 : m > (uint64_t)INT64_MAX))
		return -EPROTO;
	*out = neg ? (int64_t)(0 - m) : (int64_t)m;
	return 0;
}

int store_json_u64(const json_t *obj, const char *name, uint64_t *out)
{
	bool neg;
	uint64_t m;

	*out = 0;
	if (json_decimal(obj, name, &neg, &m) || neg)
		return -EPROTO;
	*out = m;
	return 0;
}

int store_json_bool(const json_t *obj, const char *name, int *out)
{
	json_t *v = json_object_get(obj, name);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return -EPROTO;
	*out = json_is_true(v);
	return 0;
}

/* ------------------------------------------------------------------ */
/* requests and answers                                                 */
/* ------------------------------------------------------------------ */

int store_set_b64(json_t *o, const char *name, const void *p, size_t n)
{
	char *s = store_b64_encode(p, n);
	int rc = s && !json_object_set_new(o, name, json_string(s)) ? 0 : -ENOMEM;

	free(s);
	return rc;
}

int store_set_i64(json_t *o, const char *name, int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, v);
	return json_object_set_new(o, name, json_string(s)) ? -ENOMEM : 0;
}

int store_set_range(json_t *o, const char *prefix)
{
	size_t n = strlen(prefix);
	char *end;
	int rc;

	/* the keys that start with prefix: [prefix, prefix with its last byte
	 * below 0xff incremented and the rest dropped); all keys when there
	 * is no such byte: ["\0", "\0") */
	while (n && (unsigned char)prefix[n - 1] == 0xff)
		n--;
	if (!n)
		return store_set_b64(o, "key", "", 1) ?: store_set_b64(o, "range_end", "", 1);
	end = strndup(prefix, n);
	if (!end)
		return -ENOMEM;
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	rc = store_set_b64(o, "key", prefix, strlen(prefix)) ?: store_set_b64(o, "range_end", end, n);
	free(end);
	return rc;
}

int store_header_rev(const json_t *resp, int64_t *rev)
{
	const json_t *h = json_object_get(resp, "header");

	*rev = 0;
	if (!json_is_object(h))
		return -EPROTO;
	return store_json_i64(h, "revision", rev);
}

int store_parse_kv(const json_t *j, struct store_kv *kv)
{
	size_t klen;
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(j))
		return -EPROTO;
	rc = store_json_bytes(j, "key", &kv->key, &klen);
	if (!rc && (!klen || memchr(kv->key, '\0', klen)))
		rc = -EPROTO;		/* keys are NUL-terminated strings here */
	if (!rc)
		rc = store_json_bytes(j, "value", &kv->value, &kv->vlen);
	if (!rc)
		rc = store_json_i64(j, "create_revision", &kv->create_rev) ?:
		     store_json_i64(j, "mod_revision", &kv->mod_rev) ?:
		     store_json_i64(j, "version", &kv->version) ?:
		     store_json_i64(j, "lease", &kv->lease);
	if (rc)
		store_kv_free(kv);
	return rc;
}
