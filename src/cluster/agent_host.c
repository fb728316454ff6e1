/*
 * agent_host.c - what this host is (CPU vendor and features, CPUs, RAM) and
 * its address on each migration network.
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

static bool hidden(const struct agent_options *o, const char *f)
{
	for (unsigned i = 0; i < o->nhide; i++)
		if (!strcmp(o->hide[i], f))
			return true;
	return false;
}

static void cpuinfo(struct host_info *h, const struct agent_options *o)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool got_flags = false;

	snprintf(h->vendor, sizeof(h->vendor), "unknown");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char *v = strchr(line, ':');
		if (!v)
			continue;
		v++;
		v += strspn(v, " \t");
		v[strcspn(v, "\n")] = '\0';
		if (!strncmp(line, "vendor_id", 9)) {
			snprintf(h->vendor, sizeof(h->vendor), "%s", v);
		} else if (!strncmp(line, "flags", 5) && !got_flags) {
			char *save = NULL;
			got_flags = true;
			for (char *t = strtok_r(v, " ", &save); t; t = strtok_r(NULL, " ", &save))
				if (!hidden(o, t))
					json_array_append_new(h->features, json_string(t));
		}
	}
	free(line);
	fclose(f);
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
	cpuinfo(h, o);
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
