/*
 * mem_backend.c - what each guest-RAM backend (--mem-backend memfd, anon,
 * hugetlb; core/mem.h) costs the VMM's side of a migration, without a
 * guest:
 *
 *   touch     first touch: one write per 4 KiB page into never-touched
 *             guest RAM (what a guest's or a destination's first write
 *             costs the host: one fault per 4 KiB or per 2 MiB)
 *   receive   the destination: kvmove's own RAM receiver (ram_receive())
 *             taking a pre-recorded stream of MIB MiB of incompressible
 *             pages from memory into never-touched guest RAM: the
 *             destination's ceiling with an infinitely fast link
 *   scan      the source: finding what to send in a 64 GiB guest that
 *             touched 1 GiB in 64 places (mem_next_data: SEEK_DATA for
 *             memfd, /proc/self/pagemap for anon, all of it for hugetlb)
 *
 * hugetlb runs only where the host has enough free 2 MiB pages (as root:
 * echo N > /proc/sys/vm/nr_hugepages; the bench never changes it).  Each
 * case runs RUNS times, interleaved; the median and the range are printed.
 * Not a test: numbers for docs/benchmarks/mem-backend.md.
 *
 * Built with the tree (CMake target mem_backend).
 * Run: build/bench/mem_backend [MIB] [RUNS]   (default 1024 MiB, 5 runs)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/vm.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "state/stream.h"

#define NB 3
#define MAXRUNS 15

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const struct kv_err *err)
{
	fprintf(stderr, "mem_backend: %s: %s\n", what, err ? err->msg : strerror(errno));
	exit(1);
}

static struct vm *new_vm(uint64_t size, enum mem_backend b)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct kv_err err;

	if (!vm || mem_init(&vm->mem, size, b, &err))
		die(mem_backend_name(b), vm ? &err : NULL);
	return vm;
}

static void free_vm(struct vm *vm)
{
	mem_destroy(&vm->mem);
	free(vm);
}

static void fill(uint8_t *p, uint64_t bytes)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (uint64_t i = 0; i < bytes / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		((uint64_t *)(void *)p)[i] = x;
	}
}

static double touch(uint64_t size, enum mem_backend b)
{
	struct vm *vm = new_vm(size, b);
	double t = now_s();

	for (uint64_t off = 0; off < size; off += 4096)
		vm->mem.host[off] = 1;
	t = now_s() - t;
	free_vm(vm);
	return t;
}

static double receive(int wire, uint64_t size, enum mem_backend b)
{
	struct vm *vm = new_vm(size, b);
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;
	uint64_t pages = 0;
	uint32_t seq = 0;
	double t;

	lseek(wire, 0, SEEK_SET);
	if (stream_init(&s, wire, MIG_MAX_RECORD, &err))
		die("stream", &err);
	t = now_s();
	while (!stream_read_head(&s, &rec, &err))
		if (ram_receive(vm, &s, &rec, NULL, &pages, &seq, &err))
			die("receive", &err);
	t = now_s() - t;
	if (pages != size / 4096)
		die("receive: not every page arrived", NULL);
	stream_destroy(&s);
	free_vm(vm);
	return t;
}

static double scan(enum mem_backend b)
{
	uint64_t size = 64ULL << 30, pos = 0, data, end, n = 0;
	struct vm *vm = new_vm(size, b);
	double t;

	/* 64 runs of 16 MiB spread over the 64 GiB */
	for (uint64_t i = 0; i < 64; i++)
		for (uint64_t off = 0; off < (16ULL << 20); off += 4096)
			vm->mem.host[i * (size / 64) + off] = 1;
	t = now_s();
	while (!mem_next_data(&vm->mem, pos, &data, &end)) {
		n += end - data;
		pos = end;
	}
	t = now_s() - t;
	if (n < (1ULL << 30))
		die("scan missed data", NULL);
	free_vm(vm);
	return t;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, enum mem_backend b, double *t, int runs, double mib)
{
	qsort(t, (size_t)runs, sizeof(*t), cmp);
	if (mib > 0)
		printf("%-8s %-8s median %7.0f MiB/s  (%.0f .. %.0f)\n", what, mem_backend_name(b),
		       mib / t[runs / 2], mib / t[runs - 1], mib / t[0]);
	else
		printf("%-8s %-8s median %7.1f ms      (%.1f .. %.1f)\n", what, mem_backend_name(b),
		       t[runs / 2] * 1e3, t[0] * 1e3, t[runs - 1] * 1e3);
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024, size = mib << 20;
	int runs = argc > 2 ? atoi(argv[2]) : 5, nb = NB;
	double tt[NB][MAXRUNS], tr[NB][MAXRUNS], ts[NB][MAXRUNS];
	enum mem_backend bs[NB] = { MEM_BACKEND_MEMFD, MEM_BACKEND_ANON, MEM_BACKEND_HUGETLB };
	struct vm *src;
	struct ram_sender rs;
	struct stream s;
	struct kv_err err;
	int wire = memfd_create("wire", MFD_CLOEXEC);

	if (mib < 16 || mib % 2 || runs < 1 || runs > MAXRUNS) {
		fprintf(stderr, "usage: mem_backend [MIB (even, >= 16)] [RUNS (1..%d)]\n", MAXRUNS);
		return 2;
	}
	if (mem_hugetlb_free() < size) {
		printf("hugetlb: skipped, %llu MiB of 2 MiB pages free, %llu needed "
		       "(/proc/sys/vm/nr_hugepages)\n",
		       (unsigned long long)(mem_hugetlb_free() >> 20), (unsigned long long)mib);
		nb = 2;
	}
	/* the recorded stream: every page of a guest that wrote all its RAM */
	src = new_vm(size, MEM_BACKEND_MEMFD);
	fill(src->mem.host, size);
	if (wire < 0 || stream_init(&s, wire, MIG_MAX_RECORD, &err))
		die("stream", &err);
	if (ram_sender_init(&rs, src, &s, NULL, &err) || ram_send_all(&rs, &err) ||
	    stream_flush(&s, &err))
		die("recording the stream", &err);
	ram_sender_destroy(&rs);
	stream_destroy(&s);
	free_vm(src);

	for (int r = 0; r < runs; r++)
		for (int i = 0; i < nb; i++) {
			tt[i][r] = touch(size, bs[i]);
			tr[i][r] = receive(wire, size, bs[i]);
			ts[i][r] = bs[i] == MEM_BACKEND_HUGETLB ? 0 : scan(bs[i]);
		}
	printf("%llu MiB, %d runs each, interleaved\n", (unsigned long long)mib, runs);
	for (int i = 0; i < nb; i++)
		report("touch", bs[i], tt[i], runs, (double)mib);
	for (int i = 0; i < nb; i++)
		report("receive", bs[i], tr[i], runs, (double)mib);
	for (int i = 0; i < 2; i++)
		report("scan", bs[i], ts[i], runs, 0);
	close(wire);
	return 0;
}
