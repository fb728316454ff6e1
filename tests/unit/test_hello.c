/*
 * The HELLO record (what a peer says it is and can do) and RAM stripes
 * (several channels, each sending its own part of one dirty bitmap).
 * HELLO is what an untrusted peer sends first, so every refusal is checked
 * with its message; the stripes must together send each dirty page exactly
 * once, on the channel that owns it, or a page is lost or overtaken.
 * Nothing here needs KVM: a VM with guest memory and no vCPUs is enough.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/vm.h"
#include "migration/hello.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "state/channel.h"
#include "state/stream.h"

#define HEX_A "0123456789abcdef0123456789abcdef"
#define HEX_B "fedcba9876543210fedcba9876543210"

/* ---- HELLO ---- */

/* Parse text as the payload of a HELLO record, as a receiver would. */
static int parse_text(const char *text, const char *want, struct mig_hello *h,
		      struct kv_err *err)
{
	struct stream_rec rec = { .type = MIG_REC_HELLO, .len = (uint32_t)strlen(text),
				  .payload = (const uint8_t *)text };

	err->msg[0] = 0;
	return mig_hello_parse(&rec, want, h, err);
}

/* The same for a JSON object (taken). */
static int parse_obj(json_t *j, const char *want, struct mig_hello *h, struct kv_err *err)
{
	char *text = json_dumps(j, JSON_COMPACT);
	int r;

	assert_non_null(text);
	r = parse_text(text, want, h, err);
	free(text);
	json_decref(j);
	return r;
}

/* A good source HELLO with one field replaced (or removed: v NULL). */
static json_t *hello_with(unsigned caps, const char *key, json_t *v)
{
	json_t *j = mig_hello_new("source", caps);

	assert_non_null(j);
	if (key && v)
		json_object_set_new(j, key, v);
	else if (key)
		json_object_del(j, key);
	return j;
}

static void expect_refused(json_t *j, const char *want, const char *why, const char *needle)
{
	struct mig_hello h;
	struct kv_err err;
	int r = parse_obj(j, want, &h, &err);

	if (r >= 0)
		fail_msg("accepted: %s", why);
	if (!err.msg[0])
		fail_msg("%s: refused (%d) without a message", why, r);
	if (needle && !strstr(err.msg, needle))
		fail_msg("%s: message \"%s\" does not name \"%s\"", why, err.msg, needle);
}

static void test_hello_round_trip(void **state)
{
	struct mig_hello h;
	struct kv_err err;
	json_t *j = mig_hello_new("source", MIG_CAP_CHANNELS), *caps;

	/* what goes on the wire: the channels capability alone */
	assert_string_equal(json_string_value(json_object_get(j, "protocol")), MIG_PROTOCOL);
	assert_int_equal(json_integer_value(json_object_get(j, "version")), MIG_VERSION);
	assert_string_equal(json_string_value(json_object_get(j, "role")), "source");
	caps = json_object_get(j, "capabilities");
	assert_true(json_is_array(caps));
	assert_int_equal(json_array_size(caps), 1);
	assert_string_equal(json_string_value(json_array_get(caps, 0)), "channels");

	json_object_set_new(j, "channels", json_integer(4));
	if (parse_obj(j, "source", &h, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(h.role, "source");
	assert_int_equal(h.version, MIG_VERSION);
	assert_int_equal(h.caps, MIG_CAP_CHANNELS);
	assert_int_equal(h.channels, 4);
	assert_false(h.resume);
	assert_string_equal(h.id, "");
	assert_string_equal(h.token, "");
	assert_int_equal(h.index, 0);

	/* everything this kvmove knows comes back as it went */
	j = hello_with(MIG_CAP_ALL, "channels", json_integer(MIG_MAX_CHANNELS));
	json_object_set_new(j, "resume", json_true());
	if (parse_obj(j, NULL, &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.caps, MIG_CAP_ALL);
	assert_int_equal(h.channels, MIG_MAX_CHANNELS);
	assert_true(h.resume);

	/* nothing offered: one connection, whatever "channels" says */
	j = hello_with(0, "channels", json_integer(0));
	assert_int_equal(json_array_size(json_object_get(j, "capabilities")), 0);
	if (parse_obj(j, "source", &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.caps, 0);
	assert_int_equal(h.channels, 1);

	/* an older peer may not send the list at all */
	if (parse_obj(hello_with(MIG_CAP_ALL, "capabilities", NULL), "source", &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.caps, 0);
	assert_int_equal(h.channels, 1);

	assert_string_equal(mig_cap_name(MIG_CAP_POSTCOPY), "postcopy");
	assert_string_equal(mig_cap_name(MIG_CAP_CHANNELS), "channels");
	assert_string_equal(mig_cap_name(MIG_CAP_ALL), "?");	/* one bit at a time */
	assert_string_equal(mig_cap_name(0x100), "?");
}

/* Both ends use the lower version; an older peer than we read is refused
 * with both numbers, so the operator knows which side to upgrade. */
static void test_hello_versions(void **state)
{
	struct mig_hello h;
	struct kv_err err;
	char min[16];

	/* one message naming both: the peer's 2, and the oldest we read */
	snprintf(min, sizeof(min), "%d", MIG_VERSION_MIN);
	assert_true(MIG_VERSION_MIN > 2);
	assert_int_equal(parse_obj(hello_with(0, "version", json_integer(2)), "source", &h, &err),
			 -EPROTO);
	if (!strstr(err.msg, "version 2") || !strstr(err.msg, min))
		fail_msg("\"%s\" does not name versions 2 and %s", err.msg, min);
	expect_refused(hello_with(0, "version", json_integer(MIG_VERSION_MIN - 1)), NULL,
		       "just below the minimum", min);
	expect_refused(hello_with(0, "version", json_integer(-1)), NULL, "negative version", NULL);
	expect_refused(hello_with(0, "version", json_string("3")), NULL, "version as a string",
		       NULL);
	expect_refused(hello_with(0, "version", NULL), NULL, "no version", NULL);

	if (parse_obj(hello_with(0, "version", json_integer(99)), "source", &h, &err))
		fail_msg("version 99: %s", err.msg);
	assert_int_equal(h.version, MIG_VERSION);
	if (parse_obj(hello_with(0, "version", json_integer(MIG_VERSION_MIN)), "source", &h,
		      &err))
		fail_msg("version %d: %s", MIG_VERSION_MIN, err.msg);
	assert_int_equal(h.version, MIG_VERSION_MIN);
	/* far above: still ours, never truncated into something odd */
	if (parse_obj(hello_with(0, "version", json_integer((json_int_t)1 << 40)), "source", &h,
		      &err))
		fail_msg("version 2^40: %s", err.msg);
	assert_int_equal(h.version, MIG_VERSION);
}

/* A newer peer's capabilities are ignored, not refused: features grow
 * without breaking older peers. */
static void test_hello_unknown_caps(void **state)
{
	struct mig_hello h;
	struct kv_err err;

	if (parse_obj(hello_with(0, "capabilities", json_pack("[s, i, s, n, [s]]", "zstd-x", 7,
							     "postcopy", "channels")),
		      "source", &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.caps, MIG_CAP_POSTCOPY);
	assert_int_equal(h.channels, 1);
	assert_string_equal(err.msg, "");

	/* a known name only counts whole */
	if (parse_obj(hello_with(0, "capabilities", json_pack("[s, s]", "postcopyx", "chan")),
		      "source", &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.caps, 0);

	expect_refused(hello_with(0, "capabilities", json_string("postcopy")), NULL,
		       "capabilities as a string", "capabilities");
	expect_refused(hello_with(0, "capabilities", json_pack("{s:b}", "postcopy", 1)), NULL,
		       "capabilities as an object", "capabilities");
	expect_refused(hello_with(0, "capabilities", json_integer(3)), NULL,
		       "capabilities as a number", "capabilities");
}

static void test_hello_channels(void **state)
{
	struct mig_hello h;
	struct kv_err err;

	expect_refused(hello_with(MIG_CAP_CHANNELS, "channels", json_integer(0)), NULL,
		       "0 channels", "channels");
	expect_refused(hello_with(MIG_CAP_CHANNELS, "channels", json_integer(MIG_MAX_CHANNELS + 1)),
		       NULL, "17 channels", "channels");
	expect_refused(hello_with(MIG_CAP_CHANNELS, "channels", json_integer(-1)), NULL,
		       "-1 channels", "channels");
	expect_refused(hello_with(MIG_CAP_CHANNELS, "channels", json_integer((json_int_t)1 << 32)),
		       NULL, "2^32 channels (would wrap to 0)", "channels");
	expect_refused(hello_with(MIG_CAP_CHANNELS, "channels", json_string("4")), NULL,
		       "channels as a string", "channels");
	expect_refused(hello_with(MIG_CAP_CHANNELS, "channels", json_real(4.0)), NULL,
		       "channels as a real", "channels");
	expect_refused(hello_with(MIG_CAP_CHANNELS, NULL, NULL), NULL, "capability without a count",
		       "channels");

	if (parse_obj(hello_with(MIG_CAP_CHANNELS, "channels", json_integer(1)), NULL, &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.channels, 1);
	/* without the capability the count is not looked at */
	if (parse_obj(hello_with(MIG_CAP_POSTCOPY, "channels", json_integer(17)), NULL, &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.channels, 1);
}

static void test_hello_role_protocol(void **state)
{
	struct mig_hello h;
	struct kv_err err;
	json_t *j;

	j = mig_hello_new("source", 0);
	expect_refused(j, "destination", "a source where a destination belongs", "destination");
	j = mig_hello_new("source", 0);
	expect_refused(j, "destination", "a source where a destination belongs", "source");
	expect_refused(hello_with(0, "role", json_integer(1)), NULL, "role as a number", NULL);
	expect_refused(hello_with(0, "role", NULL), NULL, "no role", NULL);

	expect_refused(hello_with(0, "protocol", json_string("qemu-migration")), NULL,
		       "another protocol", "kvmove");
	expect_refused(hello_with(0, "protocol", json_string("kvmove-migration2")), NULL,
		       "a protocol with a suffix", NULL);
	expect_refused(hello_with(0, "protocol", NULL), NULL, "no protocol", NULL);

	/* not even an object */
	assert_true(parse_text("[1,2]", NULL, &h, &err) < 0);
	assert_true(parse_text("{\"protocol\":", NULL, &h, &err) < 0);
	assert_true(parse_text("", NULL, &h, &err) < 0);

	/* any role when none is wanted; a long one is cut, never overflowing */
	if (parse_obj(mig_hello_new("channel", 0), NULL, &h, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(h.role, "channel");
	if (parse_obj(hello_with(0, "role", json_string("a-role-far-longer-than-sixteen")), NULL,
		      &h, &err))
		fail_msg("%s", err.msg);
	assert_true(strlen(h.role) < sizeof(h.role));
	/* the peer's role in a message is bounded too */
	j = hello_with(0, "role", json_string("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
					      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
	assert_true(parse_obj(j, "destination", &h, &err) < 0);
	assert_true(strlen(err.msg) < 200);
}

/* id and token: exactly 32 lowercase hex, else as if absent (a channel with
 * a malformed token must not match a destination's empty one by accident:
 * the caller treats "" as none). */
static void test_hello_id_token_index(void **state)
{
	static const char *const bad[] = {
		"0123456789ABCDEF0123456789abcdef",	/* uppercase */
		"0123456789abcdef0123456789abcde",	/* 31 */
		"0123456789abcdef0123456789abcdef0",	/* 33 */
		"0123456789abcdef0123456789abcdeg",	/* not hex */
		"0123456789abcdef 123456789abcdef",
		"",
	};
	struct mig_hello h;
	struct kv_err err;
	json_t *j;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = hello_with(0, "token", json_string(bad[i]));
		json_object_set_new(j, "id", json_string(bad[i]));
		if (parse_obj(j, NULL, &h, &err))
			fail_msg("%s: %s", bad[i], err.msg);
		if (h.token[0] || h.id[0])
			fail_msg("malformed \"%s\" taken: token \"%s\" id \"%s\"", bad[i], h.token,
				 h.id);
	}
	j = hello_with(0, "token", json_integer(12345));
	json_object_set_new(j, "id", json_null());
	if (parse_obj(j, NULL, &h, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(h.token, "");
	assert_string_equal(h.id, "");
	/* a NUL inside: the reader refuses \u0000 outright; were it ever to
	 * take it, the first 32 characters must not pass for the whole */
	j = hello_with(0, "token", json_stringn(HEX_A "\0zz", 35));
	if (parse_obj(j, NULL, &h, &err) == 0)
		assert_string_equal(h.token, "");

	j = hello_with(0, "token", json_string(HEX_A));
	json_object_set_new(j, "id", json_string(HEX_B));
	json_object_set_new(j, "index", json_integer(3));
	if (parse_obj(j, NULL, &h, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(h.token, HEX_A);
	assert_string_equal(h.id, HEX_B);
	assert_int_equal(h.index, 3);

	/* index: 1 .. MIG_MAX_CHANNELS - 1 (the first connection is 0) */
	{
		static const struct { json_int_t in; unsigned out; } idx[] = {
			{ 0, 0 }, { 1, 1 }, { MIG_MAX_CHANNELS - 1, MIG_MAX_CHANNELS - 1 },
			{ MIG_MAX_CHANNELS, 0 }, { -1, 0 }, { (json_int_t)1 << 32 | 1, 0 },
		};
		for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
			j = hello_with(0, "index", json_integer(idx[i].in));
			if (parse_obj(j, NULL, &h, &err))
				fail_msg("index %lld: %s", (long long)idx[i].in, err.msg);
			if (h.index != idx[i].out)
				fail_msg("index %lld gave %u, want %u", (long long)idx[i].in, h.index,
					 idx[i].out);
		}
	}
	if (parse_obj(hello_with(0, "index", json_string("3")), NULL, &h, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(h.index, 0);
}

static void test_random_hex(void **state)
{
	char a[33], b[33];

	memset(a, 'X', sizeof(a));
	memset(b, 'X', sizeof(b));
	mig_random_hex(a);
	mig_random_hex(b);
	assert_int_equal(strlen(a), 32);
	assert_int_equal(strspn(a, "0123456789abcdef"), 32);
	assert_int_equal(strlen(b), 32);
	assert_int_equal(strspn(b, "0123456789abcdef"), 32);
	assert_string_not_equal(a, b);
	/* what it makes, the parser takes */
	{
		struct mig_hello h;
		struct kv_err err;
		json_t *j = hello_with(0, "token", json_string(a));

		if (parse_obj(j, NULL, &h, &err))
			fail_msg("%s", err.msg);
		assert_string_equal(h.token, a);
	}
}

/* ---- RAM stripes ---- */

/* 16 MiB + 100 pages: eight whole stripes, a ninth of 100 pages, and a
 * last bitmap word only partly RAM. */
#define STRIPE_MEM ((16ULL << 20) + 100 * 4096)

static struct vm *fake_vm(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct kv_err err;

	assert_non_null(vm);
	if (mem_init(&vm->mem, STRIPE_MEM, MEM_BACKEND_MEMFD, &err))
		fail_msg("%s", err.msg);
	return vm;
}

static void free_vm(struct vm *vm)
{
	mem_destroy(&vm->mem);
	free(vm);
}

static unsigned owner(uint64_t page, unsigned nstripes)
{
	return (unsigned)((page / RAM_STRIPE_PAGES) % nstripes);
}

/* Dirty pages of round 0: a sparse pattern, both edges of every stripe,
 * all of stripe 2 (whole records), the last page.  Round 1: everything. */
static bool dirty_at(uint64_t page, uint64_t npages, int round)
{
	uint64_t in = page % RAM_STRIPE_PAGES;

	return round == 1 || page % 5 == 0 || in == 0 || in == RAM_STRIPE_PAGES - 1 ||
	       page / RAM_STRIPE_PAGES == 2 || page == npages - 1;
}

static bool bit_of(const uint64_t *bm, uint64_t page)
{
	return bm[page / 64] >> (page % 64) & 1;
}

/* Every third page stays zero (sent flagged, without data); the others
 * carry their own index, so a page sent from the wrong place shows. */
static void fill_pages(struct vm *vm)
{
	for (uint64_t p = 0; p < vm->mem.npages; p++)
		if (p % 3)
			st_put64(vm->mem.host + (p << MEM_PAGE_SHIFT), p | 1ULL << 63);
}

/* What one channel's reader saw. */
struct tally {
	uint8_t *seen;		/* per page: times sent, every channel together */
	unsigned stripe, nstripes;
	uint64_t pages;		/* entries on this channel */
	uint32_t seq;		/* the next record's sequence number */
};

static int tally_page(void *opaque, uint64_t page, const uint8_t *data, struct kv_err *err)
{
	struct tally *t = opaque;

	if (owner(page, t->nstripes) != t->stripe)
		fail_msg("page %llu (stripe %llu) went over channel %u of %u",
			 (unsigned long long)page, (unsigned long long)(page / RAM_STRIPE_PAGES),
			 t->stripe, t->nstripes);
	if (page % 3 == 0 && data)
		fail_msg("zero page %llu sent with data", (unsigned long long)page);
	if (page % 3 && (!data || st_get64(data) != (page | 1ULL << 63)))
		fail_msg("page %llu arrived without its data", (unsigned long long)page);
	t->seen[page]++;
	t->pages++;
	return 0;
}

/* Read every record queued on a channel: RAM only, in sequence. */
static void drain(struct stream *rd, struct vm *vm, struct tally *t)
{
	struct stream_rec rec;
	struct kv_err err;

	while (stream_pending(rd)) {
		if (stream_read(rd, &rec, &err))
			fail_msg("channel %u: %s", t->stripe, err.msg);
		assert_int_equal(rec.type, MIG_REC_RAM);
		assert_true(rec.len >= 8);
		if (st_get32(rec.payload) != t->seq)
			fail_msg("channel %u: record %u where %u belongs", t->stripe,
				 st_get32(rec.payload), t->seq);
		t->seq++;
		if (ram_visit(vm, rec.payload, rec.len, NULL, tally_page, t, &err))
			fail_msg("channel %u: %s", t->stripe, err.msg);
	}
}

static void check_stripes(unsigned n)
{
	struct vm *vm = fake_vm();
	uint64_t npages = vm->mem.npages, nwords = (npages + 63) / 64;
	struct ram_sender base, *rs = calloc(n, sizeof(*rs));
	struct stream *ws = calloc(n, sizeof(*ws)), *rd = calloc(n, sizeof(*rd));
	struct channel **wch = calloc(n, sizeof(*wch)), **rch = calloc(n, sizeof(*rch));
	struct tally *t = calloc(n, sizeof(*t));
	uint8_t *seen = calloc(npages, 1);
	uint64_t *before = calloc(nwords, sizeof(uint64_t));
	struct kv_err err;
	int cancel = 0;

	fill_pages(vm);
	assert_int_equal(ram_sender_init(&base, vm, NULL, &cancel, &err), 0);
	for (unsigned k = 0; k < n; k++) {
		assert_int_equal(channel_mem_pair(&rch[k], &wch[k], 0, &err), 0);
		assert_int_equal(stream_init_channel(&ws[k], wch[k], MIG_MAX_RECORD, &err), 0);
		assert_int_equal(stream_init_channel(&rd[k], rch[k], MIG_MAX_RECORD, &err), 0);
		if (ram_sender_init_stripe(&rs[k], &base, &ws[k], k, n, &err))
			fail_msg("stripe %u of %u: %s", k, n, err.msg);
		/* one bitmap, one VM, one cancel flag for all */
		assert_ptr_equal(rs[k].dirty, base.dirty);
		assert_true(rs[k].shared_dirty);
		assert_ptr_equal(rs[k].vm, vm);
		assert_ptr_equal(rs[k].s, &ws[k]);
		assert_ptr_equal(rs[k].cancel, &cancel);
		assert_int_equal(rs[k].stripe, k);
		assert_int_equal(rs[k].nstripes, n);
		t[k] = (struct tally){ .seen = seen, .stripe = k, .nstripes = n };
	}

	/* Two rounds (the second with every page dirty), the senders in a
	 * different order each time; after each one the bitmap must have lost
	 * exactly that sender's bits. */
	for (int round = 0; round < 2; round++) {
		uint64_t want = 0;
		bool done[MIG_MAX_CHANNELS] = { false };

		memset(seen, 0, npages);
		for (uint64_t p = 0; p < npages; p++)
			if (dirty_at(p, npages, round)) {
				base.dirty[p / 64] |= 1ULL << (p % 64);
				want++;
			}
		memcpy(before, base.dirty, nwords * sizeof(uint64_t));
		assert_int_equal(ram_dirty_count(&base), want);

		for (unsigned i = 0; i < n; i++) {
			unsigned k = round == 0 ? n - 1 - i : i;
			uint64_t entries = rs[k].st.entries, mine = 0, got = t[k].pages;

			for (uint64_t p = 0; p < npages; p++)
				mine += bit_of(before, p) && owner(p, n) == k;
			if (ram_send_dirty(&rs[k], &err))
				fail_msg("round %d stripe %u: %s", round, k, err.msg);
			assert_int_equal(stream_flush(&ws[k], &err), 0);
			done[k] = true;
			drain(&rd[k], vm, &t[k]);
			assert_int_equal(rs[k].st.entries - entries, mine);
			assert_int_equal(t[k].pages - got, mine);
			assert_int_equal(rs[k].seq, t[k].seq);
			for (uint64_t p = 0; p < npages; p++) {
				bool want_bit = bit_of(before, p) && !done[owner(p, n)];
				if (bit_of(base.dirty, p) != want_bit)
					fail_msg("round %d, after stripe %u of %u: page %llu's bit "
						 "is %d", round, k, n, (unsigned long long)p,
						 !want_bit);
			}
		}
		/* the bits past the end of RAM were never set, nor touched */
		assert_int_equal(base.dirty[nwords - 1] >> (npages % 64), 0);
		assert_int_equal(ram_dirty_count(&base), 0);
		for (uint64_t p = 0; p < npages; p++)
			if (seen[p] != bit_of(before, p))
				fail_msg("round %d, %u stripes: page %llu sent %u times", round, n,
					 (unsigned long long)p, seen[p]);
	}

	/* The writers go: every reader is at a record boundary, nothing left. */
	for (unsigned k = 0; k < n; k++) {
		struct stream_rec rec;

		stream_destroy(&ws[k]);
		channel_close(wch[k]);
		assert_int_equal(stream_read(&rd[k], &rec, &err), -ECONNRESET);
		stream_destroy(&rd[k]);
		channel_close(rch[k]);
	}

	/* A stripe sender does not own the bitmap: after all of them are
	 * gone, base's is still there to use and to free (ASan sees a double
	 * free or a use after free). */
	for (unsigned k = 0; k < n; k++) {
		ram_sender_destroy(&rs[k]);
		assert_null(rs[k].dirty);
	}
	base.dirty[nwords - 1] |= 1;
	assert_int_equal(ram_dirty_count(&base), 1);
	ram_sender_destroy(&base);

	free(before);
	free(seen);
	free(t);
	free(rch);
	free(wch);
	free(rd);
	free(ws);
	free(rs);
	free_vm(vm);
}

static void test_stripes_3(void **state)
{
	check_stripes(3);
}

static void test_stripes_4(void **state)
{
	check_stripes(4);
}

/* One stripe is the whole of RAM; more channels than stripes leave some
 * with nothing to send (and no empty records). */
static void test_stripes_1_and_16(void **state)
{
	check_stripes(1);
	check_stripes(MIG_MAX_CHANNELS);
}

static void test_stripe_args(void **state)
{
	struct vm *vm = fake_vm();
	struct ram_sender base, rs;
	struct kv_err err;

	assert_int_equal(ram_sender_init(&base, vm, NULL, NULL, &err), 0);
	err.msg[0] = 0;
	assert_int_equal(ram_sender_init_stripe(&rs, &base, NULL, 3, 3, &err), -EINVAL);
	assert_true(err.msg[0]);
	assert_int_equal(ram_sender_init_stripe(&rs, &base, NULL, 4, 3, &err), -EINVAL);
	assert_int_equal(ram_sender_init_stripe(&rs, &base, NULL, 0, 0, &err), -EINVAL);
	assert_int_equal(ram_sender_init_stripe(&rs, &base, NULL, 2, 3, &err), 0);
	assert_ptr_equal(rs.dirty, base.dirty);
	assert_true(rs.shared_dirty);
	assert_int_equal(rs.seq, 0);
	assert_int_equal(rs.st.entries, 0);
	ram_sender_destroy(&rs);
	/* still base's to use and free */
	base.dirty[0] = 5;
	assert_int_equal(ram_dirty_count(&base), 2);
	ram_sender_destroy(&base);
	free_vm(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_hello_versions),
		cmocka_unit_test(test_hello_unknown_caps),
		cmocka_unit_test(test_hello_channels),
		cmocka_unit_test(test_hello_role_protocol),
		cmocka_unit_test(test_hello_id_token_index),
		cmocka_unit_test(test_random_hex),
		cmocka_unit_test(test_stripe_args),
		cmocka_unit_test(test_stripes_3),
		cmocka_unit_test(test_stripes_4),
		cmocka_unit_test(test_stripes_1_and_16),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
