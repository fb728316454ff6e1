/*
 * main.c - the kvmove command: dispatch to one verb per file.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
	fputs("usage: kvmove VERB [options]\n"
	      "\n"
	      "Verbs:\n"
	      "  run      start a VMM process for one VM (see kvmove run --help)\n"
	      "  status   show a running VM's state\n"
	      "  pause    pause a VM's vCPUs\n"
	      "  resume   resume a paused VM\n"
	      "  stop     shut a VM down and end its VMM\n"
	      "  migrate  live-migrate a VM to a destination VMM (kvmove run --incoming)\n"
	      "  save     save a VM to a file and stop it (kvmove run --restore FILE)\n"
	      "  keygen   write a new pre-shared key file for TLS between hosts\n"
	      "  cpu-models  the CPU models a VM can be given, and which this host runs\n"
	      "\n"
	      "Cluster verbs (docs/CLUSTER.md; they talk to etcd):\n"
	      "  cluster    init | status | balancer | tips | cpu-baseline\n"
	      "  node       list | show | set | maintenance: the hosts running 'kvmove agent'\n"
	      "  vm         create | start | stop | delete | list | show | migrate | set\n"
	      "  migration  list | cancel: queued, running and recent migrations\n"
	      "  agent      run this host's node agent (kvmove agent --help)\n"
	      "  console    serve the management console: web page, API, metrics\n"
	      "\n"
	      "Every verb takes --help.  Exit status: 0 ok, 1 failed, 2 usage error,\n"
	      "5 the VMM's control socket could not be reached; migrate and save add\n"
	      "3 refused at preflight, 4 cancelled, 6 indeterminate (see their --help).\n", f);
}

int main(int argc, char **argv)
{
	const char *verb;

	if (argc < 2) {
		usage(stderr);
		return KV_EXIT_USAGE;
	}
	verb = argv[1];
	if (!strcmp(verb, "-h") || !strcmp(verb, "--help") || !strcmp(verb, "help")) {
		usage(stdout);
		return KV_EXIT_OK;
	}
	if (!strcmp(verb, "--version")) {
		puts("kvmove 0.1");
		return KV_EXIT_OK;
	}
	if (!strcmp(verb, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(verb, "status") || !strcmp(verb, "pause") || !strcmp(verb, "resume") ||
	    !strcmp(verb, "stop"))
		return cmd_ctl(argc - 1, argv + 1);
	if (!strcmp(verb, "migrate"))
		return cmd_migrate(argc - 1, argv + 1);
	if (!strcmp(verb, "save"))
		return cmd_save(argc - 1, argv + 1);
	if (!strcmp(verb, "keygen"))
		return cmd_keygen(argc - 1, argv + 1);
	if (!strcmp(verb, "cpu-models"))
		return cmd_cpu_models(argc - 1, argv + 1);
	if (!strcmp(verb, "cluster"))
		return cmd_cluster(argc - 1, argv + 1);
	if (!strcmp(verb, "node"))
		return cmd_node(argc - 1, argv + 1);
	if (!strcmp(verb, "vm"))
		return cmd_vm(argc - 1, argv + 1);
	if (!strcmp(verb, "migration"))
		return cmd_migration(argc - 1, argv + 1);
	if (!strcmp(verb, "console"))
		return cmd_console(argc - 1, argv + 1);
	if (!strcmp(verb, "agent"))
		return cmd_agent(argc - 1, argv + 1);
	fprintf(stderr, "kvmove: unknown verb '%s'\n\n", verb);
	usage(stderr);
	return KV_EXIT_USAGE;
}
