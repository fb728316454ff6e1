/*
 * The same-host hand-over (migrate --to unix:PATH) without a VM: fds ride a
 * UNIX socket with a record and come out in order as working dups, and an
 * fd channel that cannot carry them says so; fds nobody takes are closed
 * (on arrival past CHANNEL_MAX_FDS, else with the channel).  The
 * destination's LOCAL record: what it accepts lands in the config, every
 * refusal names its reason and nothing leaks.  mem_init_fd maps the pages
 * it is given (shared both ways, still after the caller closes its fd) and
 * refuses what is not a writable, unsealed memfd of the VM's size.  The
 * unix: listener is 0600, replaces a stale socket but never a file, and
 * its peer is this user.  Nothing here needs /dev/kvm.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/mem.h"
#include "migration/dst_local.h"
#include "migration/migration.h"
#include "migration/proto.h"
#include "state/channel.h"
#include "state/stream.h"

#define RAM (16ULL << 20)	/* MEM_MIN_SIZE: the smallest VM */
#define RAM_S "16777216"

/* ---- helpers ---- */

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static bool same_file(int a, int b)
{
	struct stat sa, sb;

	return !fstat(a, &sa) && !fstat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A memfd of size bytes that starts with text (NULL: zeros). */
static int memfd_of(uint64_t size, unsigned flags, const char *text)
{
	int fd = memfd_create("test-local", MFD_CLOEXEC | flags);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (text)
		assert_int_equal(pwrite(fd, text, strlen(text), 0), (ssize_t)strlen(text));
	return fd;
}

static void expect_err(int r, int want, const struct kv_err *err, const char *needle,
		       const char *why)
{
	if (r != want)
		fail_msg("%s: returned %d, wanted %d (%s)", why, r, want, r ? err->msg : "");
	if (needle && !strstr(err->msg, needle))
		fail_msg("%s: message \"%s\" does not name \"%s\"", why, err->msg, needle);
}

/* Two streams over a UNIX socketpair: w writes, r reads. */
struct pair {
	int sv[2];
	struct stream w, r;
};

static void pair_open(struct pair *p)
{
	struct kv_err err;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
				    p->sv), 0);
	if (stream_init(&p->w, p->sv[0], MIG_MAX_JSON, &err) ||
	    stream_init(&p->r, p->sv[1], MIG_MAX_JSON, &err))
		fail_msg("%s", err.msg);
	p->w.timeout_ms = p->r.timeout_ms = 5000;	/* a bug fails, never hangs */
}

static void pair_close(struct pair *p)
{
	stream_destroy(&p->w);
	stream_destroy(&p->r);
	close(p->sv[0]);
	close(p->sv[1]);
}

/* One record with text as payload and fds[0..n) attached (none: n = 0). */
static void send_rec(struct pair *p, uint16_t type, const char *text, const int *fds, unsigned n)
{
	struct kv_err err;
	int r = stream_write(&p->w, type, 0, text, (uint32_t)strlen(text), &err);

	if (!r)
		r = n ? stream_flush_fds(&p->w, fds, n, &err) : stream_flush(&p->w, &err);
	if (r)
		fail_msg("sending a record with %u fds: %s", n, err.msg);
}

static void read_rec(struct pair *p, const char *text)
{
	struct stream_rec rec;
	struct kv_err err;

	if (stream_read(&p->r, &rec, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(rec.len, strlen(text));
	assert_memory_equal(rec.payload, text, rec.len);
}

/* ---- fds over a channel ---- */

static void test_fd_caps(void **state)
{
	struct channel *ch;
	struct kv_err err;
	int sv[2], pfd[2], tcp, base = fd_count();

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pipe(pfd), 0);
	tcp = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(tcp >= 0);

	assert_int_equal(channel_fd_new(&ch, sv[0], &err), 0);
	assert_true(ch->caps & CHANNEL_CAP_FDS);
	assert_true(ch->caps & CHANNEL_CAP_SHUTDOWN);
	assert_int_equal(channel_take_fd(ch), -ENOENT);
	channel_close(ch);

	assert_int_equal(channel_fd_new(&ch, tcp, &err), 0);
	assert_int_equal(ch->caps & CHANNEL_CAP_FDS, 0);	/* a socket, not a UNIX one */
	assert_true(ch->caps & CHANNEL_CAP_SHUTDOWN);
	channel_close(ch);

	assert_int_equal(channel_fd_new(&ch, pfd[1], &err), 0);
	assert_int_equal(ch->caps & CHANNEL_CAP_FDS, 0);
	expect_err(channel_attach_fds(ch, &pfd[0], 1, &err), -EOPNOTSUPP, &err,
		   "cannot carry file descriptors", "attach on a pipe");
	assert_int_equal(channel_take_fd(ch), -ENOENT);
	channel_close(ch);

	close(tcp);
	close(pfd[0]);
	close(pfd[1]);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(fd_count(), base);
}

/* A memfd and a pipe end go with a record; what comes out are dups that
 * work, in the order given, once the record is read. */
static void test_fd_passing(void **state)
{
	struct pair p;
	char buf[16] = { 0 };
	int base = fd_count(), mfd = memfd_of(4096, 0, "guest bytes"), pfd[2], fds[2], a, b;

	assert_int_equal(pipe(pfd), 0);
	pair_open(&p);
	fds[0] = mfd;
	fds[1] = pfd[1];
	assert_int_equal(stream_take_fd(&p.r), -ENOENT);
	send_rec(&p, 7, "with fds", fds, 2);
	send_rec(&p, 8, "without", NULL, 0);
	read_rec(&p, "with fds");

	a = stream_take_fd(&p.r);
	b = stream_take_fd(&p.r);
	assert_true(a >= 0 && b >= 0);
	assert_int_equal(stream_take_fd(&p.r), -ENOENT);
	assert_true(a != mfd && same_file(a, mfd));
	assert_true(b != pfd[1] && same_file(b, pfd[1]));
	assert_int_equal(fcntl(a, F_GETFD), FD_CLOEXEC);
	assert_int_equal(pread(a, buf, 11, 0), 11);
	assert_string_equal(buf, "guest bytes");
	assert_int_equal(write(b, "pipe", 4), 4);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read(pfd[0], buf, sizeof(buf)), 4);
	assert_string_equal(buf, "pipe");

	read_rec(&p, "without");
	assert_int_equal(stream_take_fd(&p.r), -ENOENT);
	/* the sender's own fds are untouched, its dups gone */
	assert_int_equal(fcntl(mfd, F_GETFD), FD_CLOEXEC);
	pair_close(&p);
	close(a);
	close(b);
	close(mfd);
	close(pfd[0]);
	close(pfd[1]);
	assert_int_equal(fd_count(), base);
}

/* Refusals leave nothing attached; exactly CHANNEL_MAX_FDS go in one record;
 * unclaimed fds are capped on arrival and closed with the stream. */
static void test_fd_limits(void **state)
{
	struct pair p;
	struct stream ps;
	struct kv_err err;
	int base = fd_count(), mfd = memfd_of(4096, 0, NULL), fds[CHANNEL_MAX_FDS + 1], pfd[2];

	for (unsigned i = 0; i <= CHANNEL_MAX_FDS; i++)
		fds[i] = mfd;
	pair_open(&p);
	expect_err(stream_flush_fds(&p.w, fds, 1, &err), -EINVAL, &err, "need a record",
		   "nothing buffered");
	assert_int_equal(stream_write(&p.w, 9, 0, "x", 1, &err), 0);
	expect_err(stream_flush_fds(&p.w, fds, CHANNEL_MAX_FDS + 1, &err), -E2BIG, &err,
		   "more than 16 file descriptors", "17 fds");
	assert_int_equal(fd_count(), base + 3);		/* no dup was kept */
	assert_int_equal(stream_flush_fds(&p.w, fds, CHANNEL_MAX_FDS, &err), 0);
	send_rec(&p, 9, "y", fds, CHANNEL_MAX_FDS);
	assert_int_equal(fd_count(), base + 3);		/* the sender's dups are closed */

	read_rec(&p, "x");
	assert_int_equal(fd_count(), base + 3 + CHANNEL_MAX_FDS);
	read_rec(&p, "y");	/* a full reader closes what comes on arrival */
	assert_int_equal(fd_count(), base + 3 + CHANNEL_MAX_FDS);
	pair_close(&p);		/* and the 16 waiting with the channel */
	assert_int_equal(fd_count(), base + 1);

	/* a stream over a pipe has a record to send but nothing to send it on */
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(stream_init(&ps, pfd[1], MIG_MAX_JSON, &err), 0);
	assert_int_equal(stream_write(&ps, 9, 0, "x", 1, &err), 0);
	expect_err(stream_flush_fds(&ps, fds, 1, &err), -EOPNOTSUPP, &err, "cannot carry",
		   "fds over a pipe");
	assert_int_equal(stream_take_fd(&ps), -ENOENT);
	stream_destroy(&ps);
	close(pfd[0]);
	close(pfd[1]);
	close(mfd);
	assert_int_equal(fd_count(), base);
}

/* ---- the LOCAL record (dst_local_receive) ---- */

/* As dest.c's read_config leaves it: blk0, net0, net1; no fd yet. */
static void local_cfg(struct mig_vm_config *cfg, bool nets)
{
	static const char *const devs[][2] = {
		{ "virtio-blk", "blk0" }, { "virtio-net", "net0" }, { "virtio-net", "net1" },
	};

	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->name, sizeof(cfg->name), "vm1");
	cfg->mem_size = RAM;
	cfg->ndevices = nets ? 3 : 1;
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		snprintf(cfg->devices[i].type, sizeof(cfg->devices[i].type), "%s", devs[i][0]);
		snprintf(cfg->devices[i].name, sizeof(cfg->devices[i].name), "%s", devs[i][1]);
	}
	cfg->local = true;
	cfg->ram_fd = -1;
	for (unsigned i = 0; i < MIG_MAX_DEVICES; i++)
		cfg->dev_fd[i] = -1;
}

/* The source's side (src_local.c): a record of type with text (JSON) and
 * fds[0..n) attached, or no record at all (text NULL: the peer hangs up);
 * then the destination's. */
static int local_run(uint16_t type, const char *text, const int *fds, unsigned n,
		     struct mig_vm_config *cfg, struct kv_err *err)
{
	struct kv_err werr;
	struct pair p;
	json_t *j;
	int r;

	pair_open(&p);
	if (text) {
		j = json_loads(text, 0, NULL);
		assert_non_null(j);
		if (mig_send_json(&p.w, type, j, &werr) || stream_flush_fds(&p.w, fds, n, &werr))
			fail_msg("%s", werr.msg);
	} else {
		shutdown(p.sv[0], SHUT_WR);
	}
	err->msg[0] = 0;
	r = dst_local_receive(&p.r, cfg, err);
	pair_close(&p);
	return r;
}

static void test_local_accepted(void **state)
{
	struct mig_vm_config cfg;
	struct kv_err err;
	int base = fd_count(), pfd[2], fds[3];

	assert_int_equal(pipe(pfd), 0);
	fds[0] = memfd_of(4096, 0, NULL);
	fds[1] = pfd[1];		/* net1's TAP */
	fds[2] = memfd_of(4096, 0, NULL);	/* net0's */

	local_cfg(&cfg, true);
	if (local_run(MIG_REC_LOCAL, "{\"ram-size\": " RAM_S ", \"devices\": [\"net1\", \"net0\"]}",
		      fds, 3, &cfg, &err))
		fail_msg("%s", err.msg);
	assert_true(cfg.ram_fd != fds[0] && same_file(cfg.ram_fd, fds[0]));
	assert_int_equal(cfg.dev_fd[0], -1);	/* blk0 hands over by its lock */
	assert_true(same_file(cfg.dev_fd[1], fds[2]));
	assert_true(same_file(cfg.dev_fd[2], fds[1]));
	for (unsigned i = 3; i < MIG_MAX_DEVICES; i++)
		assert_int_equal(cfg.dev_fd[i], -1);
	mig_config_free(&cfg);
	assert_false(cfg.local);

	/* a VM without network devices: the RAM fd alone */
	local_cfg(&cfg, false);
	if (local_run(MIG_REC_LOCAL, "{\"ram-size\": " RAM_S ", \"devices\": []}", fds, 1, &cfg,
		      &err))
		fail_msg("%s", err.msg);
	assert_true(same_file(cfg.ram_fd, fds[0]));
	mig_config_free(&cfg);

	close(fds[0]);
	close(fds[2]);
	close(pfd[0]);
	close(pfd[1]);
	assert_int_equal(fd_count(), base);
}

#define REC(devs) "{\"ram-size\": " RAM_S ", \"devices\": " devs "}"

static void test_local_refused(void **state)
{
	static const struct {
		const char *why;
		uint16_t type;		/* 0: LOCAL */
		const char *text;
		unsigned nfds;
		int rc;
		const char *needle;
	} cases[] = {
		{ "wrong ram-size", 0, "{\"ram-size\": 16781312, \"devices\": [\"net0\", \"net1\"]}",
		  3, -EBADMSG, "'ram-size' is not the VM's " RAM_S " bytes" },
		{ "ram-size as a string", 0, "{\"ram-size\": \"" RAM_S "\", \"devices\": []}", 1,
		  -EBADMSG, "'ram-size'" },
		{ "unknown key", 0, "{\"ram-size\": " RAM_S ", \"devices\": [], \"taps\": []}", 1,
		  -EBADMSG, "unknown key 'taps'" },
		{ "not a device of the VM", 0, REC("[\"net0\", \"net9\"]"), 3, -EBADMSG,
		  "'net9' is not a network device" },
		{ "a disk", 0, REC("[\"net0\", \"blk0\"]"), 3, -EBADMSG,
		  "'blk0' is not a network device" },
		{ "a name not a string", 0, REC("[\"net0\", 1]"), 3, -EBADMSG, "(not a string)" },
		{ "named twice", 0, REC("[\"net0\", \"net0\"]"), 3, -EBADMSG, "'net0' named twice" },
		{ "devices not a list", 0, REC("\"net0\""), 2, -EBADMSG,
		  "'devices' must be a list" },
		{ "no devices key", 0, "{\"ram-size\": " RAM_S "}", 1, -EBADMSG,
		  "'devices' must be a list" },
		{ "no fd at all", 0, REC("[\"net0\", \"net1\"]"), 0, -EBADMSG, "no guest RAM fd" },
		{ "fewer fds than named", 0, REC("[\"net0\", \"net1\"]"), 2, -EBADMSG,
		  "2 device fds named, 1 came" },
		{ "more fds than named", 0, REC("[\"net0\", \"net1\"]"), 4, -EBADMSG,
		  "more fds came than the record names" },
		{ "a TAP left behind", 0, REC("[\"net0\"]"), 2, -EBADMSG,
		  "no fd for network device net1" },
		{ "another record first", MIG_REC_CONFIG, REC("[]"), 1, -EPROTO, "got CONFIG" },
		{ "the peer hangs up", 0, NULL, 0, -ECONNRESET, "while we waited for" },
	};
	struct mig_vm_config cfg;
	struct kv_err err;
	int base = fd_count(), pfd[2], fds[4];

	assert_int_equal(pipe(pfd), 0);
	fds[0] = memfd_of(4096, 0, NULL);
	fds[1] = pfd[1];
	fds[2] = memfd_of(4096, 0, NULL);
	fds[3] = pfd[0];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		local_cfg(&cfg, true);
		expect_err(local_run(cases[i].type ? cases[i].type : MIG_REC_LOCAL, cases[i].text,
				     fds, cases[i].nfds, &cfg, &err),
			   cases[i].rc, &err, cases[i].needle, cases[i].why);
		mig_config_free(&cfg);
		if (fd_count() != base + 4)
			fail_msg("%s: %d fds leaked", cases[i].why, fd_count() - base - 4);
	}
	for (unsigned i = 0; i < 4; i++)
		close(fds[i]);
	assert_int_equal(fd_count(), base);
}

/* ---- mem_init_fd ---- */

static void test_mem_init_fd(void **state)
{
	static const char pattern[] = "the previous VMM's guest";
	struct guest_mem mem;
	struct kv_err err;
	char buf[sizeof(pattern)] = { 0 };
	int base = fd_count(), fd = memfd_of(RAM, 0, NULL);

	assert_int_equal(pwrite(fd, pattern, sizeof(pattern), RAM - 4096), sizeof(pattern));
	if (mem_init_fd(&mem, RAM, fd, &err))
		fail_msg("%s", err.msg);
	assert_true(mem.memfd != fd && same_file(mem.memfd, fd));
	assert_int_equal(mem.size, RAM);
	assert_memory_equal(mem.host + RAM - 4096, pattern, sizeof(pattern));
	memcpy(mem.host + 8192, "written here", 12);
	assert_int_equal(pread(fd, buf, 12, 8192), 12);
	assert_string_equal(buf, "written here");

	close(fd);	/* the caller's: the mapping and the dup stay */
	memcpy(mem.host, "after close", 11);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(pread(mem.memfd, buf, 11, 0), 11);
	assert_string_equal(buf, "after close");
	assert_memory_equal(mem.host + RAM - 4096, pattern, sizeof(pattern));
	mem_destroy(&mem);

	/* seals that do not keep us from writing or need a shrink are fine */
	fd = memfd_of(RAM, MFD_ALLOW_SEALING, NULL);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SEAL), 0);
	if (mem_init_fd(&mem, RAM, fd, &err))
		fail_msg("F_SEAL_GROW: %s", err.msg);
	mem_destroy(&mem);
	close(fd);
	assert_int_equal(fd_count(), base);
}

static void expect_mem_refused(int fd, uint64_t size, int rc, const char *needle,
			       const char *why)
{
	struct guest_mem mem;
	struct kv_err err;

	err.msg[0] = 0;
	expect_err(mem_init_fd(&mem, size, fd, &err), rc, &err, needle, why);
	assert_int_equal(mem.memfd, -1);
	assert_null(mem.host);
	close(fd);
}

static int sealed(unsigned seals)
{
	int fd = memfd_of(RAM, MFD_ALLOW_SEALING, NULL);

	assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

static void test_mem_init_fd_refused(void **state)
{
	char path[] = "test_local.ram.XXXXXX", proc[64];
	struct statfs sfs;
	int base = fd_count(), fd, pfd[2];

	assert_int_equal(pipe(pfd), 0);
	close(pfd[0]);
	expect_mem_refused(pfd[1], RAM, -EINVAL, "not a memfd", "a pipe");

	/* a file on the build directory's filesystem (any shmem file would
	 * pass: tmpfs answers F_GET_SEALS as a memfd does) */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)RAM), 0);
	assert_int_equal(fstatfs(fd, &sfs), 0);
	if (sfs.f_type != TMPFS_MAGIC)
		expect_mem_refused(fd, RAM, -EINVAL, "not a memfd", "a disk file");
	else
		close(fd);

	expect_mem_refused(memfd_of(RAM + 4096, 0, NULL), RAM, -EINVAL,
			   "has 16781312 bytes, the VM 16777216", "a larger memfd");
	expect_mem_refused(memfd_of(RAM / 2, 0, NULL), RAM, -EINVAL, "has 8388608 bytes",
			   "a smaller memfd");
	expect_mem_refused(memfd_of(2u << 20, 0, NULL), 2u << 20, -EINVAL, "out of range",
			   "a VM below the minimum");
	expect_mem_refused(sealed(F_SEAL_SHRINK), RAM, -EPERM, "sealed", "F_SEAL_SHRINK");
	expect_mem_refused(sealed(F_SEAL_WRITE), RAM, -EPERM, "sealed", "F_SEAL_WRITE");

	fd = memfd_of(RAM, 0, NULL);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	expect_mem_refused(open(proc, O_RDONLY | O_CLOEXEC), RAM, -EACCES,
			   "not open for writing", "a read-only memfd");
	close(fd);
	expect_mem_refused(-1, RAM, -EBADF, "guest RAM fd", "no fd");
	assert_int_equal(fd_count(), base);
}

/* ---- unix:PATH ---- */

static void test_unix_listen(void **state)
{
	char dir[] = "/tmp/test_local.XXXXXX", uri[256], file[128], buf[8];
	struct kv_err err;
	struct stat st;
	mode_t um = umask(022);
	int base = fd_count(), l, c, a;

	assert_non_null(mkdtemp(dir));
	snprintf(uri, sizeof(uri), "unix:%s/sock", dir);
	assert_true(mig_uri_is_local(uri));
	assert_false(mig_uri_is_local("tcp:127.0.0.1:4444"));

	l = mig_listen(uri, &err);
	if (l < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(umask(022), 022);	/* the process's umask is back */
	assert_int_equal(lstat(uri + 5, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	c = mig_connect(uri, 1000, &err);
	if (c < 0)
		fail_msg("%s", err.msg);
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(a >= 0);
	if (mig_check_local_peer(a, &err) || mig_check_local_peer(c, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(write(c, "hi", 2), 2);
	assert_int_equal(read(a, buf, sizeof(buf)), 2);
	close(a);
	close(c);
	close(l);

	/* a live listener is not replaced; and with its backlog full (it
	 * serves one connection at a time) a connect gives up after its
	 * timeout instead of sleeping until somebody accepts */
	l = mig_listen(uri, &err);
	if (l < 0)
		fail_msg("%s", err.msg);
	expect_err(mig_listen(uri, &err), -EADDRINUSE, &err, "another process listens",
		   "live listener");
	{
		int held[8], nheld = 0, r;
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (nheld < 8 && (r = mig_connect(uri, 200, &err)) >= 0)
			held[nheld++] = r;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_true(nheld < 8);
		assert_int_equal(r, -ETIMEDOUT);
		assert_non_null(strstr(err.msg, "accepts no connection"));
		assert_true(t1.tv_sec - t0.tv_sec < 5);
		while (nheld)
			close(held[--nheld]);
	}
	close(l);

	/* what that listener left is replaced by the next one */
	l = mig_listen(uri, &err);
	if (l < 0)
		fail_msg("stale socket: %s", err.msg);
	assert_int_equal(lstat(uri + 5, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	c = mig_connect(uri, 1000, &err);
	assert_true(c >= 0);
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);	/* this listener got it */
	assert_true(a >= 0);
	close(a);
	close(c);
	close(l);
	unlink(uri + 5);
	expect_err(mig_connect(uri, 1000, &err), -ENOENT, &err, "cannot reach", "no listener");

	/* a file is never ours to remove */
	snprintf(file, sizeof(file), "%s/file", dir);
	snprintf(uri, sizeof(uri), "unix:%s", file);
	l = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_int_equal(write(l, "data", 4), 4);
	close(l);
	expect_err(mig_listen(uri, &err), -EEXIST, &err, "exists and is not a socket", "a file");
	assert_int_equal(stat(file, &st), 0);
	assert_true(S_ISREG(st.st_mode) && st.st_size == 4);
	unlink(file);

	/* sun_path holds 107 bytes and a NUL */
	snprintf(uri, sizeof(uri), "unix:%s/%0*d", dir, 120, 0);
	expect_err(mig_listen(uri, &err), -ENAMETOOLONG, &err, "at most 107 bytes", "long path");
	expect_err(mig_connect(uri, 1000, &err), -ENAMETOOLONG, &err, "at most 107 bytes",
		   "long path");
	expect_err(mig_listen("unix:", &err), -EINVAL, &err, "no path", "empty path");

	assert_int_equal(rmdir(dir), 0);
	umask(um);
	assert_int_equal(fd_count(), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_caps),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_fd_limits),
		cmocka_unit_test(test_local_accepted),
		cmocka_unit_test(test_local_refused),
		cmocka_unit_test(test_mem_init_fd),
		cmocka_unit_test(test_mem_init_fd_refused),
		cmocka_unit_test(test_unix_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
