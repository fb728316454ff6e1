/*
 * agent_int.h - the agent's insides, shared by its files:
 *   agent.c       the loop: lease, registration, reconcile after each change
 *   agent_snap.c  one consistent read of /kvmove/ and lookups in it
 *   agent_host.c  what this host is and offers (CPU, RAM, addresses)
 *   agent_vmm.c   local VMMs: start, adopt, watch, ask, stop
 *   agent_vms.c   the VMs this node owns: run what should run, report
 *   agent_mig.c   migrations: queue, slots, placement, incoming, progress
 *   agent_drain.c maintenance: move every VM away, report the drain
 *   agent_failover.c  a dead node's VMs: boot them here, never twice
 *   agent_load.c  what this node's VMs use, published for the balancer
 *   agent_balance.c  the balancer (one per cluster): tips, automatic moves
 */
#ifndef KVMOVE_CLUSTER_AGENT_INT_H
#define KVMOVE_CLUSTER_AGENT_INT_H

#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cluster/agent.h"
#include "cluster/store.h"
#include "core/cpumodel.h"

#define NAME_MAX_LEN 64
#define KEY_MAX_LEN 320
#define MIG_ID_LEN 48

/* ---- snapshot ---- */
struct snap {
	struct store_list l;
};
const struct store_kv *snap_get(const struct snap *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* parsed JSON object at the key (new reference), or NULL */
json_t *snap_json(const struct snap *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* index range [*b, *e) of keys under prefix */
void snap_range(const struct snap *s, const char *prefix, size_t *b, size_t *e);

/* ---- host ---- */
struct host_net {
	char cidr[48];
	char addr[INET_ADDRSTRLEN];	/* ours in it, "" when none */
};
struct host_info {
	char vendor[32];
	json_t *features;		/* array of strings: the names of feats */
	struct cpu_feats feats;		/* what its KVM gives a guest, less hide_list */
	char hide_list[512];		/* --x-hide-feature's, "a,b" (VMMs get it too) */
	char cpu_problem[KV_ERR_MAX];	/* why there are no features ("" = fine) */
	unsigned cpus;
	uint64_t ram_total;
	struct host_net nets[AGENT_MAX_NETS];
	unsigned nnets;
};
int host_probe(struct host_info *h, const struct agent_options *o, struct kv_err *err);
void host_free(struct host_info *h);
/* refresh the addresses (a link may come and go) */
void host_addrs(struct host_info *h, const struct agent_options *o);
uint64_t host_ram_free(void);
void host_load(double load[3]);
/* does addr (dotted quad) lie in cidr? */
bool cidr_contains(const char *cidr, const char *addr);

/* ---- local VMMs ---- */
enum lvmm_role { LV_RUN, LV_INCOMING };
struct lvmm {
	char vm[NAME_MAX_LEN];
	enum lvmm_role role;
	pid_t pid;
	bool child;			/* ours to reap (else adopted) */
	bool exited;
	int status;			/* wait status when child */
	bool stopping;			/* we asked it to quit */
	/* incoming */
	char mig[MIG_ID_LEN];
	int attempt;
	bool listening;
	char addr[64];			/* HOST:PORT */
	char why[200];			/* why it does not listen (yet) */
	struct lvmm *next;
};

/* ---- source-side migrations ---- */
enum smig_phase { SM_WAIT_READY, SM_MIGRATING };
struct smig {
	char id[MIG_ID_LEN];
	char vm[NAME_MAX_LEN];
	char to[NAME_MAX_LEN];
	enum smig_phase phase;
	int attempt;
	unsigned net;			/* index into nets[] */
	char nets[AGENT_MAX_NETS][48];	/* shared migration networks, our order */
	char dst_addr[AGENT_MAX_NETS][64];
	unsigned nnets;
	double t_phase;			/* when the phase began (CLOCK_MONOTONIC s) */
	double t_progress;		/* last progress write */
	bool cancel_sent;		/* migration cancel: migrate_cancel told the VMM */
	json_t *attempts;		/* [{network, result, reason}] */
	struct smig *next;
};

struct agent {
	struct agent_options o;
	struct kv_store *st;
	struct host_info host;
	int64_t lease;
	bool lease_lost;		/* keepalive said expired: register again */
	pthread_t ka_thread;
	bool ka_started;
	double t_lease;			/* when we (re)registered (CLOCK_MONOTONIC s) */
	pthread_mutex_t mu;		/* lease, lease_lost */
	pthread_cond_t cond;
	volatile sig_atomic_t *stop;
	struct lvmm *vmms;
	struct smig *migs;
	json_t *published;		/* last node record written */
	double t_published;
	json_t *reach;			/* vm -> last reach verdict written */
	json_t *status;			/* vm -> last status written */
	json_t *failed;			/* vm -> owner key revision its VMM died under */
	json_t *restarts;		/* vm -> [times of restarts by its policy] */
	json_t *restart_why;		/* vm -> why its running VMM is a restart */
	json_t *vmcpu;			/* vm -> {cpu-vendor, cpu-features} it booted with */
	json_t *load_prev;		/* vm -> [pid, CPU ticks] at the last load sample */
	double t_load;			/* when (agent_now), 0 = never */
	json_t *bal;			/* the balancer's memory (agent_balance.c) */
	char self[512];			/* /proc/self/exe */
};

double agent_now(void);	/* CLOCK_MONOTONIC seconds */
double agent_wall(void);	/* seconds since the epoch, for records */
int64_t agent_lease(struct agent *a);
void agent_log(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* put key = JSON (stolen); lease-bound when lease */
int agent_put_json(struct agent *a, const char *key, json_t *v, bool lease, struct kv_err *err);

/* agent_vmm.c */
struct lvmm *lvmm_find(struct agent *a, const char *vm);
struct vm_spec;
int lvmm_start_run(struct agent *a, const char *vm, const struct vm_spec *spec,
		   struct kv_err *err);
int lvmm_start_incoming(struct agent *a, const char *vm, const struct vm_spec *spec,
			const char *mig, int attempt, const char *addr, struct kv_err *err);
void lvmm_adopt(struct agent *a, const struct snap *s);
void lvmm_reap(struct agent *a);
void lvmm_stop(struct agent *a, struct lvmm *v, bool force);
void lvmm_remove(struct agent *a, struct lvmm *v);
void lvmm_set_role(struct agent *a, struct lvmm *v, enum lvmm_role role);
/* control socket: execute cmd on the VM's VMM (1 s per wait) */
int lvmm_exec(struct agent *a, const char *vm, const char *cmd, json_t *args, json_t **ret,
	      struct kv_err *err);
void lvmm_sock(struct agent *a, const char *vm, const char *what, char *buf, size_t len);

/* agent_net.c */
void net_tap_name(const char *vm, unsigned idx, char buf[16]);
bool net_bridge_ok(const char *bridge);
int net_ensure(struct agent *a, const char *vm, json_t *spec, struct kv_err *err);
void net_release(struct agent *a, const char *vm);
void net_args(const char *vm, json_t *spec, bool incoming, char **av, unsigned *n,
	      char bufs[][64]);

/* agent_vms.c */
void vms_reconcile(struct agent *a, const struct snap *s);
json_t *vms_node_record(struct agent *a, const struct snap *s);

/* agent_mig.c */
void mig_reconcile(struct agent *a, const struct snap *s);
void incoming_reconcile(struct agent *a, const struct snap *s);
bool mig_busy(struct agent *a);	/* something to poll soon */
struct nodeset;
/* placement input for vm from the snapshot (cluster/nodeset.h) */
int mig_nodeset(struct nodeset *ns, const struct snap *s, const char *vm, struct kv_err *err);

/* agent_load.c */
void load_publish(struct agent *a, const struct snap *s);

/* agent_balance.c */
void balance_reconcile(struct agent *a, const struct snap *s);

/* agent_failover.c */
void failover_reconcile(struct agent *a, const struct snap *s);

/* agent_drain.c */
void drain_reconcile(struct agent *a, const struct snap *s);

#endif
