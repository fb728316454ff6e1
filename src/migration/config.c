#define _GNU_SOURCE
#include "migration/config.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <unistd.h>

#include "core/cpumodel.h"
#include "core/mem.h"
#include "core/vm.h"
#include "devices/device.h"

static void mac_str(const uint8_t *m, char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

int mig_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	/* a multicast or all-zero MAC cannot be a NIC's */
	return (mac[0] & 1) || !(v[0] | v[1] | v[2] | v[3] | v[4] | v[5]) ? -EINVAL : 0;
}

json_t *mig_config_to_json(struct vm *vm, bool uses_lock)
{
	json_t *cpuid = json_array(), *devs = json_array();

	for (uint32_t i = 0; i < vm->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &vm->cpuid->entries[i];
		json_array_append_new(cpuid, json_pack("[I,I,I,I,I,I,I]",
			(json_int_t)e->function, (json_int_t)e->index, (json_int_t)e->flags,
			(json_int_t)e->eax, (json_int_t)e->ebx, (json_int_t)e->ecx,
			(json_int_t)e->edx));
	}
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = vm->devices[i];
		struct dev_spec sp = { 0 };
		json_t *o = json_pack("{s:s, s:s}", "name", d->name, "type", d->ops->type);

		if (d->ops->spec) {
			d->ops->spec(d, &sp);
			if (sp.path[0]) {
				json_object_set_new(o, "path", json_string(sp.path));
				json_object_set_new(o, "readonly", json_boolean(sp.readonly));
			}
			if (sp.tap[0]) {
				char m[18];
				mac_str(sp.mac, m);
				json_object_set_new(o, "tap", json_string(sp.tap));
				json_object_set_new(o, "mac", json_string(m));
			}
		}
		json_array_append_new(devs, o);
	}
	return json_pack("{s:s, s:I, s:i, s:s, s:o, s:o, s:b}", "name", vm->cfg.name,
			 "mem", (json_int_t)vm->mem.size, "cpus", (int)vm->nvcpus,
			 "cpu-model", vm->cfg.cpu_model[0] ? vm->cfg.cpu_model : "host",
			 "cpuid", cpuid, "devices", devs, "lock", uses_lock);
}

static int get_str(json_t *o, const char *key, char *dst, size_t cap, struct kv_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v) || json_string_length(v) >= cap || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return kv_errf(err, EBADMSG, "config: '%s' must be a string of 1..%zu bytes",
			       key, cap - 1);
	strcpy(dst, json_string_value(v));
	return 0;
}

static int get_u32(json_t *v, uint32_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > UINT32_MAX)
		return -1;
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* Every key of o must be one of keys (NULL-terminated). */
static int only_keys(json_t *o, const char *const *keys, const char *what, struct kv_err *err)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		const char *const *a = keys;
		while (*a && strcmp(*a, k))
			a++;
		if (!*a)
			return kv_errf(err, EBADMSG, "config: unknown key '%.64s' in %s", k, what);
	}
	return 0;
}

static int check_unique(const struct mig_vm_config *cfg, struct kv_err *err)
{
	for (uint32_t i = 0; i < cfg->cpuid->nent; i++)
		for (uint32_t k = i + 1; k < cfg->cpuid->nent; k++)
			if (cfg->cpuid->entries[i].function == cfg->cpuid->entries[k].function &&
			    cfg->cpuid->entries[i].index == cfg->cpuid->entries[k].index)
				return kv_errf(err, EBADMSG, "config: CPUID leaf 0x%x.%u is listed "
					       "twice", cfg->cpuid->entries[i].function,
					       cfg->cpuid->entries[i].index);
	for (unsigned i = 0; i < cfg->ndevices; i++)
		for (unsigned k = i + 1; k < cfg->ndevices; k++)
			if (!strcmp(cfg->devices[i].name, cfg->devices[k].name))
				return kv_errf(err, EBADMSG, "config: device %s is listed twice",
					       cfg->devices[i].name);
	return 0;
}

/* What each device type must and may carry. */
static int check_device(const struct dev_spec *d, size_t i, struct kv_err *err)
{
	bool blk = !strcmp(d->type, "virtio-blk"), net = !strcmp(d->type, "virtio-net");

	if (blk != !!d->path[0])
		return kv_errf(err, EBADMSG, "config: device %zu: %s", i,
			       blk ? "a virtio-blk disk needs a path" : "only disks have a path");
	if (net != !!d->tap[0])
		return kv_errf(err, EBADMSG, "config: device %zu: %s", i,
			       net ? "a virtio-net NIC needs a tap" : "only NICs have a tap");
	return 0;
}

int mig_config_from_json(json_t *j, struct mig_vm_config *cfg, struct kv_err *err)
{
	static const char *const top[] = { "name", "mem", "cpus", "cpu-model", "cpuid",
					   "devices", "lock", NULL };
	static const char *const dev[] = { "name", "type", "path", "readonly", "tap", "mac",
					   NULL };
	json_t *v, *e;
	size_t i;
	int r;

	memset(cfg, 0, sizeof(*cfg));
	if ((r = only_keys(j, top, "the VM", err)) ||
	    (r = get_str(j, "name", cfg->name, sizeof(cfg->name), err)))
		return r;
	if (!mig_name_ok(cfg->name))
		return kv_errf(err, EBADMSG, "config: VM name '%s' is not [A-Za-z0-9._-] (1..63, "
			       "not starting with '.' or '-')", cfg->name);
	v = json_object_get(j, "mem");
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return kv_errf(err, EBADMSG, "config: 'mem' must be a positive integer");
	cfg->mem_size = (uint64_t)json_integer_value(v);
	{
		struct mem_region rg[MEM_MAX_REGIONS];
		if ((r = mem_layout(cfg->mem_size, rg, MEM_MAX_REGIONS, err)) < 0)
			return kv_err_prefix(err, r, "config");
	}
	v = json_object_get(j, "cpus");
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > VM_MAX_VCPUS)
		return kv_errf(err, EBADMSG, "config: 'cpus' must be 1..%d", VM_MAX_VCPUS);
	cfg->ncpus = (unsigned)json_integer_value(v);

	/* a source from before CPU models sent its host's CPUID: "host" */
	snprintf(cfg->cpu_model, sizeof(cfg->cpu_model), "host");
	if (json_object_get(j, "cpu-model")) {
		struct cpu_model m;
		if ((r = get_str(j, "cpu-model", cfg->cpu_model, sizeof(cfg->cpu_model), err)))
			return r;
		if ((r = cpu_model_parse(cfg->cpu_model, &m, err)))
			return kv_err_prefix(err, -EBADMSG, "config");
	}
	v = json_object_get(j, "cpuid");
	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > MIG_MAX_CPUID)
		return kv_errf(err, EBADMSG, "config: 'cpuid' must list 1..%d entries",
			       MIG_MAX_CPUID);
	cfg->cpuid = calloc(1, sizeof(*cfg->cpuid) +
				       json_array_size(v) * sizeof(cfg->cpuid->entries[0]));
	if (!cfg->cpuid)
		return kv_errf(err, ENOMEM, "config: CPUID");
	cfg->cpuid->nent = (uint32_t)json_array_size(v);
	json_array_foreach(v, i, e) {
		struct kvm_cpuid_entry2 *c = &cfg->cpuid->entries[i];
		if (!json_is_array(e) || json_array_size(e) != 7 ||
		    get_u32(json_array_get(e, 0), &c->function) ||
		    get_u32(json_array_get(e, 1), &c->index) ||
		    get_u32(json_array_get(e, 2), &c->flags) ||
		    get_u32(json_array_get(e, 3), &c->eax) ||
		    get_u32(json_array_get(e, 4), &c->ebx) ||
		    get_u32(json_array_get(e, 5), &c->ecx) ||
		    get_u32(json_array_get(e, 6), &c->edx)) {
			mig_config_free(cfg);
			return kv_errf(err, EBADMSG, "config: CPUID entry %zu is malformed", i);
		}
	}

	v = json_object_get(j, "devices");
	if (!json_is_array(v) || json_array_size(v) > MIG_MAX_DEVICES) {
		mig_config_free(cfg);
		return kv_errf(err, EBADMSG, "config: 'devices' must list at most %d devices",
			       MIG_MAX_DEVICES);
	}
	json_array_foreach(v, i, e) {
		struct dev_spec *d = &cfg->devices[i];
		json_t *x;
		if (!json_is_object(e) || only_keys(e, dev, "a device", err) ||
		    get_str(e, "name", d->name, sizeof(d->name), err) ||
		    get_str(e, "type", d->type, sizeof(d->type), err) ||
		    ((x = json_object_get(e, "path")) &&
		     get_str(e, "path", d->path, sizeof(d->path), err)) ||
		    ((x = json_object_get(e, "tap")) &&
		     get_str(e, "tap", d->tap, sizeof(d->tap), err)) ||
		    ((x = json_object_get(e, "readonly")) && !json_is_boolean(x)) ||
		    ((x = json_object_get(e, "mac")) &&
		     (!json_is_string(x) || mig_parse_mac(json_string_value(x), d->mac)))) {
			mig_config_free(cfg);
			return kv_errf(err, EBADMSG, "config: device %zu is malformed", i);
		}
		d->readonly = json_is_true(json_object_get(e, "readonly"));
		if ((r = check_device(d, i, err))) {
			mig_config_free(cfg);
			return r;
		}
		cfg->ndevices++;
	}
	v = json_object_get(j, "lock");
	if (!json_is_boolean(v)) {
		mig_config_free(cfg);
		return kv_errf(err, EBADMSG, "config: 'lock' must be a boolean");
	}
	cfg->uses_lock = json_is_true(v);
	if ((r = check_unique(cfg, err)))
		mig_config_free(cfg);
	return r;
}

void mig_config_free(struct mig_vm_config *cfg)
{
	free(cfg->cpuid);
	cfg->cpuid = NULL;
	if (!cfg->local)
		return;
	if (cfg->ram_fd >= 0)
		close(cfg->ram_fd);
	for (unsigned i = 0; i < MIG_MAX_DEVICES; i++)
		if (cfg->dev_fd[i] >= 0)
			close(cfg->dev_fd[i]);
	cfg->local = false;
}

static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb << 10;
}

int mig_host_probe(struct mig_host *host, struct kvm_cpuid2 **supported_out,
		   struct kv_err *err)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), r, n;

	if (kvm < 0)
		return kv_errf_sys(err, errno, "/dev/kvm");
	r = kvm_supported_cpuid(kvm, supported_out, err);
	n = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	close(kvm);
	if (r)
		return r;
	host->supported = *supported_out;
	host->max_vcpus = n > 0 ? (unsigned)n : 1;
	if (host->max_vcpus > VM_MAX_VCPUS)
		host->max_vcpus = VM_MAX_VCPUS;
	host->avail_mem = mem_available();
	return 0;
}

static const struct kvm_cpuid_entry2 *find_leaf(const struct kvm_cpuid2 *c, uint32_t fn,
						uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

/* Feature registers whose every bit must exist on the destination.  Bits
 * that the OS sets at run time (OSXSAVE, OSPKE) or that encode numbers, not
 * features, are masked out. */
static const struct feature_reg {
	uint32_t fn, idx;
	int reg;	/* 0 eax 1 ebx 2 ecx 3 edx */
	uint32_t mask;
	const char *name;
} feature_regs[] = {
	{ 1, 0, 2, ~(1u << 27), "CPUID.1:ECX" },
	{ 1, 0, 3, 0xffffffff, "CPUID.1:EDX" },
	{ 7, 0, 1, 0xffffffff, "CPUID.7.0:EBX" },
	{ 7, 0, 2, ~(1u << 4), "CPUID.7.0:ECX" },
	{ 7, 0, 3, 0xffffffff, "CPUID.7.0:EDX" },
	{ 7, 1, 0, 0xffffffff, "CPUID.7.1:EAX" },
	{ 0xd, 1, 0, 0xffffffff, "CPUID.0xD.1:EAX" },
	{ 0x80000001, 0, 2, 0xffffffff, "CPUID.0x80000001:ECX" },
	{ 0x80000001, 0, 3, 0xffffffff, "CPUID.0x80000001:EDX" },
	{ 0x40000001, 0, 0, 0xffffffff, "KVM paravirt features" },
};

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, int reg)
{
	switch (reg) {
	case 0: return e->eax;
	case 1: return e->ebx;
	case 2: return e->ecx;
	default: return e->edx;
	}
}

static void add_failure(json_t *f, const char *id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void add_failure(json_t *f, const char *id, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_array_append_new(f, json_pack("{s:s, s:s}", "id", id, "reason", buf));
}

static void vendor_of(const struct kvm_cpuid2 *c, char out[13])
{
	const struct kvm_cpuid_entry2 *e = find_leaf(c, 0, 0);

	memset(out, 0, 13);
	if (e) {
		memcpy(out, &e->ebx, 4);
		memcpy(out + 4, &e->edx, 4);
		memcpy(out + 8, &e->ecx, 4);
	}
}

static const struct mig_allow no_allow;

/* The destination's own policy first (never opens what it does not allow),
 * then reachability: opened as the VM will open it. */
static void check_disk(json_t *f, const struct mig_host *host, const struct dev_spec *d)
{
	struct kv_err e;
	int fd = mig_allow_open_disk(host->allow ? host->allow : &no_allow, d->path, d->readonly,
				     &e);

	if (fd == -EPERM)
		add_failure(f, "disk-not-allowed", "disk %s: %s", d->name, e.msg);
	else if (fd < 0)
		add_failure(f, "disk", "disk %s (%s) is not reachable from this host: %s", d->name,
			    d->path, e.msg);
	else
		close(fd);
}

static void check_tap(json_t *f, const struct mig_host *host, const struct dev_spec *d)
{
	struct kv_err e;

	if (mig_allow_tap(host->allow ? host->allow : &no_allow, d->tap, &e))
		add_failure(f, "network-not-allowed", "network %s: %s", d->name, e.msg);
	else if (!if_nametoindex(d->tap))
		add_failure(f, "network", "network %s: TAP interface %s does not exist on this "
			    "host (create it and attach it to the VM network first)", d->name,
			    d->tap);
}

/* A named model is compared with this host, not with the source's. */
static void check_cpu_model(json_t *f, const struct mig_vm_config *cfg,
			    const struct mig_host *host)
{
	struct cpu_feats have;
	struct cpu_model m;
	struct kv_err e;
	char missing[512];

	if (cpu_model_parse(cfg->cpu_model, &m, &e) || m.host)
		return;		/* parsed at receipt; host: its bits are checked below */
	cpu_feats_from_cpuid(host->supported, &have);
	if (cpu_feats_missing(&m.feats, &have, missing, sizeof(missing)))
		add_failure(f, "cpu-model", "the VM's CPU model %s needs %s, which this host "
			    "lacks", cfg->cpu_model, missing);
}

/* Every feature bit the guest was given must exist here: by name where
 * the feature table has one. */
static void check_cpu_features(json_t *f, const struct mig_vm_config *cfg,
			       const struct mig_host *host)
{
	char names[1024] = "", raw[512] = "";
	size_t nl = 0, rl = 0;

	for (size_t i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
		const struct feature_reg *fr = &feature_regs[i];
		const struct kvm_cpuid_entry2 *g = find_leaf(cfg->cpuid, fr->fn, fr->idx);
		const struct kvm_cpuid_entry2 *h = find_leaf(host->supported, fr->fn, fr->idx);
		uint32_t want = g ? reg_of(g, fr->reg) & fr->mask : 0;
		uint32_t have = h ? reg_of(h, fr->reg) : 0;
		uint32_t missing = want & ~have, unnamed = 0;

		for (unsigned b = 0; b < 32; b++) {
			const char *n;
			if (!((missing >> b) & 1))
				continue;
			if ((n = cpu_feature_name_at(fr->fn, fr->idx, fr->reg, b)) &&
			    nl < sizeof(names))
				nl += (size_t)snprintf(names + nl, sizeof(names) - nl, "%s%s",
						       nl ? " " : "", n);
			else if (!n)
				unnamed |= 1u << b;
		}
		if (unnamed && rl < sizeof(raw))
			rl += (size_t)snprintf(raw + rl, sizeof(raw) - rl, "%s%s bits 0x%08x",
					       rl ? ", " : "", fr->name, unnamed);
	}
	if (!nl && !rl)
		return;
	add_failure(f, "cpu-features", "the VM (CPU model %s) was given %s%s%s, which this "
		    "host lacks%s", cfg->cpu_model, names, nl && rl ? "; " : "", raw,
		    strcmp(cfg->cpu_model, "host") ? "" :
		    "; a VM started with a named model (--cpu x86-64-v2, compat, ...) "
		    "can move between such hosts");
}

json_t *mig_preflight(const struct mig_vm_config *cfg, const struct mig_host *host)
{
	json_t *f = json_array();
	char gv[13], hv[13];

	vendor_of(cfg->cpuid, gv);
	vendor_of(host->supported, hv);
	if (strcmp(gv, hv))
		add_failure(f, "cpu-vendor", "the VM runs on a %s CPU, this host has %s",
			    gv[0] ? gv : "(unknown)", hv[0] ? hv : "(unknown)");

	check_cpu_model(f, cfg, host);
	check_cpu_features(f, cfg, host);
	if (host->max_mem && cfg->mem_size > host->max_mem)
		add_failure(f, "memory", "the VM has %" PRIu64 " MiB; this destination accepts "
			    "at most %" PRIu64 " MiB (--max-mem)", cfg->mem_size >> 20,
			    host->max_mem >> 20);
	/* a same-host hand-over shares the pages it already has */
	else if (host->hugetlb && !cfg->local &&
		 (cfg->mem_size > host->avail_mem || cfg->mem_size % (2ULL << 20)))
		add_failure(f, "memory", "the VM has %" PRIu64 " MiB; this destination puts guest "
			    "RAM on 2 MiB huge pages (--mem-backend hugetlb) and has %" PRIu64
			    " MiB of them free%s", cfg->mem_size >> 20, host->avail_mem >> 20,
			    cfg->mem_size % (2ULL << 20) ? ", and the size is not a multiple of "
			    "2 MiB" : "");
	else if (host->avail_mem && cfg->mem_size > host->avail_mem && !cfg->local)
		add_failure(f, "memory", "the VM has %" PRIu64 " MiB; this host has %" PRIu64
			    " MiB available", cfg->mem_size >> 20, host->avail_mem >> 20);
	if (cfg->ncpus > host->max_vcpus)
		add_failure(f, "vcpus", "the VM has %u vCPUs; this destination takes at most %u "
			    "(--max-vcpus; by default as many as the host has CPUs)", cfg->ncpus,
			    host->max_vcpus);
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		const struct dev_spec *d = &cfg->devices[i];
		static const char *const known[] = { "uart8250", "debug-exit", "pci-host",
						     "virtio-blk", "virtio-net" };
		bool ok = false;
		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			ok |= !strcmp(d->type, known[k]);
		if (!ok)
			add_failure(f, "device", "device %s of type %s is not supported here",
				    d->name, d->type);
		if (!strcmp(d->type, "virtio-blk"))
			check_disk(f, host, d);
		if (!strcmp(d->type, "virtio-net"))
			check_tap(f, host, d);
	}
	if (cfg->uses_lock && !host->has_lock)
		add_failure(f, "lock", "the VM is guarded by a lock file on shared storage; "
			    "start the destination with --lock on the same file");
	if (!cfg->uses_lock && host->has_lock)
		add_failure(f, "lock", "this destination guards its VM with --lock, but the "
			    "incoming VM has no lock file (start the source with --lock on the "
			    "same file)");
	return f;
}
