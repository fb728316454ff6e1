#define _GNU_SOURCE
#include "core/mem.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

static const char *const backend_names[] = {
	[MEM_BACKEND_MEMFD] = "memfd",
	[MEM_BACKEND_ANON] = "anon",
	[MEM_BACKEND_HUGETLB] = "hugetlb",
};

int mem_backend_parse(const char *s, enum mem_backend *out, struct kv_err *err)
{
	for (unsigned i = 0; i < sizeof(backend_names) / sizeof(backend_names[0]); i++)
		if (s && !strcmp(s, backend_names[i])) {
			*out = (enum mem_backend)i;
			return 0;
		}
	return kv_errf(err, EINVAL, "unknown memory backend '%s' (memfd, anon or hugetlb)",
		       s ? s : "");
}

const char *mem_backend_name(enum mem_backend b)
{
	return (unsigned)b < sizeof(backend_names) / sizeof(backend_names[0]) ?
	       backend_names[b] : "?";
}

uint64_t mem_hugetlb_free(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
	unsigned long long n = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%llu", &n) != 1)
		n = 0;
	fclose(f);
	return (uint64_t)n * MEM_HUGE_PAGE_SIZE;
}

int mem_layout(uint64_t size, struct mem_region *regions, unsigned max,
	       struct kv_err *err)
{
	uint64_t low;
	unsigned n = 0;

	if (size < MEM_MIN_SIZE || size > MEM_MAX_SIZE)
		return kv_errf(err, EINVAL,
			       "memory size %" PRIu64 " MiB out of range (%llu MiB .. %llu GiB)",
			       size >> 20, MEM_MIN_SIZE >> 20, MEM_MAX_SIZE >> 30);
	if (size & (MEM_PAGE_SIZE - 1))
		return kv_errf(err, EINVAL, "memory size must be a multiple of 4 KiB");

	low = size < MEM_HOLE_START ? size : MEM_HOLE_START;
	if (n >= max)
		return kv_errf(err, ENOSPC, "too many memory regions");
	regions[n++] = (struct mem_region){ .gpa = 0, .size = low, .offset = 0 };
	if (size > low) {
		if (n >= max)
			return kv_errf(err, ENOSPC, "too many memory regions");
		regions[n++] = (struct mem_region){
			.gpa = MEM_4G, .size = size - low, .offset = low };
	}
	return (int)n;
}

int mem_parse_size(const char *s, uint64_t *out, struct kv_err *err)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return kv_errf(err, EINVAL, "invalid size '%s'", s ? s : "");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return kv_errf(err, EINVAL, "invalid size '%s'", s);
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default:
		return kv_errf(err, EINVAL, "invalid size '%s' (use K, M, G or T)", s);
	}
	if (*end == 'i' && shift)	/* accept "GiB"-style "Gi" */
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return kv_errf(err, EINVAL, "invalid size '%s'", s);
	if (shift && v > (UINT64_MAX >> shift))
		return kv_errf(err, ERANGE, "size '%s' too large", s);
	*out = (uint64_t)v << shift;
	return 0;
}

/* Lay out, map and track mem->memfd (already sized). */
static int mem_map(struct guest_mem *mem, uint64_t size, struct kv_err *err)
{
	enum mem_backend backend = mem->backend;
	int n = mem_layout(size, mem->regions, MEM_MAX_REGIONS, err);

	if (n < 0) {
		mem_destroy(mem);
		return n;
	}
	mem->nregions = (unsigned)n;
	mem->size = size;
	mem->npages = size >> MEM_PAGE_SHIFT;
	switch (mem->backend) {
	case MEM_BACKEND_ANON:
		mem->host = mmap(NULL, size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		break;
	case MEM_BACKEND_HUGETLB:
		/* no MAP_NORESERVE: the huge pages are reserved now, so a host
		 * without enough of them refuses here, not with a SIGBUS when
		 * the guest first touches its memory */
		mem->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem->memfd, 0);
		break;
	default:
		mem->host = mmap(NULL, size, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_NORESERVE, mem->memfd, 0);
		break;
	}
	if (mem->host == MAP_FAILED) {
		int e = errno;
		mem->host = NULL;
		mem_destroy(mem);
		if (e == ENOMEM && backend == MEM_BACKEND_HUGETLB)
			return kv_errf(err, e, "not enough free 2 MiB huge pages for %" PRIu64
				       " MiB of guest RAM (%" PRIu64 " MiB free; the host's "
				       "administrator reserves them in /proc/sys/vm/nr_hugepages)",
				       size >> 20, mem_hugetlb_free() >> 20);
		return kv_errf_sys(err, e, "mmap guest RAM (%" PRIu64 " MiB)", size >> 20);
	}
	/* Keep guest RAM out of core dumps of the VMM. */
	madvise(mem->host, size, MADV_DONTDUMP);
	/* 2 MiB pages where the host allows them: for anon where THP is
	 * "madvise" or "always", for a memfd only where shmem_enabled is
	 * advise or always (hosts with shmem THP "never", like the nested-PVM
	 * development host, ignore the hint, and every first touch is a 4 KiB
	 * fault).  hugetlb pages are huge already. */
	if (mem->backend != MEM_BACKEND_HUGETLB)
		madvise(mem->host, size, MADV_HUGEPAGE);
	if (mem->backend == MEM_BACKEND_ANON) {
		/* a child the VMM forks must not make guest RAM copy-on-write
		 * under KVM (QEMU does the same) */
		madvise(mem->host, size, MADV_DONTFORK);
		/* where the pages are: the only way to skip what the guest never
		 * touched in anonymous memory (present or swapped = data) */
		mem->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (mem->pagemap_fd < 0) {
			int e = errno;
			mem_destroy(mem);
			return kv_errf_sys(err, e, "/proc/self/pagemap (needed by --mem-backend anon)");
		}
	}

	mem->vmm_dirty = calloc((mem->npages + 63) / 64, sizeof(uint64_t));
	if (!mem->vmm_dirty) {
		mem_destroy(mem);
		return kv_errf(err, ENOMEM, "allocating the dirty bitmap");
	}
	return 0;
}

static void mem_reset(struct guest_mem *mem)
{
	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
	mem->pagemap_fd = -1;
}

int mem_init(struct guest_mem *mem, uint64_t size, enum mem_backend backend,
	     struct kv_err *err)
{
	int r;

	mem_reset(mem);
	r = mem_layout(size, mem->regions, MEM_MAX_REGIONS, err);
	if (r < 0)
		return r;
	mem->backend = backend;
	if (backend == MEM_BACKEND_ANON)
		return mem_map(mem, size, err);
	if (backend == MEM_BACKEND_HUGETLB && (size & (MEM_HUGE_PAGE_SIZE - 1)))
		return kv_errf(err, EINVAL, "with --mem-backend hugetlb the memory size must be a "
			       "multiple of 2 MiB");
	mem->memfd = memfd_create("kvmove-ram", MFD_CLOEXEC |
				  (backend == MEM_BACKEND_HUGETLB ? MFD_HUGETLB : 0));
	if (mem->memfd < 0)
		return kv_errf_sys(err, errno, backend == MEM_BACKEND_HUGETLB ?
				   "memfd_create on hugetlbfs" : "memfd_create");
	if (ftruncate(mem->memfd, (off_t)size) < 0) {
		int e = errno;
		mem_destroy(mem);
		return kv_errf_sys(err, e, "ftruncate guest RAM to %" PRIu64 " bytes", size);
	}
	return mem_map(mem, size, err);
}

int mem_init_fd(struct guest_mem *mem, uint64_t size, int fd, struct kv_err *err)
{
	struct stat st;
	struct statfs sfs;
	int seals, fl, r;

	mem_reset(mem);
	r = mem_layout(size, mem->regions, MEM_MAX_REGIONS, err);
	if (r < 0)
		return r;
	if (fstat(fd, &st) < 0)
		return kv_errf_sys(err, errno, "guest RAM fd");
	/* F_GET_SEALS answers only for shmem and hugetlbfs files (memfds, and
	 * tmpfs files, which behave the same): not a disk file, a device or a
	 * socket passed off as RAM */
	seals = fcntl(fd, F_GET_SEALS);
	if (!S_ISREG(st.st_mode) || seals < 0)
		return kv_errf(err, EINVAL, "the guest RAM fd is not a memfd");
	if ((uint64_t)st.st_size != size)
		return kv_errf(err, EINVAL, "the guest RAM memfd has %lld bytes, the VM %" PRIu64,
			       (long long)st.st_size, size);
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK))
		return kv_errf(err, EPERM, "the guest RAM memfd is sealed against writing or "
			       "shrinking");
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
		return kv_errf(err, EACCES, "the guest RAM memfd is not open for writing");
	mem->backend = fstatfs(fd, &sfs) == 0 && sfs.f_type == HUGETLBFS_MAGIC ?
		       MEM_BACKEND_HUGETLB : MEM_BACKEND_MEMFD;
	mem->memfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (mem->memfd < 0)
		return kv_errf_sys(err, errno, "dup of the guest RAM memfd");
	return mem_map(mem, size, err);
}

void mem_destroy(struct guest_mem *mem)
{
	if (mem->host)
		munmap(mem->host, mem->size);
	if (mem->memfd >= 0)
		close(mem->memfd);
	if (mem->pagemap_fd >= 0)
		close(mem->pagemap_fd);
	free(mem->vmm_dirty);
	mem_reset(mem);
}

static const struct mem_region *find_region(const struct guest_mem *mem,
					    uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		/* overflow-safe: gpa >= r->gpa && gpa + len <= r->gpa + r->size */
		if (gpa >= r->gpa && gpa - r->gpa <= r->size &&
		    len <= r->size - (gpa - r->gpa))
			return r;
	}
	return NULL;
}

void *mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_region *r;

	if (!mem->host)
		return NULL;
	r = find_region(mem, gpa, len ? len : 1);
	if (!r)
		return NULL;
	return mem->host + r->offset + (gpa - r->gpa);
}

uint64_t mem_gpa_to_offset(const struct guest_mem *mem, uint64_t gpa)
{
	const struct mem_region *r = find_region(mem, gpa, 1);

	return r ? r->offset + (gpa - r->gpa) : UINT64_MAX;
}

void mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint64_t end, first, last;

	if (!len || !mem->vmm_dirty)
		return;
	/* Walk region by region so a range crossing a region edge still marks
	 * what is RAM. */
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		uint64_t lo = gpa > r->gpa ? gpa : r->gpa;
		uint64_t rend = r->gpa + r->size;

		end = (len > UINT64_MAX - gpa) ? UINT64_MAX : gpa + len;
		if (end > rend)
			end = rend;
		if (lo >= end)
			continue;
		first = (r->offset + (lo - r->gpa)) >> MEM_PAGE_SHIFT;
		last = (r->offset + (end - 1 - r->gpa)) >> MEM_PAGE_SHIFT;
		for (uint64_t p = first; p <= last; p++)
			__atomic_fetch_or(&mem->vmm_dirty[p / 64], 1ULL << (p % 64),
					  __ATOMIC_RELAXED);
	}
}

void mem_populate(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
#ifdef MADV_POPULATE_WRITE
	void *hva = mem_gpa_to_hva(mem, gpa, len);

	if (hva && len >= 2 * MEM_PAGE_SIZE)
		madvise(hva, len, MADV_POPULATE_WRITE);
#else
	(void)mem; (void)gpa; (void)len;
#endif
}

/* pagemap: one u64 per 4 KiB page of the mapping; bit 63 present, 62 swapped */
#define PM_DATA ((1ULL << 63) | (1ULL << 62))
#define PM_CHUNK 4096	/* entries per read: 16 MiB of RAM */

static int pagemap_next(const struct guest_mem *mem, uint64_t pos, uint64_t *data,
			uint64_t *end)
{
	uint64_t buf[PM_CHUNK], base = (uint64_t)(uintptr_t)mem->host >> MEM_PAGE_SHIFT;
	uint64_t p = pos >> MEM_PAGE_SHIFT, first = UINT64_MAX;

	while (p < mem->npages) {
		uint64_t want = mem->npages - p < PM_CHUNK ? mem->npages - p : PM_CHUNK;
		ssize_t n = pread(mem->pagemap_fd, buf, want * 8, (off_t)((base + p) * 8));
		uint64_t got;

		if (n <= 0 || n % 8) {
			/* cannot tell: the rest counts as data (never lose a page) */
			if (first == UINT64_MAX)
				first = p;
			p = mem->npages;
			break;
		}
		got = (uint64_t)n / 8;
		for (uint64_t i = 0; i < got; i++, p++) {
			bool d = buf[i] & PM_DATA;
			if (first == UINT64_MAX && d)
				first = p;
			else if (first != UINT64_MAX && !d)
				goto done;
		}
	}
done:
	if (first == UINT64_MAX)
		return -ENXIO;
	*data = first << MEM_PAGE_SHIFT;
	*end = p << MEM_PAGE_SHIFT;
	return 0;
}

int mem_next_data(const struct guest_mem *mem, uint64_t pos, uint64_t *data,
		  uint64_t *end)
{
	off_t d, h;

	if (pos >= mem->size)
		return -ENXIO;
	if (mem->backend == MEM_BACKEND_ANON)
		return pagemap_next(mem, pos, data, end);
	/* memfd: holes are never-written pages; hugetlbfs has no SEEK_DATA of
	 * its own and answers "all data", which is right, only slower */
	d = lseek(mem->memfd, (off_t)pos, SEEK_DATA);
	if (d < 0 && errno == ENXIO)
		return -ENXIO;
	if (d < 0) {		/* cannot tell: the rest counts as data */
		*data = pos;
		*end = mem->size;
		return 0;
	}
	if ((uint64_t)d >= mem->size)
		return -ENXIO;
	h = lseek(mem->memfd, d, SEEK_HOLE);
	*data = (uint64_t)d;
	*end = h < 0 || (uint64_t)h > mem->size ? mem->size : (uint64_t)h;
	return 0;
}

uint64_t mem_resident_bytes(const struct guest_mem *mem)
{
	uint64_t pos = 0, data, end, n = 0;

	while (!mem_next_data(mem, pos, &data, &end)) {
		n += end - data;
		pos = end;
	}
	return n;
}

int mem_discard(struct guest_mem *mem, uint64_t first, uint64_t n, struct kv_err *err)
{
	if (first > mem->npages || n > mem->npages - first)
		return kv_errf(err, EINVAL, "discard of pages %llu+%llu outside guest memory",
			       (unsigned long long)first, (unsigned long long)n);
	switch (mem->backend) {
	case MEM_BACKEND_ANON:
		if (madvise(mem->host + (first << MEM_PAGE_SHIFT), n << MEM_PAGE_SHIFT,
			    MADV_DONTNEED) < 0)
			return kv_errf_sys(err, errno, "dropping stale pages of guest memory");
		return 0;
	case MEM_BACKEND_HUGETLB:
		return kv_errf(err, ENOTSUP, "guest memory on huge pages cannot drop single "
			       "pages");
	default:
		if (fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(first << MEM_PAGE_SHIFT), (off_t)(n << MEM_PAGE_SHIFT)) < 0)
			return kv_errf_sys(err, errno, "punching stale pages out of guest memory");
		return 0;
	}
}

bool mem_test_dirty(const struct guest_mem *mem, uint64_t gpa)
{
	uint64_t off = mem_gpa_to_offset(mem, gpa);
	uint64_t p;

	if (off == UINT64_MAX || !mem->vmm_dirty)
		return false;
	p = off >> MEM_PAGE_SHIFT;
	return __atomic_load_n(&mem->vmm_dirty[p / 64], __ATOMIC_RELAXED) &
	       (1ULL << (p % 64));
}

int mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len,
	      struct kv_err *err)
{
	void *dst = mem_gpa_to_hva(mem, gpa, len);

	if (!dst)
		return kv_errf(err, EFAULT,
			       "guest range 0x%" PRIx64 "+0x%" PRIx64 " is not RAM", gpa, len);
	memcpy(dst, src, len);
	mem_mark_dirty(mem, gpa, len);
	return 0;
}

int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len,
	     struct kv_err *err)
{
	const void *src = mem_gpa_to_hva(mem, gpa, len);

	if (!src)
		return kv_errf(err, EFAULT,
			       "guest range 0x%" PRIx64 "+0x%" PRIx64 " is not RAM", gpa, len);
	memcpy(dst, src, len);
	return 0;
}
