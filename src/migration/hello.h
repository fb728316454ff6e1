/*
 * hello.h - the HELLO record both ends send first: who they are, and what
 * they can do.  One builder and one checker for every role, so that what a
 * peer offers is read the same way everywhere (docs/PROTOCOL.md, "HELLO").
 *
 * Versions: a peer says the newest stream version it writes; both ends use
 * the lower of the two, and a peer older than MIG_VERSION_MIN is refused
 * with both numbers named.  Capabilities: each end lists what it has; what
 * the migration uses is what both list.  An unknown capability is ignored
 * (a newer peer's), so a feature grows without breaking older peers.
 */
#ifndef KVMOVE_MIGRATION_HELLO_H
#define KVMOVE_MIGRATION_HELLO_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"
#include "state/stream.h"

#define MIG_VERSION_MIN 3	/* the oldest stream version this kvmove reads */
#define MIG_MAX_CHANNELS 16	/* connections per migration, the first included */

/* capabilities, as bits (their names on the wire: mig_cap_name) */
#define MIG_CAP_POSTCOPY 0x1u	/* destination: userfaultfd works, post-copy possible */
#define MIG_CAP_CHANNELS 0x2u	/* RAM over several connections ("channels": N) */
#define MIG_CAP_LOCAL 0x4u	/* same host: guest RAM and TAPs handed over as fds
				 * (a UNIX socket), no page copied */
#define MIG_CAP_COMPRESS 0x8u	/* RAM entries may be lz4 or zstd (ramcodec.h) */
#define MIG_CAP_ALL (MIG_CAP_POSTCOPY | MIG_CAP_CHANNELS | MIG_CAP_LOCAL | MIG_CAP_COMPRESS)

struct mig_hello {
	char role[16];		/* source, destination, file, channel */
	int version;		/* the version both use: the lower of the peer's and ours */
	unsigned caps;		/* MIG_CAP_* it listed (known ones) */
	unsigned channels;	/* with MIG_CAP_CHANNELS: wanted (source) or granted
				 * (destination); 1 otherwise */
	bool resume;		/* a post-copy reconnection */
	char id[33];		/* the migration's id (hex), "" if none or malformed */
	char token[33];		/* destination: what extra channels must present;
				 * channel: what it presents */
	unsigned index;		/* channel: which one (1..channels-1) */
};

const char *mig_cap_name(unsigned cap);
/* A HELLO object for role with these capabilities (new reference). */
json_t *mig_hello_new(const char *role, unsigned caps);
/* Parse and check a HELLO record: protocol, version in range, role ==
 * want_role (NULL: any), field types.  Fills *h. */
int mig_hello_parse(const struct stream_rec *rec, const char *want_role, struct mig_hello *h,
		    struct kv_err *err);
/* 32 random hex characters from getrandom(2) (migration ids, channel
 * tokens): 0, or -errno with out empty. */
int mig_random_hex(char out[33]);

#endif
