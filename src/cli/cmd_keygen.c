/*
 * cmd_keygen.c - kvmove keygen: write a new pre-shared key file for TLS
 * between kvmove hosts (docs/TLS.md), in QEMU's tls-creds-psk format.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "state/channel_tls.h"

static void usage(FILE *f)
{
	fputs("usage: kvmove keygen [--identity NAME] [--force] FILE\n"
	      "\n"
	      "Write a new pre-shared key for TLS between kvmove hosts to FILE: one line\n"
	      "'NAME:KEY', KEY being 32 random bytes from the kernel in 64 hex digits\n"
	      "(QEMU's tls-creds-psk format), readable by its owner only (mode 0600).\n"
	      "Both ends of a migration need the line: the source sends NAME and proves\n"
	      "the key; the destination looks NAME up among the lines of its own file\n"
	      "(several sources: concatenate their files).  Copy it over a channel you\n"
	      "trust (scp), never through the migration network in the clear.\n"
	      "\n"
	      "  -i, --identity NAME  the name the key is known by (default: this host's\n"
	      "                       name); 1 to 128 printable characters without spaces\n"
	      "                       or ':'\n"
	      "  -f, --force          replace FILE if it exists (atomically: peers holding\n"
	      "                       the old key are refused from then on)\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "exit status: 0 written, 1 failed (FILE exists, or cannot be written),\n"
	      "2 usage error\n", f);
}

int cmd_keygen(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "identity", required_argument, NULL, 'i' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char host[TLS_ID_MAX + 1] = "";
	const char *identity = NULL;
	struct kv_err err;
	bool force = false;
	int ch;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":i:fh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			identity = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			usage(stdout);
			return KV_EXIT_OK;
		case ':':
			fprintf(stderr, "kvmove keygen: %s needs a value\n", argv[optind - 1]);
			goto usage;
		default:
			fprintf(stderr, "kvmove keygen: unknown option '%s'\n", argv[optind - 1]);
			goto usage;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "kvmove keygen: %s\n", optind == argc ? "which FILE?" :
			"one FILE only");
		goto usage;
	}
	if (!identity) {
		/* the host's name tells a destination's sources apart */
		if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
			snprintf(host, sizeof(host), "kvmove");
		identity = host;
	}
	if (tls_psk_keygen(argv[optind], identity, force, &err)) {
		fprintf(stderr, "kvmove keygen: %s\n", err.msg);
		return KV_EXIT_FAIL;
	}
	printf("kvmove keygen: wrote a key for '%s' to %s\n", identity, argv[optind]);
	return KV_EXIT_OK;
usage:
	usage(stderr);
	return KV_EXIT_USAGE;
}
