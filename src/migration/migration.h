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

struct vm;
struct vmlock;

enum mig_status {
	MIG_NONE,
	MIG_SETUP,		/* connect, handshake, preflight */
	MIG_ACTIVE,		/* pre-copy rounds, VM running */
	MIG_DEVICE,		/* VM paused: last pages and all state */
	MIG_SWITCHOVER,		/* destination loaded; handing the VM over */
	MIG_COMPLETED,
	MIG_FAILED,		/* VM running on the source */
	MIG_CANCELLING,
	MIG_CANCELLED,		/* VM running on the source */
	MIG_INDETERMINATE,	/* channel lost after GO and no lock to ask */
};

enum mig_policy { MIG_POLICY_FAIL, MIG_POLICY_AUTO_CONVERGE, MIG_POLICY_FORCE };

struct mig_params {
	char uri[512];		/* tcp:HOST:PORT or file:PATH */
	uint64_t downtime_ms;	/* target; default 100 */
	uint64_t bandwidth;	/* bytes/s, 0 = unlimited */
	unsigned max_rounds;	/* default 30 */
	enum mig_policy policy;	/* default auto-converge */
	bool check_only;	/* preflight only */
	char via[512];		/* quick migration: save into this shared directory,
				 * the destination restores from it */
};

/* Called (from the migration thread) on status changes and rounds. */
typedef void (*mig_event_fn)(void *opaque, const char *event, json_t *data);

struct migration;

const char *mig_status_name(enum mig_status st);
int mig_params_from_json(json_t *args, struct mig_params *p, struct kv_err *err);

int mig_start(struct migration **out, struct vm *vm, struct vmlock *lock,
	      const struct mig_params *p, mig_event_fn ev, void *ev_opaque,
	      struct kv_err *err);
/* Ask it to stop; too late (-EBUSY) once GO was sent. */
int mig_cancel(struct migration *m, struct kv_err *err);
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

struct mig_incoming {
	const char *uri;		/* tcp:HOST:PORT to listen on, or NULL */
	const char *file;		/* file to restore from, or NULL */
	struct mig_host host;		/* what this host offers (preflight) */
	struct vmlock *lock;		/* may be NULL */
	mig_build_fn build;
	void *opaque;
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
};

/* Receive one VM and resume it.  0 on success (vm running). */
int mig_incoming_run(struct mig_incoming *in, struct kv_err *err);

#endif
