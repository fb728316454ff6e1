/*
 * test_store_etcd.c - the cluster store (src/cluster/store.h) against a real
 * etcd: one single-member etcd on free loopback ports with its data in a
 * temporary directory, started by the group setup and killed (and the
 * directory removed) by the group teardown, however the tests end.  A small
 * fake HTTP server plays a hostile "etcd" for the answers a real one never
 * gives.
 *
 * etcd is Debian's etcd-server (scripts/deps.sh); without it this test
 * fails: the cluster cannot be tested without its store.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "cluster/store.h"
#include "cluster/store_b64.h"
#include "cluster/fence.h"

#define ETCD_BIN "/usr/bin/etcd"

struct fx {
	char dir[64];
	pid_t pid;
	int client_port, peer_port, dead_port;
	char good[64], dead[64];
	struct kv_store *st;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* n distinct free loopback ports (bound at once, then released). */
static int free_ports(int *ports, int n)
{
	int fds[4], i, rc = 0;

	for (i = 0; i < n; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(a);

		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof(a)) ||
		    getsockname(fds[i], (struct sockaddr *)&a, &len)) {
			rc = -1;
			i++;
			break;
		}
		ports[i] = ntohs(a.sin_port);
	}
	while (i--)
		close(fds[i]);
	return rc;
}

static void print_log_tail(const char *dir)
{
	char path[128], buf[2048];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/etcd.log", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (lseek(fd, -(off_t)(sizeof(buf) - 1), SEEK_END) < 0)
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		print_error("etcd log (tail):\n%s\n", buf);
	}
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static int group_teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	store_close(f->st);
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		while (waitpid(f->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (f->dir[0])
		nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	*state = NULL;
	return 0;
}

static pid_t spawn_etcd(const struct fx *f)
{
	char name_arg[64], data[128], client[64], peer[64], cluster[96], logp[128];
	pid_t pid;

	snprintf(data, sizeof(data), "%s/data", f->dir);
	snprintf(logp, sizeof(logp), "%s/etcd.log", f->dir);
	snprintf(client, sizeof(client), "http://127.0.0.1:%d", f->client_port);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", f->peer_port);
	snprintf(cluster, sizeof(cluster), "t=%s", peer);
	snprintf(name_arg, sizeof(name_arg), "t");
	pid = fork();
	if (pid)
		return pid;
	/* child: etcd dies with the test, whatever kills the test */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	{
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
	}
	execl(ETCD_BIN, "etcd", "--name", name_arg, "--data-dir", data,
	      "--listen-client-urls", client, "--advertise-client-urls", client,
	      "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
	      "--initial-cluster", cluster, "--initial-cluster-state", "new",
	      "--initial-cluster-token", "kvmove-test", "--heartbeat-interval", "50",
	      "--election-timeout", "500", "--logger", "zap", "--log-outputs", "stderr",
	      (char *)NULL);
	_exit(127);
}

static int group_setup(void **state)
{
	struct store_options o = { 0 };
	struct kv_err err = { "" };
	int ports[3];
	uint64_t t0;
	struct fx *f;

	*state = NULL;
	if (access(ETCD_BIN, X_OK)) {
		print_error("%s not found: etcd is the cluster's store and this test needs it; "
			    "run scripts/deps.sh (Debian: apt-get install etcd-server)\n",
			    ETCD_BIN);
		return -1;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	*state = f;
	snprintf(f->dir, sizeof(f->dir), "/tmp/kvmove-etcd-XXXXXX");
	if (!mkdtemp(f->dir)) {
		f->dir[0] = '\0';
		print_error("mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	if (free_ports(ports, 3)) {
		print_error("no free loopback ports\n");
		return -1;
	}
	f->client_port = ports[0];
	f->peer_port = ports[1];
	f->dead_port = ports[2];	/* nobody listens there */
	snprintf(f->good, sizeof(f->good), "http://127.0.0.1:%d", f->client_port);
	snprintf(f->dead, sizeof(f->dead), "http://127.0.0.1:%d", f->dead_port);
	f->pid = spawn_etcd(f);
	if (f->pid < 0) {
		print_error("fork: %s\n", strerror(errno));
		return -1;
	}
	o.endpoints = f->good;
	o.timeout_ms = 2000;
	if (store_open(&f->st, &o, &err)) {
		print_error("store_open: %s\n", err.msg);
		return -1;
	}
	/* ready: a linearizable read goes through */
	for (t0 = now_ms();; sleep_ms(100)) {
		struct store_kv kv;
		int rc = store_get(f->st, "/ready", &kv, NULL, &err);

		store_kv_free(&kv);
		if (rc == -ENOENT)
			break;
		if (waitpid(f->pid, NULL, WNOHANG) == f->pid) {
			f->pid = 0;
			print_error("etcd exited at start\n");
			print_log_tail(f->dir);
			return -1;
		}
		if (now_ms() - t0 > 15000) {
			print_error("etcd did not answer within 15 s: %s\n", err.msg);
			print_log_tail(f->dir);
			return -1;
		}
	}
	return 0;
}

static struct kv_store *open_store(const char *endpoints, unsigned timeout_ms)
{
	struct store_options o = { .endpoints = endpoints, .timeout_ms = timeout_ms };
	struct kv_err err = { "" };
	struct kv_store *st = NULL;

	if (store_open(&st, &o, &err))
		fail_msg("store_open(%s): %s", endpoints, err.msg);
	return st;
}

/* ------------------------------------------------------------------ */
/* keys                                                                 */
/* ------------------------------------------------------------------ */

static void test_put_get_list_delete(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	struct store_list l;
	struct store_kv kv;
	int64_t rev1, rev2, rev;

	assert_int_equal(store_put(f->st, "/t/b", "2", 0, &rev1, &err), 0);
	assert_int_equal(store_put(f->st, "/t/a", "1", 0, &rev2, &err), 0);
	assert_int_equal(store_put(f->st, "/t/c/d", "3", 0, NULL, &err), 0);
	assert_int_equal(store_put(f->st, "/tz", "outside", 0, NULL, &err), 0);
	assert_true(rev1 > 0 && rev2 == rev1 + 1);

	assert_int_equal(store_get(f->st, "/t/a", &kv, &rev, &err), 0);
	assert_string_equal(kv.key, "/t/a");
	assert_string_equal(kv.value, "1");
	assert_int_equal(kv.vlen, 1);
	assert_int_equal(kv.create_rev, rev2);
	assert_int_equal(kv.mod_rev, rev2);
	assert_int_equal(kv.version, 1);
	assert_int_equal(kv.lease, 0);
	assert_true(rev >= rev2);
	store_kv_free(&kv);

	/* a second put: a new version, the same create revision */
	assert_int_equal(store_put(f->st, "/t/a", "one", 0, &rev, &err), 0);
	assert_int_equal(store_get(f->st, "/t/a", &kv, NULL, &err), 0);
	assert_string_equal(kv.value, "one");
	assert_int_equal(kv.version, 2);
	assert_int_equal(kv.create_rev, rev2);
	assert_int_equal(kv.mod_rev, rev);
	store_kv_free(&kv);

	assert_int_equal(store_list(f->st, "/t/", &l, &err), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.kvs[0].key, "/t/a");
	assert_string_equal(l.kvs[1].key, "/t/b");
	assert_string_equal(l.kvs[2].key, "/t/c/d");
	assert_string_equal(l.kvs[2].value, "3");
	assert_true(l.rev >= rev);
	store_list_free(&l);

	assert_int_equal(store_delete(f->st, "/t/a", &err), 0);
	err.msg[0] = '\0';
	assert_int_equal(store_get(f->st, "/t/a", &kv, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/t/a"));
	assert_null(kv.key);
	store_kv_free(&kv);
	/* deleting what is not there is fine */
	assert_int_equal(store_delete(f->st, "/t/a", &err), 0);

	assert_int_equal(store_delete_prefix(f->st, "/t/", &err), 0);
	assert_int_equal(store_list(f->st, "/t/", &l, &err), 0);
	assert_int_equal(l.n, 0);
	assert_null(l.kvs);
	store_list_free(&l);
	assert_int_equal(store_get(f->st, "/tz", &kv, NULL, &err), 0);	/* not under /t/ */
	store_kv_free(&kv);
	assert_int_equal(store_delete(f->st, "/tz", &err), 0);

	/* refused arguments */
	assert_int_equal(store_delete_prefix(f->st, "", &err), -EINVAL);
	assert_int_equal(store_put(f->st, "", "x", 0, NULL, &err), -EINVAL);
	assert_int_equal(store_get(f->st, "", &kv, NULL, &err), -EINVAL);
}

static void test_arbitrary_bytes(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	const char *key = "/bytes/ \"quoted\" k\xc3\xa9y\n";
	char value[512];
	struct store_list l;
	struct store_kv kv;
	size_t n = 0;

	/* every byte but NUL (value is a C string), then some UTF-8 */
	for (int c = 1; c < 256; c++)
		value[n++] = (char)c;
	n += (size_t)sprintf(value + n, "\"\\\n\r\t{\"a\":[]}\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e");
	assert_int_equal(store_put(f->st, key, value, 0, NULL, &err), 0);
	assert_int_equal(store_get(f->st, key, &kv, NULL, &err), 0);
	assert_string_equal(kv.key, key);
	assert_int_equal(kv.vlen, n);
	assert_memory_equal(kv.value, value, n);
	assert_int_equal(kv.value[n], '\0');
	store_kv_free(&kv);

	/* an empty value is a value */
	assert_int_equal(store_put(f->st, "/bytes/empty", "", 0, NULL, &err), 0);
	assert_int_equal(store_get(f->st, "/bytes/empty", &kv, NULL, &err), 0);
	assert_int_equal(kv.vlen, 0);
	assert_string_equal(kv.value, "");
	store_kv_free(&kv);

	/* a prefix ending in 0xff: its range end carries over */
	assert_int_equal(store_put(f->st, "/bytes/\xff\xff" "a", "v", 0, NULL, &err), 0);
	assert_int_equal(store_put(f->st, "/bytet", "outside", 0, NULL, &err), 0);
	assert_int_equal(store_list(f->st, "/bytes/\xff", &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.kvs[0].key, "/bytes/\xff\xff" "a");
	store_list_free(&l);
	assert_int_equal(store_list(f->st, "/bytes/", &l, &err), 0);
	assert_int_equal(l.n, 3);
	store_list_free(&l);
	assert_int_equal(store_delete_prefix(f->st, "/bytes/", &err), 0);
	assert_int_equal(store_delete(f->st, "/bytet", &err), 0);
}

/* ------------------------------------------------------------------ */
/* transactions                                                         */
/* ------------------------------------------------------------------ */

static void test_txn(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	struct store_cmp absent = { .key = "/x/owner", .target = STORE_CMP_CREATE,
				    .result = STORE_EQ, .num = 0 };
	struct store_op claim[] = {
		{ .type = STORE_OP_PUT, .key = "/x/owner", .value = "h1" },
		{ .type = STORE_OP_PUT, .key = "/x/log", .value = "claimed" },
	};
	struct store_op lost = { .type = STORE_OP_PUT, .key = "/x/lost", .value = "h2" };
	struct store_kv kv;
	int64_t rev, rev2;
	bool ok = false;

	/* create-if-absent succeeds once */
	assert_int_equal(store_txn(f->st, &absent, 1, claim, 2, NULL, 0, &ok, &rev, &err), 0);
	assert_true(ok);
	assert_true(rev > 0);
	assert_int_equal(store_get(f->st, "/x/owner", &kv, NULL, &err), 0);
	assert_string_equal(kv.value, "h1");
	assert_int_equal(kv.mod_rev, rev);
	store_kv_free(&kv);

	/* ... and then fails: the failure ops run */
	claim[0].value = "h2";
	assert_int_equal(store_txn(f->st, &absent, 1, claim, 1, &lost, 1, &ok, &rev2, &err), 0);
	assert_false(ok);
	assert_int_equal(store_get(f->st, "/x/owner", &kv, NULL, &err), 0);
	assert_string_equal(kv.value, "h1");
	store_kv_free(&kv);
	assert_int_equal(store_get(f->st, "/x/lost", &kv, NULL, &err), 0);
	assert_string_equal(kv.value, "h2");
	store_kv_free(&kv);

	/* compare the value: hand over from h1 only */
	{
		struct store_cmp is_h1 = { .key = "/x/owner", .target = STORE_CMP_VALUE,
					   .result = STORE_EQ, .value = "h1" };
		struct store_op to_free = { .type = STORE_OP_PUT, .key = "/x/owner",
					    .value = "free:\"tok\"\n" };
		struct store_op del = { .type = STORE_OP_DELETE, .key = "/x/lost" };

		assert_int_equal(store_txn(f->st, &is_h1, 1, &to_free, 1, NULL, 0, &ok, NULL,
					   &err), 0);
		assert_true(ok);
		assert_int_equal(store_txn(f->st, &is_h1, 1, &to_free, 1, &del, 1, &ok, NULL,
					   &err), 0);
		assert_false(ok);
		assert_int_equal(store_get(f->st, "/x/lost", &kv, NULL, &err), -ENOENT);
		assert_int_equal(store_get(f->st, "/x/owner", &kv, NULL, &err), 0);
		assert_string_equal(kv.value, "free:\"tok\"\n");
		rev = kv.mod_rev;
		store_kv_free(&kv);
	}

	/* mod revision and version compares, several compares at once */
	{
		struct store_cmp cmps[] = {
			{ .key = "/x/owner", .target = STORE_CMP_MOD, .result = STORE_EQ,
			  .num = rev },
			{ .key = "/x/owner", .target = STORE_CMP_VERSION, .result = STORE_GT,
			  .num = 1 },
			{ .key = "/x/owner", .target = STORE_CMP_VALUE, .result = STORE_NEQ,
			  .value = "h1" },
			{ .key = "/x/none", .target = STORE_CMP_VERSION, .result = STORE_LT,
			  .num = 1 },
		};
		struct store_op del = { .type = STORE_OP_DELETE, .key = "/x/owner" };

		assert_int_equal(store_txn(f->st, cmps, 4, &del, 1, NULL, 0, &ok, NULL, &err), 0);
		assert_true(ok);
		assert_int_equal(store_get(f->st, "/x/owner", &kv, NULL, &err), -ENOENT);
		/* now the mod revision compare fails */
		assert_int_equal(store_txn(f->st, cmps, 1, NULL, 0, NULL, 0, &ok, NULL, &err), 0);
		assert_false(ok);
	}

	/* bad arguments are refused before anything is sent */
	{
		struct store_cmp bad = { .key = "/x/a", .target = STORE_CMP_VALUE,
					 .result = STORE_EQ, .value = NULL };
		assert_int_equal(store_txn(f->st, &bad, 1, NULL, 0, NULL, 0, &ok, NULL, &err),
				 -EINVAL);
	}
	assert_int_equal(store_delete_prefix(f->st, "/x/", &err), 0);
}

/* ------------------------------------------------------------------ */
/* leases                                                               */
/* ------------------------------------------------------------------ */

static void test_lease(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	struct store_kv kv;
	int64_t id = 0;
	int ttl = 0;

	assert_int_equal(store_lease_grant(f->st, 10, &id, &err), 0);
	assert_true(id > 0);
	assert_int_equal(store_put(f->st, "/l/node", "{}", id, NULL, &err), 0);
	assert_int_equal(store_get(f->st, "/l/node", &kv, NULL, &err), 0);
	assert_int_equal(kv.lease, id);
	store_kv_free(&kv);
	assert_int_equal(store_lease_keepalive(f->st, id, &ttl, &err), 0);
	assert_true(ttl > 0 && ttl <= 10);
	ttl = 0;
	assert_int_equal(store_lease_ttl(f->st, id, &ttl, NULL, &err), 0);
	assert_true(ttl > 0 && ttl <= 10);
	/* a transaction's put may carry the lease too */
	{
		struct store_op op = { .type = STORE_OP_PUT, .key = "/l/slot", .value = "m1",
				       .lease = id };
		bool ok;
		assert_int_equal(store_txn(f->st, NULL, 0, &op, 1, NULL, 0, &ok, NULL, &err), 0);
		assert_true(ok);
	}

	assert_int_equal(store_lease_revoke(f->st, id, &err), 0);
	assert_int_equal(store_get(f->st, "/l/node", &kv, NULL, &err), -ENOENT);
	assert_int_equal(store_get(f->st, "/l/slot", &kv, NULL, &err), -ENOENT);
	err.msg[0] = '\0';
	assert_int_equal(store_lease_keepalive(f->st, id, &ttl, &err), -ENOENT);
	assert_true(err.msg[0]);
	assert_int_equal(store_lease_revoke(f->st, id, &err), -ENOENT);
	assert_int_equal(store_lease_ttl(f->st, id, &ttl, NULL, &err), -ENOENT);
	assert_int_equal(ttl, 0);

	/* a put with a lease that does not exist is etcd's error */
	err.msg[0] = '\0';
	assert_int_equal(store_put(f->st, "/l/x", "v", id, NULL, &err), -EIO);
	assert_non_null(strstr(err.msg, "lease not found"));
	assert_int_equal(store_lease_grant(f->st, 0, &id, &err), -EINVAL);
}

static void test_lease_expires(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	struct store_kv kv;
	int64_t id = 0;
	uint64_t t0;
	int ttl, rc;

	t0 = now_ms();
	assert_int_equal(store_lease_grant(f->st, 2, &id, &err), 0);
	assert_int_equal(store_put(f->st, "/l/gone", "soon", id, NULL, &err), 0);
	/* not renewed: gone after its TTL (etcd checks every 500 ms) */
	for (;;) {
		rc = store_get(f->st, "/l/gone", &kv, NULL, &err);
		store_kv_free(&kv);
		if (rc == -ENOENT)
			break;
		assert_int_equal(rc, 0);
		if (now_ms() - t0 > 8000)
			fail_msg("a 2 s lease still holds its key after 8 s");
		sleep_ms(100);
	}
	assert_true(now_ms() - t0 >= 1800);	/* not before its TTL */
	assert_int_equal(store_lease_keepalive(f->st, id, &ttl, &err), -ENOENT);
	assert_int_equal(ttl, 0);
}

/* ------------------------------------------------------------------ */
/* watch                                                                */
/* ------------------------------------------------------------------ */

struct putter {
	struct kv_store *st;
	unsigned delay_ms;
	int64_t rev;
	int rc;
};

static void *put_later(void *arg)
{
	struct putter *p = arg;
	struct kv_err err;

	sleep_ms(p->delay_ms);
	p->rc = store_put(p->st, "/w/node/h1", "changed", 0, &p->rev, &err);
	return NULL;
}

/* POST /v3/kv/compaction directly (the store has no use for it). */
static void compact(const char *ep, int64_t rev)
{
	char url[128], body[64];
	CURL *c = curl_easy_init();
	FILE *null = fopen("/dev/null", "w");
	long status = 0;

	assert_non_null(c);
	snprintf(url, sizeof(url), "%s/v3/kv/compaction", ep);
	snprintf(body, sizeof(body), "{\"revision\":\"%lld\",\"physical\":true}", (long long)rev);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, null);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	assert_int_equal(status, 200);
	curl_easy_cleanup(c);
	fclose(null);
}

static bool only_yes(const char *key, const char *value, size_t vlen, void *opaque)
{
	return vlen == 3 && !memcmp(value, "yes", 3);
}

static void test_watch(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	struct putter p = { .st = f->st, .delay_ms = 300 };
	struct store_list l;
	int64_t ev = 0, start, rev;
	pthread_t t;
	uint64_t t0, dt;

	assert_int_equal(store_list(f->st, "/w/", &l, &err), 0);
	start = l.rev + 1;
	store_list_free(&l);

	/* a put by another thread (the same store: it is thread-safe) */
	assert_int_equal(pthread_create(&t, NULL, put_later, &p), 0);
	t0 = now_ms();
	assert_int_equal(store_watch_wait(f->st, "/w/", start, 5000, &ev, &err), 0);
	dt = now_ms() - t0;
	pthread_join(t, NULL);
	assert_int_equal(p.rc, 0);
	assert_int_equal(ev, p.rev);
	assert_true(dt >= 200 && dt < 3000);

	/* nothing changes: -ETIMEDOUT after the timeout, not much later */
	t0 = now_ms();
	err.msg[0] = '\0';
	assert_int_equal(store_watch_wait(f->st, "/w/", ev + 1, 500, &ev, &err), -ETIMEDOUT);
	dt = now_ms() - t0;
	assert_true(dt >= 450 && dt < 2000);
	assert_true(err.msg[0]);

	/* a change before the watch started is seen at once */
	t0 = now_ms();
	assert_int_equal(store_watch_wait(f->st, "/w/", start, 5000, &ev, &err), 0);
	assert_int_equal(ev, p.rev);
	assert_true(now_ms() - t0 < 1000);
	/* the caller need not want the revision */
	assert_int_equal(store_watch_wait(f->st, "/w/", start, 5000, NULL, &err), 0);

	/* a change elsewhere is not one: a delete is */
	assert_int_equal(store_put(f->st, "/wx", "other", 0, &rev, &err), 0);
	assert_int_equal(store_watch_wait(f->st, "/w/", rev, 300, &ev, &err), -ETIMEDOUT);
	assert_int_equal(store_delete(f->st, "/w/node/h1", &err), 0);
	assert_int_equal(store_watch_wait(f->st, "/w/", rev, 3000, &ev, &err), 0);
	assert_int_equal(ev, rev + 1);

	/* a filter skips the changes it does not want, and sees values */
	{
		int64_t r1, r2;
		assert_int_equal(store_put(f->st, "/w/skip", "no", 0, &r1, &err), 0);
		assert_int_equal(store_put(f->st, "/w/take", "yes", 0, &r2, &err), 0);
		assert_int_equal(store_watch_wait_filtered(f->st, "/w/", r1, 3000, only_yes, NULL,
							   &ev, &err), 0);
		assert_int_equal(ev, r2);
		assert_int_equal(store_watch_wait_filtered(f->st, "/w/", r1, 300, only_yes, NULL,
							   &ev, &err) == 0 ? ev : -1, r2);
		assert_int_equal(store_watch_wait_filtered(f->st, "/w/", r2 + 1, 300, only_yes,
							   NULL, &ev, &err), -ETIMEDOUT);
	}

	/* a "from now on" watch (start 0) sees the put of another thread */
	p.delay_ms = 300;
	assert_int_equal(pthread_create(&t, NULL, put_later, &p), 0);
	assert_int_equal(store_watch_wait(f->st, "/w/", 0, 5000, &ev, &err), 0);
	pthread_join(t, NULL);
	assert_int_equal(ev, p.rev);

	/* a compacted start revision: at once, with the compact revision */
	assert_int_equal(store_put(f->st, "/w/node/h2", "x", 0, &rev, &err), 0);
	compact(f->good, rev);
	assert_int_equal(store_watch_wait(f->st, "/w/", 1, 5000, &ev, &err), 0);
	assert_int_equal(ev, rev);

	assert_int_equal(store_delete_prefix(f->st, "/w", &err), 0);
}

/* ------------------------------------------------------------------ */
/* endpoints                                                            */
/* ------------------------------------------------------------------ */

static void test_failover(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	char eps[160];
	struct kv_store *st;
	struct store_kv kv;
	int64_t ev, rev, lease;
	int ttl;

	snprintf(eps, sizeof(eps), "%s,%s", f->dead, f->good);
	st = open_store(eps, 1000);
	assert_string_equal(store_endpoints(st), eps);
	assert_int_equal(store_put(st, "/f/a", "1", 0, &rev, &err), 0);
	assert_int_equal(store_get(st, "/f/a", &kv, NULL, &err), 0);
	assert_string_equal(kv.value, "1");
	store_kv_free(&kv);
	assert_int_equal(store_lease_grant(st, 5, &lease, &err), 0);
	assert_int_equal(store_lease_keepalive(st, lease, &ttl, &err), 0);
	assert_int_equal(store_lease_revoke(st, lease, &err), 0);
	assert_int_equal(store_watch_wait(st, "/f/", rev, 2000, &ev, &err), 0);
	assert_int_equal(ev, rev);
	assert_int_equal(store_delete_prefix(st, "/f/", &err), 0);
	store_close(st);

	/* spaces around the endpoints and a trailing '/' are fine */
	snprintf(eps, sizeof(eps), " %s/ , %s ", f->good, f->dead);
	st = open_store(eps, 1000);
	assert_int_equal(store_get(st, "/f/a", &kv, NULL, &err), -ENOENT);
	store_close(st);
}

static void test_unreachable(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	struct kv_store *st = open_store(f->dead, 2000);
	struct store_kv kv;
	int64_t ev, id;
	uint64_t t0 = now_ms();
	bool ok;
	int rc;

	rc = store_get(st, "/u", &kv, NULL, &err);
	assert_true(rc < 0);
	assert_int_equal(rc, -ECONNREFUSED);
	assert_true(now_ms() - t0 < 1000);
	assert_non_null(strstr(err.msg, f->dead));
	print_message("unreachable: %s\n", err.msg);

	assert_true(store_put(st, "/u", "v", 0, NULL, &err) < 0);
	assert_true(store_txn(st, NULL, 0, NULL, 0, NULL, 0, &ok, NULL, &err) < 0);
	assert_true(store_lease_grant(st, 5, &id, &err) < 0);
	t0 = now_ms();
	rc = store_watch_wait(st, "/u", 0, 1500, &ev, &err);
	assert_true(rc < 0 && rc != -ETIMEDOUT);
	assert_true(now_ms() - t0 < 1000);
	assert_non_null(strstr(err.msg, f->dead));
	store_close(st);
}

static void test_cluster_status(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	char eps[160];
	struct kv_store *st;
	json_t *o = NULL, *e;

	assert_int_equal(store_cluster_status(f->st, &o, &err), 0);
	assert_true(json_is_true(json_object_get(o, "quorum")));
	assert_string_equal(json_string_value(json_object_get(o, "leader")), "t");
	assert_int_equal(json_array_size(json_object_get(o, "endpoints")), 1);
	e = json_array_get(json_object_get(o, "endpoints"), 0);
	assert_true(json_is_true(json_object_get(e, "ok")));
	assert_true(json_is_true(json_object_get(e, "is-leader")));
	assert_string_equal(json_string_value(json_object_get(e, "endpoint")), f->good);
	assert_non_null(strstr(json_string_value(json_object_get(e, "version")), "3."));
	assert_true(json_integer_value(json_object_get(e, "raft-term")) > 0);
	assert_true(json_integer_value(json_object_get(e, "db-size")) > 0);
	assert_string_equal(json_string_value(json_object_get(e, "member-id")),
			    json_string_value(json_object_get(e, "leader")));
	assert_int_equal(json_array_size(json_object_get(o, "members")), 1);
	e = json_array_get(json_object_get(o, "members"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "name")), "t");
	assert_int_equal(json_array_size(json_object_get(e, "client-urls")), 1);
	json_decref(o);

	/* a dead endpoint is reported, not an error */
	snprintf(eps, sizeof(eps), "%s,%s", f->dead, f->good);
	st = open_store(eps, 1000);
	assert_int_equal(store_cluster_status(st, &o, &err), 0);
	assert_true(json_is_true(json_object_get(o, "quorum")));
	e = json_array_get(json_object_get(o, "endpoints"), 0);
	assert_true(json_is_false(json_object_get(e, "ok")));
	assert_non_null(json_string_value(json_object_get(e, "error")));
	e = json_array_get(json_object_get(o, "endpoints"), 1);
	assert_true(json_is_true(json_object_get(e, "ok")));
	json_decref(o);
	store_close(st);

	/* nothing reachable: still an answer */
	st = open_store(f->dead, 1000);
	assert_int_equal(store_cluster_status(st, &o, &err), 0);
	assert_true(json_is_false(json_object_get(o, "quorum")));
	assert_true(json_is_null(json_object_get(o, "leader")));
	assert_int_equal(json_array_size(json_object_get(o, "members")), 0);
	json_decref(o);
	store_close(st);
}

static void test_bad_endpoints(void **state)
{
	static const char *const bad[] = {
		"", "127.0.0.1:2379", "ftp://127.0.0.1:2379", "http://", "http://a/path",
		"http://a,,http://b", "http://a b", "http://u@host:1",
	};
	struct store_options o = { 0 };
	struct kv_err err;
	struct kv_store *st;
	char many[1024] = "";

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.endpoints = bad[i];
		err.msg[0] = '\0';
		assert_int_equal(store_open(&st, &o, &err), -EINVAL);
		assert_null(st);
		assert_true(err.msg[0]);
	}
	for (int i = 0; i <= STORE_MAX_ENDPOINTS; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%shttp://h%d:1",
			 i ? "," : "", i);
	o.endpoints = many;
	assert_int_equal(store_open(&st, &o, &err), -EINVAL);
	o.endpoints = NULL;
	assert_int_equal(store_open(&st, &o, &err), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* a hostile "etcd"                                                     */
/* ------------------------------------------------------------------ */

struct fake {
	int lfd, port;
	pthread_t thread;
	atomic_int stop;
	const char *status_line;	/* "200 OK" */
	const char *body;		/* NULL: huge_mib MiB of spaces */
	unsigned huge_mib;
};

static void *fake_serve(void *arg)
{
	struct fake *fk = arg;

	while (!atomic_load(&fk->stop)) {
		struct pollfd pfd = { .fd = fk->lfd, .events = POLLIN };
		char req[8192], hdr[256];
		size_t got = 0;
		int c;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		c = accept4(fk->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		/* the request: headers, then Content-Length bytes */
		for (;;) {
			ssize_t n = recv(c, req + got, sizeof(req) - 1 - got, 0);
			char *end, *cl;

			if (n <= 0)
				break;
			got += (size_t)n;
			req[got] = '\0';
			end = strstr(req, "\r\n\r\n");
			cl = strcasestr(req, "content-length:");
			if (end && (!cl || got >= (size_t)(end + 4 - req) + strtoul(cl + 15, NULL, 10)))
				break;
		}
		if (fk->body) {
			snprintf(hdr, sizeof(hdr),
				 "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
				 fk->status_line, strlen(fk->body));
			(void)!send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
			(void)!send(c, fk->body, strlen(fk->body), MSG_NOSIGNAL);
		} else {
			static char spaces[65536];
			size_t total = (size_t)fk->huge_mib << 20;

			memset(spaces, ' ', sizeof(spaces));
			snprintf(hdr, sizeof(hdr),
				 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
				 total);
			(void)!send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
			for (size_t sent = 0; sent < total; sent += sizeof(spaces))
				if (send(c, spaces, sizeof(spaces), MSG_NOSIGNAL) < 0)
					break;
		}
		close(c);
	}
	return NULL;
}

static void fake_start(struct fake *fk)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	fk->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fk->lfd >= 0);
	assert_int_equal(bind(fk->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fk->lfd, (struct sockaddr *)&a, &len), 0);
	assert_int_equal(listen(fk->lfd, 8), 0);
	fk->port = ntohs(a.sin_port);
	atomic_init(&fk->stop, 0);
	assert_int_equal(pthread_create(&fk->thread, NULL, fake_serve, fk), 0);
}

static void fake_stop(struct fake *fk)
{
	atomic_store(&fk->stop, 1);
	pthread_join(fk->thread, NULL);
	close(fk->lfd);
}

/* What a call makes of one canned answer. */
static int fake_get(struct fake *fk, const char *status_line, const char *body, char *msg)
{
	struct kv_err err = { "" };
	char ep[64];
	struct kv_store *st;
	struct store_kv kv;
	int rc;

	fk->status_line = status_line;
	fk->body = body;
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", fk->port);
	st = open_store(ep, 1000);
	rc = store_get(st, "/k", &kv, NULL, &err);
	if (!rc) {
		assert_non_null(kv.key);
		store_kv_free(&kv);
	}
	assert_null(kv.key);
	store_close(st);
	if (msg)
		strcpy(msg, err.msg);
	return rc;
}

static void test_hostile_answers(void **state)
{
	struct fake fk = { 0 };
	char msg[KV_ERR_MAX];

	fake_start(&fk);
	/* the well-formed answer works, so the others fail for their flaw */
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{\"revision\":\"7\"},\"kvs\":"
				  "[{\"key\":\"L2s=\",\"value\":\"dg==\",\"mod_revision\":\"7\"}]}",
				  NULL), 0);
	assert_int_equal(fake_get(&fk, "200 OK", "not json", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "[1,2]", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "404 Not Found", "Not Found", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{\"revision\":\"x7\"}}", NULL),
			 -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{\"revision\":"
				  "\"99999999999999999999\"}}", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":{}}", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":[{\"key\":\"L2s\"}]}",
				  NULL), -EPROTO);		/* not base64 */
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":[{\"key\":\"L2s=\","
				  "\"value\":\"!!!!\"}]}", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":[{\"key\":\"L2s=\","
				  "\"version\":1.5}]}", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":[{\"key\":\"L3g=\"}]}",
				  NULL), -EPROTO);		/* another key */
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":[{\"key\":\"AA==\"}]}",
				  NULL), -EPROTO);		/* a NUL key */
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":[{\"key\":\"L2s=\"},"
				  "{\"key\":\"L2s=\"}]}", NULL), -EPROTO);
	assert_int_equal(fake_get(&fk, "200 OK", "{\"header\":{},\"kvs\":[]}", NULL), -ENOENT);
	/* etcd's error, with its message cleaned of control characters */
	assert_int_equal(fake_get(&fk, "400 Bad Request", "{\"error\":\"x\",\"message\":"
				  "\"etcdserver: bad\\u001b[31m thing\",\"code\":3}", msg), -EIO);
	assert_non_null(strstr(msg, "etcdserver: bad?[31m thing"));
	/* "no leader" from every member: no quorum (after retrying a while) */
	assert_int_equal(fake_get(&fk, "503 Service Unavailable", "{\"error\":\"etcdserver: no "
				  "leader\",\"message\":\"etcdserver: no leader\",\"code\":14}", msg),
			 -ETIMEDOUT);
	assert_non_null(strstr(msg, "no quorum"));
	assert_non_null(strstr(msg, "no leader"));
	/* an endless answer is cut at 64 MiB */
	fk.body = NULL;
	fk.huge_mib = 65;
	assert_int_equal(fake_get(&fk, "200 OK", NULL, msg), -EPROTO);
	assert_non_null(strstr(msg, "larger"));
	fake_stop(&fk);
}

static void test_codec(void **state)
{
	static const struct {
		const char *in, *out;
	} good[] = {
		{ "", "" }, { "Zg==", "f" }, { "Zm8=", "fo" }, { "Zm9v", "foo" },
		{ "Zm9vYg==", "foob" }, { "/w==", "\xff" },
	};
	static const char *const bad[] = {
		"Zg=", "Zg", "Z===", "====", "Zm9v\n", "Zh==", "Zm9=", "Zm 9v", "Zg==Zg==",
		"Zm-v", "Zm_v",
	};
	char *out;
	size_t n;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *enc = store_b64_encode(good[i].out, strlen(good[i].out));
		assert_string_equal(enc, good[i].in);
		free(enc);
		assert_int_equal(store_b64_decode(good[i].in, strlen(good[i].in), &out, &n), 0);
		assert_int_equal(n, strlen(good[i].out));
		assert_memory_equal(out, good[i].out, n);
		assert_int_equal(out[n], '\0');
		free(out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(store_b64_decode(bad[i], strlen(bad[i]), &out, &n), -EINVAL);
		assert_null(out);
	}

	/* int64 fields */
	{
		json_t *o = json_loads("{\"a\":\"-9223372036854775808\",\"b\":\"9223372036854775807\","
				       "\"c\":\"9223372036854775808\",\"d\":\"+1\",\"e\":\" 1\","
				       "\"f\":\"\",\"g\":\"-\",\"h\":12,\"i\":true,\"j\":null,"
				       "\"k\":\"18446744073709551615\",\"l\":\"0x1\"}", 0, NULL);
		int64_t v;
		uint64_t u;

		assert_non_null(o);
		assert_int_equal(store_json_i64(o, "a", &v), 0);
		assert_true(v == INT64_MIN);
		assert_int_equal(store_json_i64(o, "b", &v), 0);
		assert_true(v == INT64_MAX);
		assert_int_equal(store_json_i64(o, "h", &v), 0);
		assert_int_equal(v, 12);
		assert_int_equal(store_json_i64(o, "j", &v), 0);
		assert_int_equal(v, 0);
		assert_int_equal(store_json_i64(o, "missing", &v), 0);
		assert_int_equal(v, 0);
		for (const char *k = "cdefgikl"; *k; k++) {
			char name[2] = { *k, 0 };
			assert_int_equal(store_json_i64(o, name, &v), -EPROTO);
		}
		assert_int_equal(store_json_u64(o, "k", &u), 0);
		assert_true(u == UINT64_MAX);
		assert_int_equal(store_json_u64(o, "a", &u), -EPROTO);
		json_decref(o);
	}
}

/* ------------------------------------------------------------------ */
/* fence.h: a VMM's self-fencing against a real lease                  */
/* ------------------------------------------------------------------ */

struct fired {
	atomic_int n;
	char why[300];
};

static void on_fire(void *opaque, const char *why)
{
	struct fired *fd = opaque;

	snprintf(fd->why, sizeof(fd->why), "%s", why);
	atomic_fetch_add(&fd->n, 1);
}

static void test_fence(void **state)
{
	struct fx *f = *state;
	struct kv_err err = { "" };
	struct fired fd = { 0 };
	struct fence *fe = NULL;
	int64_t id = 0, parsed = 0;
	uint64_t t0;

	/* the pure parts */
	assert_true(fence_deadline(100.0, 5) == 100.0 + 5 - FENCE_MARGIN_S);
	assert_true(fence_period(6) == 0.75);
	assert_true(fence_period(60) == FENCE_PERIOD_S);
	assert_true(fence_period(1) == FENCE_PERIOD_MIN_S);
	assert_true(fence_period(0) == FENCE_PERIOD_S);
	assert_int_equal(fence_lease_parse("7587890123456789", &parsed), 0);
	assert_true(parsed == 7587890123456789LL);
	assert_int_equal(fence_lease_parse("0x10", &parsed), 0);
	assert_true(parsed == 16);
	for (const char *bad[] = { "", "0", "-5", "12x", "0x", "99999999999999999999", NULL },
	     **b = bad; *b; b++)
		assert_int_equal(fence_lease_parse(*b, &parsed), -EINVAL);

	/* a lease that lives: nothing fires while it is renewed (every TTL/3,
	 * as the agent does) */
	assert_int_equal(store_lease_grant(f->st, 5, &id, &err), 0);
	assert_int_equal(fence_start(&fe, f->good, id, on_fire, &fd, &err), 0);
	for (int i = 0; i < 5; i++) {
		int ttl;
		sleep_ms(1667);
		assert_int_equal(store_lease_keepalive(f->st, id, &ttl, &err), 0);
	}
	assert_int_equal(atomic_load(&fd.n), 0);
	/* revoked (as an expiry would): it fires within a period or so */
	assert_int_equal(store_lease_revoke(f->st, id, &err), 0);
	t0 = now_ms();
	while (!atomic_load(&fd.n) && now_ms() - t0 < 5000)
		sleep_ms(50);
	assert_int_equal(atomic_load(&fd.n), 1);
	assert_non_null(strstr(fd.why, "expired"));
	fence_stop(fe);

	/* a lease no longer renewed fires before etcd lets it expire: the
	 * watchdog's deadline, or the prober seeing it gone */
	memset(&fd, 0, sizeof(fd));
	assert_int_equal(store_lease_grant(f->st, 3, &id, &err), 0);
	t0 = now_ms();
	assert_int_equal(fence_start(&fe, f->good, id, on_fire, &fd, &err), 0);
	while (!atomic_load(&fd.n) && now_ms() - t0 < 8000)
		sleep_ms(20);
	assert_int_equal(atomic_load(&fd.n), 1);
	{
		int ttl = 0;
		/* fired while etcd still held the lease */
		assert_int_equal(store_lease_ttl(f->st, id, &ttl, NULL, &err), 0);
		assert_true(ttl >= 0);
	}
	fence_stop(fe);
	(void)store_lease_revoke(f->st, id, &err);

	/* a lease that is gone, or no etcd: the VM does not start */
	assert_int_equal(fence_start(&fe, f->good, id, on_fire, &fd, &err), -ENOENT);
	assert_null(fe);
	assert_int_not_equal(fence_start(&fe, f->dead, 12345, on_fire, &fd, &err), 0);
	assert_null(fe);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec),
		cmocka_unit_test(test_bad_endpoints),
		cmocka_unit_test(test_hostile_answers),
		cmocka_unit_test(test_put_get_list_delete),
		cmocka_unit_test(test_arbitrary_bytes),
		cmocka_unit_test(test_txn),
		cmocka_unit_test(test_lease),
		cmocka_unit_test(test_lease_expires),
		cmocka_unit_test(test_fence),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_cluster_status),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
