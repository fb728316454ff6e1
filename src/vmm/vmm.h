/*
 * vmm.h - one VMM process: builds a VM from command-line options (RAM,
 * vCPUs, UART console, debug-exit port, PVH kernel), serves its control
 * socket, and runs the main loop until the VM shuts down.
 */
#ifndef KVMOVE_VMM_VMM_H
#define KVMOVE_VMM_VMM_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <termios.h>

#include <jansson.h>

#include "common/err.h"
#include "core/cpumodel.h"
#include "core/mem.h"
#include "devices/device.h"
#include "migration/allow.h"
#include "migration/migration.h"
#include "migration/secure.h"

#define VMM_MAX_USER_DEVICES 16

struct vm;
struct uart8250;
struct ctl_server;

struct vmm_options {
	const char *name;
	uint64_t mem_size;
	enum mem_backend mem_backend;	/* --mem-backend (also for incoming VMs) */
	unsigned ncpus;
	const char *kernel;
	const char *initrd;	/* may be NULL */
	const char *append;	/* may be NULL */
	const char *console;	/* "stdio", a file path, or "none" */
	const char *control;	/* socket path, may be NULL */
	bool start_paused;
	const char *incoming;	/* tcp:HOST:PORT: wait for a migration */
	const char *restore;	/* restore a saved VM from this file */
	const char *lock;	/* per-VM lock file on shared storage */
	const char *etcd;	/* --etcd: a cluster VM; its owner key decides who runs it */
	const char *node;	/* --node: this host's name in that cluster */
	int64_t fence_lease;
	const char *cpu;	/* --cpu host|MODEL[,+feat,-feat] (NULL: host) */
	struct cpu_feats hide;	/* --x-hide-host-feature: as if the host lacked these */	/* --fence-lease: run only while this lease lives */
	uint64_t max_mem;	/* incoming: refuse bigger VMs (0 = free RAM) */
	unsigned max_vcpus;	/* incoming: refuse more vCPUs (0 = KVM's limit) */
	/* incoming and restore: what the VM is and may use (--expect,
	 * --allow-disk, --allow-tap, --via): the stream never decides */
	struct mig_allow allow;
	bool keep_image;	/* --restore: leave the file (default: removed once run) */
	bool no_sandbox;	/* --no-sandbox: incoming/restore without seccomp */
	bool exit_after_migration;	/* exit once migrated (default: postmigrate) */
	const char *tls_psk;	/* --tls-psk FILE */
	const char *tls_creds;	/* --tls-creds DIR (x509) */
	const char *tls_peer;	/* --tls-peer NAME: the only peer it talks to */
	bool insecure;		/* --insecure: plaintext migrations */
	unsigned ndevs;		/* --disk / --net, in command-line order */
	struct dev_spec devs[VMM_MAX_USER_DEVICES];
};

struct migration;
struct incoming_job;

struct vmm {
	struct vmm_options opts;
	struct vm *vm;		/* NULL until built (incoming: once the config arrived) */
	struct uart8250 *uart;
	struct ctl_server *ctl;
	int console_fd;		/* where guest output goes */
	int input_fd;		/* where guest input comes from, or -1 */
	int signal_fd;
	struct arbiter *arb;	/* who may run the VM: etcd, lock file (NULL: neither) */
	struct fence *fence;	/* --fence-lease (cluster/fence.h), or NULL */
	pthread_mutex_t mig_lock;	/* guards mig: commands vs. teardown */
	struct migration *mig;	/* the last outgoing migration */
	struct incoming_job *inc;	/* the incoming migration (or restore) */
	struct mig_settings settings;	/* migrate-set-capabilities/-parameters (mig_lock) */
	struct mig_tls tls;		/* its migration credentials (secure.h) */
	int defer_efd;			/* --incoming defer: migrate-incoming came */
	char defer_uri[256];
	int defer_listen_fd;		/* migrate-incoming's socket, until the job takes it */
	bool defer_uri_set;
	bool incoming_refused;
};

/* The VM, or NULL while an incoming migration has not built it yet. */
struct vm *vmm_vm(struct vmm *vmm);

int vmm_create(struct vmm **out, const struct vmm_options *opts, struct kv_err *err);
/* Start the vCPUs and serve until the VM shuts down. Returns the exit status. */
int vmm_run(struct vmm *vmm);
void vmm_destroy(struct vmm *vmm);

/* query-migrate of the incoming side (new reference), or NULL if none. */
json_t *vmm_incoming_query(struct vmm *vmm);
/* migrate-incoming on a VMM started with --incoming defer. */
int vmm_incoming_start(struct vmm *vmm, const char *uri, struct kv_err *err);
/* The TLS credentials' name for query-migrate-parameters ("" if none). */
const char *vmm_tls_creds_name(struct vmm *vmm);
/* Is an incoming post-copy still bringing pages in? */
bool vmm_incoming_postcopy(struct vmm *vmm);

/* commands.c: the control-socket command table for a VMM. */
struct ctl_cmd;
const struct ctl_cmd *vmm_commands(size_t *n);

#endif
