/*
 * mem.h - guest RAM: one mapping split into regions around the PCI/MMIO
 * hole below 4 GiB, plus the VMM's own dirty bitmap.
 *
 * Backends (--mem-backend):
 *   memfd    a memfd mapped MAP_SHARED (default): holes found with
 *            SEEK_DATA, and the whole of RAM can be handed to another
 *            process (a same-host upgrade).  Transparent huge pages only
 *            where the host enables them for shmem (often "never").
 *   anon     private anonymous memory, QEMU's default: THP wherever the
 *            host's THP setting is "madvise" or "always", so 512x fewer
 *            first-touch faults; holes found through /proc/self/pagemap;
 *            cannot be handed to another process, and takes no post-copy
 *            as a destination (a received page brings its 2 MiB
 *            neighbours in as zeros, so they would never fault).
 *   hugetlb  a memfd on hugetlbfs (2 MiB pages reserved by the host's
 *            administrator in /proc/sys/vm/nr_hugepages): reserved whole at
 *            start, never swapped, handed over like a memfd; no post-copy
 *            (userfaultfd would copy 2 MiB at a time).
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

enum mem_backend { MEM_BACKEND_MEMFD, MEM_BACKEND_ANON, MEM_BACKEND_HUGETLB };
#define MEM_HUGE_PAGE_SIZE (2ULL << 20)

struct guest_mem {
	enum mem_backend backend;
	int memfd;		/* -1 for anon */
	int pagemap_fd;		/* anon: /proc/self/pagemap, else -1 */
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

/* "memfd", "anon", "hugetlb" */
int mem_backend_parse(const char *s, enum mem_backend *out, struct kv_err *err);
const char *mem_backend_name(enum mem_backend b);
/* Can this backend's RAM be handed to another process (a memfd)? */
static inline bool mem_backend_shareable(enum mem_backend b)
{
	return b != MEM_BACKEND_ANON;
}
/* Bytes of free 2 MiB huge pages on this host (0 if none or unknown). */
uint64_t mem_hugetlb_free(void);

int mem_init(struct guest_mem *mem, uint64_t size, enum mem_backend backend,
	     struct kv_err *err);
/* The same over an existing memfd (a same-host hand-over): it must be a
 * memfd/shmem or hugetlbfs file of exactly size bytes, writable and not
 * sealed against writes or shrinking.  A dup is kept; fd stays the
 * caller's.  Its pages are used as they are; the backend is the file's. */
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

/* The first range at or after offset pos (RAM offsets, page-aligned) that
 * may hold data: [*data, *end).  -ENXIO when nothing after pos does.
 * Never-touched memory is a hole; anything else (resident, swapped, in
 * the page cache, or a backend that cannot tell) counts as data. */
int mem_next_data(const struct guest_mem *mem, uint64_t pos, uint64_t *data,
		  uint64_t *end);

/* Bytes of RAM that may hold data (holes were never touched). */
uint64_t mem_resident_bytes(const struct guest_mem *mem);

/* Give pages [first, first+n) back to the host, so the next touch faults
 * (post-copy's stale pages).  Not for hugetlb (2 MiB at a time). */
int mem_discard(struct guest_mem *mem, uint64_t first, uint64_t n, struct kv_err *err);

/* Is the VMM dirty bit of the page containing gpa set? (tests, migration) */
bool mem_test_dirty(const struct guest_mem *mem, uint64_t gpa);

#endif
