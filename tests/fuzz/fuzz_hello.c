/*
 * fuzz_hello - the HELLO record every connection starts with, through
 * mig_hello_parse() (src/migration/hello.c): the first bytes a destination
 * reads from anyone who connects, before any authentication of the
 * migration itself (TLS aside).
 *
 * Input: the payload (JSON text); the first byte chooses the role wanted
 * (source, destination, file, channel, or any).
 * Checks: 0 or -errno with a message; on success the version is one this
 * kvmove speaks, the role is the one wanted (and NUL-terminated), channels
 * is 1..MIG_MAX_CHANNELS (1 without the capability), only known capability
 * bits are set, id and token are empty or exactly 32 lowercase hex digits,
 * index is 0 or 1..MIG_MAX_CHANNELS-1.
 */
#include <string.h>

#include "fuzz.h"
#include "migration/hello.h"
#include "migration/proto.h"

static bool hex32_or_empty(const char *s)
{
	return !s[0] || (strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const roles[] = { "source", "destination", "file", "channel", NULL };
	struct stream_rec rec = { .type = MIG_REC_HELLO };
	struct kv_err err = { "" };
	struct mig_hello h;
	const char *want;
	int r;

	if (size < 1 || size - 1 > MIG_MAX_JSON + 16)
		return 0;
	want = roles[data[0] % 5];
	rec.len = (uint32_t)(size - 1);
	rec.payload = data + 1;
	r = mig_hello_parse(&rec, want, &h, &err);
	FUZZ_CHECK(r <= 0 && r > -4096 && (r == 0 || err.msg[0]), "mig_hello_parse: %d", r);
	FUZZ_CHECK(memchr(err.msg, 0, sizeof(err.msg)) != NULL, "message not terminated");
	if (r)
		return 0;
	FUZZ_CHECK(h.version >= MIG_VERSION_MIN && h.version <= MIG_VERSION, "version %d",
		   h.version);
	FUZZ_CHECK(memchr(h.role, 0, sizeof(h.role)) && (!want || !strcmp(h.role, want)),
		   "role %.16s, wanted %s", h.role, want ? want : "any");
	FUZZ_CHECK(!(h.caps & ~MIG_CAP_ALL), "unknown capability bits 0x%x", h.caps);
	FUZZ_CHECK(h.channels >= 1 && h.channels <= MIG_MAX_CHANNELS &&
		   ((h.caps & MIG_CAP_CHANNELS) || h.channels == 1), "channels %u", h.channels);
	FUZZ_CHECK(hex32_or_empty(h.id) && hex32_or_empty(h.token), "id or token malformed");
	FUZZ_CHECK(h.index < MIG_MAX_CHANNELS, "index %u", h.index);
	return 0;
}
