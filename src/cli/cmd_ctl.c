/*
 * cmd_ctl.c - kvmove status|pause|resume|stop: talk to a running VMM
 * through its control socket.
 *
 *   status -> query-vm + query-status
 *   pause  -> stop     (then query-status)
 *   resume -> cont     (then query-status)
 *   stop   -> quit     (then wait for the VMM process to exit)
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "control/control.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum verb { V_STATUS, V_PAUSE, V_RESUME, V_STOP };

static const struct {
	const char *name;
	const char *summary;
} verbs[] = {
	[V_STATUS] = { "status", "show a VM's state, size and uptime" },
	[V_PAUSE] = { "pause", "pause a VM's vCPUs (QMP stop)" },
	[V_RESUME] = { "resume", "resume a paused VM (QMP cont)" },
	[V_STOP] = { "stop", "shut a VM down and wait for its VMM to exit (QMP quit)" },
};

struct ctl_opts {
	enum verb verb;
	const char *control;
	bool json;
	int timeout_ms;
};

static void usage(FILE *f, enum verb v)
{
	fprintf(f,
		"usage: kvmove %s --control SOCKET [--json] [--timeout SEC]\n"
		"\n"
		"%s.\n"
		"\n"
		"  -c, --control SOCKET  the VMM's control socket (kvmove run --control)\n"
		"  -j, --json            print the result as one JSON object\n"
		"  -t, --timeout SEC     give up waiting for the VMM after SEC seconds\n"
		"                        (default 10)\n"
		"  -h, --help            show this help\n"
		"\n"
		"exit status: 0 ok, 1 the VMM refused or the command failed,\n"
		"             2 usage error, 5 cannot reach the control socket\n",
		verbs[v].name, verbs[v].summary);
}

static int parse(int argc, char **argv, struct ctl_opts *o)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *vname = verbs[o->verb].name;
	int ch;

	optind = 0;	/* full re-initialisation (glibc) */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:jt:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->control = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 't': {
			char *end;
			double sec;

			errno = 0;
			sec = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(sec) ||
			    sec <= 0 || sec > 86400) {
				fprintf(stderr,
					"kvmove %s: --timeout: '%s' is not a number of seconds in (0, 86400]\n",
					vname, optarg);
				return -1;
			}
			o->timeout_ms = (int)(sec * 1000);
			if (o->timeout_ms < 1)
				o->timeout_ms = 1;
			break;
		}
		case 'h':
			usage(stdout, o->verb);
			return 1;
		case ':':
			fprintf(stderr, "kvmove %s: option '%s' needs an argument\n",
				vname, argv[optind - 1]);
			return -1;
		default:
			fprintf(stderr, "kvmove %s: unknown option '%s'\n", vname,
				argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmove %s: unexpected argument '%s'\n", vname,
			argv[optind]);
		return -1;
	}
	if (!o->control) {
		fprintf(stderr, "kvmove %s: --control SOCKET is required\n", vname);
		return -1;
	}
	return 0;
}

/* Exit status for a failed execute: the VMM said no (1) or was unreachable (5). */
static int fail(const struct ctl_opts *o, const char *what, int rc,
		const struct kv_err *err)
{
	if (rc == -EREMOTEIO) {
		fprintf(stderr, "kvmove %s: %s: %s\n", verbs[o->verb].name, what,
			err->msg);
		return KV_EXIT_FAIL;
	}
	fprintf(stderr, "kvmove %s: %s\n", verbs[o->verb].name, err->msg);
	return KV_EXIT_UNREACHABLE;
}

/* query-vm + query-status merged into one object (*out, new reference). */
static int query(struct ctl_client *c, const struct ctl_opts *o, json_t **out)
{
	struct kv_err err;
	json_t *vm = NULL, *st = NULL;
	int rc;

	*out = NULL;
	rc = ctl_client_execute(c, "query-vm", NULL, &vm, NULL, &err);
	if (rc < 0)
		return fail(o, "query-vm", rc, &err);
	rc = ctl_client_execute(c, "query-status", NULL, &st, NULL, &err);
	if (rc < 0) {
		json_decref(vm);
		return fail(o, "query-status", rc, &err);
	}
	if (!json_is_object(vm) || !json_is_object(st)) {
		json_decref(vm);
		json_decref(st);
		fprintf(stderr, "kvmove %s: the VMM sent a malformed status\n",
			verbs[o->verb].name);
		return KV_EXIT_FAIL;
	}
	json_object_update(vm, st);
	json_decref(st);
	*out = vm;
	return KV_EXIT_OK;
}

static void print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s) {
		printf("%s\n", s);
		free(s);
	}
}

static const char *vm_name(json_t *info, const struct ctl_opts *o)
{
	const char *name = json_string_value(json_object_get(info, "name"));

	return name && *name ? name : o->control;
}

static void print_status(json_t *info, const struct ctl_opts *o, bool full)
{
	const char *status = json_string_value(json_object_get(info, "status"));
	json_int_t cpus = json_integer_value(json_object_get(info, "cpus"));
	json_int_t mem = json_integer_value(json_object_get(info, "mem"));
	json_int_t up = json_integer_value(json_object_get(info, "uptime-ms"));
	const char *backend = json_string_value(json_object_get(info, "mem-backend"));

	printf("%s: %s", vm_name(info, o), status ? status : "unknown");
	if (full) {
		printf(", %lld vCPU%s", (long long)cpus, cpus == 1 ? "" : "s");
		if (mem % (1024 * 1024) == 0)
			printf(", %lld MiB", (long long)(mem / (1024 * 1024)));
		else
			printf(", %.1f MiB", (double)mem / (1024 * 1024));
		if (backend && strcmp(backend, "memfd"))	/* only when not the default */
			printf(" (%s)", backend);
		printf(", up %.1f s", (double)up / 1000);
	}
	printf("\n");
}

static int run(const struct ctl_opts *o)
{
	static const char *const qmp[] = {
		[V_PAUSE] = "stop", [V_RESUME] = "cont", [V_STOP] = "quit",
	};
	struct ctl_client *c;
	struct kv_err err;
	json_t *info = NULL, *ret = NULL;
	int rc, status;

	rc = ctl_client_connect(&c, o->control, o->timeout_ms, &err);
	if (rc < 0) {
		fprintf(stderr, "kvmove %s: cannot reach the VMM: %s\n",
			verbs[o->verb].name, err.msg);
		return KV_EXIT_UNREACHABLE;
	}

	if (o->verb == V_STATUS) {
		status = query(c, o, &info);
		if (status == KV_EXIT_OK) {
			if (o->json)
				print_json(info);
			else
				print_status(info, o, true);
		}
		goto out;
	}

	/* The name, for the human message. */
	status = query(c, o, &info);
	if (status != KV_EXIT_OK)
		goto out;

	rc = ctl_client_execute(c, qmp[o->verb], NULL, &ret, NULL, &err);
	if (o->verb == V_STOP && rc == -ECONNRESET)
		rc = 0;		/* gone before the reply: what we asked for */
	if (rc < 0) {
		status = fail(o, qmp[o->verb], rc, &err);
		goto out;
	}

	if (o->verb == V_STOP) {
		rc = ctl_client_wait_closed(c, o->timeout_ms, &err);
		if (rc < 0) {
			fprintf(stderr, "kvmove stop: %s\n", err.msg);
			status = KV_EXIT_FAIL;
			goto out;
		}
		if (o->json && ret)
			print_json(ret);
		else if (o->json)
			printf("{}\n");
		else
			printf("%s: stopped\n", vm_name(info, o));
		goto out;
	}

	/* pause/resume: report the state the VM is in now. */
	json_decref(info);
	info = NULL;
	status = query(c, o, &info);
	if (status == KV_EXIT_OK) {
		if (o->json)
			print_json(info);
		else
			print_status(info, o, false);
	}
out:
	json_decref(ret);
	json_decref(info);
	ctl_client_close(c);
	return status;
}

int cmd_ctl(int argc, char **argv)
{
	struct ctl_opts o = { .timeout_ms = 10000 };
	int rc;

	if (argc < 1)
		return KV_EXIT_USAGE;
	if (!strcmp(argv[0], "status"))
		o.verb = V_STATUS;
	else if (!strcmp(argv[0], "pause"))
		o.verb = V_PAUSE;
	else if (!strcmp(argv[0], "resume"))
		o.verb = V_RESUME;
	else if (!strcmp(argv[0], "stop"))
		o.verb = V_STOP;
	else {
		fprintf(stderr, "kvmove: unknown verb '%s'\n", argv[0]);
		return KV_EXIT_USAGE;
	}
	rc = parse(argc, argv, &o);
	if (rc > 0)
		return KV_EXIT_OK;
	if (rc < 0) {
		fprintf(stderr, "Try 'kvmove %s --help'.\n", verbs[o.verb].name);
		return KV_EXIT_USAGE;
	}
	return run(&o);
}
