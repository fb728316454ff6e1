/*
 * cmd_console.c - kvmove console: serve the cluster's management console
 * (docs/API.md); kvmove console token add: a user for it.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/clusterconf.h"
#include "console/console.h"
#include "console/tokens.h"

#define DEFAULT_TOKENS "/etc/kvmove/console.tokens"
#define DEFAULT_LISTEN "127.0.0.1:8480"

static void usage(FILE *f)
{
	fputs("usage: kvmove console [--listen HOST:PORT] [--tokens FILE] [--etcd URL[,URL...]]\n"
	      "       kvmove console token add --name NAME --role admin|read [--tokens FILE]\n"
	      "\n"
	      "Serve the cluster's management console: the web page at http://HOST:PORT/,\n"
	      "its JSON API under /api/ (docs/API.md), live updates as server-sent events\n"
	      "(/api/events) and Prometheus metrics (/metrics).  Every path but the page\n"
	      "needs a user's token: 'Authorization: Bearer TOKEN', or the page's login.\n"
	      "Users with role read may look; admin may also start, stop and migrate VMs,\n"
	      "cancel migrations, put nodes into maintenance and apply tips.  Every change\n"
	      "is recorded in the audit log (etcd /kvmove/audit/, shown in the page).\n"
	      "The console keeps no state: run it on any host that reaches etcd.  It\n"
	      "speaks plain HTTP: keep it on 127.0.0.1 (the default) or a management\n"
	      "network, or put it behind a TLS proxy.\n"
	      "\n"
	      "  -l, --listen HOST:PORT   where to serve (default " DEFAULT_LISTEN ")\n"
	      "  -t, --tokens FILE        the users: lines 'ROLE NAME TOKEN', mode 0600,\n"
	      "                           read again when it changes (default\n"
	      "                           " DEFAULT_TOKENS ")\n"
	      "  -e, --etcd URL[,URL...]  etcd client URLs (default: $KVMOVE_ETCD, else the\n"
	      "                           etcd= line of /etc/kvmove/cluster.conf, else the\n"
	      "                           embedded etcd, http://127.0.0.1:2479)\n"
	      "  -h, --help               show this help\n"
	      "\n"
	      "token add: append a user with a new random token to the token file\n"
	      "(created mode 0600) and print the token on stdout.\n"
	      "  -n, --name NAME          the user (1..63 of [A-Za-z0-9._@-])\n"
	      "  -r, --role admin|read    what the user may do\n"
	      "\n"
	      "exit status: 0 (served until SIGINT/SIGTERM; token added), 1 failed,\n"
	      "2 usage error\n", f);
}

static int token_add(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "role", required_argument, NULL, 'r' },
		{ "tokens", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *role = NULL, *path = DEFAULT_TOKENS;
	char token[CONSOLE_TOKEN_HEX + 1];
	struct kv_err err;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "n:r:t:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n': name = optarg; break;
		case 'r': role = optarg; break;
		case 't': path = optarg; break;
		case 'h': usage(stdout); return KV_EXIT_OK;
		default: usage(stderr); return KV_EXIT_USAGE;
		}
	}
	if (optind < argc || !name || !role || (strcmp(role, "admin") && strcmp(role, "read"))) {
		fprintf(stderr, "kvmove console token add: give --name NAME and --role admin|read\n");
		return KV_EXIT_USAGE;
	}
	if (console_token_add(path, name, !strcmp(role, "admin") ? CONSOLE_ADMIN : CONSOLE_READ,
			      token, &err)) {
		fprintf(stderr, "kvmove console token add: %s\n", err.msg);
		return KV_EXIT_FAIL;
	}
	puts(token);
	return KV_EXIT_OK;
}

int cmd_console(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "tokens", required_argument, NULL, 't' },
		{ "etcd", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct console_options o = { .listen = DEFAULT_LISTEN, .tokens = DEFAULT_TOKENS,
				     .self = "/proc/self/exe" };
	struct cluster_etcd etcd;
	const char *etcd_opt = NULL;
	struct kv_err err;
	int ch;

	if (argc >= 2 && !strcmp(argv[1], "token")) {
		if (argc >= 3 && !strcmp(argv[2], "add"))
			return token_add(argc - 2, argv + 2);
		fprintf(stderr, "kvmove console token: the only subverb is 'add'\n");
		return KV_EXIT_USAGE;
	}
	optind = 1;
	while ((ch = getopt_long(argc, argv, "l:t:e:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': o.listen = optarg; break;
		case 't': o.tokens = optarg; break;
		case 'e': etcd_opt = optarg; break;
		case 'h': usage(stdout); return KV_EXIT_OK;
		default: usage(stderr); return KV_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmove console: unexpected argument '%s'\n", argv[optind]);
		return KV_EXIT_USAGE;
	}
	if (clusterconf_resolve(etcd_opt, &etcd, &err)) {
		fprintf(stderr, "kvmove console: %s\n", err.msg);
		return KV_EXIT_USAGE;
	}
	o.etcd = etcd.endpoints;
	if (console_serve(&o, &err)) {
		fprintf(stderr, "kvmove console: %s\n", err.msg);
		return KV_EXIT_FAIL;
	}
	return KV_EXIT_OK;
}
