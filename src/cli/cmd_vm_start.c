/*
 * cmd_vm_start.c - kvmove vm start NAME [--on NODE]: choose a node
 * (placement.h, or check --on NODE by the same rules), then one
 * transaction: if the VM has no owner and its definition is the one read,
 * owner = NODE and desired = "running".  The node's agent starts the VM
 * and reports in /kvmove/vms/NAME/status; we wait for that.
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/vmcpu.h"

/* How long a start waits for the agents to check a new VM's disks. */
#define REACH_WAIT_MS 10000

struct start_opts {
	struct ccli c;
	const char *name;
	const char *on;
	bool no_wait;
	unsigned timeout_ms;
};

static void usage(FILE *f)
{
	fputs("usage: kvmove vm start NAME [--on NODE] [--no-wait] [--timeout SEC]\n"
	      "\n"
	      "Run a defined VM.  Without --on the cluster picks the node that fits best\n"
	      "(docs/CLUSTER.md, \"Placement\"): up, not in maintenance, enough free RAM\n"
	      "and vCPUs, its agent reaches the VM's disks; least loaded wins.  Then the\n"
	      "node's agent starts it; this waits until the agent reports it running.\n"
	      "When no node fits, each node is listed with its reason.\n"
	      "\n"
	      "  -o, --on NODE            run it on NODE (refused, with the reason, if NODE\n"
	      "                           does not fit)\n"
	      "  -n, --no-wait            return once the decision is recorded\n"
	      "  -t, --timeout SEC        give up waiting after SEC seconds (default 60)\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status:\n"
	      "  0  running (--no-wait: the node is chosen and told)\n"
	      "  1  failed to start (the agent's reason is shown), or not running yet\n"
	      "     when the timeout expired (the cluster still wants it running:\n"
	      "     'kvmove vm stop NAME' to give up)\n"
	      "  2  usage error\n"
	      "  3  refused: no such VM, it runs already, no node fits (or NODE does not)\n"
	      CCLI_HELP_EXIT_ETCD, f);
}

static int parse(int argc, char **argv, struct start_opts *o)
{
	static const struct option longopts[] = {
		{ "on", required_argument, NULL, 'o' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":o:nt:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&o->c, ch, optarg))
			continue;
		switch (ch) {
		case 'o':
			if (ccli_check_node_name(&o->c, optarg))
				return KV_EXIT_USAGE;
			o->on = optarg;
			break;
		case 'n':
			o->no_wait = true;
			break;
		case 't':
			if (ccli_parse_timeout(&o->c, optarg, false, &o->timeout_ms))
				return KV_EXIT_USAGE;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			return ccli_bad_opt(&o->c, ch, argv);
		}
	}
	return ccli_vm_name_arg(&o->c, argc, argv, &o->name);
}

static json_t *verdicts_json(const struct nodeset *ns, const struct place_verdict *v)
{
	json_t *a = json_array();

	for (size_t i = 0; i < ns->n; i++)
		json_array_append_new(a, v[i].fits ?
			json_pack("{s:s, s:b, s:f}", "node", ns->v[i].name, "fits", 1,
				  "score", v[i].score) :
			json_pack("{s:s, s:b, s:s}", "node", ns->v[i].name, "fits", 0,
				  "reason", v[i].reason));
	return a;
}

/* Would the choice succeed once the agents that have not checked the VM's
 * disks yet say they reach them? */
static bool reach_pending(const struct nodeset *ns, const struct place_vm *vm, int on)
{
	struct place_node *p = calloc(ns->n ? ns->n : 1, sizeof(*p));
	struct place_verdict *v = calloc(ns->n ? ns->n : 1, sizeof(*v));
	bool any = false, r = false;

	if (p && v) {
		memcpy(p, ns->place, ns->n * sizeof(*p));
		for (size_t i = 0; i < ns->n; i++)
			if (p[i].reach == -1 && !ns->v[i].problem[0]) {
				p[i].reach = 1;
				any = true;
			}
		if (any) {
			int best = place_choose(vm, p, ns->n, v);

			r = on >= 0 ? v[on].fits : best >= 0;
		}
	}
	free(p);
	free(v);
	return r;
}

static void refuse(const struct start_opts *o, const struct vm_spec *spec,
		   const struct nodeset *ns, const struct place_verdict *v, int on)
{
	char sz[32];

	ccli_fmt_bytes(sz, sizeof(sz), spec->mem);
	if (o->c.json) {
		json_t *j = json_pack("{s:s, s:b, s:o}", "name", o->name, "refused", 1,
				      "nodes", verdicts_json(ns, v));

		ccli_print_json(j);
		json_decref(j);
	}
	if (on >= 0) {
		ccli_msg(&o->c, "%s (%s, %u vCPU%s) cannot start on %s: %s", o->name, sz,
			 spec->cpus, spec->cpus == 1 ? "" : "s", o->on, v[on].reason);
		return;
	}
	if (!ns->n) {
		ccli_msg(&o->c, "no node has joined the cluster yet: start 'kvmove agent' on the "
			 "hosts (kvmove node list)");
		return;
	}
	ccli_msg(&o->c, "no node can run %s (%s, %u vCPU%s):", o->name, sz, spec->cpus,
		 spec->cpus == 1 ? "" : "s");
	for (size_t i = 0; i < ns->n; i++)
		fprintf(stderr, "  %s: %s\n", ns->v[i].name, v[i].reason);
}

/*
 * Choose and record.  0 with node set and *rev the transaction's revision;
 * an exit status otherwise.  -1: try again (something changed meanwhile).
 */
static int decide(struct start_opts *o, double reach_deadline, char *node, size_t len,
		  int64_t *rev, json_t **placement)
{
	struct ccli *c = &o->c;
	struct vm_keys k = { 0 };
	struct vm_spec spec = { 0 };
	struct nodeset ns = { 0 };
	struct place_verdict *v = NULL;
	struct place_vm vm = { 0 };
	struct vmcpu_need need;
	struct kv_err err;
	char owner[80], spec_key[64], owner_key[64], *text = NULL;
	int status, idx, on = -1, rc;
	bool ok = false;

	if ((status = ccli_vm_keys(c, o->name, &k)))
		return status;
	status = KV_EXIT_REFUSED;
	if (!k.spec) {
		ccli_msg(c, "no VM named %s (kvmove vm create)", o->name);
		goto out;
	}
	if (k.owner) {
		ccli_owner(&k, owner, sizeof(owner));
		if (!strncmp(owner, "free:", 5))
			ccli_msg(c, "%s is being handed over between nodes (a migration)", o->name);
		else
			ccli_msg(c, "%s runs already, on %s (kvmove vm show %s)", o->name, owner,
				 o->name);
		goto out;
	}
	if (vm_spec_parse(o->name, k.spec->value, k.spec->vlen, &spec, &err)) {
		ccli_msg(c, "%s; fix it or delete the VM", err.msg);
		status = KV_EXIT_FAIL;
		goto out;
	}
	if ((status = ccli_nodes(c, o->name, &ns)))
		goto out;
	v = calloc(ns.n ? ns.n : 1, sizeof(*v));
	if (!v) {
		ccli_msg(c, "out of memory");
		status = KV_EXIT_FAIL;
		goto out;
	}
	vm.name = o->name;
	vm.mem = spec.mem;
	vm.cpus = spec.cpus;
	/* a fresh boot: any CPU vendor; a named model's features */
	vmcpu_need(&spec.cpu, NULL, &need);
	vmcpu_place(&need, &vm);
	if (o->on) {
		on = nodeset_find(&ns, o->on);
		if (on < 0) {
			ccli_msg(c, "no node named %s (kvmove node list)", o->on);
			status = KV_EXIT_REFUSED;
			goto out;
		}
	}
	idx = nodeset_choose(&ns, &vm, v);
	if (on >= 0)
		idx = v[on].fits ? on : -1;
	if (idx < 0) {
		if (ccli_now() < reach_deadline && reach_pending(&ns, &vm, on)) {
			status = -2;	/* wait for the agents' verdicts */
			goto out;
		}
		refuse(o, &spec, &ns, v, on);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	snprintf(node, len, "%s", ns.v[idx].name);
	*placement = verdicts_json(&ns, v);

	json_object_set_new(spec.j, "desired", json_string("running"));
	text = json_dumps(spec.j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text) {
		ccli_msg(c, "out of memory");
		status = KV_EXIT_FAIL;
		goto out;
	}
	snprintf(spec_key, sizeof(spec_key), "/kvmove/vms/%s/spec", o->name);
	snprintf(owner_key, sizeof(owner_key), "/kvmove/vms/%s/owner", o->name);
	{
		const struct store_cmp cmps[] = {
			{ .key = owner_key, .target = STORE_CMP_CREATE, .result = STORE_EQ },
			{ .key = spec_key, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = k.spec->mod_rev },
		};
		const struct store_op ops[] = {
			{ .type = STORE_OP_PUT, .key = owner_key, .value = node },
			{ .type = STORE_OP_PUT, .key = spec_key, .value = text },
		};

		rc = store_txn(c->st, cmps, 2, ops, 2, NULL, 0, &ok, rev, &err);
	}
	if (rc)
		status = ccli_store_fail(c, rc, &err, rc == -ECONNREFUSED ? NULL :
					 "it may or may not have been started: kvmove vm show");
	else
		status = ok ? KV_EXIT_OK : -1;
out:
	if (status && *placement) {
		json_decref(*placement);
		*placement = NULL;
	}
	free(text);
	free(v);
	nodeset_free(&ns);
	vm_spec_free(&spec);
	ccli_vm_keys_free(&k);
	return status;
}

/* Follow the VM's status until it runs on node, fails, or time is up. */
static int follow(struct start_opts *o, const char *node, int64_t rev, json_t **final)
{
	struct ccli *c = &o->c;
	double deadline = ccli_now() + o->timeout_ms / 1000.0;
	int64_t from = rev + 1;
	char prefix[64], owner[80], last[64] = "", st_s[64], why[192];
	bool tty = !c->json && isatty(STDERR_FILENO);
	int status;

	snprintf(prefix, sizeof(prefix), "/kvmove/vms/%s/", o->name);
	for (;;) {
		struct vm_keys k;
		json_t *s = NULL;
		bool changed;

		if ((status = ccli_vm_keys(c, o->name, &k)))
			return status;
		ccli_owner(&k, owner, sizeof(owner));
		/* a status older than our decision is an earlier run's */
		if (k.status && k.status->mod_rev > rev)
			cluster_json_object("status", k.status->value, k.status->vlen, &s, NULL);
		ccli_vm_keys_free(&k);
		cluster_sanitize(st_s, sizeof(st_s), cluster_jstr(s, "state"));
		cluster_sanitize(why, sizeof(why), cluster_jstr(s, "reason"));
		if (s && !strcmp(cluster_jstr(s, "node"), node)) {
			if (!strcmp(st_s, "running")) {
				*final = s;
				return KV_EXIT_OK;
			}
			if (!strcmp(st_s, "failed")) {
				ccli_msg(c, "%s failed to start on %s: %s", o->name, node,
					 why[0] ? why : "no reason given");
				*final = s;
				return KV_EXIT_FAIL;
			}
			if (tty && strcmp(st_s, last)) {
				fprintf(stderr, "%s: %s on %s\n", o->name, st_s, node);
				snprintf(last, sizeof(last), "%s", st_s);
			}
		}
		json_decref(s);
		if (strcmp(owner, node) && strncmp(owner, "free:", 5)) {
			if (owner[0])
				ccli_msg(c, "%s was moved to %s before it ran on %s", o->name, owner,
					 node);
			else
				ccli_msg(c, "%s was released (kvmove vm stop?) before it ran on %s",
					 o->name, node);
			return KV_EXIT_FAIL;
		}
		if (ccli_now() >= deadline) {
			ccli_msg(c, "%s does not run on %s yet after %u s; the cluster still wants "
				 "it there (kvmove vm show %s; kvmove node show %s; kvmove vm stop "
				 "%s gives up)", o->name, node, o->timeout_ms / 1000, o->name, node,
				 o->name);
			return KV_EXIT_FAIL;
		}
		status = ccli_wait(c, prefix, &from, (unsigned)((deadline - ccli_now()) * 1000) + 1,
				   &changed, "the start is recorded; kvmove vm show tells how it goes");
		if (status)
			return status;
	}
}

int cmd_vm_start(int argc, char **argv)
{
	struct start_opts o = { .c = { .verb = "vm start" }, .timeout_ms = 60000 };
	double reach_deadline;
	json_t *placement = NULL, *final = NULL;
	char node[CLUSTER_NODE_NAME_MAX + 1] = "", reach_prefix[64];
	int64_t rev = 0;
	int status, attempt = 0;
	bool said = false;

	status = parse(argc, argv, &o);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if ((status = ccli_open(&o.c)))
		return status;
	reach_deadline = ccli_now() + REACH_WAIT_MS / 1000.0;
	snprintf(reach_prefix, sizeof(reach_prefix), "/kvmove/reach/%s/", o.name);
	for (;;) {
		int64_t wrev = 0;
		bool changed;
		struct store_list l;
		struct kv_err err;

		status = decide(&o, reach_deadline, node, sizeof(node), &rev, &placement);
		if (status == -1 && ++attempt < 5)
			continue;	/* the definition changed meanwhile */
		if (status == -1) {
			ccli_msg(&o.c, "%s keeps changing under us; try again", o.name);
			status = KV_EXIT_FAIL;
		}
		if (status != -2)
			break;
		/* the agents have not all checked the VM's disks: wait for them */
		if (!o.c.json && isatty(STDERR_FILENO) && !said) {
			said = true;
			fprintf(stderr, "%s: waiting for the nodes to check its disks...\n", o.name);
		}
		int rc = store_list(o.c.st, reach_prefix, &l, &err);

		if (rc) {
			status = ccli_store_fail(&o.c, rc, &err, NULL);
			break;
		}
		wrev = l.rev + 1;
		store_list_free(&l);
		status = ccli_wait(&o.c, reach_prefix, &wrev,
				   (unsigned)((reach_deadline - ccli_now()) * 1000) + 1, &changed,
				   NULL);
		if (status)
			break;
	}
	if (status)
		goto out;
	if (!o.no_wait) {
		if (!o.c.json && isatty(STDERR_FILENO))
			fprintf(stderr, "%s: starting on %s...\n", o.name, node);
		status = follow(&o, node, rev, &final);
	}
	if (o.c.json) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:O?, s:O}", "name", o.name, "node", node,
				      "state", final ? cluster_jstr(final, "state") : "starting",
				      "status", final, "placement", placement);

		ccli_print_json(j);
		json_decref(j);
	} else if (status == KV_EXIT_OK && o.no_wait) {
		printf("%s: starting on %s\n", o.name, node);
	} else if (status == KV_EXIT_OK) {
		json_int_t pid = cluster_jint(final, "pid", 0);

		if (pid > 0)
			printf("%s: running on %s (pid %lld)\n", o.name, node, (long long)pid);
		else
			printf("%s: running on %s\n", o.name, node);
	}
out:
	json_decref(final);
	json_decref(placement);
	ccli_close(&o.c);
	return status;
}
