#define _GNU_SOURCE
#include "core/mem.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
	int n = mem_layout(size, mem->regions, MEM_MAX_REGIONS, err);

	if (n < 0) {
		mem_destroy(mem);
		return n;
	}
	mem->nregions = (unsigned)n;
	mem->size = size;
	mem->npages = size >> MEM_PAGE_SHIFT;
	mem->host = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_NORESERVE, mem->memfd, 0);
	if (mem->host == MAP_FAILED) {
		int e = errno;
		mem->host = NULL;
		mem_destroy(mem);
		return kv_errf_sys(err, e, "mmap guest RAM (%" PRIu64 " MiB)", size >> 20);
	}
	/* Guest RAM is large and mostly idle: no THP surprises in fork, and keep
	 * it out of core dumps of the VMM. */
	madvise(mem->host, size, MADV_DONTDUMP);
	/* 2 MiB pages where the host allows them for shmem (shmem_enabled =
	 * advise or always): fewer faults and TLB misses for the guest.  Hosts
	 * with shmem THP "never" (like the nested-PVM development host) ignore
	 * the hint, and every first touch is a 4 KiB fault. */
	madvise(mem->host, size, MADV_HUGEPAGE);

	mem->vmm_dirty = calloc((mem->npages + 63) / 64, sizeof(uint64_t));
	if (!mem->vmm_dirty) {
		mem_destroy(mem);
		return kv_errf(err, ENOMEM, "allocating the dirty bitmap");
	}
	return 0;
}

int mem_init(struct guest_mem *mem, uint64_t size, struct kv_err *err)
{
	int r;

	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
	r = mem_layout(size, mem->regions, MEM_MAX_REGIONS, err);
	if (r < 0)
		return r;
	mem->memfd = memfd_create("kvmove-ram", MFD_CLOEXEC);
	if (mem->memfd < 0)
		return kv_errf_sys(err, errno, "memfd_create");
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
	int seals, fl, r;

	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
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
	free(mem->vmm_dirty);
	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
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

uint64_t mem_resident_bytes(const struct guest_mem *mem)
{
	off_t pos = 0, end = (off_t)mem->size;
	uint64_t n = 0;

	while (pos < end) {
		off_t data = lseek(mem->memfd, pos, SEEK_DATA), hole;
		if (data < 0)
			break;	/* ENXIO: no more data */
		hole = lseek(mem->memfd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		n += (uint64_t)(hole - data);
		pos = hole;
	}
	return n;
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
