#define _GNU_SOURCE
#include "migration/hello.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "migration/proto.h"

static const struct {
	unsigned bit;
	const char *name;
} cap_names[] = {
	{ MIG_CAP_POSTCOPY, "postcopy" },
	{ MIG_CAP_CHANNELS, "channels" },
	{ MIG_CAP_LOCAL, "local" },
	{ MIG_CAP_COMPRESS, "compress" },
};

const char *mig_cap_name(unsigned cap)
{
	for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		if (cap_names[i].bit == cap)
			return cap_names[i].name;
	return "?";
}

json_t *mig_hello_new(const char *role, unsigned caps)
{
	json_t *a = json_array();

	for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		if (caps & cap_names[i].bit)
			json_array_append_new(a, json_string(cap_names[i].name));
	return json_pack("{s:s, s:i, s:s, s:o}", "protocol", MIG_PROTOCOL, "version",
			 MIG_VERSION, "role", role, "capabilities", a);
}

static bool is_hex32(const char *s)
{
	return s && strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

int mig_hello_parse(const struct stream_rec *rec, const char *want_role, struct mig_hello *h,
		    struct kv_err *err)
{
	json_t *j, *caps, *c, *v;
	const char *proto = NULL, *role = NULL;
	json_int_t ver = 0;
	size_t i;
	int r = mig_parse_json(rec, &j, err);

	memset(h, 0, sizeof(*h));
	h->channels = 1;
	if (r)
		return r;
	if (json_unpack(j, "{s:s, s:I, s:s}", "protocol", &proto, "version", &ver, "role",
			&role) || strcmp(proto, MIG_PROTOCOL)) {
		r = kv_errf(err, EPROTO, "not a kvmove migration stream");
		goto out;
	}
	if (ver < MIG_VERSION_MIN) {
		r = kv_errf(err, EPROTO, "the peer writes stream version %lld; this kvmove reads "
			    "versions %d to %d", (long long)ver, MIG_VERSION_MIN, MIG_VERSION);
		goto out;
	}
	h->version = ver > MIG_VERSION ? MIG_VERSION : (int)ver;
	if (want_role && strcmp(role, want_role)) {
		r = kv_errf(err, EPROTO, "expected a %s, the peer is a %.32s", want_role, role);
		goto out;
	}
	snprintf(h->role, sizeof(h->role), "%s", role);
	caps = json_object_get(j, "capabilities");
	if (caps && !json_is_array(caps)) {
		r = kv_errf(err, EPROTO, "HELLO: 'capabilities' is not a list");
		goto out;
	}
	json_array_foreach(caps, i, c)
		for (size_t k = 0; json_is_string(c) && k < sizeof(cap_names) / sizeof(cap_names[0]);
		     k++)
			if (!strcmp(json_string_value(c), cap_names[k].name))
				h->caps |= cap_names[k].bit;
	v = json_object_get(j, "channels");
	if (h->caps & MIG_CAP_CHANNELS) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > MIG_MAX_CHANNELS) {
			r = kv_errf(err, EPROTO, "HELLO: 'channels' must be 1 to %d",
				    MIG_MAX_CHANNELS);
			goto out;
		}
		h->channels = (unsigned)json_integer_value(v);
	}
	h->resume = json_is_true(json_object_get(j, "resume"));
	if (is_hex32(json_string_value(json_object_get(j, "id"))))
		memcpy(h->id, json_string_value(json_object_get(j, "id")), 33);
	if (is_hex32(json_string_value(json_object_get(j, "token"))))
		memcpy(h->token, json_string_value(json_object_get(j, "token")), 33);
	v = json_object_get(j, "index");
	if (json_is_integer(v) && json_integer_value(v) >= 1 &&
	    json_integer_value(v) < MIG_MAX_CHANNELS)
		h->index = (unsigned)json_integer_value(v);
out:
	json_decref(j);
	return r;
}

int mig_random_hex(char out[33])
{
	uint8_t b[16];
	size_t got = 0;

	/* These authenticate (a channel's token) and identify (a post-copy's
	 * recovery): never weaker than the kernel's random bytes. */
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			out[0] = 0;
			return -(n < 0 ? errno : EIO);
		}
		got += (size_t)n;
	}
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}
