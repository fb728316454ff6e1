/*
 * physical.c - the physical limits a migration is measured against, on this
 * machine, in the same run as the migrations:
 *
 *   physical memcpy [MIB]          memcpy bandwidth (best of several passes
 *                                  over two MIB-MiB buffers)
 *   physical touch [MIB]           copying into never-touched memory: a
 *                                  memfd mapped shared (4 KiB shmem pages
 *                                  unless shmem THP is on: kvmove's guest
 *                                  RAM) and anonymous memory with
 *                                  MADV_HUGEPAGE (QEMU's guest RAM); what a
 *                                  migration destination does to each page
 *   physical tcp [MIB]             single-stream TCP throughput over
 *                                  loopback (a forked sender, 1 MiB writes)
 *   physical tcp-recv HOST PORT    receive one stream (for a shaped link: run
 *   physical tcp-send HOST PORT MIB    the two ends in different namespaces)
 *
 * Output: one "key=value" line per measurement (MiB/s), for bench/run.py.
 * Built by bench/run.py with cc; C11 + POSIX only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
#define CHUNK (1 << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int memcpy_bench(size_t mib)
{
	size_t n = mib << 20;
	char *a = malloc(n), *b = malloc(n);
	double best = 0;

	if (!a || !b)
		die("malloc");
	memset(a, 1, n);	/* touch both: no first-touch faults in the timing */
	memset(b, 2, n);
	for (int i = 0; i < 8; i++) {
		double t = now();
		memcpy(i & 1 ? a : b, i & 1 ? b : a, n);
		t = now() - t;
		if (n / MIB / t > best)
			best = n / MIB / t;
	}
	/* keep the copies observable */
	if (a[n - 1] + b[0] == 0)
		printf("#\n");
	printf("memcpy_mibps=%.0f\n", best);
	free(a);
	free(b);
	return 0;
}

static double touch_copy(char *dst, const char *src, size_t n)
{
	double t = now();

	for (size_t off = 0; off < n; off += CHUNK)
		memcpy(dst + off, src, CHUNK);
	return n / MIB / (now() - t);
}

static int touch_bench(size_t mib)
{
	size_t n = mib << 20;
	char *src = malloc(CHUNK), *anon;
	int fd = memfd_create("physical", MFD_CLOEXEC);
	char *shm;

	if (!src || fd < 0 || ftruncate(fd, (off_t)n) < 0)
		die("memfd");
	memset(src, 0x5a, CHUNK);
	shm = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shm == MAP_FAILED)
		die("mmap memfd");
	madvise(shm, n, MADV_HUGEPAGE);		/* as kvmove asks; the host decides */
	printf("memfd_first_touch_mibps=%.0f\n", touch_copy(shm, src, n));
	munmap(shm, n);
	close(fd);
	anon = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		die("mmap anon");
	madvise(anon, n, MADV_HUGEPAGE);
	printf("anon_thp_first_touch_mibps=%.0f\n", touch_copy(anon, src, n));
	munmap(anon, n);
	free(src);
	return 0;
}

static int tcp_listen(const char *host, int port, int *out_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t len = sizeof(sa);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", host);
		exit(2);
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
		die("bind/listen");
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("getsockname");
	*out_port = ntohs(sa.sin_port);
	return fd;
}

static int tcp_connect(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", host);
		exit(2);
	}
	for (int tries = 0; connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0; tries++) {
		if (tries > 200)
			die("connect");
		usleep(10000);
	}
	return fd;
}

static void send_all(int fd, size_t mib)
{
	char *buf = malloc(CHUNK);

	if (!buf)
		die("malloc");
	memset(buf, 0x5a, CHUNK);
	for (size_t i = 0; i < mib; i++) {
		size_t off = 0;
		while (off < CHUNK) {
			ssize_t w = write(fd, buf + off, CHUNK - off);
			if (w <= 0)
				die("write");
			off += (size_t)w;
		}
	}
	close(fd);
	free(buf);
}

/* Receive until EOF; MiB/s from the first byte to EOF. */
static double recv_all(int fd, size_t *total)
{
	char *buf = malloc(CHUNK);
	double t0 = 0;
	ssize_t r;

	if (!buf)
		die("malloc");
	*total = 0;
	while ((r = read(fd, buf, CHUNK)) > 0) {
		if (!*total)
			t0 = now();
		*total += (size_t)r;
	}
	if (r < 0)
		die("read");
	free(buf);
	return *total / MIB / (now() - t0);
}

static int tcp_loopback(size_t mib)
{
	int port, lfd = tcp_listen("127.0.0.1", 0, &port), cfd, st;
	size_t total;
	double mibps;
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(lfd);
		send_all(tcp_connect("127.0.0.1", port), mib);
		_exit(0);
	}
	cfd = accept(lfd, NULL, NULL);
	if (cfd < 0)
		die("accept");
	mibps = recv_all(cfd, &total);
	waitpid(pid, &st, 0);
	if (total != mib << 20) {
		fprintf(stderr, "short stream: %zu bytes\n", total);
		return 1;
	}
	printf("tcp_mibps=%.0f\n", mibps);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (!strcmp(mode, "memcpy"))
		return memcpy_bench(argc > 2 ? strtoul(argv[2], NULL, 0) : 256);
	if (!strcmp(mode, "touch"))
		return touch_bench(argc > 2 ? strtoul(argv[2], NULL, 0) : 512);
	if (!strcmp(mode, "tcp"))
		return tcp_loopback(argc > 2 ? strtoul(argv[2], NULL, 0) : 4096);
	if (!strcmp(mode, "tcp-recv") && argc == 4) {
		int port, lfd = tcp_listen(argv[2], atoi(argv[3]), &port), cfd;
		size_t total;
		double mibps;

		printf("listening=%d\n", port);
		fflush(stdout);
		cfd = accept(lfd, NULL, NULL);
		if (cfd < 0)
			die("accept");
		mibps = recv_all(cfd, &total);
		printf("tcp_mibps=%.0f\nbytes=%zu\n", mibps, total);
		return 0;
	}
	if (!strcmp(mode, "tcp-send") && argc == 5) {
		send_all(tcp_connect(argv[2], atoi(argv[3])), strtoul(argv[4], NULL, 0));
		return 0;
	}
	fprintf(stderr, "usage: physical memcpy [MIB] | touch [MIB] | tcp [MIB] | tcp-recv HOST PORT | "
		"tcp-send HOST PORT MIB\n");
	return 2;
}
