/*
 * embedded.h - the single-machine etcd of `kvmove cluster init`: one etcd
 * member on this host, on loopback (client http://127.0.0.1:2479, peer
 * http://127.0.0.1:2480), data in DIR/etcd, log in DIR/etcd.log, pid in
 * DIR/etcd.pid; plus what every cluster needs once: /kvmove/config and the
 * cluster's migration key DIR/cluster.psk.
 */
#ifndef KVMOVE_CLUSTER_EMBEDDED_H
#define KVMOVE_CLUSTER_EMBEDDED_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

#define CLUSTER_DEFAULT_DIR "/var/lib/kvmove"
#define CLUSTER_ETCD_BIN "/usr/bin/etcd"
#define CLUSTER_PSK_IDENTITY "kvmove-cluster"
#define EMBEDDED_START_TIMEOUT_MS 10000

struct kv_store;

struct embedded_result {
	char listen[16];	/* in: an IPv4 address etcd also listens on (2479),
				 * for nodes on other hosts; "" = loopback only */
	char endpoint[64];
	bool started;		/* we started etcd (else one answered already) */
	pid_t pid;		/* when started */
	bool config_written;	/* /kvmove/config was absent and is written now */
	bool psk_written;	/* DIR/cluster.psk was absent and is written now */
	char dir[512];
	char psk_path[600];
	char log_path[600];
	char data_dir[600];
};

/*
 * If an etcd answers at http://127.0.0.1:2479, use it; else start
 * /usr/bin/etcd detached (its own session, stdin /dev/null, output to
 * DIR/etcd.log) and wait up to 10 s until it answers.  Then write
 * /kvmove/config if absent and DIR/cluster.psk if absent.  dir NULL:
 * /var/lib/kvmove.  endpoint (len bytes) gets the client URL.
 */
int cluster_embedded_ensure(const char *dir, char *endpoint, size_t len, struct kv_err *err);
/* The same, saying what it did. */
int cluster_embedded_ensure_ex(const char *dir, struct embedded_result *res,
			       struct kv_err *err);

/* /kvmove/config = {"migration-limit": 1} unless it exists (create-only
 * transaction).  *written (may be NULL) says whether it was absent. */
int cluster_config_init(struct kv_store *st, bool *written, struct kv_err *err);

/* DIR/cluster.psk (path into path_out) unless it exists: the key agents use
 * for migrations between them.  *written says whether it was absent. */
int cluster_psk_init(const char *dir, char *path_out, size_t len, bool *written,
		     struct kv_err *err);

#endif
