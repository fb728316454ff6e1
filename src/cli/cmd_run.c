/*
 * cmd_run.c - kvmove run: one VMM process for one VM.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cluster/fence.h"

#include "core/cpumodel.h"
#include "core/mem.h"
#include "migration/config.h"
#include "vmm/vmm.h"

_Static_assert(KV_EXIT_FENCED == FENCE_EXIT_STATUS, "run's exit status when fenced");

static void usage(FILE *f)
{
	fputs("usage: kvmove run --kernel FILE [options]\n"
	      "\n"
	      "Start one VM in this process and run it until it shuts down.\n"
	      "\n"
	      "  --name NAME          VM name (default: vm)\n"
	      "  --mem SIZE           guest RAM, e.g. 512M, 4G (16M .. 1T; default 512M).\n"
	      "                       RAM above 3 GiB is placed above 4 GiB (PCI hole).\n"
	      "  --mem-backend memfd|anon|hugetlb\n"
	      "                       what holds guest RAM on this host (an incoming or\n"
	      "                       restored VM too: each host decides its own):\n"
	      "                       memfd (default; can be handed to a new kvmove on\n"
	      "                       the same host), anon (transparent huge pages where\n"
	      "                       the host's THP setting allows them; no same-host\n"
	      "                       hand-over) or hugetlb (2 MiB pages the host reserved\n"
	      "                       in /proc/sys/vm/nr_hugepages; no post-copy).\n"
	      "                       docs/MEMORY.md\n"
	      "  --cpus N             vCPUs (1..64; default 1)\n"
	      "  --cpu host|MODEL[,+FEAT,-FEAT...]\n"
	      "                       the processor the guest sees: host (default: all\n"
	      "                       this host's KVM offers) or a named model that can\n"
	      "                       move between CPU generations: x86-64, x86-64-v2,\n"
	      "                       compat, x86-64-v3, x86-64-v4 (kvmove cpu-models;\n"
	      "                       docs/CPU-MODELS.md).  It travels with the VM\n"
	      "  --x-hide-host-feature FEAT[,FEAT...]\n"
	      "                       testing: behave as if this host lacked these CPU\n"
	      "                       features (for the guest and for preflight)\n"
	      "  --kernel FILE        kernel to boot, by its type: an ELF through the PVH\n"
	      "                       entry point (XEN_ELFNOTE_PHYS32_ENTRY: the test\n"
	      "                       guest, or Linux's vmlinux built with CONFIG_PVH),\n"
	      "                       or a Linux bzImage through its 64-bit boot protocol\n"
	      "  --initrd FILE        initial ramdisk (PVH module 0, or the bzImage's)\n"
	      "  --append CMDLINE     kernel command line (up to 4095 bytes)\n"
	      "  --console PATH|stdio|none\n"
	      "                       where the serial port (COM1, 0x3f8) writes; stdio\n"
	      "                       also feeds standard input to it (default: stdio)\n"
	      "  --control SOCKET     serve the QMP-compatible control socket here\n"
	      "  --paused             start with the vCPUs paused (resume with\n"
	      "                       'kvmove resume' or QMP 'cont')\n"
	      "  --disk PATH[,readonly]\n"
	      "                       a virtio-blk disk backed by a raw image (repeatable).\n"
	      "                       The image is locked: two VMMs can never write it.\n"
	      "  --net tap=IFNAME[,mac=52:54:00:xx:xx:xx]\n"
	      "                       a virtio-net NIC on an existing or new TAP interface\n"
	      "                       (repeatable); the MAC defaults to one derived from\n"
	      "                       the VM name and the NIC's position\n"
	      "  --lock PATH          the VM's lock file on shared storage: only the\n"
	      "                       process holding it may run the VM; migration\n"
	      "                       hands it over (use the same file on both hosts)\n"
	      "  --etcd URL[,URL...]  the VM belongs to a kvmove cluster with this etcd\n"
	      "  --node NAME          ... and this host is its node NAME: the VM runs only\n"
	      "                       while its owner key in etcd names this node, and a\n"
	      "                       migration hands it over by compare-and-swap on that\n"
	      "                       key (docs/CLUSTER.md).  The agent passes these\n"
	      "  --fence-lease ID     ... and the VM runs only while this etcd lease (its\n"
	      "                       agent's) lives: unconfirmed for about its TTL, the\n"
	      "                       VMM ends the VM and exits with status 8, so that the\n"
	      "                       cluster may boot it elsewhere (failover)\n"
	      "  --tls-psk FILE       migrate over TLS 1.3 with this pre-shared key file\n"
	      "                       (QEMU's keys.psk format; 'kvmove keygen' makes one)\n"
	      "  --tls-creds DIR      migrate over TLS 1.3 with x509 credentials in DIR\n"
	      "                       (ca-cert.pem, server-cert.pem/-key.pem for taking\n"
	      "                       VMs, client-cert.pem/-key.pem for sending them;\n"
	      "                       docs/TLS.md); both ends authenticate\n"
	      "  --tls-peer NAME      talk only to this peer: its PSK identity or its\n"
	      "                       certificate's CN (a destination: the source it takes\n"
	      "                       a VM from; a source: the destination it sends to)\n"
	      "  --insecure           migrate in plaintext without authentication (for\n"
	      "                       benchmarks; a destination needs one of these three)\n"
	      "  --exit-after-migration\n"
	      "                       end this VMM once its VM runs on a destination.\n"
	      "                       By default it stays, the VM stopped (QMP status\n"
	      "                       postmigrate), until 'quit': a manager reads the\n"
	      "                       final stats (kvmove migrate quits it for you)\n"
	      "\n"
	      "Migration destination (instead of --kernel):\n"
	      "  --incoming tcp:HOST:PORT | unix:PATH | defer\n"
	      "                       wait for a live migration on this address (defer:\n"
	      "                       the address comes later, by QMP migrate-incoming;\n"
	      "                       unix:PATH: a same-host hand-over from a VMM of this\n"
	      "                       user or root, no TLS needed, RAM and TAPs come as\n"
	      "                       file descriptors); name,\n"
	      "                       memory, vCPUs and CPU model come from the source.\n"
	      "                       Needs --expect.  A connection that is not the\n"
	      "                       expected VM, or says nothing for 5 s, is refused\n"
	      "                       and the destination keeps waiting\n"
	      "  --expect NAME        the VM this destination takes (its --name at the\n"
	      "                       source); any other is refused\n"
	      "  --allow-disk PATH    a disk image the incoming VM may use, or a directory\n"
	      "                       its disks may live in (repeatable; symlinks cannot\n"
	      "                       lead out of it).  Without it: no disks at all\n"
	      "  --allow-tap IFNAME   a TAP interface the incoming VM may use (repeatable).\n"
	      "                       Without it: no NICs\n"
	      "  --via DIR            take quick migrations through this shared directory\n"
	      "                       (the image is DIR/NAME.kvmstate; the source never\n"
	      "                       chooses the path)\n"
	      "  --restore FILE       run a VM saved with 'kvmove save' (quick migration);\n"
	      "                       the file is removed once the VM runs (a second\n"
	      "                       restore would run it against disks it already\n"
	      "                       changed), unless --keep-image.  Its disks and TAPs\n"
	      "                       need --allow-disk / --allow-tap like a migration's\n"
	      "  --keep-image         keep the --restore file (you restore the disks too)\n"
	      "  --max-mem SIZE       refuse incoming VMs larger than this (default:\n"
	      "                       what the host has available)\n"
	      "  --max-vcpus N        refuse incoming VMs with more vCPUs (default: as\n"
	      "                       many as the host has CPUs)\n"
	      "  --no-sandbox         do not confine this VMM (by default an incoming or\n"
	      "                       restoring VMM drops its capabilities and runs under\n"
	      "                       a seccomp filter before it reads the VM: no exec,\n"
	      "                       fork, ptrace, mount, ...).  For debugging only\n"
	      "  -h, --help           this text\n"
	      "\n"
	      "Exit status: 0 when the VM was shut down from the host (quit, SIGINT,\n"
	      "SIGTERM) or migrated away, the guest's value when it wrote to the\n"
	      "debug-exit port 0xf4, 1 on a guest triple fault, a KVM error or a failed\n"
	      "incoming migration (the reason is printed), 2 on a usage error, 3 when an\n"
	      "incoming VM was refused at preflight.\n", f);
}

static unsigned count_type(const struct vmm_options *o, const char *type)
{
	unsigned n = 0;

	for (unsigned i = 0; i < o->ndevs; i++)
		n += !strcmp(o->devs[i].type, type);
	return n;
}

/* A MAC for NICs without one: locally administered (52:54:00 like QEMU's),
 * stable for a VM name and NIC position. */
static void default_macs(struct vmm_options *o)
{
	static const uint8_t zero[6];
	unsigned idx = 0;

	for (unsigned i = 0; i < o->ndevs; i++) {
		struct dev_spec *d = &o->devs[i];
		uint32_t h = 2166136261u;

		if (strcmp(d->type, "virtio-net"))
			continue;
		idx++;
		if (memcmp(d->mac, zero, 6))
			continue;
		for (const char *p = o->name; *p; p++)
			h = (h ^ (uint8_t)*p) * 16777619u;
		h = (h ^ idx) * 16777619u;
		d->mac[0] = 0x52; d->mac[1] = 0x54; d->mac[2] = 0x00;
		d->mac[3] = (uint8_t)(h >> 16); d->mac[4] = (uint8_t)(h >> 8); d->mac[5] = (uint8_t)h;
	}
}

/* PATH[,readonly] */
static int parse_disk(const char *arg, struct vmm_options *o, struct kv_err *err)
{
	struct dev_spec *d = &o->devs[o->ndevs];
	const char *comma = strchr(arg, ',');
	size_t len = comma ? (size_t)(comma - arg) : strlen(arg);

	memset(d, 0, sizeof(*d));
	if (!len || len >= sizeof(d->path))
		return kv_errf(err, EINVAL, "the path must be 1..%zu bytes", sizeof(d->path) - 1);
	memcpy(d->path, arg, len);
	if (comma && strcmp(comma + 1, "readonly"))
		return kv_errf(err, EINVAL, "unknown option '%s' (only 'readonly')", comma + 1);
	d->readonly = comma != NULL;
	strcpy(d->type, "virtio-blk");
	snprintf(d->name, sizeof(d->name), "blk%u", count_type(o, "virtio-blk"));
	o->ndevs++;
	return 0;
}

/* tap=IFNAME[,mac=MAC] */
static int parse_net(const char *arg, struct vmm_options *o, struct kv_err *err)
{
	struct dev_spec *d = &o->devs[o->ndevs];
	char buf[128], *tok, *save = NULL;
	unsigned idx = count_type(o, "virtio-net");

	memset(d, 0, sizeof(*d));
	if (strlen(arg) >= sizeof(buf))
		return kv_errf(err, EINVAL, "too long");
	strcpy(buf, arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "tap=", 4)) {
			if (!tok[4] || strlen(tok + 4) >= sizeof(d->tap))
				return kv_errf(err, EINVAL, "TAP names are 1..%zu bytes",
					       sizeof(d->tap) - 1);
			strcpy(d->tap, tok + 4);
		} else if (!strncmp(tok, "mac=", 4)) {
			if (mig_parse_mac(tok + 4, d->mac))
				return kv_errf(err, EINVAL, "bad MAC '%s' (unicast xx:xx:xx:xx:xx:xx)",
					       tok + 4);
		} else {
			return kv_errf(err, EINVAL, "unknown option '%s' (tap=, mac=)", tok);
		}
	}
	if (!d->tap[0])
		return kv_errf(err, EINVAL, "tap=IFNAME is required");
	/* no mac= leaves all zeros: default_macs() derives one once --name is known */
	strcpy(d->type, "virtio-net");
	snprintf(d->name, sizeof(d->name), "net%u", idx);
	o->ndevs++;
	return 0;
}

int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "mem", required_argument, NULL, 'm' },
		{ "mem-backend", required_argument, NULL, 'B' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "cpu", required_argument, NULL, 'u' },
		{ "x-hide-host-feature", required_argument, NULL, 'H' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "console", required_argument, NULL, 'C' },
		{ "control", required_argument, NULL, 'S' },
		{ "paused", no_argument, NULL, 'P' },
		{ "lock", required_argument, NULL, 'L' },
		{ "etcd", required_argument, NULL, 'e' },
		{ "node", required_argument, NULL, 'o' },
		{ "fence-lease", required_argument, NULL, 'F' },
		{ "incoming", required_argument, NULL, 'I' },
		{ "restore", required_argument, NULL, 'R' },
		{ "max-mem", required_argument, NULL, 'X' },
		{ "max-vcpus", required_argument, NULL, 'V' },
		{ "expect", required_argument, NULL, 'E' },
		{ "allow-disk", required_argument, NULL, 'A' },
		{ "allow-tap", required_argument, NULL, 'T' },
		{ "via", required_argument, NULL, 'v' },
		{ "keep-image", no_argument, NULL, 'K' },
		{ "no-sandbox", no_argument, NULL, 'U' },
		{ "exit-after-migration", no_argument, NULL, 'Q' },
		{ "tls-psk", required_argument, NULL, 'y' },
		{ "tls-creds", required_argument, NULL, 'z' },
		{ "tls-peer", required_argument, NULL, 'w' },
		{ "insecure", no_argument, NULL, 'W' },
		{ "disk", required_argument, NULL, 'D' },
		{ "net", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmm_options o = { .name = "vm", .mem_size = 512ULL << 20, .ncpus = 1,
				 .console = "stdio" };
	struct kv_err err;
	struct vmm *vmm;
	char *end;
	int c, status;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o.name = optarg; break;
		case 'm':
			if (mem_parse_size(optarg, &o.mem_size, &err)) {
				fprintf(stderr, "kvmove run: --mem: %s\n", err.msg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'B':
			if (mem_backend_parse(optarg, &o.mem_backend, &err)) {
				fprintf(stderr, "kvmove run: --mem-backend: %s\n", err.msg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'c': {
			unsigned long n = strtoul(optarg, &end, 10);
			if (*optarg == '\0' || *end || n < 1 || n > 64) {
				fprintf(stderr, "kvmove run: --cpus must be 1..64\n");
				return KV_EXIT_USAGE;
			}
			o.ncpus = (unsigned)n;
			break;
		}
		case 'u': {
			struct cpu_model m;
			if (cpu_model_parse(optarg, &m, &err)) {
				fprintf(stderr, "kvmove run: --cpu: %s\n", err.msg);
				return KV_EXIT_USAGE;
			}
			o.cpu = optarg;
			break;
		}
		case 'H':
			if (cpu_feats_parse_list(optarg, &o.hide, &err)) {
				fprintf(stderr, "kvmove run: --x-hide-host-feature: %s\n", err.msg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'k': o.kernel = optarg; break;
		case 'i': o.initrd = optarg; break;
		case 'a': o.append = optarg; break;
		case 'C': o.console = optarg; break;
		case 'S': o.control = optarg; break;
		case 'P': o.start_paused = true; break;
		case 'L': o.lock = optarg; break;
		case 'e': o.etcd = optarg; break;
		case 'o': o.node = optarg; break;
		case 'F':
			if (fence_lease_parse(optarg, &o.fence_lease)) {
				fprintf(stderr, "kvmove run: --fence-lease must be an etcd lease ID "
					"(decimal or 0x hex), not '%s'\n", optarg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'I': o.incoming = optarg; break;
		case 'R': o.restore = optarg; break;
		case 'D':
		case 'N':
			if (o.ndevs >= VMM_MAX_USER_DEVICES) {
				fprintf(stderr, "kvmove run: at most %d disks and NICs\n",
					VMM_MAX_USER_DEVICES);
				return KV_EXIT_USAGE;
			}
			if ((c == 'D' ? parse_disk(optarg, &o, &err) : parse_net(optarg, &o, &err))) {
				fprintf(stderr, "kvmove run: --%s %s: %s\n", c == 'D' ? "disk" : "net",
					optarg, err.msg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'X':
			if (mem_parse_size(optarg, &o.max_mem, &err)) {
				fprintf(stderr, "kvmove run: --max-mem: %s\n", err.msg);
				return KV_EXIT_USAGE;
			}
			break;
		case 'V': {
			unsigned long n = strtoul(optarg, &end, 10);
			if (*optarg == '\0' || *end || n < 1 || n > 64) {
				fprintf(stderr, "kvmove run: --max-vcpus must be 1..64\n");
				return KV_EXIT_USAGE;
			}
			o.max_vcpus = (unsigned)n;
			break;
		}
		case 'E':
			if (!mig_name_ok(optarg)) {
				fprintf(stderr, "kvmove run: --expect: '%s' is not a VM name "
					"([A-Za-z0-9._-], 1..63, not starting with '.' or '-')\n",
					optarg);
				return KV_EXIT_USAGE;
			}
			o.allow.expect = optarg;
			break;
		case 'A':
		case 'T': {
			const char **list = c == 'A' ? o.allow.disks : o.allow.taps;
			unsigned *n = c == 'A' ? &o.allow.ndisks : &o.allow.ntaps;
			if (*n >= MIG_ALLOW_MAX) {
				fprintf(stderr, "kvmove run: at most %d --allow-%s\n", MIG_ALLOW_MAX,
					c == 'A' ? "disk" : "tap");
				return KV_EXIT_USAGE;
			}
			if (c == 'A' && optarg[0] != '/') {
				fprintf(stderr, "kvmove run: --allow-disk needs an absolute path, not "
					"'%s'\n", optarg);
				return KV_EXIT_USAGE;
			}
			list[(*n)++] = optarg;
			break;
		}
		case 'v':
			if (optarg[0] != '/') {
				fprintf(stderr, "kvmove run: --via needs an absolute path\n");
				return KV_EXIT_USAGE;
			}
			o.allow.via = optarg;
			break;
		case 'K': o.keep_image = true; break;
		case 'U': o.no_sandbox = true; break;
		case 'Q': o.exit_after_migration = true; break;
		case 'y': o.tls_psk = optarg; break;
		case 'z': o.tls_creds = optarg; break;
		case 'w': o.tls_peer = optarg; break;
		case 'W': o.insecure = true; break;
		case 'h': usage(stdout); return KV_EXIT_OK;
		default: usage(stderr); return KV_EXIT_USAGE;
		}
	}
	default_macs(&o);
	if (optind < argc) {
		fprintf(stderr, "kvmove run: unexpected argument '%s'\n", argv[optind]);
		return KV_EXIT_USAGE;
	}
	if (!!o.kernel + !!o.incoming + !!o.restore != 1) {
		fprintf(stderr, "kvmove run: give exactly one of --kernel, --incoming, --restore\n");
		return KV_EXIT_USAGE;
	}
	if (!mig_name_ok(o.name)) {
		fprintf(stderr, "kvmove run: --name '%s': use 1..63 of [A-Za-z0-9._-], not "
			"starting with '.' or '-' (the name also names files)\n", o.name);
		return KV_EXIT_USAGE;
	}
	if (!!o.tls_psk + !!o.tls_creds + o.insecure > 1) {
		fprintf(stderr, "kvmove run: give one of --tls-psk, --tls-creds, --insecure\n");
		return KV_EXIT_USAGE;
	}
	/* unix:PATH is this host: the peer's uid is checked, nothing leaves */
	if (o.incoming && strncmp(o.incoming, "unix:", 5) && !o.tls_psk && !o.tls_creds &&
	    !o.insecure) {
		fprintf(stderr, "kvmove run: --incoming needs credentials: --tls-psk FILE (make one "
			"with 'kvmove keygen') or --tls-creds DIR (x509, docs/TLS.md); --insecure "
			"takes any peer in plaintext (benchmarks only)\n");
		return KV_EXIT_USAGE;
	}
	if (o.insecure)
		fprintf(stderr, "kvmove run: WARNING: --insecure: migrations of this VMM are not "
			"encrypted and its peer is not authenticated\n");
	if (!!o.etcd != !!o.node) {
		fprintf(stderr, "kvmove run: --etcd and --node go together (a cluster VM: "
			"its owner key names the node that may run it)\n");
		return KV_EXIT_USAGE;
	}
	if (o.fence_lease && !o.etcd) {
		fprintf(stderr, "kvmove run: --fence-lease needs --etcd and --node (the lease is "
			"in that cluster's etcd)\n");
		return KV_EXIT_USAGE;
	}
	if (o.incoming && !o.allow.expect) {
		fprintf(stderr, "kvmove run: --incoming needs --expect NAME: the VM this "
			"destination takes (a destination never runs whatever VM connects)\n");
		return KV_EXIT_USAGE;
	}
	if ((o.incoming || o.restore) && o.cpu) {
		fprintf(stderr, "kvmove run: --cpu is for a VM this VMM boots; an incoming or "
			"restored VM keeps the CPU model it was started with\n");
		return KV_EXIT_USAGE;
	}
	if (!o.incoming && !o.restore && (o.allow.expect || o.allow.ndisks || o.allow.ntaps ||
					  o.allow.via || o.keep_image || o.max_vcpus ||
					  o.no_sandbox)) {
		fprintf(stderr, "kvmove run: --expect, --allow-disk, --allow-tap, --via, "
			"--keep-image, --max-vcpus and --no-sandbox are for --incoming or "
			"--restore\n");
		return KV_EXIT_USAGE;
	}

	if (vmm_create(&vmm, &o, &err)) {
		fprintf(stderr, "kvmove run: %s\n", err.msg);
		return KV_EXIT_FAIL;
	}
	status = vmm_run(vmm);
	vmm_destroy(vmm);
	return status;
}
