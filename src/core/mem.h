/*
 * mem.h - guest RAM: one memfd mapped MAP_SHARED, split into regions around
 * the PCI/MMIO hole below 4 GiB, plus the VMM's own dirty bitmap.
 *
 * Layout (guest-physical):
 *   [0, low_end)           RAM, low_end = min(size, MEM_HOLE_START)
 *   [MEM_HOLE_START, 4G)   hole: PCI MMIO, IOAPIC (0xfec00000), LAPIC (0xfee00000)
 *   [4G, 4G + rest)        RAM above 4 GiB, if size > MEM_HOLE_START
 * The memfd holds RAM contiguously: region i maps memfd offset
 * region->offset.  Untouched memory costs nothing (memfd pages are allocated
 * on first touch).
 *
 * Every write the VMM itself makes into guest memory must go through
 * mem_mark_dirty() (or the helpers that call it): KVM's dirty log sees only
 * vCPU writes, and a migration would otherwise lose the page.
 */
#ifndef KVMOVE_CORE_MEM_H
#define KVMOVE_CORE_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define MEM_PAGE_SIZE 4096ULL
#define MEM_PAGE_SHIFT 12
#define MEM_HOLE_START 0xC0000000ULL	/* 3 GiB: start of the PCI/MMIO hole */
#define MEM_4G 0x100000000ULL
#define MEM_MIN_SIZE (16ULL << 20)
#define MEM_MAX_SIZE (1ULL << 40)	/* 1 TiB: well past the 64 GiB we promise */
#define MEM_MAX_REGIONS 2

struct mem_region {
	uint64_t gpa;		/* guest-physical start */
	uint64_t size;		/* bytes, page multiple */
	uint64_t offset;	/* offset in the memfd and in mem->host */
};

struct guest_mem {
	int memfd;
	uint8_t *host;		/* whole memfd mapping */
	uint64_t size;		/* total RAM bytes */
	unsigned nregions;
	struct mem_region regions[MEM_MAX_REGIONS];
	/* VMM-side dirty bitmap, one bit per page of RAM in memfd-offset
	 * order (bit = offset >> 12).  Written with atomic ops. */
	uint64_t *vmm_dirty;
	uint64_t npages;
};

/* Compute the region layout for a RAM size (pure; for tests and preflight).
 * Returns the number of regions or a negative errno. */
int mem_layout(uint64_t size, struct mem_region *regions, unsigned max,
	       struct kv_err *err);

/* Parse "512M", "1G", "64g", "16777216" into bytes. */
int mem_parse_size(const char *s, uint64_t *out, struct kv_err *err);

int mem_init(struct guest_mem *mem, uint64_t size, struct kv_err *err);
/* The same over an existing memfd (a same-host hand-over): it must be a
 * memfd/shmem file of exactly size bytes, writable and not sealed against
 * writes or shrinking.  A dup is kept; fd stays the caller's.  Its pages
 * are used as they are. */
int mem_init_fd(struct guest_mem *mem, uint64_t size, int fd, struct kv_err *err);
void mem_destroy(struct guest_mem *mem);

/*
 * Host pointer for [gpa, gpa+len) if that range lies entirely inside one
 * RAM region, else NULL.  The only way VMM code may turn a guest address
 * (untrusted) into a pointer.
 */
void *mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Memfd offset of gpa, or -1 (as uint64_t) if not RAM. */
uint64_t mem_gpa_to_offset(const struct guest_mem *mem, uint64_t gpa);

/* Mark [gpa, gpa+len) dirty in the VMM bitmap (no-op outside RAM). */
void mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copy into guest memory, checked and dirty-marked. */
int mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len,
	      struct kv_err *err);
int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len,
	     struct kv_err *err);

/* Allocate and map [gpa, gpa+len) now rather than page by page on first
 * touch (a hint: ranges outside RAM and kernel refusals are ignored). */
void mem_populate(struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Bytes of the memfd that hold data (holes were never touched). */
uint64_t mem_resident_bytes(const struct guest_mem *mem);

/* Is the VMM dirty bit of the page containing gpa set? (tests, migration) */
bool mem_test_dirty(const struct guest_mem *mem, uint64_t gpa);

#endif
