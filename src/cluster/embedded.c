/*
 * embedded.c - the single-machine etcd of `kvmove cluster init`
 * (embedded.h).
 *
 * etcd is started detached: fork, setsid, fork again (so it is no child of
 * ours and survives this command), stdin /dev/null, stdout and stderr
 * appended to DIR/etcd.log, a clean environment (etcd refuses ETCD_*
 * variables that contradict its flags).  A close-on-exec pipe tells us the
 * grandchild's pid and whether exec failed.
 */
#define _GNU_SOURCE
#include "cluster/embedded.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster/clusterconf.h"
#include "cluster/records.h"
#include "cluster/store.h"
#include "state/channel_tls.h"

#define PROBE_TIMEOUT_MS 1000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* mkdir -p with mode for the directories it creates. */
static int mkdir_p(const char *dir, mode_t mode, struct kv_err *err)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);

	if (!len || len >= sizeof(buf))
		return kv_errf(err, ENAMETOOLONG, "'%s': not a usable directory name", dir);
	memcpy(buf, dir, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || !*p) {
			char c = *p;

			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return kv_errf_sys(err, errno, "cannot create %s%s", buf,
						   errno == EACCES ? " (run as root, or pick "
						   "another --dir)" : "");
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

/* 0: an etcd answers; <0: why not (-ECONNREFUSED: nothing listens). */
static int probe(struct kv_store *st, struct kv_err *err)
{
	struct store_kv kv;
	int rc = store_get(st, "/kvmove/config", &kv, NULL, err);

	if (rc == 0)
		store_kv_free(&kv);
	return rc == -ENOENT ? 0 : rc;
}

static bool unreachable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
	       rc == -ENETUNREACH || rc == -ECONNRESET || rc == -EAGAIN;
}

/* Does pid run (and is no zombie: nobody may reap it soon)? */
static bool proc_alive(pid_t pid)
{
	char path[64], buf[256], *rp;
	FILE *f;
	bool alive = false;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	/* "pid (comm) S ...": the state follows the last ')' */
	if (fgets(buf, sizeof(buf), f) && (rp = strrchr(buf, ')')) && rp[1] == ' ')
		alive = rp[2] != 'Z' && rp[2] != 'X';
	fclose(f);
	return alive;
}

/* The pid in DIR/etcd.pid if that process is alive and is an etcd, else 0. */
static pid_t pidfile_alive(const char *path)
{
	char buf[64], comm[64];
	FILE *f = fopen(path, "re");
	long pid = 0;
	pid_t r = 0;

	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f))
		pid = strtol(buf, NULL, 10);
	fclose(f);
	if (pid <= 1 || pid > INT_MAX || !proc_alive((pid_t)pid))
		return 0;
	snprintf(buf, sizeof(buf), "/proc/%ld/comm", pid);
	f = fopen(buf, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f) && !strncmp(comm, "etcd", 4))
			r = (pid_t)pid;
		fclose(f);
	}
	return r;
}

/* The last non-empty line of the log, sanitised, for error messages. */
static void log_tail(const char *path, char *out, size_t len)
{
	char buf[2048];
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size;

	snprintf(out, len, "(empty)");
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > 0 && lseek(fd, size > (off_t)sizeof(buf) - 1 ?
			      size - (off_t)sizeof(buf) + 1 : 0, SEEK_SET) >= 0)
		n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	char *line = strrchr(buf, '\n');

	cluster_sanitize(out, len, line ? line + 1 : buf);
}

static void member_name(char *buf, size_t len)
{
	char host[256] = "";
	size_t j = 0;

	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	for (size_t i = 0; host[i] && j + 1 < len; i++) {
		char c = host[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_')
			buf[j++] = c;
	}
	buf[j] = '\0';
	if (!j)
		snprintf(buf, len, "kvmove");
}

struct start_msg {
	pid_t pid;
	int err;
};

/* One whole message, 0 at EOF, or what read() gave. */
static ssize_t read_msg(int fd, struct start_msg *m)
{
	size_t got = 0;

	while (got < sizeof(*m)) {
		ssize_t n = read(fd, (char *)m + got, sizeof(*m) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return got ? (ssize_t)got : n;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Start etcd detached; *pid gets its pid. */
static int start_etcd(const struct embedded_result *r, pid_t *pid, struct kv_err *err)
{
	char name[64], cluster[256], unsup[64], lurls[96], aurls[64];
	const char *arch = getenv("ETCD_UNSUPPORTED_ARCH");
	char *argv[] = {
		(char *)CLUSTER_ETCD_BIN, (char *)"--name", name,
		(char *)"--data-dir", (char *)r->data_dir,
		(char *)"--listen-client-urls", lurls,
		(char *)"--advertise-client-urls", aurls,
		(char *)"--listen-peer-urls", (char *)CLUSTER_EMBEDDED_PEER,
		(char *)"--initial-advertise-peer-urls", (char *)CLUSTER_EMBEDDED_PEER,
		(char *)"--initial-cluster", cluster,
		(char *)"--initial-cluster-token", (char *)"kvmove-embedded",
		(char *)"--initial-cluster-state", (char *)"new",
		NULL,
	};
	char *envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL, NULL };
	int pfd[2], nullfd, logfd, status, rc = 0;
	struct start_msg msg = { 0, 0 };
	pid_t c1;
	ssize_t n;

	if (access(CLUSTER_ETCD_BIN, X_OK) < 0)
		return kv_errf_sys(err, errno, "cannot run %s (Debian: apt install "
				   "etcd-server)", CLUSTER_ETCD_BIN);
	member_name(name, sizeof(name));
	snprintf(cluster, sizeof(cluster), "%s=%s", name, CLUSTER_EMBEDDED_PEER);
	/* loopback always; with listen, that address too (checked by the caller) */
	if (r->listen[0]) {
		snprintf(lurls, sizeof(lurls), "%s,http://%s:2479", CLUSTER_EMBEDDED_ENDPOINT,
			 r->listen);
		snprintf(aurls, sizeof(aurls), "http://%s:2479", r->listen);
	} else {
		snprintf(lurls, sizeof(lurls), "%s", CLUSTER_EMBEDDED_ENDPOINT);
		snprintf(aurls, sizeof(aurls), "%s", CLUSTER_EMBEDDED_ENDPOINT);
	}
	if (arch && *arch && strlen(arch) < 32) {
		snprintf(unsup, sizeof(unsup), "ETCD_UNSUPPORTED_ARCH=%s", arch);
		envp[1] = unsup;
	}
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nullfd < 0)
		return kv_errf_sys(err, errno, "/dev/null");
	logfd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (logfd < 0) {
		rc = kv_errf_sys(err, errno, "cannot open %s", r->log_path);
		close(nullfd);
		return rc;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		rc = kv_errf_sys(err, errno, "pipe");
		goto out;
	}
	fflush(NULL);
	c1 = fork();
	if (c1 < 0) {
		rc = kv_errf_sys(err, errno, "fork");
		close(pfd[0]);
		close(pfd[1]);
		goto out;
	}
	if (c1 == 0) {
		/* first child: a new session, then the daemon is its child */
		pid_t c2;

		close(pfd[0]);
		setsid();
		c2 = fork();
		if (c2 != 0) {
			/* the daemon's pid (or why there is none) */
			msg.pid = c2 > 0 ? c2 : 0;
			msg.err = c2 < 0 ? errno : 0;
			(void)!write(pfd[1], &msg, sizeof(msg));
			_exit(0);
		}
		msg.pid = getpid();
		if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
		    chdir("/") < 0) {
			msg.err = errno;
			(void)!write(pfd[1], &msg, sizeof(msg));
			_exit(127);
		}
		umask(027);
		signal(SIGPIPE, SIG_DFL);
		/* nothing of ours leaks into etcd; the pipe closes at exec */
		if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
			for (int fd = 3; fd < 1024; fd++)
				if (fd != pfd[1])
					close(fd);
		execve(CLUSTER_ETCD_BIN, argv, envp);
		msg.err = errno;
		(void)!write(pfd[1], &msg, sizeof(msg));
		_exit(127);
	}
	close(pfd[1]);
	while (waitpid(c1, &status, 0) < 0 && errno == EINTR)
		;
	/* first the daemon's pid from the first child; then EOF when exec
	 * succeeded (the pipe is close-on-exec), or the daemon's errno */
	n = read_msg(pfd[0], &msg);
	if (n != (ssize_t)sizeof(msg)) {
		rc = kv_errf(err, EIO, "starting %s: the first child ended without a word",
			     CLUSTER_ETCD_BIN);
	} else if (msg.err || !msg.pid) {
		rc = kv_errf_sys(err, msg.err ? msg.err : EIO, "starting %s: fork",
				 CLUSTER_ETCD_BIN);
	} else {
		*pid = msg.pid;
		n = read_msg(pfd[0], &msg);
		if (n == (ssize_t)sizeof(msg))
			rc = kv_errf_sys(err, msg.err ? msg.err : EIO, "starting %s",
					 CLUSTER_ETCD_BIN);
		else if (n != 0)
			rc = kv_errf(err, EIO, "starting %s: no word from the daemon's child",
				     CLUSTER_ETCD_BIN);
	}
	close(pfd[0]);
out:
	close(nullfd);
	close(logfd);
	return rc;
}

static int write_pidfile(const char *path, pid_t pid, struct kv_err *err)
{
	char tmp[PATH_MAX], buf[32];
	int fd, n, rc = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return kv_errf(err, ENAMETOOLONG, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return kv_errf_sys(err, errno, "cannot write %s", tmp);
	n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	if (write(fd, buf, (size_t)n) != n)
		rc = kv_errf_sys(err, errno, "writing %s", tmp);
	if (close(fd) < 0 && !rc)
		rc = kv_errf_sys(err, errno, "writing %s", tmp);
	if (!rc && rename(tmp, path) < 0)
		rc = kv_errf_sys(err, errno, "renaming %s", tmp);
	if (rc)
		unlink(tmp);
	return rc;
}

/* Wait until etcd answers; pid (0: unknown) is watched for an early exit. */
static int wait_up(struct kv_store *st, const struct embedded_result *r, pid_t pid,
		   struct kv_err *err)
{
	double deadline = now_s() + EMBEDDED_START_TIMEOUT_MS / 1000.0;
	char tail[256];
	int rc;

	for (;;) {
		rc = probe(st, err);
		if (rc == 0)
			return 0;
		if (pid > 0 && !proc_alive(pid)) {
			log_tail(r->log_path, tail, sizeof(tail));
			return kv_errf(err, ECHILD, "etcd (pid %d) exited before answering at %s; "
				       "the end of %s: %s", (int)pid, r->endpoint, r->log_path, tail);
		}
		if (!unreachable(rc))
			return kv_err_prefix(err, rc, "etcd at %s", r->endpoint);
		if (now_s() >= deadline)
			break;
		sleep_ms(200);
	}
	log_tail(r->log_path, tail, sizeof(tail));
	return kv_errf(err, ETIMEDOUT, "etcd (pid %d) did not answer at %s within %d s; the "
		       "end of %s: %s", (int)pid, r->endpoint, EMBEDDED_START_TIMEOUT_MS / 1000,
		       r->log_path, tail);
}

int cluster_config_init(struct kv_store *st, bool *written, struct kv_err *err)
{
	const struct store_cmp cmp = {
		.key = "/kvmove/config", .target = STORE_CMP_CREATE, .result = STORE_EQ, .num = 0,
	};
	const struct store_op put = {
		.type = STORE_OP_PUT, .key = "/kvmove/config", .value = "{\"migration-limit\":1}",
	};
	bool ok = false;
	int rc = store_txn(st, &cmp, 1, &put, 1, NULL, 0, &ok, NULL, err);

	if (rc)
		return kv_err_prefix(err, rc, "writing /kvmove/config");
	if (written)
		*written = ok;
	return 0;
}

int cluster_psk_init(const char *dir, char *path_out, size_t len, bool *written,
		     struct kv_err *err)
{
	int rc;

	*written = false;
	if ((size_t)snprintf(path_out, len, "%s/cluster.psk", dir) >= len)
		return kv_errf(err, ENAMETOOLONG, "%s: path too long", dir);
	rc = mkdir_p(dir, 0755, err);
	if (rc)
		return rc;
	if (access(path_out, F_OK) == 0)
		return 0;
	rc = tls_psk_keygen(path_out, CLUSTER_PSK_IDENTITY, false, err);
	if (rc == -EEXIST)
		return 0;	/* another init was quicker */
	if (rc)
		return rc;
	*written = true;
	return 0;
}

int cluster_embedded_ensure_ex(const char *dir, struct embedded_result *r,
			       struct kv_err *err)
{
	struct store_options so = {
		.endpoints = CLUSTER_EMBEDDED_ENDPOINT,
		.timeout_ms = PROBE_TIMEOUT_MS, .connect_timeout_ms = PROBE_TIMEOUT_MS / 2,
	};
	char real[PATH_MAX], pidpath[PATH_MAX], listen[sizeof(r->listen)];
	struct in_addr ia;
	struct kv_store *st = NULL;
	pid_t pid;
	int rc;

	snprintf(listen, sizeof(listen), "%s", r->listen);
	memset(r, 0, sizeof(*r));
	if (listen[0] && inet_pton(AF_INET, listen, &ia) != 1)
		return kv_errf(err, EINVAL, "--listen '%s' is not an IPv4 address", listen);
	snprintf(r->listen, sizeof(r->listen), "%s", listen);
	snprintf(r->endpoint, sizeof(r->endpoint), "%s", CLUSTER_EMBEDDED_ENDPOINT);
	if (!dir || !*dir)
		dir = CLUSTER_DEFAULT_DIR;
	rc = mkdir_p(dir, 0755, err);
	if (rc)
		return rc;
	if (!realpath(dir, real))
		return kv_errf_sys(err, errno, "%s", dir);
	if (strlen(real) >= sizeof(r->dir) - 16)
		return kv_errf(err, ENAMETOOLONG, "%s: path too long", real);
	snprintf(r->dir, sizeof(r->dir), "%.*s", (int)sizeof(r->dir) - 1, real);
	snprintf(r->data_dir, sizeof(r->data_dir), "%s/etcd", r->dir);
	snprintf(r->log_path, sizeof(r->log_path), "%s/etcd.log", r->dir);
	snprintf(pidpath, sizeof(pidpath), "%s/etcd.pid", r->dir);

	rc = store_open(&st, &so, err);
	if (rc)
		return rc;
	rc = probe(st, err);
	if (rc && !unreachable(rc)) {
		rc = kv_err_prefix(err, rc, "something answers at %s but not as a working etcd",
				   r->endpoint);
		goto out;
	}
	if (rc) {
		/* ours from an earlier init, still starting (or stopping) */
		pid = pidfile_alive(pidpath);
		if (pid) {
			r->pid = pid;
			rc = wait_up(st, r, pid, err);
		}
		if (!pid || rc == -ECHILD) {
			rc = start_etcd(r, &pid, err);
			if (rc)
				goto out;
			r->started = true;
			r->pid = pid;
			rc = write_pidfile(pidpath, pid, err);
			if (rc)
				goto out;
			rc = wait_up(st, r, pid, err);
		}
		if (rc)
			goto out;
	}
	rc = cluster_config_init(st, &r->config_written, err);
	if (rc)
		goto out;
	rc = cluster_psk_init(r->dir, r->psk_path, sizeof(r->psk_path), &r->psk_written, err);
out:
	store_close(st);
	return rc;
}

int cluster_embedded_ensure(const char *dir, char *endpoint, size_t len, struct kv_err *err)
{
	struct embedded_result r;
	int rc = cluster_embedded_ensure_ex(dir, &r, err);

	if (!rc && endpoint && len)
		snprintf(endpoint, len, "%s", r.endpoint);
	return rc;
}
