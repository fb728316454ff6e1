/*
 * clusterconf.c - resolve the etcd endpoints of a cluster verb
 * (clusterconf.h).
 */
#define _GNU_SOURCE
#include "cluster/clusterconf.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/store.h"
#include "common/file.h"

/* One URL, [u, u+len): http://HOST:PORT. */
static int check_url(const char *u, size_t len, struct kv_err *err)
{
	static const char scheme[] = "http://";
	const size_t sl = sizeof(scheme) - 1;
	const char *host, *end = u + len, *colon, *p;
	unsigned long port = 0;
	size_t hl;

	if (len >= 8 && !strncasecmp(u, "https://", 8))
		return kv_errf(err, EINVAL, "'%.*s': https is not supported (etcd's client "
			       "URL must be http://HOST:PORT)", (int)len, u);
	if (len < sl || strncmp(u, scheme, sl))
		return kv_errf(err, EINVAL, "'%.*s' is not an etcd client URL: expected "
			       "http://HOST:PORT", (int)len, u);
	host = u + sl;
	if (host < end && *host == '[') {	/* [IPv6] */
		const char *rb = memchr(host, ']', (size_t)(end - host));

		if (!rb || rb == host + 1)
			return kv_errf(err, EINVAL, "'%.*s': an IPv6 address needs its "
				       "closing ']'", (int)len, u);
		for (p = host + 1; p < rb; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return kv_errf(err, EINVAL, "'%.*s': '%.*s' is not an IPv6 "
					       "address", (int)len, u, (int)(rb - host + 1), host);
		colon = rb + 1;
		if (colon >= end || *colon != ':')
			return kv_errf(err, EINVAL, "'%.*s' needs a port: http://HOST:PORT",
				       (int)len, u);
	} else {
		colon = memchr(host, ':', (size_t)(end - host));
		if (!colon)
			colon = end;
		hl = (size_t)(colon - host);
		if (!hl)
			return kv_errf(err, EINVAL, "'%.*s' has no host: expected "
				       "http://HOST:PORT", (int)len, u);
		if (hl > 253)
			return kv_errf(err, EINVAL, "'%.*s...': host name longer than 253 "
				       "characters", 40, u);
		for (p = host; p < colon; p++)
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
				return kv_errf(err, EINVAL, "'%.*s': '%c' in the host name (only "
					       "http://HOST:PORT is accepted: no user, path or "
					       "query)", (int)len, u, isprint((unsigned char)*p) ?
					       *p : '?');
		if (*host == '-' || *host == '.' || colon[-1] == '-')
			return kv_errf(err, EINVAL, "'%.*s': '%.*s' is not a host name",
				       (int)len, u, (int)hl, host);
		if (colon == end)
			return kv_errf(err, EINVAL, "'%.*s' needs a port: http://HOST:PORT "
				       "(etcd's default is 2379)", (int)len, u);
	}
	p = colon + 1;
	if (p == end)
		return kv_errf(err, EINVAL, "'%.*s' needs a port: http://HOST:PORT",
			       (int)len, u);
	for (; p < end && isdigit((unsigned char)*p); p++) {
		port = port * 10 + (unsigned long)(*p - '0');
		if (port > 65535)
			break;
	}
	if (p < end && (*p == '/' || *p == '?' || *p == '#'))
		return kv_errf(err, EINVAL, "'%.*s': nothing may follow the port (expected "
			       "http://HOST:PORT)", (int)len, u);
	if (p < end || port < 1 || port > 65535)
		return kv_errf(err, EINVAL, "'%.*s': the port must be a number in 1..65535",
			       (int)len, u);
	return 0;
}

int clusterconf_check_endpoints(const char *list, struct kv_err *err)
{
	const char *p = list;
	unsigned n = 0;
	int rc;

	if (!list || !*list)
		return kv_errf(err, EINVAL, "no etcd URL given: expected http://HOST:PORT"
			       "[,http://HOST:PORT...]");
	if (strlen(list) >= CLUSTER_ENDPOINTS_MAX)
		return kv_errf(err, EINVAL, "the etcd URL list is longer than %d characters",
			       CLUSTER_ENDPOINTS_MAX - 1);
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (!len)
			return kv_errf(err, EINVAL, "'%s': an empty URL in the list (two "
				       "commas, or one at an end)", list);
		if (++n > STORE_MAX_ENDPOINTS)
			return kv_errf(err, EINVAL, "more than %d etcd URLs", STORE_MAX_ENDPOINTS);
		rc = check_url(p, len, err);
		if (rc)
			return rc;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

static int set(struct cluster_etcd *out, const char *list, size_t len,
	       enum cluster_etcd_source src, struct kv_err *err)
{
	char tmp[CLUSTER_ENDPOINTS_MAX];
	int rc;

	if (len >= sizeof(tmp))
		return kv_errf(err, EINVAL, "%s: the etcd URL list is longer than %zu "
			       "characters", out->from, sizeof(tmp) - 1);
	memcpy(tmp, list, len);
	tmp[len] = '\0';
	rc = clusterconf_check_endpoints(tmp, err);
	if (rc)
		return kv_err_prefix(err, rc, "%s", out->from);
	memcpy(out->endpoints, tmp, len + 1);
	out->source = src;
	return 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The etcd= line of a config file.  1 found (out set), 0 no such line or no
 * file, <0 error. */
static int from_file(const char *path, struct cluster_etcd *out, struct kv_err *err)
{
	uint8_t *buf = NULL;
	size_t len = 0, lineno = 0, found = 0;
	const char *val = NULL;
	size_t vlen = 0;
	int rc;

	rc = file_read_all(path, CLUSTER_CONF_MAX, &buf, &len, err);
	if (rc == -ENOENT || rc == -ENOTDIR)
		return 0;
	if (rc)
		return kv_err_prefix(err, rc, "cannot read the cluster configuration");
	if (memchr(buf, '\0', len)) {
		free(buf);
		return kv_errf(err, EINVAL, "%s: a NUL byte: not a text file", path);
	}
	for (size_t off = 0; off < len;) {
		const char *line = (const char *)buf + off;
		const char *nl = memchr(line, '\n', len - off);
		size_t ll = nl ? (size_t)(nl - line) : len - off;
		const char *eq, *k = line, *kend, *v, *vend = line + ll;

		off += ll + (nl ? 1 : 0);
		lineno++;
		while (k < vend && is_blank(*k))
			k++;
		if (k == vend || *k == '#')
			continue;
		eq = memchr(k, '=', (size_t)(vend - k));
		if (!eq)
			continue;	/* other components' syntax is theirs to check */
		kend = eq;
		while (kend > k && is_blank(kend[-1]))
			kend--;
		if ((size_t)(kend - k) != 4 || strncmp(k, "etcd", 4))
			continue;
		v = eq + 1;
		while (v < vend && is_blank(*v))
			v++;
		while (vend > v && is_blank(vend[-1]))
			vend--;
		if (found) {
			rc = kv_errf(err, EINVAL, "%s line %zu: a second etcd= line (the first "
				     "is line %zu)", path, lineno, found);
			free(buf);
			return rc;
		}
		found = lineno;
		val = v;
		vlen = (size_t)(vend - v);
	}
	if (!found) {
		free(buf);
		return 0;
	}
	snprintf(out->from, sizeof(out->from), "%s line %zu", path, found);
	rc = set(out, val, vlen, CLUSTER_ETCD_CONF, err);
	free(buf);
	return rc ? rc : 1;
}

int clusterconf_resolve_with(const char *opt, const char *env_etcd, const char *conf_path,
			     struct cluster_etcd *out, struct kv_err *err)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (opt) {
		snprintf(out->from, sizeof(out->from), "--etcd");
		return set(out, opt, strlen(opt), CLUSTER_ETCD_OPTION, err);
	}
	if (env_etcd && *env_etcd) {
		snprintf(out->from, sizeof(out->from), "$KVMOVE_ETCD");
		return set(out, env_etcd, strlen(env_etcd), CLUSTER_ETCD_ENV, err);
	}
	rc = from_file(conf_path && *conf_path ? conf_path : CLUSTER_CONF_PATH, out, err);
	if (rc)
		return rc < 0 ? rc : 0;
	snprintf(out->from, sizeof(out->from), "the default: the embedded etcd of "
		 "'kvmove cluster init'");
	return set(out, CLUSTER_EMBEDDED_ENDPOINT, strlen(CLUSTER_EMBEDDED_ENDPOINT),
		   CLUSTER_ETCD_DEFAULT, err);
}

int clusterconf_resolve(const char *opt, struct cluster_etcd *out, struct kv_err *err)
{
	return clusterconf_resolve_with(opt, getenv("KVMOVE_ETCD"),
					getenv("KVMOVE_CLUSTER_CONF"), out, err);
}
