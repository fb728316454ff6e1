/*
 * clusterconf.h - which etcd a cluster verb talks to (docs/CLUSTER.md):
 * the --etcd option, else $KVMOVE_ETCD, else the etcd= line of
 * /etc/kvmove/cluster.conf ($KVMOVE_CLUSTER_CONF names another file), else
 * the embedded single-machine etcd of `kvmove cluster init`.  Every URL is
 * checked: http://HOST:PORT and nothing else.
 */
#ifndef KVMOVE_CLUSTER_CLUSTERCONF_H
#define KVMOVE_CLUSTER_CLUSTERCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define CLUSTER_EMBEDDED_ENDPOINT "http://127.0.0.1:2479"
#define CLUSTER_EMBEDDED_PEER "http://127.0.0.1:2480"
#define CLUSTER_CONF_PATH "/etc/kvmove/cluster.conf"
#define CLUSTER_CONF_MAX (64 * 1024)	/* a larger cluster.conf is refused */
#define CLUSTER_ENDPOINTS_MAX 2048	/* the whole comma-separated list */

enum cluster_etcd_source {
	CLUSTER_ETCD_OPTION,	/* --etcd */
	CLUSTER_ETCD_ENV,	/* $KVMOVE_ETCD */
	CLUSTER_ETCD_CONF,	/* the etcd= line of the config file */
	CLUSTER_ETCD_DEFAULT,	/* the embedded etcd */
};

struct cluster_etcd {
	char endpoints[CLUSTER_ENDPOINTS_MAX];	/* "http://h1:2379,http://h2:2379" */
	enum cluster_etcd_source source;
	char from[320];		/* for messages: "--etcd", "/etc/kvmove/cluster.conf line 3" */
};

/* Resolve with the process's environment ($KVMOVE_ETCD, $KVMOVE_CLUSTER_CONF).
 * opt: the --etcd value or NULL.  -EINVAL with a message naming where the bad
 * URL came from; an unreadable config file (other than absent) is an error. */
int clusterconf_resolve(const char *opt, struct cluster_etcd *out, struct kv_err *err);

/* The same with the environment given (NULL or "" = unset; conf_path NULL =
 * CLUSTER_CONF_PATH): for tests. */
int clusterconf_resolve_with(const char *opt, const char *env_etcd, const char *conf_path,
			     struct cluster_etcd *out, struct kv_err *err);

/* A comma-separated list of 1..STORE_MAX_ENDPOINTS URLs, each
 * http://HOST:PORT (HOST a name, an IPv4 address or [IPv6]; PORT 1..65535). */
int clusterconf_check_endpoints(const char *list, struct kv_err *err);

#endif
