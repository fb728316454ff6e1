/*
 * ram.h - moving guest RAM through the stream.
 *
 * A RAM record: u32 sequence (0, 1, 2, ... per stream), u32 count, count
 * entries of u64 (gpa | flags), then the data of each entry without
 * MIG_PAGE_ZERO, in entry order: 4096 bytes, or with MIG_PAGE_LZ4 or
 * MIG_PAGE_ZSTD (only when both ends agreed on compression) a u16 length
 * and that many compressed bytes (ramcodec.h).  gpa is page aligned.  The
 * entries come first so that a receiver can check them all and then read
 * raw data straight into guest memory.
 */
#ifndef KVMOVE_MIGRATION_RAM_H
#define KVMOVE_MIGRATION_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "migration/ramcodec.h"

struct vm;
struct stream;
struct ram_batch;

struct ram_stats {
	uint64_t normal;	/* pages sent with data */
	uint64_t zero;		/* zero pages: flagged, or skipped in the first pass */
	uint64_t bytes;		/* page data + entry headers */
	uint64_t entries;	/* page entries put in the stream (zero ones too) */
};

/*
 * Several channels: guest RAM is cut into stripes of RAM_STRIPE_PAGES
 * pages, and stripe k always goes over channel k % nstripes.  A page thus
 * always travels on the same connection, in order, so a later round's copy
 * can never overtake an earlier one on the destination (no barrier between
 * rounds is needed), and the senders never touch each other's bitmap words.
 */
#define RAM_STRIPE_PAGES 512u	/* 2 MiB: eight words of the dirty bitmap */

struct ram_sender {
	struct vm *vm;
	struct stream *s;
	uint64_t *dirty;	/* pages still to send, memfd-page order */
	bool shared_dirty;	/* dirty belongs to another sender */
	unsigned stripe, nstripes;	/* passes send only stripes k with
					 * k % nstripes == stripe (nstripes <= 1: all) */
	const int *cancel;	/* stop early when *cancel becomes non-zero */
	struct ram_stats st;
	uint32_t seq;		/* the next RAM record's sequence number */
	void (*progress)(void *opaque);	/* after every record, for live stats */
	void *progress_opaque;
	struct ram_batch *batch;	/* the record being built */
	struct ram_codec codec;		/* compression: off until both ends agree */
};

int ram_sender_init(struct ram_sender *rs, struct vm *vm, struct stream *s,
		    const int *cancel, struct kv_err *err);
/* A sender for one channel of several: rs works on from's bitmap, its
 * stripe only. */
int ram_sender_init_stripe(struct ram_sender *rs, const struct ram_sender *from,
			   struct stream *s, unsigned stripe, unsigned nstripes,
			   struct kv_err *err);
void ram_sender_destroy(struct ram_sender *rs);
/* Compress from now on (the peer agreed): the extra channels' senders,
 * made after this, take the same mode. */
int ram_sender_set_compress(struct ram_sender *rs, enum ram_compress mode, struct kv_err *err);
/* First pass: every page that holds data (memfd holes are never read). */
int ram_send_all(struct ram_sender *rs, struct kv_err *err);
/* Send and clear every page in rs->dirty. */
int ram_send_dirty(struct ram_sender *rs, struct kv_err *err);
uint64_t ram_dirty_count(const struct ram_sender *rs);
/* The calls below ignore stripes: only the first channel's sender makes
 * them, after the extra channels ended (post-copy) or between passes. */
/* Post-copy: send these pages (memfd page indexes) now, clearing their
 * bits; and the next `max` dirty pages (only those also set in `only`, if
 * given) from *cursor on, wrapping.  *sent: how many went. */
int ram_send_list(struct ram_sender *rs, const uint64_t *pages, unsigned n, struct kv_err *err);
int ram_send_next(struct ram_sender *rs, const uint64_t *only, uint64_t *cursor, unsigned max,
		  unsigned *sent, struct kv_err *err);
/* memfd page index -> guest-physical address (UINT64_MAX outside RAM) */
uint64_t ram_page_gpa(const struct vm *vm, uint64_t page);

/* dec (below): the receiving thread's decoder when compression was agreed,
 * NULL otherwise (a compressed page is then refused). */
/* Receiver: apply one RAM record (a whole payload in memory) to guest
 * memory, checking every entry. */
int ram_apply(struct vm *vm, const uint8_t *p, uint32_t len, struct ram_decoder *dec,
	      uint64_t *pages, struct kv_err *err);
/* The same, reading the payload of rec (whose header stream_read_head()
 * has read) from the stream: entries first, then the data straight into
 * guest memory, then the checksum. */
struct stream_rec;
/* Post-copy receiver: check a whole RAM record, then hand each page to fn
 * (memfd page index; data NULL for a zero page). */
typedef int (*ram_page_fn)(void *opaque, uint64_t page, const uint8_t *data, struct kv_err *err);
int ram_visit(struct vm *vm, const uint8_t *p, uint32_t len, struct ram_decoder *dec,
	      ram_page_fn fn, void *opaque, struct kv_err *err);
/* seq: the sequence number the record must carry (advanced), or NULL. */
int ram_receive(struct vm *vm, struct stream *s, const struct stream_rec *rec,
		struct ram_decoder *dec, uint64_t *pages, uint32_t *seq, struct kv_err *err);

#endif
