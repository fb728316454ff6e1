/*
 * memmap.c - RAM ranges from hvm_start_info, and carving the verifier's
 * metadata and working set out of them.
 */
#include "memmap.h"

#include "lib.h"

#define PAGE ((uint64_t)4096)
#define MiB (1ULL << 20)
#define MAX_ENTRIES 128

static void sort_ranges(struct range *r, unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && r[j].start < r[j - 1].start; j--) {
			struct range t = r[j];
			r[j] = r[j - 1];
			r[j - 1] = t;
		}
}

static unsigned merge_ranges(struct range *r, unsigned n)
{
	unsigned out = 0;

	sort_ranges(r, n);
	for (unsigned i = 0; i < n; i++) {
		if (r[i].end <= r[i].start)
			continue;
		if (out && r[i].start <= r[out - 1].end) {
			r[out - 1].end = MAX(r[out - 1].end, r[i].end);
			continue;
		}
		r[out++] = r[i];
	}
	return out;
}

/* Remove [s, e) from the set; ranges may split (the set stays sorted). */
static void subtract(struct range *r, unsigned *n, uint64_t s, uint64_t e)
{
	struct range tmp[MEM_MAX_RANGES];
	unsigned m = 0;

	for (unsigned i = 0; i < *n; i++) {
		if (r[i].end <= s || r[i].start >= e) {
			tmp[m++] = r[i];
			continue;
		}
		if (r[i].start < s && m < MEM_MAX_RANGES)
			tmp[m++] = (struct range){ r[i].start, s };
		if (r[i].end > e && m < MEM_MAX_RANGES)
			tmp[m++] = (struct range){ e, r[i].end };
	}
	memcpy(r, tmp, m * sizeof(*r));
	*n = m;
}

static void exclude(struct memmap_info *mi, uint64_t addr, uint64_t len)
{
	if (len)
		subtract(mi->usable, &mi->nusable, ALIGN_DOWN(addr, PAGE),
			 ALIGN_UP(addr + len, PAGE));
}

bool memmap_read(const struct hvm_start_info *si, uint64_t image_end, uint64_t mapped_top,
		 struct memmap_info *mi)
{
	const struct hvm_memmap_entry *e;
	uint32_t n;

	memset(mi, 0, sizeof(*mi));
	if (si->magic != HVM_START_MAGIC || si->version < 1 || !si->memmap_paddr ||
	    !si->memmap_entries)
		return false;
	e = (const struct hvm_memmap_entry *)(uintptr_t)si->memmap_paddr;
	n = MIN(si->memmap_entries, MAX_ENTRIES);

	for (uint32_t i = 0; i < n; i++) {
		if (e[i].type != HVM_MEMMAP_RAM || e[i].addr + e[i].size < e[i].addr)
			continue;
		mi->total_ram += e[i].size;
		if (mi->nram < MEM_MAX_RANGES)
			mi->ram[mi->nram++] = (struct range){ e[i].addr, e[i].addr + e[i].size };
	}
	mi->nram = merge_ranges(mi->ram, mi->nram);

	/* Usable: page-aligned RAM inside the map ... */
	for (unsigned i = 0; i < mi->nram; i++) {
		uint64_t s = ALIGN_UP(mi->ram[i].start, PAGE), t = ALIGN_DOWN(mi->ram[i].end, PAGE);
		if (t > mapped_top) {
			mi->unmapped_ram += t - MAX(s, mapped_top);
			t = mapped_top;
		}
		if (s < t)
			mi->usable[mi->nusable++] = (struct range){ s, t };
	}
	/* ... not below 1 MiB or the image, not in anything the VMM handed us ... */
	exclude(mi, 0, MAX(1 * MiB, image_end));
	exclude(mi, (uint64_t)(uintptr_t)si, sizeof(*si));
	/* (PVH: address 0 means "not present") */
	exclude(mi, si->memmap_paddr, (uint64_t)si->memmap_entries * sizeof(*e));
	if (si->cmdline_paddr)
		exclude(mi, si->cmdline_paddr, strlen((const char *)(uintptr_t)si->cmdline_paddr) + 1);
	if (si->nr_modules && si->modlist_paddr) {
		const struct hvm_modlist_entry *m =
			(const struct hvm_modlist_entry *)(uintptr_t)si->modlist_paddr;
		exclude(mi, si->modlist_paddr, (uint64_t)si->nr_modules * sizeof(*m));
		for (uint32_t i = 0; i < si->nr_modules && i < MAX_ENTRIES; i++)
			if (m[i].paddr)
				exclude(mi, m[i].paddr, m[i].size);
	}
	/* ... and not where a non-RAM entry claims the same addresses. */
	for (uint32_t i = 0; i < n; i++)
		if (e[i].type != HVM_MEMMAP_RAM)
			exclude(mi, e[i].addr, e[i].size);
	return true;
}

bool memmap_is_ram(const struct memmap_info *mi, uint64_t start, uint64_t end)
{
	for (unsigned i = 0; i < mi->nram; i++)
		if (mi->ram[i].start <= start && end <= mi->ram[i].end)
			return true;
	return false;
}

static uint64_t meta_pages(uint64_t npages)
{
	/* 4-byte generation per page, plus one page of counter mirrors */
	return ALIGN_UP(npages * 4, PAGE) / PAGE + 1;
}

bool memmap_alloc(const struct memmap_info *mi, uint64_t want, uint64_t min_pages,
		  struct wss_layout *out)
{
	uint64_t avail = 0, np = want, mp;
	unsigned mr = 0;

	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < mi->nusable; i++)
		avail += (mi->usable[i].end - mi->usable[i].start) / PAGE;
	if (np < min_pages)
		np = min_pages;
	/* Shrink until metadata (first range that holds it) plus pages fit. */
	for (;;) {
		mp = meta_pages(np);
		for (mr = 0; mr < mi->nusable; mr++)
			if ((mi->usable[mr].end - mi->usable[mr].start) / PAGE >= mp)
				break;
		if (mr == mi->nusable || avail <= mp)
			return false;
		if (np + mp <= avail)
			break;
		np = avail - mp;	/* mp only shrinks with np: this converges */
	}
	if (!np)
		return false;

	out->npages = np;
	out->meta = mi->usable[mr].start;
	out->mirror = out->meta + (mp - 1) * PAGE;
	for (unsigned i = 0; i < mi->nusable && np; i++) {
		uint64_t s = mi->usable[i].start, e = mi->usable[i].end, take;
		if (i == mr)
			s += mp * PAGE;
		take = MIN((e - s) / PAGE, np);
		if (!take)
			continue;
		out->wss[out->nwss++] = (struct range){ s, s + take * PAGE };
		np -= take;
	}
	return true;
}
