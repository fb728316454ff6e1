/*
 * test_ramcodec.c - the choice between raw, lz4 and zstd (ramcodec.c):
 * compression only where the measured link is slower than the codec, and
 * never on data that does not compress; the forced modes; parsing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "migration/ramcodec.h"

static void fill(uint8_t *p, uint64_t n, unsigned repeat_pct)
{
	uint64_t x = n * 0x9e3779b97f4a7c15ULL + 1;
	unsigned uniq = 512 - 512 * repeat_pct / 100;

	for (unsigned i = 0; i < 512; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		((uint64_t *)(void *)p)[i] = i >= uniq ? n : x;
	}
}

/* Run `records` records of 64 pages through the auto mode as if each byte
 * took ns_per_byte to reach the link; returns the codec picked last. */
static enum ram_codec_id simulate(struct ram_codec *c, unsigned repeat_pct, double ns_per_byte,
				  unsigned records)
{
	static uint8_t pages[64][4096];
	uint8_t out[RAM_CODEC_MAX];
	const uint8_t *ptr[64];
	enum ram_codec_id k = RAM_CODEC_RAW;

	for (unsigned i = 0; i < 64; i++) {
		fill(pages[i], i + 1, repeat_pct);
		ptr[i] = pages[i];
	}
	for (unsigned r = 0; r < records; r++) {
		uint64_t bytes = 0, comp = 0, ns = 0;
		bool probe;

		k = ram_codec_pick(c, &probe);
		if (probe)
			ram_codec_probe(c, ptr, 64);
		for (unsigned i = 0; i < 64; i++) {
			size_t z = k == RAM_CODEC_RAW ? 0 : ram_codec_compress(c, k, pages[i], out);
			bytes += z ? z + RAM_CODEC_LEN : 4096;
			comp += z != 0;
		}
		/* compression time: a fixed, plausible cost per page, so the
		 * test does not depend on this machine's speed */
		ns = k == RAM_CODEC_RAW ? 0 : 64 * 2000;
		ram_codec_account(c, 64, (unsigned)comp, bytes, ns,
				  ns + (uint64_t)((double)bytes * ns_per_byte));
		if (k != RAM_CODEC_RAW)
			c->ns_per_page[k] = 2000;	/* keep the fixed cost */
		for (unsigned j = RAM_CODEC_LZ4; j < RAM_CODEC_N; j++)
			if (c->known[j])
				c->ns_per_page[j] = 2000;
	}
	return k;
}

static void test_auto_fast_link(void **state)
{
	struct ram_codec c;
	struct kv_err err;

	/* 3 GB/s (loopback): 1.3 us a page raw, compression costs 2 us */
	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_AUTO, &err), 0);
	assert_int_equal(simulate(&c, 75, 0.33, 300), RAM_CODEC_RAW);
	assert_int_equal(c.st.pages[RAM_CODEC_LZ4] + c.st.pages[RAM_CODEC_ZSTD], 0);
	ram_codec_destroy(&c);
}

static void test_auto_slow_link(void **state)
{
	struct ram_codec c;
	struct kv_err err;
	enum ram_codec_id k;

	/* 1 GbE: 35 us a page raw; a page that shrinks to a quarter wins */
	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_AUTO, &err), 0);
	k = simulate(&c, 75, 8.5, 300);
	assert_true(k == RAM_CODEC_LZ4 || k == RAM_CODEC_ZSTD);
	assert_true(c.st.pages[RAM_CODEC_LZ4] + c.st.pages[RAM_CODEC_ZSTD] > 250 * 64);
	assert_true(c.st.out_bytes < c.st.in_bytes / 2);
	ram_codec_destroy(&c);
}

static void test_auto_incompressible(void **state)
{
	struct ram_codec c;
	struct kv_err err;

	/* a slow link, but nothing to gain: raw, only the probes compress */
	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_AUTO, &err), 0);
	assert_int_equal(simulate(&c, 0, 8.5, 300), RAM_CODEC_RAW);
	assert_int_equal(c.st.pages[RAM_CODEC_LZ4] + c.st.pages[RAM_CODEC_ZSTD], 0);
	ram_codec_destroy(&c);
}

static void test_auto_follows_change(void **state)
{
	struct ram_codec c;
	struct kv_err err;

	/* the data stops compressing: the probes see it, raw comes back */
	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_AUTO, &err), 0);
	assert_int_not_equal(simulate(&c, 75, 8.5, 100), RAM_CODEC_RAW);
	assert_int_equal(simulate(&c, 0, 8.5, 300), RAM_CODEC_RAW);
	ram_codec_destroy(&c);
}

static void test_forced_and_off(void **state)
{
	struct ram_codec c;
	struct kv_err err;
	bool probe;

	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_ZSTD, &err), 0);
	assert_int_equal(ram_codec_pick(&c, &probe), RAM_CODEC_ZSTD);
	assert_false(probe);
	ram_codec_destroy(&c);
	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_LZ4, &err), 0);
	assert_int_equal(simulate(&c, 0, 0.1, 3), RAM_CODEC_LZ4);	/* even where it loses */
	ram_codec_destroy(&c);
	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_OFF, &err), 0);
	assert_int_equal(simulate(&c, 90, 50, 3), RAM_CODEC_RAW);
	assert_null(c.zstd);
	ram_codec_destroy(&c);
}

static void test_parse(void **state)
{
	enum ram_compress m;
	struct kv_err err = { "" };

	assert_int_equal(ram_compress_parse("auto", &m, &err), 0);
	assert_int_equal(m, RAM_COMPRESS_AUTO);
	assert_int_equal(ram_compress_parse("none", &m, &err), 0);
	assert_int_equal(m, RAM_COMPRESS_OFF);
	assert_int_equal(ram_compress_parse("zstd", &m, &err), 0);
	assert_int_equal(m, RAM_COMPRESS_ZSTD);
	assert_int_equal(ram_compress_parse("zlib", &m, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "zlib"));
	assert_string_equal(ram_compress_name(RAM_COMPRESS_LZ4), "lz4");
}

/* A decoded page is exactly the page; a frame for something else is not. */
static void test_decode_roundtrip(void **state)
{
	struct ram_codec c;
	struct ram_decoder d = { 0 };
	struct kv_err err = { "" };
	uint8_t page[4096], out[RAM_CODEC_MAX], back[4096];
	size_t z;

	fill(page, 9, 50);
	assert_int_equal(ram_codec_init(&c, RAM_COMPRESS_AUTO, &err), 0);
	for (unsigned k = RAM_CODEC_LZ4; k < RAM_CODEC_N; k++) {
		z = ram_codec_compress(&c, k, page, out);
		assert_true(z > 0 && z < 2600);
		memset(back, 0, sizeof(back));
		assert_int_equal(ram_decode(&d, k, out, z, back, &err), 0);
		assert_memory_equal(page, back, 4096);
		assert_int_equal(ram_decode(&d, k, out, z - 1, back, &err), -EBADMSG);
	}
	fill(page, 9, 0);	/* incompressible: 0, it goes raw */
	assert_int_equal(ram_codec_compress(&c, RAM_CODEC_LZ4, page, out), 0);
	assert_int_equal(ram_codec_compress(&c, RAM_CODEC_ZSTD, page, out), 0);
	ram_codec_destroy(&c);
	ram_decoder_destroy(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto_fast_link),
		cmocka_unit_test(test_auto_slow_link),
		cmocka_unit_test(test_auto_incompressible),
		cmocka_unit_test(test_auto_follows_change),
		cmocka_unit_test(test_forced_and_off),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_decode_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
