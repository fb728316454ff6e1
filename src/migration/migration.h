/*
 * migration.h - outgoing migrations (live, or quick = save to a file) and
 * incoming ones (from a socket or a saved file).  docs/PROTOCOL.md has the
 * numbered steps; docs/STATES.md every status and transition.
 *
 * A source migration runs in its own thread; the VMM starts it from the
 * control socket and asks it for stats.  Guarantees: before GO every
 * failure resumes the source VM; after GO the lock decides who runs.
 */
#ifndef KVMOVE_MIGRATION_MIGRATION_H
#define KVMOVE_MIGRATION_MIGRATION_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "migration/config.h"
#include "migration/policy.h"
#include "migration/proto.h"
#include "migration/ramcodec.h"

struct vm;
struct arbiter;

enum mig_status {
	MIG_NONE,
	MIG_SETUP,		/* connect, handshake, preflight */
	MIG_ACTIVE,		/* pre-copy rounds, VM running */
	MIG_DEVICE,		/* VM paused: last pages and all state */
	MIG_PRE_SWITCHOVER,	/* loaded there; waits for migrate-continue
				 * (capability pause-before-switchover) */
	MIG_SWITCHOVER,		/* GO sent: handing the VM over ("device" in QMP) */
	MIG_POSTCOPY_ACTIVE,	/* the destination runs the VM; pages still flow */
	MIG_POSTCOPY_PAUSED,	/* post-copy lost its connection; both sides wait */
	MIG_POSTCOPY_RECOVER,	/* reconnecting a paused post-copy */
	MIG_COMPLETED,
	MIG_FAILED,		/* VM running on the source */
	MIG_CANCELLING,
	MIG_CANCELLED,		/* VM running on the source */
	MIG_INDETERMINATE,	/* channel lost after GO and no lock to ask */
};


struct mig_params {
	char uri[512];		/* tcp:HOST:PORT or file:PATH */
	uint64_t downtime_ms;	/* target; default 100 */
	uint64_t bandwidth;	/* bytes/s, 0 = unlimited */
	unsigned max_rounds;	/* default 30 */
	enum mig_policy policy;	/* default auto-converge */
	unsigned postcopy_after;	/* post-copy after this many pre-copy rounds
					 * that did not converge (default 1) */
	bool check_only;	/* preflight only */
	char via[512];		/* quick migration: save into this shared directory,
				 * the destination restores from it */
	bool postcopy_ram;	/* migrate-start-postcopy may switch to post-copy */
	bool pause_before_switchover;	/* wait for migrate-continue before GO */
	unsigned throttle_initial, throttle_step, throttle_max;	/* auto-converge */
	bool exit_after;	/* the source VMM exits once the VM runs there
				 * (default: it stays, QMP's postmigrate) */
	unsigned channels;	/* connections for RAM (1..MIG_MAX_CHANNELS); the
				 * destination may grant fewer */
	enum ram_compress compress;	/* page compression (ramcodec.h); used only if
					 * the destination takes it */
};

/*
 * What migrate-set-capabilities and migrate-set-parameters set: the
 * defaults of every later migration (a migrate command's own arguments
 * override them).  QMP names are mapped in src/vmm/cmd_migration.c.
 */
struct mig_settings {
	uint64_t downtime_ms;		/* downtime-limit */
	uint64_t bandwidth;		/* max-bandwidth, bytes/s; 0 = unlimited */
	unsigned throttle_initial;	/* cpu-throttle-initial */
	unsigned throttle_step;		/* cpu-throttle-increment */
	unsigned throttle_max;		/* max-cpu-throttle */
	bool auto_converge;		/* false: give up at max rounds (policy fail) */
	bool postcopy_ram;
	bool pause_before_switchover;
	bool exit_after;		/* kvmove run --exit-after-migration */
	bool multifd;			/* capability multifd: multifd-channels ... */
	unsigned multifd_channels;	/* ... connections; off: mig_default_channels() */
	enum ram_compress compress;	/* x-compress (multifd-compression) */
};
/* Connections for a migration when nobody said: half the host's CPUs (the
 * other half runs the guest), 2 to 4. */
unsigned mig_default_channels(void);
void mig_settings_defaults(struct mig_settings *s);

/* Called (from the migration thread) on status changes and rounds. */
typedef void (*mig_event_fn)(void *opaque, const char *event, json_t *data);

struct migration;

const char *mig_status_name(enum mig_status st);
int mig_params_from_json(json_t *args, const struct mig_settings *set, struct mig_params *p,
			 struct kv_err *err);

struct mig_tls;
/* tls: the VMM's credentials (secure.h); a tcp: migration needs them, or
 * the VMM's --insecure. */
int mig_start(struct migration **out, struct vm *vm, struct arbiter *arb,
	      const struct mig_tls *tls, const struct mig_params *p, mig_event_fn ev,
	      void *ev_opaque, struct kv_err *err);
/* Ask it to stop; too late (-EBUSY) once GO was sent. */
int mig_cancel(struct migration *m, struct kv_err *err);
/* migrate-start-postcopy: switch at the end of the current round. */
int mig_start_postcopy(struct migration *m, struct kv_err *err);
/* migrate-continue: go on from pre-switchover. */
int mig_continue(struct migration *m, struct kv_err *err);
/* Did the VM move away (completed, and not a check-only)? */
bool mig_migrated(struct migration *m);
/* Reconnect a paused post-copy to uri (tcp:HOST:PORT). */
int mig_resume(struct migration *m, const char *uri, struct kv_err *err);
/* The VMM goes away: end the thread whatever the state (a paused post-copy
 * then gives up the pages the destination still lacks). */
void mig_abandon(struct migration *m);
/* Is the destination still relying on this VMM for pages? */
bool mig_postcopy_pending(struct migration *m);
/* query-migrate's answer (new reference). */
json_t *mig_query(struct migration *m);
enum mig_status mig_get_status(struct migration *m);
bool mig_finished(struct migration *m);
/* Join the thread and free (call once mig_finished, or to wait for it). */
void mig_destroy(struct migration *m);

/* ---- incoming (dest.c) ---- */

/* Builds the destination VM (devices included) from the received config. */
typedef int (*mig_build_fn)(void *opaque, const struct mig_vm_config *cfg, struct vm **vm,
			    struct kv_err *err);

struct pc_dst;

struct mig_incoming {
	const char *uri;		/* tcp:HOST:PORT to listen on, or NULL */
	const char *file;		/* file to restore from, or NULL */
	bool keep_file;			/* do not remove it once the VM runs */
	struct mig_host host;		/* what this host offers (preflight) */
	struct arbiter *arb;		/* who may run the VM (arbiter.h); may be NULL */
	const struct mig_tls *tls;	/* how sources must connect (secure.h) */
	bool postcopy_ok;		/* offer post-copy (userfaultfd works here) */
	mig_build_fn build;
	void *opaque;
	/* Called (incoming thread) when the VM runs here but the migration
	 * goes on: post-copy.  mig_incoming_run() returns only at its end. */
	void (*on_resumed)(void *opaque);
	mig_event_fn ev;		/* MIGRATION events, may be NULL */
	void *ev_opaque;
	int listen_fd, conn_fd;		/* so a signal can shut them down */
	const int *cancel;
	/* results */
	struct vm *vm;			/* built VM, running on success */
	bool refused;			/* preflight refused */
	uint64_t pages, bytes;
	double load_ms;			/* first state record (VM paused at the
					 * source) to resume: our share of the
					 * downtime */
	double t_state;			/* internal: when the first state record came */
	char id[33];			/* the source's migration id */
	struct mig_end end;		/* STATE_END: counts, paused */
	uint32_t ram_seq;		/* the next RAM record's sequence number */
	bool conn_local;		/* this connection is a UNIX socket (same host) */
	bool local;			/* a same-host hand-over: both asked for it */
	bool compress;			/* the source may send compressed pages */
	struct ram_decoder dec;		/* this thread's decoder (the channels have theirs) */
	/* several channels (dst_channels.c) */
	unsigned want_channels;		/* what the source asked for */
	unsigned nchan;			/* what we granted (>= 1) */
	char chan_token[33];		/* what the extra connections must present */
	struct dst_chan *chan;		/* nchan - 1 receivers, while they last */
	struct stream *main_s;		/* the first connection's stream */
	int chan_failed;		/* atomic: an extra channel's receive failed */
	uint64_t chan_bytes;		/* what the extra channels took in */
	struct pc_dst *pc;		/* post-copy state, while it lasts */
	pthread_mutex_t mu;		/* status and error, for queries */
	enum mig_status status;
	char error[KV_ERR_MAX];
};

void mig_incoming_init(struct mig_incoming *in);
void mig_incoming_destroy(struct mig_incoming *in);	/* post-copy state too */
/* Status change, with a MIGRATION event (desc: the error, if any). */
void mig_incoming_status(struct mig_incoming *in, enum mig_status st, const char *desc);
/* query-migrate on the destination (new reference). */
json_t *mig_incoming_query(struct mig_incoming *in);
/* Wait for the next connection on listen_fd (honours *cancel). */
int mig_wait_accept(struct mig_incoming *in, struct kv_err *err);
#define MIG_PEER_TIMEOUT_MS 60000
#define MIG_HANDSHAKE_TIMEOUT_MS 5000	/* accept to CONFIG: then the next connection */

/* Receive one VM and resume it.  0 on success (vm running). */
int mig_incoming_run(struct mig_incoming *in, struct kv_err *err);

#endif
