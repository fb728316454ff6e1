/*
 * memmap.h - guest RAM as the PVH memory map describes it, and the
 * placement of the verifier's metadata and working set in it.
 * Runs at CPL 3 on CPU 0.
 */
#ifndef GUEST_MEMMAP_H
#define GUEST_MEMMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "pvh.h"

#define MEM_MAX_RANGES 32

struct range {
	uint64_t start, end;	/* [start, end) */
};

struct memmap_info {
	uint64_t total_ram;			/* sum of RAM entries */
	uint64_t unmapped_ram;			/* RAM above the page-table map */
	struct range ram[MEM_MAX_RANGES];	/* RAM, sorted, merged */
	unsigned nram;
	struct range usable[MEM_MAX_RANGES];	/* RAM free for metadata + working set */
	unsigned nusable;
};

/*
 * Read the map. Usable RAM is RAM above 1 MiB and above the image
 * (everything below image_end: code, stacks, page tables), minus the boot
 * structures and modules, minus anything a non-RAM entry overlaps, and
 * below mapped_top. Returns false if there is no memory map.
 */
bool memmap_read(const struct hvm_start_info *si, uint64_t image_end, uint64_t mapped_top,
		 struct memmap_info *out);
bool memmap_is_ram(const struct memmap_info *mi, uint64_t start, uint64_t end);

/* Where the verifier lives: metadata first, then the working set pages. */
struct wss_layout {
	uint64_t meta;			/* gpa: u32 generation per page */
	uint64_t mirror;		/* gpa: one page of write-counter mirrors */
	uint64_t npages;		/* working-set pages */
	struct range wss[MEM_MAX_RANGES];
	unsigned nwss;
};

/* Place up to want_pages (at least min_pages if possible). false: no room. */
bool memmap_alloc(const struct memmap_info *mi, uint64_t want_pages, uint64_t min_pages,
		  struct wss_layout *out);

#endif
