/*
 * cmd_save.c - kvmove save: quick migration, step 1.  Pause the VM, write
 * its whole state (RAM, vCPUs, devices) to FILE, and end the source VMM.
 * Step 2, on any host that sees FILE: 'kvmove run --restore FILE'.
 *
 *   migrate {"uri": "file:/absolute/FILE"}, then follow it (migwatch.c).
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/migwatch.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fputs("usage: kvmove save --control SOCKET FILE [--compress MODE] [--json] [--timeout SEC]\n"
	      "\n"
	      "Quick migration, step 1: pause the VM served on SOCKET, write all of its\n"
	      "state to FILE (through FILE.tmp, renamed once complete and synced; an\n"
	      "existing FILE is replaced), release its --lock and end its VMM.  The VM\n"
	      "stays stopped until step 2, on this or any host that sees FILE:\n"
	      "'kvmove run --restore FILE --console ... --control ...'.  The downtime\n"
	      "grows with the VM's RAM; live migration ('kvmove migrate') avoids it.\n"
	      "Ctrl-C cancels the save; the VM then runs on.\n"
	      "\n"
	      "  -c, --control SOCKET  the VMM's control socket\n"
	      "  -z, --compress MODE   compress the pages in FILE: auto (the default: lz4\n"
	      "                        or zstd only where measured faster than writing\n"
	      "                        them raw, e.g. shared storage on a slow link),\n"
	      "                        lz4, zstd (smaller files), or off\n"
	      "  -j, --json            NDJSON on stdout: MIGRATION events, progress lines\n"
	      "                        and last the result (query-migrate's fields)\n"
	      "  -t, --timeout SEC     give up waiting for the VMM's control socket after\n"
	      "                        SEC seconds (connect, each answer; default 10)\n"
	      "  -h, --help            show this help\n"
	      "\n"
	      "exit status: 0 saved (the VMM has exited), 1 the save failed and the VM\n"
	      "keeps running, 2 usage error, 4 cancelled (the VM keeps running), 5 the\n"
	      "control socket cannot be reached\n", f);
}

int cmd_save(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "compress", required_argument, NULL, 'z' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct migwatch_opts o = { .kind = MIGWATCH_SAVE, .verb = "save",
				   .timeout_ms = 10000 };
	char path[PATH_MAX + 8], cwd[PATH_MAX];
	const char *file, *compress = NULL;
	json_t *args;
	int ch, code;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:jz:t:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.control = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 'z':
			compress = optarg;
			break;
		case 't':
			o.timeout_ms = migwatch_parse_timeout(optarg);
			if (o.timeout_ms < 0) {
				fprintf(stderr, "kvmove save: --timeout: '%s' is not a number of "
					"seconds in (0, 86400]\n", optarg);
				goto usage;
			}
			break;
		case 'h':
			usage(stdout);
			return KV_EXIT_OK;
		case ':':
			fprintf(stderr, "kvmove save: option '%s' needs an argument\n",
				argv[optind - 1]);
			goto usage;
		default:
			fprintf(stderr, "kvmove save: unknown option '%s'\n", argv[optind - 1]);
			goto usage;
		}
	}
	if (!o.control || optind != argc - 1 || !*argv[optind]) {
		fprintf(stderr, "kvmove save: give --control SOCKET and one FILE\n");
		goto usage;
	}
	file = argv[optind];
	/* The VMM runs in its own directory: hand it an absolute path. */
	if (file[0] == '/') {
		snprintf(path, sizeof(path), "file:%s", file);
	} else {
		if (!getcwd(cwd, sizeof(cwd))) {
			fprintf(stderr, "kvmove save: getcwd: %s\n", strerror(errno));
			return KV_EXIT_FAIL;
		}
		if (snprintf(path, sizeof(path), "file:%s/%s", cwd, file) >= (int)sizeof(path)) {
			fprintf(stderr, "kvmove save: path too long\n");
			goto usage;
		}
	}
	if (strlen(path) >= 512) {	/* struct mig_params' uri */
		fprintf(stderr, "kvmove save: the path must be shorter than 507 bytes\n");
		goto usage;
	}
	args = json_pack("{s:s}", "uri", path);
	if (compress && migwatch_compress_arg("save", compress, args)) {
		json_decref(args);
		goto usage;
	}
	o.args = args;
	o.target = path + 5;
	code = migwatch_run(&o);
	json_decref(args);
	return code;
usage:
	fprintf(stderr, "Try 'kvmove save --help'.\n");
	return KV_EXIT_USAGE;
}
