/*
 * uffd.c - userfaultfd over guest memory (uffd.h).
 */
#define _GNU_SOURCE
#include "core/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int uffd_create(struct kv_err *err)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return kv_errf_sys(err, errno, "userfaultfd");
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;
		close(fd);
		return kv_errf_sys(err, e, "UFFDIO_API");
	}
	if (!(api.features & UFFD_FEATURE_MISSING_SHMEM)) {
		close(fd);
		return kv_errf(err, ENOTSUP, "userfaultfd cannot watch shared memory here "
			       "(Linux 4.11+)");
	}
	return fd;
}

bool uffd_supported(void)
{
	int fd = uffd_create(NULL);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int uffd_register(struct guest_mem *mem, struct kv_err *err)
{
	struct uffdio_register reg = {
		.range = { (uint64_t)(uintptr_t)mem->host, mem->size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int fd = uffd_create(err);

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		int e = errno;
		close(fd);
		return kv_errf_sys(err, e, "UFFDIO_REGISTER of guest memory");
	}
	if (!(reg.ioctls & (1ull << _UFFDIO_COPY)) || !(reg.ioctls & (1ull << _UFFDIO_ZEROPAGE))) {
		close(fd);
		return kv_errf(err, ENOTSUP, "userfaultfd cannot place pages in guest memory");
	}
	return fd;
}

void uffd_unregister(int fd, struct guest_mem *mem)
{
	struct uffdio_range range = { (uint64_t)(uintptr_t)mem->host, mem->size };

	if (fd < 0)
		return;
	ioctl(fd, UFFDIO_UNREGISTER, &range);
	close(fd);
}

int uffd_place(int fd, struct guest_mem *mem, uint64_t page, const void *data)
{
	uint64_t dst = (uint64_t)(uintptr_t)mem->host + (page << MEM_PAGE_SHIFT);
	int r;

	if (page >= mem->npages)
		return -EINVAL;
	do {
		if (data) {
			struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)data,
						 .len = MEM_PAGE_SIZE };
			r = ioctl(fd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_zeropage z = { .range = { dst, MEM_PAGE_SIZE } };
			r = ioctl(fd, UFFDIO_ZEROPAGE, &z);
		}
	} while (r < 0 && errno == EAGAIN);	/* the mapping changed under us */
	if (r < 0 && errno == EEXIST) {
		uffd_wake(fd, mem, page);
		return -EEXIST;
	}
	return r < 0 ? -errno : 0;
}

void uffd_wake(int fd, struct guest_mem *mem, uint64_t page)
{
	struct uffdio_range range = {
		(uint64_t)(uintptr_t)mem->host + (page << MEM_PAGE_SHIFT), MEM_PAGE_SIZE };

	ioctl(fd, UFFDIO_WAKE, &range);
}

int uffd_read_faults(int fd, struct guest_mem *mem, uint64_t *pages, unsigned max)
{
	struct uffd_msg msg[64];
	uint64_t base = (uint64_t)(uintptr_t)mem->host;
	ssize_t n;
	int k = 0;

	if (max > 64)
		max = 64;
	n = read(fd, msg, max * sizeof(msg[0]));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
		uint64_t a = msg[i].arg.pagefault.address;
		if (msg[i].event != UFFD_EVENT_PAGEFAULT || a < base || a - base >= mem->size)
			continue;	/* no other events were asked for */
		pages[k++] = (a - base) >> MEM_PAGE_SHIFT;
	}
	return k;
}
