/*
 * fuzz_config - a CONFIG record's payload as a destination takes it:
 * mig_parse_json() (strict, bounded), mig_config_from_json(), then
 * mig_preflight() against a fixed host (src/migration/config.c, allow.c).
 *
 * Input: the JSON payload.
 * The host: an Intel CPU with a handful of feature leaves, 1 GiB --max-mem,
 * 8 vCPUs, a lock, and an allow list naming a directory this target makes
 * (/tmp/kvmove-fuzz-allow: an image, a symlink to /etc/hostname, a symlink
 * to the parent) and one image file by name, plus TAP kvfuzz0 (which does
 * not exist).  So disk paths reach the real path checks and openat2(), and
 * nothing outside that directory can be opened.
 * Checks: results are 0 or -errno with a message; an accepted config keeps
 * every limit docs/FORMAT.md promises; preflight always answers an array of
 * {id, reason} strings; every disk the allow list opens is the image in
 * the allowed directory (a symlink or ".." that led elsewhere would be a
 * hole) and nothing else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "core/vm.h"
#include "fuzz.h"
#include "migration/allow.h"
#include "migration/config.h"
#include "migration/proto.h"
#include "state/stream.h"

#define ALLOW_DIR "/tmp/kvmove-fuzz-allow"

static struct kvm_cpuid2 *host_cpuid;
static struct mig_allow allow;
static struct mig_host host;
static struct stat image;	/* the one file the allow list may open */

static void setup(void)
{
	int fd;

	host_cpuid = calloc(1, sizeof(*host_cpuid) + 4 * sizeof(host_cpuid->entries[0]));
	if (!host_cpuid)
		fuzz_fail("out of memory");
	host_cpuid->nent = 4;
	host_cpuid->entries[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd,
		.ebx = 0x756e6547, .edx = 0x49656e69, .ecx = 0x6c65746e };	/* GenuineIntel */
	host_cpuid->entries[1] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0x80202201,
		.edx = 0x0f8bfbff };
	host_cpuid->entries[2] = (struct kvm_cpuid_entry2){ .function = 7, .ebx = 0x209c01a9 };
	host_cpuid->entries[3] = (struct kvm_cpuid_entry2){ .function = 0x80000001,
		.ecx = 0x121, .edx = 0x2c100800 };

	/* idempotent, so runs side by side or one after another agree */
	if (mkdir(ALLOW_DIR, 0700) < 0 && errno != EEXIST)
		fuzz_fail("mkdir %s: %m", ALLOW_DIR);
	fd = open(ALLOW_DIR "/disk.img", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &image) < 0)
		fuzz_fail("%s/disk.img: %m", ALLOW_DIR);
	close(fd);
	if ((symlink("/etc/hostname", ALLOW_DIR "/out") < 0 && errno != EEXIST) ||
	    (symlink("..", ALLOW_DIR "/up") < 0 && errno != EEXIST))
		fuzz_fail("symlinks in %s: %m", ALLOW_DIR);
	allow = (struct mig_allow){ .disks = { ALLOW_DIR, "/nonexistent/kvmove-fuzz.img" },
				    .ndisks = 2, .taps = { "kvfuzz0" }, .ntaps = 1 };
	host = (struct mig_host){ .max_mem = 1ULL << 30, .avail_mem = 8ULL << 30,
				  .max_vcpus = 8, .has_lock = true, .supported = host_cpuid,
				  .allow = &allow };
}

static void check_config(const struct mig_vm_config *c)
{
	struct mem_region rg[MEM_MAX_REGIONS];
	struct kv_err err;

	FUZZ_CHECK(c->name[0] && strlen(c->name) < sizeof(c->name) && mig_name_ok(c->name),
		   "accepted VM name '%s'", c->name);
	FUZZ_CHECK(mem_layout(c->mem_size, rg, MEM_MAX_REGIONS, &err) > 0,
		   "accepted memory size %llu", (unsigned long long)c->mem_size);
	FUZZ_CHECK(c->ncpus >= 1 && c->ncpus <= VM_MAX_VCPUS, "accepted %u vCPUs", c->ncpus);
	FUZZ_CHECK(c->cpuid && c->cpuid->nent >= 1 && c->cpuid->nent <= MIG_MAX_CPUID,
		   "accepted a CPUID of %u entries", c->cpuid ? c->cpuid->nent : 0);
	FUZZ_CHECK(c->ndevices <= MIG_MAX_DEVICES, "accepted %u devices", c->ndevices);
	for (unsigned i = 0; i < c->ndevices; i++) {
		const struct dev_spec *d = &c->devices[i];

		FUZZ_CHECK(d->name[0] && memchr(d->name, 0, sizeof(d->name)) &&
			   d->type[0] && memchr(d->type, 0, sizeof(d->type)) &&
			   memchr(d->path, 0, sizeof(d->path)) && memchr(d->tap, 0, sizeof(d->tap)),
			   "device %u: a name, type, path or tap not terminated", i);
	}
}

/* Whatever the allow list lets a disk path open must be our image. */
static void check_disks(const struct mig_vm_config *c)
{
	for (unsigned i = 0; i < c->ndevices; i++) {
		const struct dev_spec *d = &c->devices[i];
		struct kv_err err = { "" };
		struct stat st;
		int fd;

		if (!d->path[0])
			continue;
		fd = mig_allow_open_disk(&allow, d->path, d->readonly, &err);
		if (fd < 0) {
			FUZZ_CHECK(fd > -4096 && err.msg[0], "opening %s: %d without a message",
				   d->path, fd);
			continue;
		}
		FUZZ_CHECK(fstat(fd, &st) == 0 && st.st_dev == image.st_dev &&
			   st.st_ino == image.st_ino, "disk path '%s' opened something else", d->path);
		close(fd);
	}
}

static void check_failures(json_t *f)
{
	size_t i;
	json_t *e;

	FUZZ_CHECK(json_is_array(f), "preflight did not answer an array");
	json_array_foreach(f, i, e)
		FUZZ_CHECK(json_is_object(e) && json_is_string(json_object_get(e, "id")) &&
			   json_is_string(json_object_get(e, "reason")) && json_object_size(e) == 2,
			   "preflight failure %zu is not {id, reason}", i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream_rec rec = { .type = MIG_REC_CONFIG, .len = (uint32_t)size,
				  .payload = data };
	struct mig_vm_config cfg;
	struct kv_err err = { "" };
	json_t *j, *f;
	int r;

	if (!host_cpuid)
		setup();
	if (size > MIG_MAX_RECORD)
		return 0;	/* the stream refuses it first */
	r = mig_parse_json(&rec, &j, &err);
	FUZZ_CHECK(r <= 0 && (r == 0 || err.msg[0]), "mig_parse_json: %d", r);
	if (r)
		return 0;
	r = mig_config_from_json(j, &cfg, &err);
	FUZZ_CHECK(r <= 0 && r > -4096 && (r == 0 || err.msg[0]), "mig_config_from_json: %d (%s)",
		   r, err.msg);
	FUZZ_CHECK(r == 0 || !cfg.cpuid, "a refused config kept its CPUID allocation");
	if (!r) {
		check_config(&cfg);
		f = mig_preflight(&cfg, &host);
		check_failures(f);
		json_decref(f);
		check_disks(&cfg);
		mig_config_free(&cfg);
	}
	json_decref(j);
	return 0;
}
