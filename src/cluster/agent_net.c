/*
 * agent_net.c - the NICs of the VMs on this node.  Each NIC is a persistent
 * TAP attached to the bridge the VM definition names.  The TAP's name comes
 * from the VM's name and the NIC's position, so it is the same on every
 * node: the device state a migration carries names it, and the destination
 * VMM may open exactly that TAP (--allow-tap), nothing else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster/agent_int.h"
#include "cluster/records.h"

#define IP_BIN "/sbin/ip"

void net_tap_name(const char *vm, unsigned idx, char buf[IF_NAMESIZE])
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (const char *p = vm; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(buf, IF_NAMESIZE, "kv%08x%u", h, idx % 10);
}

static int run_ip(char *const argv[], struct kv_err *err)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return kv_errf_sys(err, errno, "fork");
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
		}
		execv(IP_BIN, argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return kv_errf_sys(err, errno, "waitpid");
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return kv_errf(err, EIO, "'ip %s %s %s %s ...' failed (status %d)", argv[1], argv[2],
			       argv[3] ? argv[3] : "", argv[3] && argv[4] ? argv[4] : "",
			       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}

bool net_bridge_ok(const char *bridge)
{
	return cluster_ifname_ok(bridge) && if_nametoindex(bridge) != 0;
}

int net_ensure(struct agent *a, const char *vm, json_t *spec, struct kv_err *err)
{
	json_t *n;
	size_t i;

	json_array_foreach(json_object_get(spec, "nets"), i, n) {
		const char *br = json_string_value(json_object_get(n, "bridge"));
		char tap[IF_NAMESIZE];
		int r;

		if (!net_bridge_ok(br))
			return kv_errf(err, ENODEV, "VM %s: no bridge '%s' on %s", vm, br ? br : "",
				       a->o.name);
		net_tap_name(vm, (unsigned)i, tap);
		if (!if_nametoindex(tap)) {
			char *add[] = { "ip", "tuntap", "add", "dev", tap, "mode", "tap", NULL };
			if ((r = run_ip(add, err)))
				return kv_err_prefix(err, r, "VM %s: TAP %s", vm, tap);
		}
		{
			char *set[] = { "ip", "link", "set", "dev", tap, "master", (char *)br, "up",
					NULL };
			if ((r = run_ip(set, err)))
				return kv_err_prefix(err, r, "VM %s: TAP %s on bridge %s", vm, tap, br);
		}
	}
	return 0;
}

void net_release(struct agent *a, const char *vm)
{
	for (unsigned i = 0; i < CLUSTER_VM_NETS_MAX; i++) {
		char tap[IF_NAMESIZE];
		char *del[] = { "ip", "link", "del", "dev", tap, NULL };
		struct kv_err err;

		net_tap_name(vm, i, tap);
		if (if_nametoindex(tap) && run_ip(del, &err))
			agent_log(a, "removing %s: %s", tap, err.msg);
	}
}

/* "--net tap=NAME[,mac=M]" (run) or "--allow-tap NAME" (incoming) for each
 * NIC, into av at *n; bufs holds the strings (CLUSTER_VM_NETS_MAX x 64). */
void net_args(const char *vm, json_t *spec, bool incoming, char **av, unsigned *n,
	      char bufs[][64])
{
	json_t *nic;
	size_t i;

	json_array_foreach(json_object_get(spec, "nets"), i, nic) {
		const char *mac = json_string_value(json_object_get(nic, "mac"));
		char tap[IF_NAMESIZE];

		if (i >= CLUSTER_VM_NETS_MAX)
			break;
		net_tap_name(vm, (unsigned)i, tap);
		if (incoming) {
			snprintf(bufs[i], 64, "%s", tap);
			av[(*n)++] = "--allow-tap";
		} else {
			snprintf(bufs[i], 64, "tap=%s%s%s", tap, mac ? ",mac=" : "", mac ? mac : "");
			av[(*n)++] = "--net";
		}
		av[(*n)++] = bufs[i];
	}
}
