/*
 * clustercli.h - what the cluster verbs (cluster, node, vm, migration)
 * share: --etcd resolution and the store connection, turning store errors
 * into messages and exit statuses, reading a VM's keys and the nodes, and
 * small output helpers.  Every function that returns an int here returns a
 * process exit status (cli.h): 0 to go on, else what the verb returns, the
 * message already printed on stderr.
 */
#ifndef KVMOVE_CLI_CLUSTERCLI_H
#define KVMOVE_CLI_CLUSTERCLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cluster/clusterconf.h"
#include "cluster/nodeset.h"
#include "cluster/records.h"
#include "cluster/store.h"

/* The options every cluster verb takes: put them in its longopts... */
#define CCLI_LONGOPTS \
	{ "etcd", required_argument, NULL, 'e' }, \
	{ "json", no_argument, NULL, 'j' }, \
	{ "help", no_argument, NULL, 'h' }
/* ...and this in its --help. */
#define CCLI_HELP_COMMON \
	"  -e, --etcd URL[,URL...]  etcd client URLs (default: $KVMOVE_ETCD, else the\n" \
	"                           etcd= line of /etc/kvmove/cluster.conf, else the\n" \
	"                           embedded etcd, http://127.0.0.1:2479)\n" \
	"  -j, --json               print the result as JSON on stdout\n" \
	"  -h, --help               show this help\n"
#define CCLI_HELP_EXIT_ETCD \
	"  5  etcd unreachable or without quorum: nothing was changed\n"

struct ccli {
	const char *verb;		/* "vm start": the messages' prefix */
	const char *etcd_opt;		/* --etcd, or NULL */
	bool json;
	struct cluster_etcd etcd;
	struct kv_store *st;
};

void ccli_msg(const struct ccli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The common options in a getopt loop: 1 handled, 0 not one of them. */
int ccli_common_opt(struct ccli *c, int ch, const char *arg);
/* Report an unknown option or a missing argument (getopt's ':' and '?'). */
int ccli_bad_opt(const struct ccli *c, int ch, char **argv);

/*
 * The getopt loop of a verb that takes the common options only: 0 to go on
 * (optind at its first argument), -1 when --help was shown (exit 0), else an
 * exit status.
 */
int ccli_parse_common(struct ccli *c, int argc, char **argv, void (*usage)(FILE *));
/*
 * The same, then no argument (CCLI_ARG_NONE) or exactly one VM or node name
 * (*name, checked); a missing name: "which VM? (NAME)" / "which node?
 * (NODE)", anything else: "unexpected argument".
 */
enum ccli_arg { CCLI_ARG_NONE, CCLI_ARG_VM, CCLI_ARG_NODE };
int ccli_parse_simple(struct ccli *c, int argc, char **argv, void (*usage)(FILE *),
		      enum ccli_arg arg, const char **name);
/*
 * After the options (argv[optind..]), exactly one VM NAME (*name, checked);
 * else "which VM? (NAME)" or "one NAME only" and a hint at --help.
 */
int ccli_vm_name_arg(const struct ccli *c, int argc, char **argv, const char **name);

int ccli_open(struct ccli *c);
void ccli_close(struct ccli *c);

/*
 * A failed store call: etcd unreachable or timed out -> 5, with
 * "etcd at URLS: MSG; " + after ("nothing was changed" when NULL); any
 * other error -> 1.
 */
int ccli_store_fail(const struct ccli *c, int rc, const struct kv_err *err, const char *after);
bool ccli_unreachable(int rc);

/* A VM's keys in one read (/kvmove/vms/NAME/). */
struct vm_keys {
	struct store_list l;
	const struct store_kv *spec, *owner, *status;
};
int ccli_vm_keys(struct ccli *c, const char *vm, struct vm_keys *k);
void ccli_vm_keys_free(struct vm_keys *k);
/* A plain-text value, its first line only, sanitised ("" for NULL). */
void ccli_text(const struct store_kv *kv, char *buf, size_t len);
/* The owner key as a node name ("" when absent; "free:..." during a
 * hand-over), sanitised. */
void ccli_owner(const struct vm_keys *k, char *buf, size_t len);

/* The nodes, their settings, the config and (vm not NULL) the VM's reach
 * keys; warns about keys with bad names. */
int ccli_nodes(struct ccli *c, const char *vm, struct nodeset *ns);

/* A user-given name: 2 with a message when it is not one. */
int ccli_check_vm_name(const struct ccli *c, const char *name);
int ccli_check_node_name(const struct ccli *c, const char *name);

/* --timeout SEC: seconds in (0, 86400] (or 0 when allow_zero) -> ms. */
int ccli_parse_timeout(const struct ccli *c, const char *s, bool allow_zero, unsigned *ms);

/*
 * Wait for a change under prefix from revision *rev on, at most timeout_ms
 * (one watch).  0 on a change or a timeout (*changed says which; *rev
 * advances); an exit status when etcd stays away for longer than
 * timeout_ms.
 */
int ccli_wait(struct ccli *c, const char *prefix, int64_t *rev, unsigned timeout_ms,
	      bool *changed, const char *after);

void ccli_print_json(json_t *v);
/* "512 MiB", "4 GiB", "1.5 GiB" */
void ccli_fmt_bytes(char *buf, size_t len, uint64_t bytes);
/* a wall-clock time (seconds since the epoch) in local time, "-" for none */
void ccli_fmt_time(char *buf, size_t len, double t);
double ccli_now(void);		/* monotonic seconds */
double ccli_wall(void);		/* seconds since the epoch */

/* A table printed with aligned columns. */
#define CCLI_TABLE_COLS 10
struct ccli_table {
	size_t ncols, nrows, cap;
	char **cells;		/* nrows * ncols, row 0 the header */
};
void ccli_table_init(struct ccli_table *t, size_t ncols, ...);	/* header cells */
void ccli_table_add(struct ccli_table *t, ...);	/* ncols strings (NULL = "-") */
void ccli_table_print(struct ccli_table *t);	/* and free it */

/* cluster balancer, cluster tips (cmd_cluster_tips.c); argv[0] is the
 * subverb. */
int cmd_cluster_balancer(int argc, char **argv);
int cmd_cluster_tips(int argc, char **argv);
/* cluster cpu-baseline (cmd_cluster_cpu.c) */
int cmd_cluster_cpu_baseline(int argc, char **argv);

/* The vm verb's subverbs in their own files (cmd_vm_start.c,
 * cmd_vm_migrate.c, cmd_vm_list.c, cmd_vm_set.c); argv[0] is the subverb. */
int cmd_vm_start(int argc, char **argv);
int cmd_vm_migrate(int argc, char **argv);
int cmd_vm_list(int argc, char **argv);
int cmd_vm_show(int argc, char **argv);
int cmd_vm_set(int argc, char **argv);
/* kvmove migration cancel ID (cmd_migration_cancel.c); argv[0] "cancel". */
int cmd_migration_cancel(int argc, char **argv);
/* cmd_node_maint.c: kvmove node maintenance; a drain record in one line
 * ("draining: 2 of 5 moved, web3 -> h4 40%, ETA 12 s") */
int node_maintenance(int argc, char **argv);
void node_drain_line(json_t *drain, char *buf, size_t len);

#endif
