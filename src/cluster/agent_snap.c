/*
 * agent_snap.c - lookups in one read of everything under /kvmove/ (the list
 * is sorted by key, so a prefix is a contiguous range).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cluster/agent_int.h"

static const struct store_kv *find(const struct snap *s, const char *key)
{
	size_t lo = 0, hi = s->l.n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->l.kvs[mid].key, key);
		if (!c)
			return &s->l.kvs[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct store_kv *snap_get(const struct snap *s, const char *fmt, ...)
{
	char key[KEY_MAX_LEN];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(key))
		return NULL;
	return find(s, key);
}

json_t *snap_json(const struct snap *s, const char *fmt, ...)
{
	char key[KEY_MAX_LEN];
	const struct store_kv *kv;
	json_t *j;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(key) || !(kv = find(s, key)))
		return NULL;
	j = json_loadb(kv->value, kv->vlen, JSON_REJECT_DUPLICATES, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

void snap_range(const struct snap *s, const char *prefix, size_t *b, size_t *e)
{
	size_t plen = strlen(prefix), lo = 0, hi = s->l.n;

	while (lo < hi) {	/* first key >= prefix */
		size_t mid = (lo + hi) / 2;
		if (strcmp(s->l.kvs[mid].key, prefix) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*b = lo;
	while (lo < s->l.n && !strncmp(s->l.kvs[lo].key, prefix, plen))
		lo++;
	*e = lo;
}
