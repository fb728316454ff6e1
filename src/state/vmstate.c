/* vmstate.c - the one generic save/load walker over state tables. */
#include "state/vmstate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define MAX_FIELDS 256

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Host-order element <-> little-endian wire element (x86 is LE already, but
 * say what we mean so the format does not depend on the host). */
static uint64_t read_elem(const uint8_t *src, size_t size)
{
	switch (size) {
	case 1: return *src;
	case 2: { uint16_t v; memcpy(&v, src, 2); return v; }
	case 4: { uint32_t v; memcpy(&v, src, 4); return v; }
	default: { uint64_t v; memcpy(&v, src, 8); return v; }
	}
}

static void write_elem(uint8_t *dst, size_t size, uint64_t v)
{
	switch (size) {
	case 1: *dst = (uint8_t)v; break;
	case 2: { uint16_t x = (uint16_t)v; memcpy(dst, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(dst, &x, 4); break; }
	default: memcpy(dst, &v, 8); break;
	}
}

static bool field_ok(const struct vmstate_field *f)
{
	return f->name && strlen(f->name) <= 255 &&
	       (f->size == 1 || f->size == 2 || f->size == 4 || f->size == 8) &&
	       f->count >= 1 && f->count <= UINT32_MAX;
}

size_t vmstate_saved_size(const struct vmstate_desc *d)
{
	size_t n = 8;

	for (size_t i = 0; i < d->nfields; i++) {
		const struct vmstate_field *f = &d->fields[i];
		n += 1 + strlen(f->name) + 1 + 4 + f->size * f->count;
	}
	return n;
}

int vmstate_save(const struct vmstate_desc *d, const void *state, uint8_t *buf,
		 size_t cap, size_t *len, struct kv_err *err)
{
	size_t need = vmstate_saved_size(d), pos = 0;
	const uint8_t *base = state;

	if (d->nfields > MAX_FIELDS)
		return kv_errf(err, EINVAL, "%s: too many fields", d->name);
	if (need > cap)
		return kv_errf(err, ENOSPC, "%s: state needs %zu bytes, buffer has %zu",
			       d->name, need, cap);
	put_le(buf, d->version, 4);
	put_le(buf + 4, d->nfields, 4);
	pos = 8;
	for (size_t i = 0; i < d->nfields; i++) {
		const struct vmstate_field *f = &d->fields[i];
		size_t nl = strlen(f->name);

		if (!field_ok(f) || f->offset + f->size * f->count > d->struct_size)
			return kv_errf(err, EINVAL, "%s: field %s is malformed", d->name,
				       f->name ? f->name : "?");
		buf[pos++] = (uint8_t)nl;
		memcpy(buf + pos, f->name, nl);
		pos += nl;
		buf[pos++] = (uint8_t)f->size;
		put_le(buf + pos, f->count, 4);
		pos += 4;
		if (f->size == 1) {	/* bytes and blobs: no byte order */
			memcpy(buf + pos, base + f->offset, f->count);
			pos += f->count;
			continue;
		}
		for (size_t e = 0; e < f->count; e++) {
			put_le(buf + pos, read_elem(base + f->offset + e * f->size, f->size), f->size);
			pos += f->size;
		}
	}
	*len = pos;
	return 0;
}

int vmstate_load(const struct vmstate_desc *d, void *state, const uint8_t *buf,
		 size_t len, struct kv_err *err)
{
	bool seen[MAX_FIELDS] = { false };
	uint8_t *base = state, *scratch;
	uint32_t version, nfields;
	size_t pos = 8;
	int r = 0;

	if (d->nfields > MAX_FIELDS)
		return kv_errf(err, EINVAL, "%s: too many fields", d->name);
	if (len < 8)
		return kv_errf(err, EBADMSG, "%s: state truncated (%zu bytes)", d->name, len);
	version = (uint32_t)get_le(buf, 4);
	nfields = (uint32_t)get_le(buf + 4, 4);
	if (version > d->version)
		return kv_errf(err, EPROTO, "%s: state version %u is newer than ours (%u)",
			       d->name, version, d->version);
	if (nfields > d->nfields)
		return kv_errf(err, EBADMSG, "%s: %u fields, we know %zu", d->name, nfields,
			       d->nfields);

	/* Load into a copy: a bad stream must leave the live state untouched. */
	scratch = malloc(d->struct_size);
	if (!scratch)
		return kv_errf(err, ENOMEM, "%s: out of memory", d->name);
	memcpy(scratch, base, d->struct_size);

	for (uint32_t i = 0; i < nfields; i++) {
		const struct vmstate_field *f = NULL;
		size_t nl, esize, fi = 0;
		uint64_t count;

		if (len - pos < 1) goto trunc;
		nl = buf[pos++];
		if (len - pos < nl + 1 + 4) goto trunc;
		for (fi = 0; fi < d->nfields; fi++)
			if (strlen(d->fields[fi].name) == nl &&
			    !memcmp(d->fields[fi].name, buf + pos, nl)) {
				f = &d->fields[fi];
				break;
			}
		if (!f) {
			r = kv_errf(err, EBADMSG, "%s: unknown field '%.*s'", d->name, (int)nl,
				    (const char *)buf + pos);
			goto out;
		}
		if (seen[fi]) {
			r = kv_errf(err, EBADMSG, "%s: field %s appears twice", d->name, f->name);
			goto out;
		}
		seen[fi] = true;
		pos += nl;
		esize = buf[pos++];
		count = get_le(buf + pos, 4);
		pos += 4;
		if (esize != f->size || count != f->count) {
			r = kv_errf(err, EBADMSG, "%s: field %s has %zu x %llu bytes, expected "
				    "%zu x %zu", d->name, f->name, esize,
				    (unsigned long long)count, f->size, f->count);
			goto out;
		}
		if (len - pos < esize * count) goto trunc;
		if (esize == 1) {
			memcpy(scratch + f->offset, buf + pos, count);
			pos += count;
			continue;
		}
		for (size_t e = 0; e < count; e++) {
			write_elem(scratch + f->offset + e * esize, esize, get_le(buf + pos, esize));
			pos += esize;
		}
	}
	if (pos != len) {
		r = kv_errf(err, EBADMSG, "%s: %zu unexpected bytes after the state", d->name,
			    len - pos);
		goto out;
	}
	/* A writer of this version knew every field up to it: one missing is a
	 * damaged or forged section, not an older writer. */
	for (size_t fi = 0; fi < d->nfields; fi++)
		if (!seen[fi] && d->fields[fi].version <= version) {
			r = kv_errf(err, EBADMSG, "%s: field %s is missing (version %u has it)",
				    d->name, d->fields[fi].name, version);
			goto out;
		}
	if (d->validate && (r = d->validate(scratch, err)) < 0) {
		kv_err_prefix(err, r, "%s", d->name);
		goto out;
	}
	memcpy(base, scratch, d->struct_size);
	goto out;
trunc:
	r = kv_errf(err, EBADMSG, "%s: state truncated at byte %zu", d->name, pos);
out:
	free(scratch);
	return r;
}
