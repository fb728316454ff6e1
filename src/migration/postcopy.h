/*
 * postcopy.h - post-copy: the destination runs the guest before it has all
 * of its memory; the pages it lacks come from the source, on demand (a
 * fault asks for them over the return path) and in the background.
 *
 * After the pre-copy rounds the policy stopped (docs/PROTOCOL.md, 3b):
 *   src: pause; final dirty sync; POSTCOPY {pages}; DISCARD ranges (the
 *        pages dirty since they were last sent: stale on the destination);
 *        vCPU and device state; STATE_END
 *   dst: punch the stale pages out of guest memory, register userfaultfd,
 *        load the state; READY
 *   src: GO (the lock moves, as in a pre-copy switchover)
 *   dst: take the lock, start the vCPUs; RESUMED.  From here on the
 *        destination runs the VM and the source holds the only copy of the
 *        pages not yet sent: neither side may ever run it anywhere else.
 *   src: RAM records, requested pages first, then the rest (pages dirtied in
 *        the last two rounds first); POSTCOPY_END
 *   dst: PAGE_REQ {gpa...} for every fault on a stale page; places pages
 *        atomically (UFFDIO_COPY) as they arrive; at POSTCOPY_END checks
 *        it has every stale page, unregisters, POSTCOPY_DONE {stats}
 * A page that is missing but not stale (never sent because it was zero) is
 * filled with zeros on the destination without asking.
 *
 * Recovery: if the connection breaks, both sides go to postcopy-paused and
 * keep their state; the destination holds its vCPUs (a faulting one waits
 * for its page) and listens on its incoming address again.  On the source,
 * `migrate` with resume=true (kvmove migrate --resume --to ADDR) connects
 * with HELLO {resume, id}; the destination answers NEEDED ranges (stale and
 * not received), and the post-copy goes on.
 */
#ifndef KVMOVE_MIGRATION_POSTCOPY_H
#define KVMOVE_MIGRATION_POSTCOPY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct vm;
struct stream;
struct stream_rec;
struct migration;
struct mig_incoming;

#define PC_RANGE_SIZE 16		/* u64 gpa, u64 pages */
#define PC_MAX_REQ 256			/* gpas per PAGE_REQ record */

/* Send the pages set in bitmap (memfd-page order) as ranges of guest
 * addresses, in records of `type`, then (if terminate) an empty one. */
int pc_send_ranges(struct stream *s, uint16_t type, struct vm *vm, const uint64_t *bitmap,
		   bool terminate, struct kv_err *err);
/* Check a ranges record and call fn for each range (memfd pages);
 * *count: how many ranges it held (0 = the terminator). */
typedef int (*pc_range_fn)(void *opaque, uint64_t first, uint64_t n, struct kv_err *err);
int pc_parse_ranges(struct vm *vm, const struct stream_rec *rec, pc_range_fn fn, void *opaque,
		    unsigned *count, struct kv_err *err);

/* ---- source (postcopy_src.c) ---- */

/* Stop-and-copy's part: POSTCOPY and the DISCARD ranges of rs.dirty. */
int src_postcopy_announce(struct migration *m, struct kv_err *err);
/* After RESUMED: push the rest, serve requests, recover from breaks.
 * 0 when the destination has every page. */
int src_postcopy_run(struct migration *m, struct kv_err *err);

/* ---- destination (postcopy_dst.c) ---- */

struct pc_dst;
int pc_dst_begin(struct mig_incoming *in, const struct stream_rec *rec, struct kv_err *err);
int pc_dst_discard(struct mig_incoming *in, const struct stream_rec *rec, struct kv_err *err);
/* At STATE_END: every announced page was discarded; watch guest memory. */
int pc_dst_arm(struct mig_incoming *in, struct kv_err *err);
/* After RESUMED: receive pages until POSTCOPY_END; recover from breaks. */
int pc_dst_run(struct mig_incoming *in, struct stream *s, struct kv_err *err);
/* Stop everything (a stop request): faulting threads are released. */
void pc_dst_destroy(struct mig_incoming *in);
json_t *pc_dst_stats(struct mig_incoming *in);

#endif
