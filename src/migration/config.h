/*
 * config.h - the VM configuration a migration carries (not files: name,
 * memory, vCPUs, the guest's CPUID, the device list, shared resources) and
 * the preflight checks a destination runs on it before any memory moves.
 */
#ifndef KVMOVE_MIGRATION_CONFIG_H
#define KVMOVE_MIGRATION_CONFIG_H

#include <jansson.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "devices/device.h"
#include "migration/allow.h"

#define MIG_MAX_CPUID 256
#define MIG_MAX_DEVICES 32

struct vm;

struct mig_vm_config {
	char name[64];
	uint64_t mem_size;
	unsigned ncpus;
	struct kvm_cpuid2 *cpuid;	/* malloc'ed */
	char cpu_model[256];		/* the model that CPUID was made from */
	unsigned ndevices;
	struct dev_spec devices[MIG_MAX_DEVICES];
	bool uses_lock;
	/* A same-host hand-over (never from JSON): guest RAM's memfd and, per
	 * device, the fd it takes over (-1: none); closed by mig_config_free. */
	bool local;
	int ram_fd;
	int dev_fd[MIG_MAX_DEVICES];
};

/* What a destination offers. */
struct mig_host {
	uint64_t max_mem;		/* --max-mem, 0 = no limit besides free RAM */
	uint64_t avail_mem;		/* MemAvailable, or free huge pages (hugetlb) */
	bool hugetlb;			/* RAM would be 2 MiB huge pages (--mem-backend) */
	unsigned max_vcpus;		/* KVM's limit, or --max-vcpus */
	bool has_lock;			/* --lock given */
	const struct kvm_cpuid2 *supported;
	const struct mig_allow *allow;	/* disks and TAPs it may use (NULL: none) */
};

json_t *mig_config_to_json(struct vm *vm, bool uses_lock);
/* Strict: unknown keys, duplicate devices or CPUID leaves, a name that is
 * not a safe file name, a device without what its type needs: refused. */
/* "52:54:00:12:34:56" -> bytes; -EINVAL if malformed or multicast. */
int mig_parse_mac(const char *s, uint8_t mac[6]);
int mig_config_from_json(json_t *j, struct mig_vm_config *cfg, struct kv_err *err);
void mig_config_free(struct mig_vm_config *cfg);

/* Fill host from this machine (KVM, /proc/meminfo). */
int mig_host_probe(struct mig_host *host, struct kvm_cpuid2 **supported_out,
		   struct kv_err *err);

/* Run every check; returns a JSON array of {"id", "reason"} (empty = ok). */
json_t *mig_preflight(const struct mig_vm_config *cfg, const struct mig_host *host);

#endif
