/*
 * ramcodec.h - compressing guest pages on their way, when that is faster.
 *
 * Per page the sender picks zero, raw, lz4 or zstd.  In `auto` mode the
 * choice is measured, never guessed: each sender (one per channel) keeps
 * running estimates of what one byte costs to get onto the link (its own
 * copy, checksum and the socket's wait, all together) and of what each
 * codec costs per page and saves.  A codec is used for the next record
 * only if compressing plus sending the smaller result is clearly quicker
 * than sending raw, so compression never slows a link that is faster than
 * the CPU; a codec not in use is re-measured on a small sample now and
 * then, so a change in the guest's data or in the link is followed.
 *
 * On the wire (docs/FORMAT.md, RAM): an entry with MIG_PAGE_LZ4 or
 * MIG_PAGE_ZSTD has, in the data area, a u16 length (1..RAM_CODEC_MAX)
 * and that many bytes, which must expand to exactly one page.
 */
#ifndef KVMOVE_MIGRATION_RAMCODEC_H
#define KVMOVE_MIGRATION_RAMCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum ram_compress {
	RAM_COMPRESS_OFF,	/* every page raw */
	RAM_COMPRESS_AUTO,	/* measured per record (the default) */
	RAM_COMPRESS_LZ4,	/* every page tried with lz4 */
	RAM_COMPRESS_ZSTD,	/* every page tried with zstd (level 1) */
};

enum ram_codec_id { RAM_CODEC_RAW, RAM_CODEC_LZ4, RAM_CODEC_ZSTD, RAM_CODEC_N };

/* A compressed page must save at least an eighth, or it goes raw: the
 * receiver's decode would cost more than the bytes saved. */
#define RAM_CODEC_MAX (4096u - 512u)
#define RAM_CODEC_LEN 2		/* the u16 in front of a compressed page */

const char *ram_compress_name(enum ram_compress m);
/* "off", "auto", "lz4", "zstd" (and QMP's multifd-compression "none") */
int ram_compress_parse(const char *s, enum ram_compress *out, struct kv_err *err);

struct ram_codec_stats {
	uint64_t pages[RAM_CODEC_N];	/* data pages sent each way */
	uint64_t in_bytes;		/* data pages' bytes before compression */
	uint64_t out_bytes;		/* and on the wire (length prefixes included) */
	uint64_t compress_ns;		/* time spent compressing (probes included) */
};

struct ram_codec {
	enum ram_compress mode;
	void *lz4_state;		/* LZ4_sizeofState() bytes */
	void *zstd;			/* ZSTD_CCtx */
	uint64_t records;		/* records decided so far */
	enum ram_codec_id use;		/* for the record being built */
	/* estimates, updated after every record (exponential averages) */
	double ns_per_byte;		/* getting one byte onto the link */
	double ns_per_page[RAM_CODEC_N];	/* compressing one page */
	double ratio[RAM_CODEC_N];	/* bytes out / bytes in */
	bool known[RAM_CODEC_N];
	struct ram_codec_stats st;
};

int ram_codec_init(struct ram_codec *c, enum ram_compress mode, struct kv_err *err);
void ram_codec_destroy(struct ram_codec *c);
/* The codec for the next record (sets c->use); *probe: also measure the
 * others on a sample of this record's pages (ram_codec_probe). */
enum ram_codec_id ram_codec_pick(struct ram_codec *c, bool *probe);
/* Compress one page with c->use into out (RAM_CODEC_MAX bytes): its
 * length, or 0 when it would not save enough (send it raw). */
size_t ram_codec_compress(struct ram_codec *c, enum ram_codec_id k, const uint8_t *page,
			  uint8_t *out);
/* Measure every codec but c->use on these pages (timing and ratio only). */
void ram_codec_probe(struct ram_codec *c, const uint8_t *const *pages, unsigned n);
/* After a record went out: pages data pages in (compressed of them went
 * compressed, the rest raw), out_bytes on the wire for them, compress_ns
 * of the total_ns the record took. */
void ram_codec_account(struct ram_codec *c, unsigned pages, unsigned compressed,
		       uint64_t out_bytes, uint64_t compress_ns, uint64_t total_ns);
/* Fold one sender's numbers into another's (several channels). */
void ram_codec_stats_add(struct ram_codec_stats *to, const struct ram_codec_stats *from);

/* The receiving side: one per receiving thread. */
struct ram_decoder {
	void *zstd;			/* ZSTD_DCtx, made on first use */
};
void ram_decoder_destroy(struct ram_decoder *d);
/* Expand one compressed page (codec k, len bytes at in) into page: 0, or
 * -EBADMSG when it is not exactly one page of valid data. */
int ram_decode(struct ram_decoder *d, enum ram_codec_id k, const uint8_t *in, size_t len,
	       uint8_t *page, struct kv_err *err);

#endif
