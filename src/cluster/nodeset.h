/*
 * nodeset.h - what the store says about the nodes, checked and turned into
 * placement input: the node records (/kvmove/nodes/), the operator's node
 * settings (/kvmove/nodecfg/), one VM's reach keys (/kvmove/reach/VM/) and
 * the cluster-wide migration limit.  A node that has only a nodecfg key is
 * down; a node whose record is malformed is listed but never chosen.
 */
#ifndef KVMOVE_CLUSTER_NODESET_H
#define KVMOVE_CLUSTER_NODESET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/placement.h"
#include "cluster/records.h"
#include "cluster/store.h"
#include "common/err.h"

#define NODESET_MAX 4096		/* more nodes than this: refused */
#define NODE_FEATURES_MAX 2048
#define NODE_FEATURE_LEN_MAX 64

struct cluster_node {
	char name[CLUSTER_NODE_NAME_MAX + 1];
	json_t *rec;			/* the node record, NULL when down */
	json_t *cfg;			/* the nodecfg object, NULL when none */
	char problem[192];		/* why the record cannot be used ("" = fine) */
	char reach_reason[192];		/* sanitised */
	char vendor[64];		/* sanitised, "" = unknown */
	const char **features;		/* into rec */
	int migration_limit;		/* effective: nodecfg, else config */
	bool limit_from_cfg;
	double load[3];
};

struct nodeset {
	struct cluster_node *v;
	struct place_node *place;	/* parallel to v, pointing into it */
	size_t n;
	int config_limit;		/* /kvmove/config's migration-limit */
	size_t ignored;			/* keys with bad names, skipped */
	char ignored_example[96];
};

/*
 * Build from list results (nodes: /kvmove/nodes/, cfgs: /kvmove/nodecfg/,
 * reach: /kvmove/reach/VM/ or NULL, config: /kvmove/config's value or
 * NULL), sorted by name.  Fails only for -ENOMEM and a store listing more
 * than NODESET_MAX nodes.
 */
int nodeset_build(struct nodeset *ns, const struct store_list *nodes,
		  const struct store_list *cfgs, const struct store_list *reach,
		  const char *vm, const char *config, size_t config_len, struct kv_err *err);
void nodeset_free(struct nodeset *ns);

/* Index of a node by name, or -1. */
int nodeset_find(const struct nodeset *ns, const char *name);

/* place_choose() over the set, with malformed records named as such. */
int nodeset_choose(const struct nodeset *ns, const struct place_vm *vm,
		   struct place_verdict *verdicts);

/* "up", "down", "maintenance" or "bad record". */
const char *nodeset_state(const struct cluster_node *n);

#endif
