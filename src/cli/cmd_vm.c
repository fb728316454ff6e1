/*
 * cmd_vm.c - kvmove vm: the cluster's VMs (docs/CLUSTER.md).  This file
 * dispatches and has create, stop and delete; start is cmd_vm_start.c,
 * migrate cmd_vm_migrate.c, list and show cmd_vm_list.c, set cmd_vm_set.c.
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpumodel.h"
#include "core/mem.h"
#include "migration/config.h"

static void usage_vm(FILE *f)
{
	fputs("usage: kvmove vm SUBVERB [options]\n"
	      "\n"
	      "The cluster's VMs (docs/CLUSTER.md):\n"
	      "  create NAME --mem SIZE --cpus N --kernel FILE [...]  define a VM\n"
	      "  set NAME --cpu MODEL     change a stopped VM's definition\n"
	      "  start NAME [--on NODE]   run it on the best node (or NODE)\n"
	      "  stop NAME                stop it\n"
	      "  delete NAME              forget a stopped VM\n"
	      "  list                     every VM, where it runs\n"
	      "  show NAME                a VM's definition, state and migrations\n"
	      "  migrate NAME [--to NODE] live-migrate it to another node\n"
	      "\n"
	      "Every subverb takes --etcd, --json and --help.\n"
	      "exit status: 0 done, 1 failed, 2 usage error, 3 refused, 4 cancelled,\n"
	      "5 etcd unreachable, 6 indeterminate (see each subverb's --help)\n", f);
}

/* ---- vm create ---- */

static void usage_create(FILE *f)
{
	fputs("usage: kvmove vm create NAME --mem SIZE --cpus N --kernel FILE [options]\n"
	      "\n"
	      "Define a VM in the cluster (stopped; 'kvmove vm start NAME' runs it).  NAME:\n"
	      "1 to 32 lowercase letters, digits and '-', not starting with '-'.  Files\n"
	      "are paths on the nodes (shared storage): absolute, checked by each node's\n"
	      "agent, not here.\n"
	      "\n"
	      "  -m, --mem SIZE           guest RAM, e.g. 512M, 4G (16M .. 1T)\n"
	      "  -c, --cpus N             vCPUs (1..64)\n"
	      "  -k, --kernel FILE        the kernel (ELF with a PVH note, or bzImage)\n"
	      "  -i, --initrd FILE        initial ramdisk\n"
	      "  -a, --append CMDLINE     kernel command line (up to 4095 bytes)\n"
	      "  -d, --disk PATH[,readonly]\n"
	      "                           a virtio-blk disk, a raw image (repeatable, up\n"
	      "                           to 16; PATH up to 255 bytes)\n"
	      "  -n, --net bridge=BRIDGE[,mac=52:54:00:xx:xx:xx]\n"
	      "                           a virtio-net NIC on each node's BRIDGE (the agent\n"
	      "                           makes a TAP there and attaches it; repeatable, up\n"
	      "                           to 4).  The MAC defaults to one derived from the\n"
	      "                           VM's name, the same on every node\n"
	      "  -r, --restart POLICY     when its VMM ends on its own: never (the default:\n"
	      "                           reported, the VM stops), on-failure (a crash or\n"
	      "                           an error exit: booted again on the same node),\n"
	      "                           always (also after the guest shut down); at most\n"
	      "                           3 restarts in 10 minutes.  With on-failure or\n"
	      "                           always the VM is highly available: when its node\n"
	      "                           dies it boots on another (failover), and its VMM\n"
	      "                           stops it if its node loses the cluster (fencing)\n"
	      "  -p, --priority high|medium|low\n"
	      "                           failover order: a dead node's VMs boot elsewhere\n"
	      "                           high first (default: medium)\n"
	      "  -u, --cpu MODEL[,+FEAT,-FEAT...]\n"
	      "                           the CPU its guest is given: host (the default:\n"
	      "                           everything its node's KVM offers; it then moves\n"
	      "                           only to nodes with all of it) or a named model\n"
	      "                           (x86-64, x86-64-v2, compat, x86-64-v3, x86-64-v4;\n"
	      "                           kvmove cpu-models lists them), placed only on\n"
	      "                           nodes that offer its features, and free to move\n"
	      "                           between them.  'kvmove cluster cpu-baseline' says\n"
	      "                           which model every node runs.  Changed only while\n"
	      "                           the VM is off (kvmove vm set)\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status:\n"
	      "  0  created\n"
	      "  1  failed\n"
	      "  2  usage error\n"
	      "  3  refused: a VM of that name exists\n"
	      CCLI_HELP_EXIT_ETCD, f);
}

/* bridge=BRIDGE[,mac=MAC] */
static int add_net(struct ccli *c, json_t *nets, const char *arg)
{
	char buf[128], *save = NULL, *tok;
	const char *bridge = NULL, *mac = NULL;
	uint8_t m[6];
	json_t *n;

	if (strlen(arg) >= sizeof(buf)) {
		ccli_msg(c, "--net: too long");
		return KV_EXIT_USAGE;
	}
	snprintf(buf, sizeof(buf), "%s", arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "bridge=", 7))
			bridge = tok + 7;
		else if (!strncmp(tok, "mac=", 4))
			mac = tok + 4;
		else {
			ccli_msg(c, "--net %s: unknown option '%s' (bridge=, mac=)", arg, tok);
			return KV_EXIT_USAGE;
		}
	}
	if (!cluster_ifname_ok(bridge)) {
		ccli_msg(c, "--net %s: bridge=NAME is required (an interface name, 1 to 15 of "
			 "letters, digits, '_', '.', '-')", arg);
		return KV_EXIT_USAGE;
	}
	if (mac && mig_parse_mac(mac, m)) {
		ccli_msg(c, "--net %s: '%s' is not a MAC address", arg, mac);
		return KV_EXIT_USAGE;
	}
	if (json_array_size(nets) >= CLUSTER_VM_NETS_MAX) {
		ccli_msg(c, "at most %d NICs", CLUSTER_VM_NETS_MAX);
		return KV_EXIT_USAGE;
	}
	n = json_pack("{s:s}", "bridge", bridge);
	if (mac)
		json_object_set_new(n, "mac", json_string(mac));
	json_array_append_new(nets, n);
	return KV_EXIT_OK;
}

static int add_disk(struct ccli *c, json_t *disks, const char *arg)
{
	char path[CLUSTER_DISK_PATH_MAX + 1];
	const char *comma = strrchr(arg, ',');
	bool ro = comma && !strcmp(comma + 1, "readonly");
	size_t len = ro ? (size_t)(comma - arg) : strlen(arg);
	size_t i;
	json_t *d;

	if (comma && !ro && !strchr(comma + 1, '/')) {
		ccli_msg(c, "--disk %s: unknown option '%s' (only 'readonly')", arg, comma + 1);
		return KV_EXIT_USAGE;
	}
	if (len > CLUSTER_DISK_PATH_MAX) {
		ccli_msg(c, "--disk: the path is longer than %d bytes", CLUSTER_DISK_PATH_MAX);
		return KV_EXIT_USAGE;
	}
	memcpy(path, arg, len);
	path[len] = '\0';
	if (!cluster_path_ok(path, CLUSTER_DISK_PATH_MAX)) {
		ccli_msg(c, "--disk: '%s' is not an absolute path (the nodes resolve it, not "
			 "this directory)", path);
		return KV_EXIT_USAGE;
	}
	if (json_array_size(disks) >= CLUSTER_VM_DISKS_MAX) {
		ccli_msg(c, "at most %d disks", CLUSTER_VM_DISKS_MAX);
		return KV_EXIT_USAGE;
	}
	json_array_foreach(disks, i, d)
		if (!strcmp(cluster_jstr(d, "path"), path)) {
			ccli_msg(c, "--disk %s given twice", path);
			return KV_EXIT_USAGE;
		}
	json_array_append_new(disks, json_pack("{s:s, s:b}", "path", path, "readonly", ro));
	return KV_EXIT_OK;
}

static int file_opt(struct ccli *c, const char *opt, const char *arg, const char **out)
{
	if (!cluster_path_ok(arg, CLUSTER_FILE_PATH_MAX)) {
		ccli_msg(c, "--%s: '%s' is not an absolute path (the nodes resolve it, not this "
			 "directory)", opt, arg);
		return KV_EXIT_USAGE;
	}
	*out = arg;
	return KV_EXIT_OK;
}

static int vm_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },
		{ "restart", required_argument, NULL, 'r' },
		{ "priority", required_argument, NULL, 'p' },
		{ "cpu", required_argument, NULL, 'u' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ccli c = { .verb = "vm create" };
	enum vm_restart restart = VM_RESTART_NEVER;
	enum vm_priority prio = VM_PRIORITY_MEDIUM;
	const char *kernel = NULL, *initrd = NULL, *append = "", *name;
	struct cpu_model cpu;
	json_t *disks = json_array(), *nets = json_array(), *spec = NULL;
	uint64_t mem = 0;
	long cpus = 0;
	struct vm_keys k = { 0 };
	struct kv_err err;
	char key[64], owner_key[64], *text = NULL;
	bool ok = false;
	int ch, status = KV_EXIT_USAGE, rc;

	cpu_model_parse("host", &cpu, NULL);
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":m:c:k:i:a:d:n:r:p:u:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case 'm':
			if (mem_parse_size(optarg, &mem, &err)) {
				ccli_msg(&c, "--mem: %s", err.msg);
				goto out;
			}
			if (mem < CLUSTER_VM_MEM_MIN || mem > CLUSTER_VM_MEM_MAX) {
				ccli_msg(&c, "--mem must be 16M .. 1T, not %s", optarg);
				goto out;
			}
			break;
		case 'c': {
			char *end;

			errno = 0;
			cpus = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || cpus < 1 || cpus > CLUSTER_VM_CPUS_MAX) {
				ccli_msg(&c, "--cpus must be 1..%d, not '%s'", CLUSTER_VM_CPUS_MAX,
					 optarg);
				goto out;
			}
			break;
		}
		case 'k':
			if (file_opt(&c, "kernel", optarg, &kernel))
				goto out;
			break;
		case 'i':
			if (file_opt(&c, "initrd", optarg, &initrd))
				goto out;
			break;
		case 'a':
			append = optarg;
			if (strlen(append) > CLUSTER_APPEND_MAX) {
				ccli_msg(&c, "--append: longer than %d bytes", CLUSTER_APPEND_MAX);
				goto out;
			}
			break;
		case 'n':
			if (add_net(&c, nets, optarg))
				goto usage;
			break;
		case 'd':
			if (add_disk(&c, disks, optarg))
				goto out;
			break;
		case 'r':
			if (vm_restart_parse(optarg, &restart)) {
				ccli_msg(&c, "--restart must be never, on-failure or always, not '%s'",
					 optarg);
				goto out;
			}
			break;
		case 'p':
			if (vm_priority_parse(optarg, &prio)) {
				ccli_msg(&c, "--priority must be high, medium or low, not '%s'",
					 optarg);
				goto out;
			}
			break;
		case 'u':
			if (cpu_model_parse(optarg, &cpu, &err)) {
				ccli_msg(&c, "--cpu: %s", err.msg);
				goto out;
			}
			break;
		case 'h':
			usage_create(stdout);
			status = KV_EXIT_OK;
			goto out;
		default:
			status = ccli_bad_opt(&c, ch, argv);
			goto out;
		}
	}
	if ((status = ccli_vm_name_arg(&c, argc, argv, &name)))
		goto out;
	status = KV_EXIT_USAGE;
	if (!mem || !cpus || !kernel) {
		ccli_msg(&c, "--mem, --cpus and --kernel are required");
		goto usage;
	}
	spec = json_pack("{s:s, s:I, s:i, s:s, s:s?, s:s, s:O, s:O, s:s, s:I, s:s, s:s, s:s}",
			 "name", name, "mem", (json_int_t)mem, "cpus", (int)cpus, "kernel", kernel,
			 "initrd", initrd, "append", append, "disks", disks, "nets", nets,
			 "desired", "stopped", "created", (json_int_t)ccli_wall(), "restart",
			 vm_restart_name(restart), "priority", vm_priority_name(prio),
			 "cpu", cpu.spec);
	text = spec ? json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (!text) {
		ccli_msg(&c, "out of memory");
		status = KV_EXIT_FAIL;
		goto out;
	}

	if ((status = ccli_open(&c)) || (status = ccli_vm_keys(&c, name, &k)))
		goto out;
	if (k.spec || k.owner) {
		char owner[80];

		ccli_owner(&k, owner, sizeof(owner));
		if (k.spec)
			ccli_msg(&c, "a VM named %s exists already (kvmove vm show %s)", name, name);
		else
			ccli_msg(&c, "%s has no definition but an owner key naming '%s' (a VM "
				 "deleted by hand?): remove /kvmove/vms/%s/owner first", name,
				 owner, name);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	snprintf(key, sizeof(key), "/kvmove/vms/%s/spec", name);
	snprintf(owner_key, sizeof(owner_key), "/kvmove/vms/%s/owner", name);
	{
		const struct store_cmp cmps[] = {
			{ .key = key, .target = STORE_CMP_CREATE, .result = STORE_EQ, .num = 0 },
			{ .key = owner_key, .target = STORE_CMP_CREATE, .result = STORE_EQ },
		};
		const struct store_op put = { .type = STORE_OP_PUT, .key = key, .value = text };

		rc = store_txn(c.st, cmps, 2, &put, 1, NULL, 0, &ok, NULL, &err);
	}
	if (rc) {
		status = ccli_store_fail(&c, rc, &err, rc == -ECONNREFUSED ? NULL :
					 "it may or may not have been created: kvmove vm show");
		goto out;
	}
	if (!ok) {
		ccli_msg(&c, "a VM named %s was created meanwhile (kvmove vm show %s)", name, name);
		status = KV_EXIT_REFUSED;
		goto out;
	}
	if (c.json) {
		ccli_print_json(spec);
	} else {
		char sz[32];

		ccli_fmt_bytes(sz, sizeof(sz), mem);
		printf("%s: created (%s, %ld vCPU%s, %zu disk%s, CPU %s); start it with: kvmove "
		       "vm start %s\n", name, sz, cpus, cpus == 1 ? "" : "s",
		       json_array_size(disks), json_array_size(disks) == 1 ? "" : "s", cpu.spec,
		       name);
	}
	status = KV_EXIT_OK;
	goto out;
usage:
	fprintf(stderr, "Try 'kvmove vm create --help'.\n");
	status = KV_EXIT_USAGE;
out:
	free(text);
	json_decref(spec);
	json_decref(disks);
	json_decref(nets);
	ccli_vm_keys_free(&k);
	ccli_close(&c);
	return status;
}

/* ---- vm delete ---- */

static void usage_delete(FILE *f)
{
	fputs("usage: kvmove vm delete NAME\n"
	      "\n"
	      "Forget a VM: its definition and status (its disks stay where they are).\n"
	      "Refused while the VM runs: 'kvmove vm stop NAME' first.  Its past\n"
	      "migrations stay in 'kvmove migration list'.\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status:\n"
	      "  0  deleted\n"
	      "  1  failed\n"
	      "  2  usage error\n"
	      "  3  refused: no such VM, or it runs (it has an owner)\n"
	      CCLI_HELP_EXIT_ETCD, f);
}

static int vm_delete(int argc, char **argv)
{
	struct ccli c = { .verb = "vm delete" };
	struct vm_keys k = { 0 };
	struct kv_err err;
	const char *name = NULL;
	char key[64], owner_key[64], prefix[64], owner[80];
	bool ok = false;
	int status, rc;

	status = ccli_parse_common(&c, argc, argv, usage_delete);
	if (!status)
		status = ccli_vm_name_arg(&c, argc, argv, &name);
	if (status)
		return status < 0 ? KV_EXIT_OK : status;
	if ((status = ccli_open(&c)) || (status = ccli_vm_keys(&c, name, &k)))
		goto out;
	status = KV_EXIT_REFUSED;
	if (!k.l.n) {
		ccli_msg(&c, "no VM named %s (kvmove vm list)", name);
		goto out;
	}
	if (k.owner) {
		ccli_owner(&k, owner, sizeof(owner));
		ccli_msg(&c, "%s runs on %s: stop it first (kvmove vm stop %s)", name, owner, name);
		goto out;
	}
	snprintf(key, sizeof(key), "/kvmove/vms/%s/spec", name);
	snprintf(owner_key, sizeof(owner_key), "/kvmove/vms/%s/owner", name);
	{
		/* the definition goes only if nobody started the VM meanwhile; once
		 * it is gone, no start can succeed (start compares it too) */
		const struct store_cmp cmps[] = {
			{ .key = owner_key, .target = STORE_CMP_CREATE, .result = STORE_EQ },
			{ .key = key, .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = k.spec ? k.spec->mod_rev : 0 },
		};
		const struct store_op del = { .type = STORE_OP_DELETE, .key = key };

		rc = store_txn(c.st, cmps, 2, &del, 1, NULL, 0, &ok, NULL, &err);
	}
	if (rc) {
		status = ccli_store_fail(&c, rc, &err, NULL);
		goto out;
	}
	if (!ok) {
		ccli_msg(&c, "%s changed meanwhile (started, or redefined): nothing was deleted; "
			 "see kvmove vm show %s", name, name);
		goto out;
	}
	snprintf(prefix, sizeof(prefix), "/kvmove/vms/%s/", name);
	rc = store_delete_prefix(c.st, prefix, &err);
	if (!rc) {
		snprintf(prefix, sizeof(prefix), "/kvmove/reach/%s/", name);
		rc = store_delete_prefix(c.st, prefix, &err);
	}
	if (rc) {
		status = ccli_store_fail(&c, rc, &err, "its definition is deleted, some of its "
					 "other keys may be left (run vm delete again)");
		goto out;
	}
	if (c.json) {
		json_t *j = json_pack("{s:s, s:b}", "name", name, "deleted", 1);

		ccli_print_json(j);
		json_decref(j);
	} else
		printf("%s: deleted\n", name);
	status = KV_EXIT_OK;
out:
	ccli_vm_keys_free(&k);
	ccli_close(&c);
	return status;
}

/* ---- vm stop ---- */

static void usage_stop(FILE *f)
{
	fputs("usage: kvmove vm stop NAME [--no-wait] [--timeout SEC]\n"
	      "\n"
	      "Stop a VM: its desired state becomes \"stopped\"; the agent of the node it\n"
	      "runs on shuts its VMM down and releases the VM's owner key.  Waits until\n"
	      "the owner key is gone, unless --no-wait.\n"
	      "\n"
	      "  -n, --no-wait            return once the request is recorded\n"
	      "  -t, --timeout SEC        give up waiting after SEC seconds (default 60)\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status:\n"
	      "  0  stopped (or was not running; --no-wait: the request is recorded)\n"
	      "  1  failed, or still running when the timeout expired (the request\n"
	      "     stands: its agent stops it when it can)\n"
	      "  2  usage error\n"
	      "  3  refused: no such VM\n"
	      CCLI_HELP_EXIT_ETCD, f);
}

/* Put the spec with "desired" = want, unless the spec changed since read
 * (then read again, a few times). */
static int set_desired(struct ccli *c, const char *name, const char *want, int64_t *rev)
{
	char key[64];
	int status = KV_EXIT_FAIL;

	snprintf(key, sizeof(key), "/kvmove/vms/%s/spec", name);
	for (int attempt = 0; attempt < 5; attempt++) {
		struct store_kv kv;
		struct vm_spec spec;
		struct kv_err err;
		char *text;
		bool ok = false;
		int rc = store_get(c->st, key, &kv, NULL, &err);

		if (rc == -ENOENT) {
			ccli_msg(c, "no VM named %s (kvmove vm list)", name);
			return KV_EXIT_REFUSED;
		}
		if (rc)
			return ccli_store_fail(c, rc, &err, NULL);
		rc = vm_spec_parse(name, kv.value, kv.vlen, &spec, &err);
		if (rc) {
			ccli_msg(c, "%s; fix it, or delete the VM", err.msg);
			store_kv_free(&kv);
			return KV_EXIT_FAIL;
		}
		json_object_set_new(spec.j, "desired", json_string(want));
		text = json_dumps(spec.j, JSON_COMPACT | JSON_SORT_KEYS);
		vm_spec_free(&spec);
		if (!text) {
			store_kv_free(&kv);
			ccli_msg(c, "out of memory");
			return KV_EXIT_FAIL;
		}
		{
			const struct store_cmp cmp = { .key = key, .target = STORE_CMP_MOD,
						       .result = STORE_EQ, .num = kv.mod_rev };
			const struct store_op put = { .type = STORE_OP_PUT, .key = key,
						      .value = text };

			rc = store_txn(c->st, &cmp, 1, &put, 1, NULL, 0, &ok, rev, &err);
		}
		free(text);
		store_kv_free(&kv);
		if (rc)
			return ccli_store_fail(c, rc, &err, rc == -ECONNREFUSED ? NULL :
					       "the request may or may not be recorded");
		if (ok)
			return KV_EXIT_OK;
	}
	ccli_msg(c, "%s's definition keeps changing under us; try again", name);
	return status;
}

static int vm_stop(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no-wait", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ccli c = { .verb = "vm stop" };
	struct vm_keys k = { 0 };
	unsigned timeout_ms = 60000;
	bool no_wait = false;
	char prefix[64], owner[80] = "", was[80] = "";
	const char *name = NULL;
	int64_t rev = 0;
	double deadline;
	int ch, status;

	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":nt:e:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&c, ch, optarg))
			continue;
		if (ch == 'n')
			no_wait = true;
		else if (ch == 't') {
			if (ccli_parse_timeout(&c, optarg, false, &timeout_ms))
				return KV_EXIT_USAGE;
		} else if (ch == 'h') {
			usage_stop(stdout);
			return KV_EXIT_OK;
		} else
			return ccli_bad_opt(&c, ch, argv);
	}
	if (optind != argc - 1) {
		ccli_msg(&c, "%s", optind == argc ? "which VM? (NAME)" : "one NAME only");
		return KV_EXIT_USAGE;
	}
	name = argv[optind];
	if ((status = ccli_check_vm_name(&c, name)) || (status = ccli_open(&c)))
		return status;
	if ((status = set_desired(&c, name, "stopped", &rev)))
		goto out;
	deadline = ccli_now() + timeout_ms / 1000.0;
	snprintf(prefix, sizeof(prefix), "/kvmove/vms/%s/", name);
	for (;;) {
		bool changed;

		if ((status = ccli_vm_keys(&c, name, &k)))
			goto out;
		ccli_owner(&k, owner, sizeof(owner));
		ccli_vm_keys_free(&k);
		if (!owner[0])
			break;
		if (!was[0])
			snprintf(was, sizeof(was), "%s", owner);
		if (no_wait)
			break;
		if (ccli_now() >= deadline) {
			char nkey[96];
			struct store_kv nkv;
			struct kv_err nerr;
			bool down = false;

			snprintf(nkey, sizeof(nkey), "/kvmove/nodes/%s", owner);
			if (cluster_node_name_ok(owner)) {
				int nrc = store_get(c.st, nkey, &nkv, NULL, &nerr);

				if (nrc == 0)
					store_kv_free(&nkv);
				down = nrc == -ENOENT;
			}
			ccli_msg(&c, "%s still runs on %s after %u s; the request stands: its "
				 "agent stops it %s (kvmove node show %s)", name, owner,
				 timeout_ms / 1000, down ? "once it is back (the node is down)" :
				 "when it can", owner);
			status = KV_EXIT_FAIL;
			goto out;
		}
		status = ccli_wait(&c, prefix, &rev, (unsigned)((deadline - ccli_now()) * 1000) + 1,
				   &changed, "the stop request is recorded");
		if (status)
			goto out;
	}
	if (c.json) {
		json_t *j = json_pack("{s:s, s:s, s:s?, s:s?}", "name", name, "desired", "stopped",
				      "owner", owner[0] ? owner : NULL, "was", was[0] ? was : NULL);

		ccli_print_json(j);
		json_decref(j);
	} else if (owner[0])
		printf("%s: asked to stop (it runs on %s)\n", name, owner);
	else if (was[0])
		printf("%s: stopped (it ran on %s)\n", name, was);
	else
		printf("%s: stopped (it was not running)\n", name);
	status = KV_EXIT_OK;
out:
	ccli_close(&c);
	return status;
}

int cmd_vm(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} subs[] = {
		{ "create", vm_create }, { "start", cmd_vm_start }, { "stop", vm_stop },
		{ "delete", vm_delete }, { "list", cmd_vm_list }, { "show", cmd_vm_show },
		{ "migrate", cmd_vm_migrate }, { "set", cmd_vm_set },
	};

	if (argc < 2) {
		usage_vm(stderr);
		return KV_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage_vm(stdout);
		return KV_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (!strcmp(argv[1], subs[i].name))
			return subs[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "kvmove vm: unknown subverb '%s'\n\n", argv[1]);
	usage_vm(stderr);
	return KV_EXIT_USAGE;
}
