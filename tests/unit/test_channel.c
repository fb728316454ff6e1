/*
 * TLS channels with pre-shared keys over a socketpair: the stream on top,
 * many records including 2 MiB ones, both directions at once from two
 * threads; every refusal with the message a user would read: wrong key,
 * unknown identity, a plaintext peer on either side, a stalled handshake;
 * the key files and keygen.  x509 lives in test_channel_x509.c, the fd,
 * file and memory backends in test_channel_backends.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "channel_harness.h"

#define KEY1 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define NREC 60
#define MID (1536u << 10)	/* the corked write's middle piece: more than a socket holds */

/* ---- TLS with pre-shared keys ---- */

struct fixture {
	char dir[64];
	char cli_keys[128], srv_keys[128];
};

static struct fixture *psk_files(const char *cli_line, const char *srv_text)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char text[512];

	h_mkdtemp(f->dir, sizeof(f->dir));
	snprintf(f->cli_keys, sizeof(f->cli_keys), "%s/client.psk", f->dir);
	snprintf(f->srv_keys, sizeof(f->srv_keys), "%s/server.psk", f->dir);
	snprintf(text, sizeof(text), "%s\n", cli_line);
	h_write_file(f->cli_keys, text, 0600);
	h_write_file(f->srv_keys, srv_text, 0600);
	return f;
}

static void psk_sides(struct fixture *f, struct side *cli, struct side *srv)
{
	struct kv_err err;

	memset(cli, 0, sizeof(*cli));
	memset(srv, 0, sizeof(*srv));
	if (tls_creds_load(&cli->creds, TLS_PSK, f->cli_keys, false, &err))
		fail_msg("%s", err.msg);
	if (tls_creds_load(&srv->creds, TLS_PSK, f->srv_keys, true, &err))
		fail_msg("%s", err.msg);
	srv->server = true;
	cli->timeout_ms = srv->timeout_ms = 10000;
}

static void fixture_free(struct fixture *f, struct side *cli, struct side *srv)
{
	if (cli)
		tls_creds_free(cli->creds);
	if (srv)
		tls_creds_free(srv->creds);
	h_rm_rf(f->dir);
	free(f);
}

static uint32_t rec_size(int i)
{
	return i % 10 == 9 ? BIG_RECORD : (uint32_t)(i * 7919) % 70000 + (i % 3 ? 1 : 0);
}

/* Many records through the stream, then an answer, then raw pieces. */
static int stream_client_io(struct side *sd, struct channel *ch, struct stream *s, uint8_t *buf,
			    struct kv_err *fe)
{
	struct stream_rec rec;
	struct kv_err err;
	struct iovec v[3] = { { "abc", 3 }, { buf, MID }, { "xyz", 3 } };

	T_CHECK(stream_init_channel(s, ch, BIG_RECORD, &err) == 0, "%s", err.msg);
	T_CHECK(stream_channel(s) == ch && stream_fd(s) == sd->fd, "stream_channel/stream_fd");
	s->timeout_ms = 10000;
	for (int i = 0; i < NREC; i++) {
		h_fill(buf, rec_size(i), (uint64_t)i);
		T_CHECK(!stream_write(s, (uint16_t)(100 + i % 7), 0, buf, rec_size(i), &err),
			"write %d: %s", i, err.msg);
	}
	T_CHECK(!stream_flush(s, &err), "flush: %s", err.msg);
	T_CHECK(!stream_read(s, &rec, &err), "reading the answer: %s", err.msg);
	T_CHECK(rec.type == 200 && rec.len == 5 && !memcmp(rec.payload, "ok 60", 5),
		"a wrong answer");
	/* several pieces at once: the TLS channel corks them into records */
	h_fill(buf, MID, 99);
	return write_fully(ch, v, 3, fe);
}

static int stream_client(struct side *sd, struct channel *ch)
{
	struct stream s = { 0 };
	uint8_t *buf = malloc(BIG_RECORD);
	int r = stream_client_io(sd, ch, &s, buf, &sd->work_err);

	stream_destroy(&s);
	free(buf);
	return r;
}

static int read_one(struct stream *s, int i, uint8_t *buf, const uint8_t *want,
		    struct kv_err *fe)
{
	struct stream_rec rec;
	struct kv_err err;
	uint32_t n = rec_size(i);

	if (i % 2 == 0) {
		T_CHECK(!stream_read(s, &rec, &err), "read %d: %s", i, err.msg);
		T_CHECK(!memcmp(rec.payload, want, n), "record %d differs", i);
	} else {
		/* the RAM receiver's way: a head, a part, the rest in pieces */
		struct iovec iov[3];
		uint32_t first = n < 4 ? 0 : 4, rest = n - first;

		T_CHECK(!stream_read_head(s, &rec, &err), "head %d: %s", i, err.msg);
		T_CHECK(!first || !stream_read_part(s, buf, first, &err), "part %d: %s", i,
			err.msg);
		iov[0] = (struct iovec){ buf + first, rest / 3 };
		iov[1] = (struct iovec){ buf + first + rest / 3, rest / 3 };
		iov[2] = (struct iovec){ buf + first + 2 * (rest / 3), rest - 2 * (rest / 3) };
		T_CHECK(!stream_read_rest_v(s, iov, 3, &err), "rest %d: %s", i, err.msg);
		T_CHECK(!memcmp(buf, want, n), "record %d differs", i);
	}
	T_CHECK(rec.type == 100 + i % 7 && rec.len == n, "record %d: type %u, %u bytes", i,
		rec.type, rec.len);
	return 0;
}

static int stream_server_io(struct channel *ch, struct stream *s, uint8_t *buf, uint8_t *want,
			    struct kv_err *fe)
{
	struct stream_rec rec;
	struct kv_err err;
	bool saw_pending = false;

	T_CHECK(stream_init_channel(s, ch, BIG_RECORD, &err) == 0, "%s", err.msg);
	s->timeout_ms = 10000;
	for (int i = 0; i < NREC; i++) {
		if (stream_pending(s)) {
			/* decrypted bytes wait in the channel: ready at once */
			saw_pending = true;
			T_CHECK(stream_wait(s, POLLIN, 0, &err) & POLLIN, "pending, not ready");
		}
		h_fill(want, rec_size(i), (uint64_t)i);
		if (read_one(s, i, buf, want, fe))
			return -1;
	}
	T_CHECK(saw_pending, "never saw decrypted bytes waiting");
	T_CHECK(!stream_write(s, 200, 0, "ok 60", 5, &err) && !stream_flush(s, &err), "%s",
		err.msg);
	usleep(100 * 1000);	/* let the corked write fill the socket: it must wait */
	if (read_fully(ch, buf, MID + 6, fe))
		return -1;
	h_fill(want, MID, 99);
	T_CHECK(!memcmp(buf, "abc", 3) && !memcmp(buf + 3, want, MID) &&
		!memcmp(buf + 3 + MID, "xyz", 3), "the corked pieces differ");
	T_CHECK(stream_read(s, &rec, &err) == -ECONNRESET, "no clean end: %s", err.msg);
	return 0;
}

static int stream_server(struct side *sd, struct channel *ch)
{
	struct stream s = { 0 };
	uint8_t *buf = malloc(BIG_RECORD), *want = malloc(BIG_RECORD);
	int r = stream_server_io(ch, &s, buf, want, &sd->work_err);

	stream_destroy(&s);
	free(buf);
	free(want);
	return r;
}

static void test_psk_roundtrip(void **state)
{
	struct fixture *f = psk_files("src1:" KEY1, "other:" KEY2 "\n# comment\n\nsrc1:" KEY1 "\n");
	struct side cli, srv;

	psk_sides(f, &cli, &srv);
	cli.work = stream_client;
	srv.work = stream_server;
	run_two(&cli, &srv, NULL, NULL);
	if (cli.rc || srv.rc)
		fail_msg("handshake: client: %s; server: %s", cli.err.msg, srv.err.msg);
	if (cli.work_rc || srv.work_rc)
		fail_msg("client: %s; server: %s", cli.work_err.msg, srv.work_err.msg);
	/* each knows whom it talks to */
	assert_string_equal(srv.peer, "src1");
	assert_string_equal(cli.peer, "src1");
	assert_string_equal(srv.dn, "");
	assert_non_null(strstr(cli.desc, "TLS1.3"));
	assert_non_null(strstr(cli.desc, "psk"));
	printf("    %s\n", cli.desc);
	fixture_free(f, &cli, &srv);
}

/* Both directions at once, one thread reading while another writes on
 * the same channel (post-copy's return path does this). */
struct duplex {
	struct channel *ch;
	uint64_t seed;
	int rc;
	struct kv_err fe;
};

static int duplex_write(struct duplex *d, struct stream *s, uint8_t *buf)
{
	struct kv_err err, *fe = &d->fe;

	T_CHECK(!stream_init_channel(s, d->ch, BIG_RECORD, &err), "%s", err.msg);
	s->timeout_ms = 10000;
	for (int i = 0; i < 40; i++) {
		uint32_t n = (uint32_t)(i * 6007) % (256 << 10);
		h_fill(buf, n, d->seed + (uint64_t)i);
		T_CHECK(!stream_write(s, 1, 0, buf, n, &err) && !stream_flush(s, &err),
			"duplex write %d: %s", i, err.msg);
	}
	return 0;
}

static void *duplex_writer(void *arg)
{
	struct duplex *d = arg;
	struct stream s = { 0 };
	uint8_t *buf = malloc(256 << 10);

	d->rc = duplex_write(d, &s, buf);
	stream_destroy(&s);
	free(buf);
	return NULL;
}

static int duplex_read(struct side *sd, struct stream *s, struct channel *ch, uint8_t *want)
{
	struct stream_rec rec;
	struct kv_err err, *fe = &sd->work_err;

	T_CHECK(!stream_init_channel(s, ch, BIG_RECORD, &err), "%s", err.msg);
	s->timeout_ms = 10000;
	for (int i = 0; i < 40; i++) {
		uint32_t n = (uint32_t)(i * 6007) % (256 << 10);
		h_fill(want, n, (sd->server ? 2000 : 1000) + (uint64_t)i);
		T_CHECK(!stream_read(s, &rec, &err), "duplex read %d: %s", i, err.msg);
		T_CHECK(rec.len == n && !memcmp(rec.payload, want, n), "duplex record %d differs",
			i);
	}
	return 0;
}

static int duplex_work(struct side *sd, struct channel *ch)
{
	struct duplex d = { .ch = ch, .seed = sd->server ? 1000 : 2000 };
	struct stream s = { 0 };	/* this thread's read side */
	uint8_t *want = malloc(256 << 10);
	pthread_t t;
	int r;

	pthread_create(&t, NULL, duplex_writer, &d);
	r = duplex_read(sd, &s, ch, want);
	pthread_join(t, NULL);
	stream_destroy(&s);
	free(want);
	if (!r && d.rc) {
		sd->work_err = d.fe;
		r = d.rc;
	}
	return r;
}

static void test_psk_duplex(void **state)
{
	struct fixture *f = psk_files("a:" KEY1, "a:" KEY1 "\n");
	struct side cli, srv;

	psk_sides(f, &cli, &srv);
	cli.work = srv.work = duplex_work;
	run_two(&cli, &srv, NULL, NULL);
	if (cli.rc || srv.rc)
		fail_msg("handshake: client: %s; server: %s", cli.err.msg, srv.err.msg);
	if (cli.work_rc || srv.work_rc)
		fail_msg("client: %s; server: %s", cli.work_err.msg, srv.work_err.msg);
	fixture_free(f, &cli, &srv);
}

static void test_psk_wrong_key(void **state)
{
	struct fixture *f = psk_files("src1:" KEY1, "src1:" KEY2 "\n");
	struct side cli, srv;

	psk_sides(f, &cli, &srv);
	run_two(&cli, &srv, NULL, NULL);
	printf("    client: %s\n    server: %s\n", cli.err.msg, srv.err.msg);
	assert_int_equal(cli.rc, -EKEYREJECTED);
	assert_non_null(strstr(cli.err.msg, "the two key files hold different keys"));
	assert_int_equal(srv.rc, -EKEYREJECTED);
	assert_non_null(strstr(srv.err.msg, "'src1' differs"));
	fixture_free(f, &cli, &srv);
}

static void test_psk_unknown_identity(void **state)
{
	struct fixture *f = psk_files("mallory:" KEY1, "src1:" KEY1 "\n");
	struct side cli, srv;

	psk_sides(f, &cli, &srv);
	run_two(&cli, &srv, NULL, NULL);
	printf("    client: %s\n    server: %s\n", cli.err.msg, srv.err.msg);
	assert_int_equal(srv.rc, -EKEYREJECTED);
	assert_non_null(strstr(srv.err.msg, "identity 'mallory'"));
	assert_non_null(strstr(srv.err.msg, "does not hold"));
	assert_int_equal(cli.rc, -EKEYREJECTED);
	assert_non_null(strstr(cli.err.msg, "'mallory'"));
	fixture_free(f, &cli, &srv);
}

/* ---- a plaintext peer, either side ---- */

struct plain {
	int fd;			/* first: run_two() fills it */
	int rc;
	struct kv_err err;
	bool as_source;		/* speak first, as a plaintext source does */
};

static void *plain_main(void *arg)
{
	struct plain *p = arg;
	struct stream s;
	struct stream_rec rec;

	if (stream_init(&s, p->fd, BIG_RECORD, &p->err)) {
		p->rc = -ENOMEM;
		return NULL;
	}
	s.timeout_ms = 5000;
	if (p->as_source) {
		stream_write(&s, 1, 1, "{\"protocol\":\"kvmove\"}", 21, NULL);
		stream_flush(&s, NULL);
	}
	p->rc = stream_read(&s, &rec, &p->err);
	if (!p->as_source) {
		/* what a plaintext destination does: refuse, in plaintext */
		stream_write(&s, 13, 0, "{\"id\":\"refused\"}", 16, NULL);
		stream_flush(&s, NULL);
	}
	stream_destroy(&s);
	shutdown(p->fd, SHUT_RDWR);
	return NULL;
}

static void test_plaintext_peer(void **state)
{
	struct fixture *f = psk_files("src1:" KEY1, "src1:" KEY1 "\n");
	struct side cli, srv;
	struct plain p = { .as_source = false };

	psk_sides(f, &cli, &srv);
	/* a TLS source meets a plaintext destination */
	run_two(&cli, NULL, plain_main, &p);
	printf("    tls client: %s\n    plaintext server: %s\n", cli.err.msg, p.err.msg);
	assert_int_equal(cli.rc, -EPROTO);
	assert_string_equal(cli.err.msg, "the peer speaks plaintext, not TLS (was it started "
			    "with --insecure?)");
	assert_int_equal(p.rc, -EPROTO);
	assert_non_null(strstr(p.err.msg, "the peer wants TLS"));
	/* a plaintext source meets a TLS destination */
	p = (struct plain){ .as_source = true };
	run_two(&srv, NULL, plain_main, &p);
	printf("    tls server: %s\n    plaintext client: %s\n", srv.err.msg, p.err.msg);
	assert_int_equal(srv.rc, -EPROTO);
	assert_non_null(strstr(srv.err.msg, "the peer speaks plaintext, not TLS"));
	/* the plaintext side reads the TLS alert, or just the close */
	assert_true(p.rc == -EPROTO || p.rc == -ECONNRESET);
	if (p.rc == -EPROTO)
		assert_non_null(strstr(p.err.msg, "the peer answered in TLS"));
	fixture_free(f, &cli, &srv);
}

/* What a TLS client sends first is a ClientHello, and a kvmove record is not. */
struct grab {
	int fd;
	uint8_t first[8];
	ssize_t n;
};

static void *grab_main(void *arg)
{
	struct grab *g = arg;
	struct pollfd p = { .fd = g->fd, .events = POLLIN };

	poll(&p, 1, 5000);
	g->n = recv(g->fd, g->first, sizeof(g->first), MSG_WAITALL);
	shutdown(g->fd, SHUT_RDWR);
	return NULL;
}

static void test_client_hello_detection(void **state)
{
	struct fixture *f = psk_files("src1:" KEY1, "src1:" KEY1 "\n");
	struct side cli, srv;
	struct grab g = { 0 };
	const uint8_t hello[8] = { 1, 0, 1, 0, 21, 0, 0, 0 };	/* a kvmove HELLO header */

	psk_sides(f, &cli, &srv);
	run_two(&cli, NULL, grab_main, &g);
	assert_int_equal(g.n, 8);
	assert_true(tls_looks_like_client_hello(g.first, 8));
	assert_true(tls_looks_like_record(g.first, 8));
	assert_false(tls_looks_like_client_hello(g.first, 5));
	assert_false(tls_looks_like_client_hello(hello, 8));
	assert_false(tls_looks_like_record(hello, 8));
	assert_int_equal(cli.rc, -ECONNRESET);	/* it closed on us */
	printf("    client: %s\n", cli.err.msg);
	fixture_free(f, &cli, &srv);
}

/* ---- a stalled handshake ends at its deadline ---- */

struct mute {
	int fd;
	int hold_ms;
};

static void *mute_main(void *arg)
{
	struct mute *m = arg;

	usleep((useconds_t)m->hold_ms * 1000);	/* connected, silent */
	shutdown(m->fd, SHUT_RDWR);
	return NULL;
}

static void test_stalled_handshake(void **state)
{
	struct fixture *f = psk_files("src1:" KEY1, "src1:" KEY1 "\n");
	struct side cli, srv;
	struct mute m = { .hold_ms = 3000 };

	psk_sides(f, &cli, &srv);
	srv.timeout_ms = cli.timeout_ms = 300;
	run_two(&srv, NULL, mute_main, &m);
	printf("    server: %s (%.0f ms)\n", srv.err.msg, srv.ms);
	assert_int_equal(srv.rc, -ETIMEDOUT);
	assert_non_null(strstr(srv.err.msg, "timed out after 300 ms"));
	assert_non_null(strstr(srv.err.msg, "sent nothing"));
	/* the deadline holds, with room for a loaded machine, not the peer's 3 s */
	assert_true(srv.ms >= 290 && srv.ms < 2500);
	run_two(&cli, NULL, mute_main, &m);
	printf("    client: %s (%.0f ms)\n", cli.err.msg, cli.ms);
	assert_int_equal(cli.rc, -ETIMEDOUT);
	assert_true(cli.ms >= 290 && cli.ms < 2500);
	fixture_free(f, &cli, &srv);
}

/* ---- key files ---- */

static int load_text(const char *dir, const char *text, mode_t mode, bool server,
		     struct kv_err *err)
{
	char path[128];
	struct tls_creds *c = NULL;
	int r;

	snprintf(path, sizeof(path), "%s/k.psk", dir);
	unlink(path);
	h_write_file(path, text, mode);
	r = tls_creds_load(&c, TLS_PSK, path, server, err);
	tls_creds_free(c);
	return r;
}

static void test_psk_files(void **state)
{
	char dir[64], sub[128], path[160];
	struct tls_creds *c;
	struct channel *ch;
	struct kv_err err;

	h_mkdtemp(dir, sizeof(dir));
	assert_int_equal(load_text(dir, "a:" KEY1 "\r\n", 0600, true, &err), 0);
	assert_int_equal(load_text(dir, "a:" KEY1 "\n", 0644, true, &err), -EPERM);
	assert_non_null(strstr(err.msg, "chmod 600"));
	assert_int_equal(load_text(dir, "a:00112233\n", 0600, true, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "line 1: the key for 'a' is 8 hex digits"));
	assert_int_equal(load_text(dir, "a:" KEY1 "\nb:" KEY2 "\na:" KEY2 "\n", 0600, true, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "line 3: identity 'a' appears twice"));
	assert_int_equal(load_text(dir, "a:" KEY1 "\nb:zz" KEY2 "\n", 0600, true, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "line 2"));
	assert_int_equal(load_text(dir, "no colon here\n", 0600, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "IDENTITY:HEXKEY"));
	assert_int_equal(load_text(dir, "has space:" KEY1 "\n", 0600, false, &err), -EINVAL);
	assert_int_equal(load_text(dir, "# only a comment\n", 0600, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "no keys"));
	/* QEMU's layout: a directory holding keys.psk */
	snprintf(sub, sizeof(sub), "%s/qemu", dir);
	mkdir(sub, 0700);
	snprintf(path, sizeof(path), "%s/keys.psk", sub);
	h_write_file(path, "qemu:" KEY1 "\n", 0600);
	assert_int_equal(tls_creds_load(&c, TLS_PSK, sub, false, &err), 0);
	tls_creds_free(c);
	assert_int_equal(tls_creds_load(&c, TLS_PSK, "/nonexistent/k.psk", false, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/k.psk"));
	/* credentials for one role do not serve the other */
	assert_int_equal(tls_creds_load(&c, TLS_PSK, sub, true, &err), 0);
	assert_int_equal(channel_tls_client(&ch, 0, c, NULL, 100, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "loaded for a server"));
	tls_creds_free(c);
	h_rm_rf(dir);
}

static void test_keygen(void **state)
{
	char dir[64], path[128];
	struct fixture *f = calloc(1, sizeof(*f));
	struct side cli, srv;
	struct kv_err err;
	struct stat st;
	char text[256];
	FILE *fp;

	h_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/new.psk", dir);
	assert_int_equal(tls_psk_keygen(path, "host-a", false, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fp = fopen(path, "r");
	assert_non_null(fgets(text, sizeof(text), fp));
	fclose(fp);
	assert_int_equal(strlen(text), strlen("host-a:") + 64 + 1);
	assert_memory_equal(text, "host-a:", 7);
	/* never over an existing key by accident */
	assert_int_equal(tls_psk_keygen(path, "host-a", false, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "--force"));
	chmod(path, 0644);
	assert_int_equal(tls_psk_keygen(path, "host-b", true, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tls_psk_keygen(path, "bad:id", true, &err), -EINVAL);
	/* the file serves both ends */
	snprintf(f->dir, sizeof(f->dir), "%s", dir);
	snprintf(f->cli_keys, sizeof(f->cli_keys), "%s", path);
	snprintf(f->srv_keys, sizeof(f->srv_keys), "%s", path);
	psk_sides(f, &cli, &srv);
	run_two(&cli, &srv, NULL, NULL);
	if (cli.rc || srv.rc)
		fail_msg("handshake: client: %s; server: %s", cli.err.msg, srv.err.msg);
	assert_string_equal(srv.peer, "host-b");
	fixture_free(f, &cli, &srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_psk_roundtrip),
		cmocka_unit_test(test_psk_duplex),
		cmocka_unit_test(test_psk_wrong_key),
		cmocka_unit_test(test_psk_unknown_identity),
		cmocka_unit_test(test_plaintext_peer),
		cmocka_unit_test(test_client_hello_detection),
		cmocka_unit_test(test_stalled_handshake),
		cmocka_unit_test(test_psk_files),
		cmocka_unit_test(test_keygen),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
