/*
 * proto.h - record types of the migration stream and helpers shared by the
 * sender and the receiver.  docs/FORMAT.md describes every record byte by
 * byte; docs/PROTOCOL.md the order in which they are exchanged.
 */
#ifndef KVMOVE_MIGRATION_PROTO_H
#define KVMOVE_MIGRATION_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "state/stream.h"

#define MIG_PROTOCOL "kvmove-migration"
#define MIG_VERSION 3
#define MIG_MAX_RECORD (2u << 20)	/* a RAM batch plus headroom */
#define MIG_MAX_JSON (256u << 10)	/* handshake/config records */
#define MIG_RAM_BATCH 256		/* pages per RAM record at most */
#define MIG_PAGE_ZERO 0x1		/* RAM entry flag: the page is all zeros */
#define MIG_PAGE_LZ4 0x2		/* compressed with lz4 (capability "compress") */
#define MIG_PAGE_ZSTD 0x4		/* compressed with zstd (capability "compress") */
#define MIG_PAGE_FLAGS 0x7

enum mig_rec_type {
	MIG_REC_HELLO = 1,		/* JSON, both ways */
	MIG_REC_CONFIG = 2,		/* JSON: VM config + preflight request */
	MIG_REC_PREFLIGHT = 3,		/* JSON reply: ok / failures */
	MIG_REC_RAM = 4,		/* binary page batch */
	MIG_REC_ROUND = 5,		/* JSON: end of a pre-copy round (optional) */
	MIG_REC_VM_ARCH = 6,		/* vmstate: irqchip, PIT, clock */
	MIG_REC_VCPU = 7,		/* u32 index + vmstate */
	MIG_REC_DEVICE = 8,		/* u8 len + name + vmstate */
	MIG_REC_STATE_END = 9,		/* empty: everything is sent */
	MIG_REC_READY = 10,		/* dest -> src: loaded, waiting for GO */
	MIG_REC_GO = 11,		/* src -> dest: source released the VM */
	MIG_REC_RESUMED = 12,		/* dest -> src: running */
	MIG_REC_ERROR = 13,		/* JSON {id, desc}: the sender gives up */
	MIG_REC_END = 14,		/* file trailer */
	MIG_REC_SAVED = 15,		/* src -> dest, quick migration: JSON {path}; acts as GO */
	MIG_REC_PROBE = 16,		/* src -> dest, check-only: filler to time the link;
					 * an empty one asks for PROBE_ACK */
	MIG_REC_PROBE_ACK = 17,		/* dest -> src: JSON {bytes}: all filler read */
	/* post-copy (postcopy.h) */
	MIG_REC_POSTCOPY = 18,		/* src -> dest: JSON {pages}: stale pages follow later */
	MIG_REC_DISCARD = 19,		/* src -> dest: ranges of stale pages */
	MIG_REC_PAGE_REQ = 20,		/* dest -> src: u32 count, u64 gpa each */
	MIG_REC_POSTCOPY_END = 21,	/* src -> dest: every stale page was sent */
	MIG_REC_POSTCOPY_DONE = 22,	/* dest -> src: JSON stats: all pages in place */
	MIG_REC_NEEDED = 23,		/* dest -> src, on recovery: ranges still needed;
					 * an empty record ends them */
	MIG_REC_LOCAL = 25,		/* src -> dest, same host: JSON {ram-size, taps}; the
					 * guest RAM memfd and the TAP fds come with it */
	MIG_REC_LOCAL_BUILT = 26,	/* dest -> src, same host: the VM is built around the
					 * handed-over memory: pause and send the state */
	MIG_REC_CHANNEL_END = 24,	/* src -> dest on an extra channel: JSON {pages}:
					 * its last RAM record was sent */
};

const char *mig_rec_name(uint16_t type);

/* Send a JSON object as one record (obj is stolen). */
int mig_send_json(struct stream *s, uint16_t type, json_t *obj, struct kv_err *err);
/* Parse a record's payload as one JSON object (strict, bounded). */
int mig_parse_json(const struct stream_rec *rec, json_t **out, struct kv_err *err);
/*
 * Read the next record and insist on its type.  A MIG_REC_ERROR from the
 * peer becomes our error with the peer's description (-ECANCELED).
 */
int mig_expect(struct stream *s, uint16_t type, struct stream_rec *rec,
	       struct kv_err *err);
/* Tell the peer why we stop (best effort). */
void mig_send_error(struct stream *s, const char *id, const char *desc);

/*
 * End-to-end integrity: STATE_END (and a file's END) carry what the sender
 * put in the stream before them, and the receiver checks it against what it
 * took in before it may run the VM: a RAM record dropped or replayed, even
 * with checksums recomputed, fails here.
 */
struct mig_end {
	uint64_t pages;		/* RAM page entries before this record */
	bool paused;		/* STATE_END: the VM was paused before the migration
				 * paused it (it arrives paused) */
};
int mig_send_end(struct stream *s, uint16_t type, const struct mig_end *e, struct kv_err *err);
/* Checks pages against what arrived; fills *e (paused) if e is not NULL. */
int mig_check_end(const struct stream_rec *rec, uint64_t pages, struct mig_end *e,
		  struct kv_err *err);

/* "tcp:HOST:PORT" or "unix:PATH" -> a connected or listening socket.  A
 * UNIX socket is made 0600 (its directory decides who reaches it besides
 * us); a stale socket at PATH is replaced, anything else there is refused. */
int mig_connect(const char *uri, int timeout_ms, struct kv_err *err);
int mig_listen(const char *uri, struct kv_err *err);
/* A same-host hand-over address: "unix:PATH". */
bool mig_uri_is_local(const char *uri);
/* On an accepted UNIX connection: is the peer this user (or root)? 0, or
 * -EPERM with err naming the peer's uid and pid. */
int mig_check_local_peer(int fd, struct kv_err *err);

#endif
