/*
 * source_internal.h - what the source-side files of a migration share:
 * the migration object and its small helpers.  Not for anyone else.
 *   source.c   live migration: handshake, pre-copy, stop-and-copy, hand-over
 *   save.c     quick migration: the VM into a file (save, or via shared storage)
 *   control.c  the API the VMM calls: start, cancel, query, params
 */
#ifndef KVMOVE_MIGRATION_SOURCE_INTERNAL_H
#define KVMOVE_MIGRATION_SOURCE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/migration.h"
#include "migration/policy.h"
#include "migration/ram.h"
#include "state/stream.h"

#define CONNECT_TIMEOUT_MS 5000
#define PEER_TIMEOUT_MS 30000
#define SRC_SAMPLES 4		/* dirty-rate sample points ... */
#define SRC_SAMPLE_MS 1000	/* ... over about a second */

/* the steps of a switchover, in order (x-switchover names them) */
enum {
	SRC_SW_PAUSED,		/* every vCPU out of the guest */
	SRC_SW_LAST_PAGES,	/* the last dirty pages sent, extra channels ended */
	SRC_SW_STATE_SENT,	/* vCPU and device state sent, STATE_END */
	SRC_SW_READY,		/* the destination loaded it all (READY) */
	SRC_SW_RELEASED,	/* disks and the lock let go, GO sent */
	SRC_SW_RESUMED,		/* the destination runs the VM (RESUMED) */
	SRC_SW_N
};

struct migration {
	struct vm *vm;
	struct arbiter *arb;	/* who may run the VM (arbiter.h); may be NULL */
	const struct mig_tls *tls;	/* the VMM's credentials (secure.h) */
	struct mig_params p;
	mig_event_fn ev;
	void *ev_opaque;
	pthread_t thread;
	int cancel;		/* atomic: set by mig_cancel */

	/* Held across a status change and its MIGRATION event, so that events
	 * arrive in the order the states were entered (cancelling before
	 * cancelled).  Taken before mu; event handlers never call back in. */
	pthread_mutex_t ev_mu;
	pthread_mutex_t mu;	/* guards everything below */
	enum mig_status status;
	bool finished, go_sent;
	int fd;
	double t_start, setup_ms, total_ms, downtime_ms, expected_ms, dest_load_ms;
	uint64_t rounds, remaining, transferred, normal, zero;
	struct ram_codec_stats codec;	/* compression, all senders together */
	double mbps, dirty_pps;
	double t_active;	/* pre-copy began */
	uint64_t fp_total;	/* bytes the first pass will look at */
	uint64_t bytes_paused, bytes_resumed;	/* bytes_out at the pause, at RESUMED */
	unsigned throttle;
	const char *error_id;
	char error_desc[KV_ERR_MAX];
	json_t *preflight;
	json_t *prediction;	/* x-prediction, once the sample is in */
	char id[33];		/* this migration's identity (hex), for recovery */
	/* post-copy */
	pthread_cond_t cond;	/* with mu: resume requests, abandon */
	char resume_uri[512];	/* set by mig_resume */
	bool resume_req, abandon;
	bool continue_req;	/* migrate-continue in pre-switchover */
	int start_postcopy;	/* atomic: migrate-start-postcopy */
	double t_postcopy, postcopy_ms;
	uint64_t pc_requests;	/* pages the destination asked for */
	json_t *pc_stats;	/* the destination's POSTCOPY_DONE */
	struct mig_policy_cfg pcfg;	/* policy resolved (auto: by the prediction) */
	/* several channels (src_channels.c) */
	unsigned nchan;		/* connections for RAM, the first included (>= 1) */
	char chan_token[33];	/* the destination's, for the extra connections */
	struct src_chan *chan;	/* nchan - 1 extra channels (under mu) */
	unsigned chan_failed;	/* under mu: the first extra channel that failed */
	uint64_t chan_bytes;	/* under mu: sent over the extra channels (multifd-bytes) */
	unsigned granted;	/* under mu: nchan, for queries (0 before the HELLO) */
	pthread_cond_t chan_cv;	/* with mu: jobs posted, jobs done */

	/* thread-private */
	struct stream s;
	struct ram_sender rs;
	struct mig_policy_state pst;
	bool local;		/* same host (unix:PATH): RAM and TAPs go as fds */
	enum ram_compress compress;	/* what the RAM senders do: p.compress if the
					 * destination takes it, else off */
	bool peer_postcopy;	/* the destination offered post-copy */
	bool postcopy;		/* the switchover is a post-copy one */
	uint64_t *hot;		/* pages sent in the last round (post-copy pushes
				 * those still dirty first) */
	/* dirty-rate sample: cumulative distinct pages at times since start */
	double sample_t0;
	unsigned nsample;
	double sample_t[SRC_SAMPLES], sample_pages[SRC_SAMPLES];
	bool paused;		/* the migration paused the VM (undo on failure) */
	bool was_paused;	/* it was paused before: it stays so, there too */
	double t_pause;		/* when the VM was paused for the last time */
	/* under mu: where the switchover's time went, ms after t_pause at the
	 * end of each step (x-switchover); 0 = not reached */
	double sw[SRC_SW_N];
};

double src_now_ms(void);
/* The end of a switchover step: src_mark(m, SRC_SW_...). */
void src_mark(struct migration *m, unsigned step);
void src_set_status(struct migration *m, enum mig_status st);
void src_publish(void *opaque);	/* copy counters where query-migrate sees them */
int src_set_fail(struct migration *m, const char *id, struct kv_err *err, int rc);
bool src_is_cancelled(struct migration *m);
void src_resume_vm(struct migration *m);	/* if the migration paused it */

int src_open_peer(struct migration *m, struct stream *ps, struct kv_err *err);
int src_init_sender(struct migration *m, struct stream *s, struct kv_err *err);
int src_hand_over(struct migration *m, struct stream *ps, uint16_t type, json_t *payload);
void src_rollback(struct migration *m, struct stream *ps, struct kv_err *err);
void src_finish_completed(struct migration *m, const char *how);
/* Pause, (live: the last dirty pages), every vCPU and device, STATE_END;
 * wait for READY.  Then, with pause-before-switchover, migrate-continue. */
int src_stop_and_copy(struct migration *m, bool postcopy, struct kv_err *err);
int src_pre_switchover(struct migration *m, struct kv_err *err);

/* src_local.c: a same-host hand-over (unix:PATH): guest RAM and the TAPs
 * go over as fds after the preflight; no page is copied. */
int src_local_send_fds(struct migration *m, struct kv_err *err);

/* precopy.c: pre-copy rounds under the policy; the dirty-rate sample, the
 * link probe and the prediction.  *postcopy: the policy chose post-copy. */
int src_precopy(struct migration *m, bool *postcopy, struct kv_err *err);
int src_check_only(struct migration *m, struct kv_err *err);

/* src_channels.c: RAM over several connections.  A pass sends every page
 * (all) or every dirty page over all channels, and returns when all of it
 * is on its way; src_chan_end closes the extra channels after the last
 * pages (CHANNEL_END).  With one channel these are the single-stream
 * calls. */
int src_chan_open(struct migration *m, struct kv_err *err);
int src_ram_pass(struct migration *m, bool all, struct kv_err *err);
int src_chan_end(struct migration *m, struct kv_err *err);
void src_chan_close(struct migration *m);
void src_chan_shutdown_locked(struct migration *m);	/* under mu */
void src_set_rate(struct migration *m, uint64_t bytes_per_sec);	/* shared out */
uint64_t src_bytes_out(struct migration *m);	/* every channel's */
/* Migration thread: the compression numbers of every sender. */
void src_chan_codec_totals(struct migration *m, struct ram_codec_stats *st);
void src_chan_totals(struct migration *m, uint64_t *bytes, uint64_t *normal, uint64_t *zero,
		     uint64_t *entries);

void src_run_live(struct migration *m);
void src_run_save(struct migration *m);
void src_run_quick_via(struct migration *m);

#endif
