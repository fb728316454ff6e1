/*
 * cmd_migrate.c - kvmove migrate: live-migrate a VM to a destination VMM
 * (one started with 'kvmove run --incoming tcp:HOST:PORT').
 *
 *   migrate {"uri": "tcp:HOST:PORT", downtime-ms, bandwidth, max-rounds,
 *            policy, check-only}, then follow it (migwatch.c).
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/migwatch.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/policy.h"

static void usage(FILE *f)
{
	fputs("usage: kvmove migrate --control SOCKET --to tcp:HOST:PORT [options]\n"
	      "       kvmove migrate --control SOCKET --to unix:PATH    (same host)\n"
	      "\n"
	      "Live-migrate the VM served on SOCKET to a destination VMM waiting with\n"
	      "'kvmove run --incoming tcp:HOST:PORT'.  The VM keeps running during the\n"
	      "copy; it pauses only for the final switchover.  On a terminal a progress\n"
	      "line shows the share of RAM sent, bytes sent, throughput, the guest's\n"
	      "dirty rate, the round and the expected downtime; at the end a summary.\n"
	      "Ctrl-C cancels the migration (the VM keeps running on the source) and\n"
	      "waits until the VMM confirms; once the VM is being handed over it is\n"
	      "too late to cancel and the migration finishes.\n"
	      "\n"
	      "Same host (unix:PATH, e.g. to upgrade kvmove under a running VM): a new\n"
	      "VMM started with 'kvmove run --incoming unix:PATH' takes the VM over; guest\n"
	      "RAM and TAPs are handed over as file descriptors, no page is copied, and\n"
	      "the pause lasts as long as moving the vCPU and device state.\n"
	      "\n"
	      "  -c, --control SOCKET   the source VMM's control socket\n"
	      "  -T, --to ADDR          the destination's --incoming address: tcp:HOST:PORT,\n"
	      "                         or unix:PATH for a VMM on this host\n"
	      "  -d, --downtime-ms N    downtime target (1..3600000; default 100): switch\n"
	      "                         over once the rest can be sent within it\n"
	      "  -b, --bandwidth MIB/S  limit the migration's bandwidth (0 = unlimited,\n"
	      "                         the default)\n"
	      "  -n, --channels N       send RAM over N connections in parallel (1..16;\n"
	      "                         default: half the host's CPUs, 2 to 4; the\n"
	      "                         destination may grant fewer, an older one 1)\n"
	      "  -z, --compress MODE    compress guest pages on the way: auto (the\n"
	      "                         default: lz4 or zstd only where that was measured\n"
	      "                         to be faster than sending them raw, e.g. a slow\n"
	      "                         link and compressible memory), lz4, zstd, or off\n"
	      "  -r, --max-rounds N     pre-copy rounds before the policy decides\n"
	      "                         (1..10000; default 30)\n"
	      "  -p, --policy P         when the guest dirties memory faster than it can\n"
	      "                         be sent: auto-converge (throttle the vCPUs; the\n"
	      "                         default), force (switch over anyway: longer\n"
	      "                         downtime), fail (give up; the VM stays here),\n"
	      "                         postcopy (resume the VM on the destination after\n"
	      "                         the first pass and fetch the pages it lacks on\n"
	      "                         demand: short downtime, the guest slows while\n"
	      "                         pages come) or auto (chosen from a sample of the\n"
	      "                         guest's dirty rate and the link: see --check-only)\n"
	      "  -P, --postcopy-after N hybrid: N pre-copy rounds, then post-copy if they\n"
	      "                         did not converge (implies --policy postcopy)\n"
	      "  -k, --check-only       only run the destination's preflight checks, probe\n"
	      "                         the link, sample the guest's dirty rate for a\n"
	      "                         second and predict each policy's total time,\n"
	      "                         rounds and downtime (x-prediction with --json)\n"
	      "  -K, --keep-source      once the VM runs on the destination, leave the\n"
	      "                         source VMM waiting with the VM stopped (QMP\n"
	      "                         postmigrate) instead of quitting it\n"
	      "  -R, --resume           reconnect a post-copy that lost its connection\n"
	      "                         (status postcopy-paused) to the destination at\n"
	      "                         --to, and follow it to the end\n"
	      "  -q, --quick            quick migration (needs --via): the VM pauses, is\n"
	      "                         saved and restored; downtime grows with its RAM\n"
	      "  -V, --via DIR          quick migration through shared storage instead:\n"
	      "                         after the preflight, pause the VM, save it into\n"
	      "                         DIR (which the destination must see at the same\n"
	      "                         path) and let the destination restore it there\n"
	      "  -j, --json             NDJSON on stdout: every MIGRATION and\n"
	      "                         MIGRATION_PASS event as received, a\n"
	      "                         {\"event\": \"progress\", \"data\": <query-migrate>}\n"
	      "                         line about 5 times a second, and last the result\n"
	      "                         (query-migrate's fields: status, total-time,\n"
	      "                         downtime, ram, x-error-id, error-desc, ...)\n"
	      "  -t, --timeout SEC      give up waiting for the VMM's control socket\n"
	      "                         after SEC seconds (connect, each answer; default\n"
	      "                         10).  The migration itself is not limited.\n"
	      "  -h, --help             show this help\n"
	      "\n"
	      "exit status:\n"
	      "  0  done (--check-only: the preflight passed)\n"
	      "  1  the migration failed; the VM keeps running on the source\n"
	      "  2  usage error\n"
	      "  3  the destination refused the VM at preflight (also with\n"
	      "     --check-only); nothing was done\n"
	      "  4  cancelled (Ctrl-C or migrate_cancel); the VM runs on the source\n"
	      "  5  the destination or the source's control socket is unreachable\n"
	      "  6  indeterminate: the link broke after the hand-over began and no lock\n"
	      "     can tell who runs the VM (or the source VMM vanished); the message\n"
	      "     says what to check and do\n"
	      "  7  post-copy paused: the VM runs on the destination, which still needs\n"
	      "     pages this source holds; both wait.  Resume with --resume --to ADDR\n", f);
}

static int parse_uint(const char *opt, const char *s, long long lo, long long hi,
		      long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "kvmove migrate: %s must be an integer in %lld..%lld, not '%s'\n",
			opt, lo, hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

/* tcp:HOST:PORT with a port in 1..65535, or unix:PATH. */
static bool valid_uri(const char *uri)
{
	const char *colon;
	char *end;
	long port;

	if (!strncmp(uri, "unix:", 5))
		return uri[5] != 0;
	if (strncmp(uri, "tcp:", 4) || !(colon = strrchr(uri + 4, ':')) || colon == uri + 4)
		return false;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	return !errno && end != colon + 1 && !*end && port >= 1 && port <= 65535;
}

int cmd_migrate(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "to", required_argument, NULL, 'T' },
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "max-rounds", required_argument, NULL, 'r' },
		{ "channels", required_argument, NULL, 'n' },
		{ "compress", required_argument, NULL, 'z' },
		{ "policy", required_argument, NULL, 'p' },
		{ "check-only", no_argument, NULL, 'k' },
		{ "postcopy-after", required_argument, NULL, 'P' },
		{ "resume", no_argument, NULL, 'R' },
		{ "keep-source", no_argument, NULL, 'K' },
		{ "via", required_argument, NULL, 'V' },
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct migwatch_opts o = { .kind = MIGWATCH_LIVE, .verb = "migrate",
				   .timeout_ms = 10000 };
	json_t *args = json_object();
	long long v;
	bool quick = false, resume = false;
	int ch, code = KV_EXIT_USAGE;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:T:d:b:n:z:r:p:P:RKkV:qjt:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.control = optarg;
			break;
		case 'T':
			o.target = optarg;
			break;
		case 'd':
			if (parse_uint("--downtime-ms", optarg, 1, 3600000, &v))
				goto usage;
			json_object_set_new(args, "downtime-ms", json_integer(v));
			break;
		case 'b':
			if (parse_uint("--bandwidth", optarg, 0, 1000000, &v))
				goto usage;
			json_object_set_new(args, "bandwidth", json_integer(v));
			break;
		case 'n':
			if (parse_uint("--channels", optarg, 1, 16, &v))
				goto usage;
			json_object_set_new(args, "channels", json_integer(v));
			break;
		case 'z':
			if (migwatch_compress_arg("migrate", optarg, args))
				goto usage;
			break;
		case 'r':
			if (parse_uint("--max-rounds", optarg, 1, 10000, &v))
				goto usage;
			json_object_set_new(args, "max-rounds", json_integer(v));
			break;
		case 'p': {
			enum mig_policy pol;
			if (mig_policy_parse(optarg, &pol)) {
				fprintf(stderr, "kvmove migrate: --policy must be fail, force, "
					"auto-converge, postcopy or auto, not '%s'\n", optarg);
				goto usage;
			}
			json_object_set_new(args, "policy", json_string(optarg));
			break;
		}
		case 'P':
			if (parse_uint("--postcopy-after", optarg, 1, 10000, &v))
				goto usage;
			json_object_set_new(args, "postcopy-after", json_integer(v));
			break;
		case 'R':
			resume = true;
			break;
		case 'K':
			o.keep_source = true;
			break;
		case 'k':
			json_object_set_new(args, "check-only", json_true());
			break;
		case 'V': {
			char dir[PATH_MAX];
			/* the VMM runs in its own directory: an absolute path */
			if (!realpath(optarg, dir)) {
				fprintf(stderr, "kvmove migrate: --via %s: %s\n", optarg,
					strerror(errno));
				goto usage;
			}
			json_object_set_new(args, "via", json_string(dir));
			o.via = true;
			break;
		}
		case 'q':
			quick = true;	/* spelled out for readers; --via is what selects it */
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			o.timeout_ms = migwatch_parse_timeout(optarg);
			if (o.timeout_ms < 0) {
				fprintf(stderr, "kvmove migrate: --timeout: '%s' is not a number "
					"of seconds in (0, 86400]\n", optarg);
				goto usage;
			}
			break;
		case 'h':
			usage(stdout);
			code = KV_EXIT_OK;
			goto out;
		case ':':
			fprintf(stderr, "kvmove migrate: option '%s' needs an argument\n",
				argv[optind - 1]);
			goto usage;
		default:
			fprintf(stderr, "kvmove migrate: unknown option '%s'\n", argv[optind - 1]);
			goto usage;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmove migrate: unexpected argument '%s'\n", argv[optind]);
		goto usage;
	}
	if (!o.control || !o.target) {
		fprintf(stderr, "kvmove migrate: --control SOCKET and --to tcp:HOST:PORT (or "
			"unix:PATH) are required\n");
		goto usage;
	}
	if (quick && !o.via) {
		fprintf(stderr, "kvmove migrate: --quick needs --via DIR (a shared directory "
			"both hosts see)\n");
		goto usage;
	}
	if (!valid_uri(o.target)) {
		fprintf(stderr, "kvmove migrate: --to must be tcp:HOST:PORT or unix:PATH, not '%s' "
			"(to save to a file, use 'kvmove save')\n", o.target);
		goto usage;
	}
	if (resume && json_object_size(args)) {
		fprintf(stderr, "kvmove migrate: --resume takes only --control and --to (the "
			"migration keeps its settings)\n");
		goto usage;
	}
	if (resume)
		json_object_set_new(args, "resume", json_true());
	json_object_set_new(args, "uri", json_string(o.target));
	o.args = args;
	code = migwatch_run(&o);
	goto out;
usage:
	fprintf(stderr, "Try 'kvmove migrate --help'.\n");
out:
	json_decref(args);
	return code;
}
