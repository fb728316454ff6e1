/*
 * cli.h - the kvmove command's verbs.  Each verb is one file (cmd_<verb>.c)
 * and returns the process exit status (documented in its --help).
 */
#ifndef KVMOVE_CLI_CLI_H
#define KVMOVE_CLI_CLI_H

/* Exit codes shared by all verbs. */
enum {
	KV_EXIT_OK = 0,
	KV_EXIT_FAIL = 1,	/* the operation failed */
	KV_EXIT_USAGE = 2,	/* bad command line */
	KV_EXIT_REFUSED = 3,	/* migrate: refused at preflight, nothing done */
	KV_EXIT_CANCELLED = 4,	/* migrate: cancelled, the VM runs on the source */
	KV_EXIT_UNREACHABLE = 5,	/* could not reach the VMM / peer */
	KV_EXIT_INDETERMINATE = 6,	/* migrate: who runs the VM is unknown */
	KV_EXIT_POSTCOPY_PAUSED = 7,	/* migrate: post-copy lost its link; resume it */
	KV_EXIT_FENCED = 8,	/* run: ended its VM, its node's lease unconfirmed */
};

/* kvmove run [options]: one VMM process for one VM. */
int cmd_run(int argc, char **argv);

/* kvmove status|pause|resume|stop --control SOCKET [--json]: talk to a VMM's
 * control socket.  verb is argv[0]. */
int cmd_ctl(int argc, char **argv);

/* kvmove migrate --control SOCKET --to tcp:HOST:PORT [...]: live migration. */
int cmd_migrate(int argc, char **argv);

/* kvmove save --control SOCKET FILE: quick migration, step 1. */
int cmd_save(int argc, char **argv);

/* kvmove keygen [--identity NAME] [--force] FILE: a new TLS pre-shared key. */
int cmd_keygen(int argc, char **argv);

/* kvmove cpu-models [--features] [--json]: the CPU models and this host. */
int cmd_cpu_models(int argc, char **argv);

/* The cluster verbs (docs/CLUSTER.md); argv[0] is the verb, argv[1] the
 * subverb.  kvmove cluster init|status */
int cmd_cluster(int argc, char **argv);
/* kvmove node list|show|set */
int cmd_node(int argc, char **argv);
/* kvmove vm create|start|stop|delete|list|show|migrate */
int cmd_vm(int argc, char **argv);
/* kvmove migration list */
int cmd_migration(int argc, char **argv);

/* kvmove console [options] | console token add: the management console. */
int cmd_console(int argc, char **argv);

/* kvmove agent [options]: the node agent of a cluster (docs/CLUSTER.md). */
int cmd_agent(int argc, char **argv);

#endif
