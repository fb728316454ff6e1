/*
 * dst_channels.h - the destination's side of several channels
 * (src_channels.c has the picture): accept the extra connections the
 * source opens after the preflight, receive their RAM records in threads,
 * and join them before anything that needs all of RAM (device state,
 * post-copy's discard, STATE_END).  With one channel all are no-ops.
 */
#ifndef KVMOVE_MIGRATION_DST_CHANNELS_H
#define KVMOVE_MIGRATION_DST_CHANNELS_H

#include <stdbool.h>

#include "common/err.h"

struct mig_incoming;

/* After our PREFLIGHT said yes: the in->nchan - 1 extra connections, each
 * over TLS like the first, presenting our token and its index.  Strangers
 * are turned away and waited past, up to a deadline. */
int dst_chan_accept(struct mig_incoming *in, struct kv_err *err);
/* Once in->vm exists: a receiving thread per extra channel. */
int dst_chan_start(struct mig_incoming *in, struct kv_err *err);
/* Wait for every extra channel's CHANNEL_END (stop: shut them down first,
 * after a failure elsewhere); add their pages to in->pages.  The first
 * channel that failed is the error. */
int dst_chan_join(struct mig_incoming *in, bool stop, struct kv_err *err);
void dst_chan_close(struct mig_incoming *in);

#endif
