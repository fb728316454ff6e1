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
#include "migration/ram.h"
#include "state/stream.h"

#define CONNECT_TIMEOUT_MS 5000
#define PEER_TIMEOUT_MS 30000

struct migration {
	struct vm *vm;
	struct vmlock *lock;
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
	double mbps, dirty_pps;
	unsigned throttle;
	const char *error_id;
	char error_desc[KV_ERR_MAX];
	json_t *preflight;

	/* thread-private */
	struct stream s;
	struct ram_sender rs;
	bool paused;
	double t_pause;		/* when the VM was paused for the last time */
};

double src_now_ms(void);
void src_set_status(struct migration *m, enum mig_status st);
void src_publish(void *opaque);	/* copy counters where query-migrate sees them */
int src_set_fail(struct migration *m, const char *id, struct kv_err *err, int rc);
bool src_is_cancelled(struct migration *m);

int src_open_peer(struct migration *m, struct stream *ps, struct kv_err *err);
int src_init_sender(struct migration *m, struct stream *s, struct kv_err *err);
void src_hand_over(struct migration *m, struct stream *ps, uint16_t type, json_t *payload);
void src_rollback(struct migration *m, struct stream *ps, struct kv_err *err);
void src_finish_completed(struct migration *m, const char *how);

void src_run_live(struct migration *m);
void src_run_save(struct migration *m);
void src_run_quick_via(struct migration *m);

#endif
