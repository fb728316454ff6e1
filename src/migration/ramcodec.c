/*
 * ramcodec.c - see ramcodec.h.
 */
#define _GNU_SOURCE
#include "migration/ramcodec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lz4.h>
#include <zstd.h>

#define PAGE 4096u
#define EWMA 0.125		/* weight of the newest record in an estimate */
#define PROBE_EVERY 64		/* records between probes of the codecs not in use */
#define PROBE_PAGES 16		/* pages of a record a probe compresses */
#define GAIN 0.85		/* a codec must take at most this share of raw's time */
#define ZSTD_LEVEL 1
/* A page is 4 KiB, so its frame needs no bigger window: a hostile frame
 * asking for more is refused before zstd allocates anything for it. */
#define ZSTD_WINDOW_LOG_MAX 12

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *const mode_names[] = {
	[RAM_COMPRESS_OFF] = "off", [RAM_COMPRESS_AUTO] = "auto",
	[RAM_COMPRESS_LZ4] = "lz4", [RAM_COMPRESS_ZSTD] = "zstd",
};

const char *ram_compress_name(enum ram_compress m)
{
	return (unsigned)m < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[m] : "?";
}

int ram_compress_parse(const char *s, enum ram_compress *out, struct kv_err *err)
{
	for (unsigned i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (!strcmp(s, mode_names[i])) {
			*out = (enum ram_compress)i;
			return 0;
		}
	if (!strcmp(s, "none")) {	/* QMP's multifd-compression */
		*out = RAM_COMPRESS_OFF;
		return 0;
	}
	return kv_errf(err, EINVAL, "compression '%s': say off, auto, lz4 or zstd", s);
}

int ram_codec_init(struct ram_codec *c, enum ram_compress mode, struct kv_err *err)
{
	memset(c, 0, sizeof(*c));
	c->mode = mode;
	c->ratio[RAM_CODEC_RAW] = 1.0;
	c->known[RAM_CODEC_RAW] = true;
	if (mode == RAM_COMPRESS_OFF)
		return 0;
	c->lz4_state = malloc((size_t)LZ4_sizeofState());
	c->zstd = ZSTD_createCCtx();
	if (!c->lz4_state || !c->zstd) {
		ram_codec_destroy(c);
		return kv_errf(err, ENOMEM, "compression contexts");
	}
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_checksumFlag, 0)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_dictIDFlag, 0))) {
		ram_codec_destroy(c);
		return kv_errf(err, EINVAL, "zstd refuses its parameters");
	}
	return 0;
}

void ram_codec_destroy(struct ram_codec *c)
{
	free(c->lz4_state);
	ZSTD_freeCCtx(c->zstd);
	c->lz4_state = NULL;
	c->zstd = NULL;
}

/* The expected time of one data page with codec k (ns), or -1 if unknown. */
static double cost(const struct ram_codec *c, enum ram_codec_id k)
{
	if (!c->known[k])
		return -1;
	return c->ns_per_page[k] + c->ratio[k] * PAGE * c->ns_per_byte;
}

enum ram_codec_id ram_codec_pick(struct ram_codec *c, bool *probe)
{
	enum ram_codec_id best = RAM_CODEC_RAW;
	double raw;

	*probe = false;
	switch (c->mode) {
	case RAM_COMPRESS_OFF:
		return c->use = RAM_CODEC_RAW;
	case RAM_COMPRESS_LZ4:
		return c->use = RAM_CODEC_LZ4;
	case RAM_COMPRESS_ZSTD:
		return c->use = RAM_CODEC_ZSTD;
	case RAM_COMPRESS_AUTO:
		break;
	}
	/* the first records teach the link's cost and both codecs' */
	*probe = c->records < 2 || c->records % PROBE_EVERY == 0;
	c->records++;
	raw = cost(c, RAM_CODEC_RAW);
	if (c->ns_per_byte > 0)
		for (unsigned k = RAM_CODEC_LZ4; k < RAM_CODEC_N; k++) {
			double ck = cost(c, k), cb = cost(c, best);
			if (ck >= 0 && ck < GAIN * raw && ck < cb)
				best = k;
		}
	return c->use = best;
}

static size_t compress_page(struct ram_codec *c, enum ram_codec_id k, const uint8_t *page,
			    uint8_t *out)
{
	size_t n;

	if (k == RAM_CODEC_LZ4) {
		int r = LZ4_compress_fast_extState(c->lz4_state, (const char *)page, (char *)out,
						   (int)PAGE, (int)RAM_CODEC_MAX, 1);
		return r > 0 ? (size_t)r : 0;
	}
	if (k == RAM_CODEC_ZSTD) {
		n = ZSTD_compress2(c->zstd, out, RAM_CODEC_MAX, page, PAGE);
		return ZSTD_isError(n) ? 0 : n;	/* dstSize_tooSmall: it did not shrink */
	}
	return 0;
}

size_t ram_codec_compress(struct ram_codec *c, enum ram_codec_id k, const uint8_t *page,
			  uint8_t *out)
{
	return compress_page(c, k, page, out);
}

void ram_codec_probe(struct ram_codec *c, const uint8_t *const *pages, unsigned n)
{
	uint8_t out[RAM_CODEC_MAX];

	if (n > PROBE_PAGES)
		n = PROBE_PAGES;
	if (!n || !c->lz4_state)
		return;
	for (unsigned k = RAM_CODEC_LZ4; k < RAM_CODEC_N; k++) {
		uint64_t t0, t, bytes = 0;

		if (k == c->use)
			continue;	/* measured by the record itself */
		t0 = now_ns();
		for (unsigned i = 0; i < n; i++) {
			size_t len = compress_page(c, k, pages[i], out);
			bytes += len ? len + RAM_CODEC_LEN : PAGE;
		}
		t = now_ns() - t0;
		c->st.compress_ns += t;
		if (!c->known[k]) {
			c->ns_per_page[k] = (double)t / n;
			c->ratio[k] = (double)bytes / ((double)n * PAGE);
			c->known[k] = true;
		} else {
			c->ns_per_page[k] += EWMA * ((double)t / n - c->ns_per_page[k]);
			c->ratio[k] += EWMA * ((double)bytes / ((double)n * PAGE) - c->ratio[k]);
		}
	}
}

void ram_codec_account(struct ram_codec *c, unsigned pages, unsigned compressed,
		       uint64_t out_bytes, uint64_t compress_ns, uint64_t total_ns)
{
	enum ram_codec_id k = c->use;
	double link, per_page, ratio;

	c->st.pages[k] += compressed;
	c->st.pages[RAM_CODEC_RAW] += pages - compressed;
	c->st.in_bytes += (uint64_t)pages * PAGE;
	c->st.out_bytes += out_bytes;
	c->st.compress_ns += compress_ns;
	if (!pages || !out_bytes)
		return;
	link = (double)(total_ns > compress_ns ? total_ns - compress_ns : 0) / (double)out_bytes;
	c->ns_per_byte = c->ns_per_byte > 0 ? c->ns_per_byte + EWMA * (link - c->ns_per_byte)
					    : link;
	if (k == RAM_CODEC_RAW)
		return;
	per_page = (double)compress_ns / pages;
	ratio = (double)out_bytes / ((double)pages * PAGE);
	if (!c->known[k]) {
		c->ns_per_page[k] = per_page;
		c->ratio[k] = ratio;
		c->known[k] = true;
	} else {
		c->ns_per_page[k] += EWMA * (per_page - c->ns_per_page[k]);
		c->ratio[k] += EWMA * (ratio - c->ratio[k]);
	}
}

void ram_codec_stats_add(struct ram_codec_stats *to, const struct ram_codec_stats *from)
{
	for (unsigned k = 0; k < RAM_CODEC_N; k++)
		to->pages[k] += from->pages[k];
	to->in_bytes += from->in_bytes;
	to->out_bytes += from->out_bytes;
	to->compress_ns += from->compress_ns;
}

void ram_decoder_destroy(struct ram_decoder *d)
{
	ZSTD_freeDCtx(d->zstd);
	d->zstd = NULL;
}

int ram_decode(struct ram_decoder *d, enum ram_codec_id k, const uint8_t *in, size_t len,
	       uint8_t *page, struct kv_err *err)
{
	size_t n;

	if (!len || len > RAM_CODEC_MAX)
		return kv_errf(err, EBADMSG, "compressed page of %zu bytes (1..%u allowed)", len,
			       RAM_CODEC_MAX);
	if (k == RAM_CODEC_LZ4) {
		int r = LZ4_decompress_safe((const char *)in, (char *)page, (int)len, (int)PAGE);
		if (r != (int)PAGE)
			return kv_errf(err, EBADMSG, "an lz4 page that does not expand to one page");
		return 0;
	}
	if (k != RAM_CODEC_ZSTD)
		return kv_errf(err, EBADMSG, "unknown page codec %d", (int)k);
	if (!d->zstd) {
		d->zstd = ZSTD_createDCtx();
		if (!d->zstd)
			return kv_errf(err, ENOMEM, "zstd decoder");
		if (ZSTD_isError(ZSTD_DCtx_setParameter(d->zstd, ZSTD_d_windowLogMax,
							ZSTD_WINDOW_LOG_MAX)))
			return kv_errf(err, EINVAL, "zstd refuses its window limit");
	}
	n = ZSTD_decompressDCtx(d->zstd, page, PAGE, in, len);
	if (ZSTD_isError(n) || n != PAGE)
		return kv_errf(err, EBADMSG, "a zstd page that does not expand to one page%s%s",
			       ZSTD_isError(n) ? ": " : "", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "");
	return 0;
}
