/*
 * agent_host.c - what this host is (CPU vendor and the features its KVM
 * offers guests, CPUs, RAM) and its address on each migration network.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/agent_int.h"
#include "core/cpumodel.h"
#include "core/vm.h"

bool cidr_contains(const char *cidr, const char *addr)
{
	char net[48];
	char *slash;
	struct in_addr n, a;
	unsigned long bits;
	uint32_t mask;

	snprintf(net, sizeof(net), "%s", cidr);
	slash = strchr(net, '/');
	if (!slash)
		return false;
	*slash = '\0';
	bits = strtoul(slash + 1, NULL, 10);
	if (bits > 32 || inet_pton(AF_INET, net, &n) != 1 || inet_pton(AF_INET, addr, &a) != 1)
		return false;
	mask = bits ? htonl(~0u << (32 - bits)) : 0;
	return (n.s_addr & mask) == (a.s_addr & mask);
}

void host_addrs(struct host_info *h, const struct agent_options *o)
{
	struct ifaddrs *ifs = NULL;

	for (unsigned i = 0; i < h->nnets; i++)
		h->nets[i].addr[0] = '\0';
	if (getifaddrs(&ifs))
		return;
	for (unsigned i = 0; i < h->nnets; i++) {
		for (struct ifaddrs *p = ifs; p; p = p->ifa_next) {
			char buf[INET_ADDRSTRLEN];
			if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET)
				continue;
			inet_ntop(AF_INET, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, buf,
				  sizeof(buf));
			if (cidr_contains(h->nets[i].cidr, buf)) {
				snprintf(h->nets[i].addr, sizeof(h->nets[i].addr), "%s", buf);
				break;
			}
		}
	}
	freeifaddrs(ifs);
}

/* The CPU vendor, from /proc/cpuinfo (what placement compares on a move:
 * a guest sees its host's vendor). */
static void cpu_vendor(struct host_info *h)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char *line = NULL;
	size_t cap = 0;

	snprintf(h->vendor, sizeof(h->vendor), "unknown");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char *v = strchr(line, ':');

		if (!v || strncmp(line, "vendor_id", 9))
			continue;
		v++;
		v += strspn(v, " \t");
		v[strcspn(v, "\n")] = '\0';
		snprintf(h->vendor, sizeof(h->vendor), "%s", v);
		break;
	}
	free(line);
	fclose(f);
}

/*
 * The CPU features: what this host's KVM can give a guest, named as the CPU
 * models name them (core/cpumodel.h), less --x-hide-feature's.  That is
 * what a VM booted here on "host" gets, and what decides which named
 * models this node runs.  Without KVM the node offers none (and says why
 * in h->cpu_problem).
 */
static void cpu_features(struct host_info *h, const struct agent_options *o)
{
	struct cpu_feats hide = { 0 };
	struct kvm_cpuid2 *c = NULL;
	struct kv_err err;
	size_t len = 0;

	for (unsigned i = 0; i < o->nhide; i++) {
		int k = cpu_feature_find(o->hide[i]);

		if (k < 0)
			continue;	/* kvmove agent checked the names */
		cpu_feats_set(&hide, (unsigned)k);
		len += (size_t)snprintf(h->hide_list + len, sizeof(h->hide_list) - len, "%s%s",
					len ? "," : "", o->hide[i]);
		if (len >= sizeof(h->hide_list))
			len = sizeof(h->hide_list) - 1;
	}
	if (kvm_host_cpuid(&hide, &c, &err)) {
		snprintf(h->cpu_problem, sizeof(h->cpu_problem), "%s", err.msg);
		return;
	}
	cpu_feats_from_cpuid(c, &h->feats);
	free(c);
	for (unsigned i = 0; i < cpu_feature_count(); i++) {
		if (cpu_feats_has(&hide, i))
			cpu_feats_clear(&h->feats, i);
		if (cpu_feats_has(&h->feats, i))
			json_array_append_new(h->features, json_string(cpu_feature_name(i)));
	}
}

static uint64_t meminfo(const char *field)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char name[64];
	unsigned long long kb;
	uint64_t r = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%63s %llu kB\n", name, &kb) == 2) {
		if (!strncmp(name, field, strlen(field)) && name[strlen(field)] == ':') {
			r = (uint64_t)kb << 10;
			break;
		}
	}
	fclose(f);
	return r;
}

uint64_t host_ram_free(void)
{
	return meminfo("MemAvailable");
}

void host_load(double load[3])
{
	if (getloadavg(load, 3) != 3)
		load[0] = load[1] = load[2] = 0;
}

int host_probe(struct host_info *h, const struct agent_options *o, struct kv_err *err)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(h, 0, sizeof(*h));
	h->features = json_array();
	if (!h->features)
		return kv_errf(err, ENOMEM, "features");
	cpu_vendor(h);
	cpu_features(h, o);
	h->cpus = o->cpus ? o->cpus : (unsigned)(n > 0 ? n : 1);
	h->ram_total = o->ram ? o->ram : meminfo("MemTotal");
	h->nnets = o->nnets;
	for (unsigned i = 0; i < o->nnets; i++)
		snprintf(h->nets[i].cidr, sizeof(h->nets[i].cidr), "%s", o->nets[i]);
	host_addrs(h, o);
	return 0;
}

void host_free(struct host_info *h)
{
	json_decref(h->features);
	h->features = NULL;
}
