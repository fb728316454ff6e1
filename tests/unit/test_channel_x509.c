/*
 * TLS channels with x509 credentials in QEMU's directory layout: a
 * throwaway CA and certificates made here with GnuTLS's x509 API.  A
 * round trip with the peers' names; every refusal with its message:
 * another CA, a wrong host name, a certificate for the other role, no
 * client certificate, an expired one;
 * and what loading refuses before any peer is involved.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "channel_harness.h"

/* ---- a throwaway PKI ---- */

struct ident {
	gnutls_x509_privkey_t key;
	gnutls_x509_crt_t crt;
};

enum { PURPOSE_CA, PURPOSE_SERVER, PURPOSE_CLIENT };

static unsigned serial_no = 1;

static void make_ident(struct ident *id, const char *cn, int purpose, const char *dns,
		       time_t from, time_t until, const struct ident *issuer)
{
	unsigned char kid[64];
	size_t kidlen = sizeof(kid);
	unsigned char serial[4] = { 0, 0, (unsigned char)(serial_no >> 8),
				    (unsigned char)serial_no };

	serial_no++;
	/* ECDSA P-256: a key in a millisecond, unlike RSA */
	assert_int_equal(gnutls_x509_privkey_init(&id->key), 0);
	assert_int_equal(gnutls_x509_privkey_generate(id->key, GNUTLS_PK_ECDSA,
		GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0), 0);
	assert_int_equal(gnutls_x509_crt_init(&id->crt), 0);
	gnutls_x509_crt_set_version(id->crt, 3);
	gnutls_x509_crt_set_serial(id->crt, serial, sizeof(serial));
	gnutls_x509_crt_set_activation_time(id->crt, from);
	gnutls_x509_crt_set_expiration_time(id->crt, until);
	assert_int_equal(gnutls_x509_crt_set_dn_by_oid(id->crt, GNUTLS_OID_X520_ORGANIZATION_NAME,
						       0, "kvmove test", 11), 0);
	assert_int_equal(gnutls_x509_crt_set_dn_by_oid(id->crt, GNUTLS_OID_X520_COMMON_NAME, 0,
						       cn, (unsigned)strlen(cn)), 0);
	assert_int_equal(gnutls_x509_crt_set_key(id->crt, id->key), 0);
	if (purpose == PURPOSE_CA) {
		gnutls_x509_crt_set_basic_constraints(id->crt, 1, -1);
		gnutls_x509_crt_set_key_usage(id->crt, GNUTLS_KEY_KEY_CERT_SIGN |
					      GNUTLS_KEY_CRL_SIGN);
	} else {
		gnutls_x509_crt_set_basic_constraints(id->crt, 0, -1);
		gnutls_x509_crt_set_key_usage(id->crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
		gnutls_x509_crt_set_key_purpose_oid(id->crt, purpose == PURPOSE_SERVER ?
						    GNUTLS_KP_TLS_WWW_SERVER :
						    GNUTLS_KP_TLS_WWW_CLIENT, 0);
	}
	if (dns)
		gnutls_x509_crt_set_subject_alt_name(id->crt, GNUTLS_SAN_DNSNAME, dns,
						     (unsigned)strlen(dns), GNUTLS_FSAN_APPEND);
	if (gnutls_x509_crt_get_key_id(id->crt, 0, kid, &kidlen) == 0)
		gnutls_x509_crt_set_subject_key_id(id->crt, kid, kidlen);
	if (issuer) {
		kidlen = sizeof(kid);
		if (gnutls_x509_crt_get_subject_key_id(issuer->crt, kid, &kidlen, NULL) == 0)
			gnutls_x509_crt_set_authority_key_id(id->crt, kid, kidlen);
	}
	assert_int_equal(gnutls_x509_crt_sign2(id->crt, issuer ? issuer->crt : id->crt,
					       issuer ? issuer->key : id->key,
					       GNUTLS_DIG_SHA256, 0), 0);
}

static void free_ident(struct ident *id)
{
	gnutls_x509_crt_deinit(id->crt);
	gnutls_x509_privkey_deinit(id->key);
}

static void put_pem(const char *dir, const char *name, gnutls_datum_t *d, mode_t mode)
{
	char path[256], *text = malloc(d->size + 1);

	memcpy(text, d->data, d->size);
	text[d->size] = '\0';
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	h_write_file(path, text, mode);
	free(text);
	gnutls_free(d->data);
}

/* dir/ca-cert.pem and dir/<role>-cert.pem, dir/<role>-key.pem */
static void write_dir(const char *dir, const struct ident *ca, const struct ident *id,
		      const char *role)
{
	gnutls_datum_t d;
	char name[64];

	mkdir(dir, 0700);
	assert_int_equal(gnutls_x509_crt_export2(ca->crt, GNUTLS_X509_FMT_PEM, &d), 0);
	put_pem(dir, "ca-cert.pem", &d, 0644);
	if (!id)
		return;
	assert_int_equal(gnutls_x509_crt_export2(id->crt, GNUTLS_X509_FMT_PEM, &d), 0);
	snprintf(name, sizeof(name), "%s-cert.pem", role);
	put_pem(dir, name, &d, 0644);
	assert_int_equal(gnutls_x509_privkey_export2(id->key, GNUTLS_X509_FMT_PEM, &d), 0);
	snprintf(name, sizeof(name), "%s-key.pem", role);
	put_pem(dir, name, &d, 0600);
}

struct pki {
	char root[64];
	time_t now;
	struct ident ca, ca2, server, client, server2;
};

static int pki_setup(void **state)
{
	struct pki *p = calloc(1, sizeof(*p));
	char dir[128];

	h_mkdtemp(p->root, sizeof(p->root));
	p->now = time(NULL);
	make_ident(&p->ca, "kvmove test CA", PURPOSE_CA, NULL, p->now - 3600, p->now + 86400,
		   NULL);
	make_ident(&p->ca2, "another CA", PURPOSE_CA, NULL, p->now - 3600, p->now + 86400, NULL);
	make_ident(&p->server, "dest.example", PURPOSE_SERVER, "dest.example", p->now - 3600,
		   p->now + 86400, &p->ca);
	make_ident(&p->client, "src.example", PURPOSE_CLIENT, NULL, p->now - 3600,
		   p->now + 86400, &p->ca);
	make_ident(&p->server2, "dest.example", PURPOSE_SERVER, "dest.example", p->now - 3600,
		   p->now + 86400, &p->ca2);
	snprintf(dir, sizeof(dir), "%s/server", p->root);
	write_dir(dir, &p->ca, &p->server, "server");
	snprintf(dir, sizeof(dir), "%s/client", p->root);
	write_dir(dir, &p->ca, &p->client, "client");
	/* a destination whose CA is another: consistent in itself */
	snprintf(dir, sizeof(dir), "%s/server-ca2", p->root);
	write_dir(dir, &p->ca2, &p->server2, "server");
	*state = p;
	return 0;
}

static int pki_teardown(void **state)
{
	struct pki *p = *state;

	free_ident(&p->ca);
	free_ident(&p->ca2);
	free_ident(&p->server);
	free_ident(&p->client);
	free_ident(&p->server2);
	h_rm_rf(p->root);
	free(p);
	return 0;
}

static void load(struct side *sd, const struct pki *p, const char *sub, bool server)
{
	char dir[128];
	struct kv_err err;

	memset(sd, 0, sizeof(*sd));
	snprintf(dir, sizeof(dir), "%s/%s", p->root, sub);
	if (tls_creds_load(&sd->creds, TLS_X509, dir, server, &err))
		fail_msg("loading %s: %s", dir, err.msg);
	sd->server = server;
	sd->timeout_ms = 10000;
}

static void unload(struct side *a, struct side *b)
{
	tls_creds_free(a->creds);
	tls_creds_free(b->creds);
}

/* A few records each way: the channel works once the names are checked. */
static int echo_work(struct side *sd, struct channel *ch)
{
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;
	uint8_t *buf = malloc(BIG_RECORD);
	int r;

	if ((r = stream_init_channel(&s, ch, BIG_RECORD, &sd->work_err))) {
		free(buf);
		return r;
	}
	s.timeout_ms = 10000;
	h_fill(buf, BIG_RECORD, 5);
	if (!sd->server) {
		r = stream_write(&s, 1, 0, buf, BIG_RECORD, &err);
		if (!r)
			r = stream_flush(&s, &err);
		if (!r)
			r = stream_read(&s, &rec, &err);
		if (!r && (rec.type != 2 || rec.len != 2))
			r = kv_errf(&err, EBADMSG, "a wrong answer");
	} else {
		r = stream_read(&s, &rec, &err);
		if (!r && (rec.len != BIG_RECORD || memcmp(rec.payload, buf, BIG_RECORD)))
			r = kv_errf(&err, EBADMSG, "the record differs");
		if (!r)
			r = stream_write(&s, 2, 0, "ok", 2, &err);
		if (!r)
			r = stream_flush(&s, &err);
	}
	if (r)
		sd->work_err = err;
	stream_destroy(&s);
	free(buf);
	return r;
}

static void test_x509_roundtrip(void **state)
{
	struct pki *p = *state;
	struct side cli, srv;

	load(&cli, p, "client", false);
	load(&srv, p, "server", true);
	cli.peer_name = "dest.example";
	cli.work = srv.work = echo_work;
	run_two(&cli, &srv, NULL, NULL);
	if (cli.rc || srv.rc)
		fail_msg("handshake: client: %s; server: %s", cli.err.msg, srv.err.msg);
	if (cli.work_rc || srv.work_rc)
		fail_msg("client: %s; server: %s", cli.work_err.msg, srv.work_err.msg);
	/* each side names the other, for the caller to authorize */
	assert_string_equal(srv.peer, "src.example");
	assert_non_null(strstr(srv.dn, "CN=src.example"));
	assert_non_null(strstr(srv.dn, "O=kvmove test"));
	assert_string_equal(cli.peer, "dest.example");
	assert_non_null(strstr(cli.desc, "x509"));
	printf("    %s; server sees '%s'\n", cli.desc, srv.dn);
	/* without an expected name, the CA alone decides */
	cli.peer_name = NULL;
	cli.work = srv.work = NULL;
	run_two(&cli, &srv, NULL, NULL);
	assert_int_equal(cli.rc, 0);
	assert_int_equal(srv.rc, 0);
	unload(&cli, &srv);
}

static void test_x509_other_ca(void **state)
{
	struct pki *p = *state;
	struct side cli, srv;

	load(&cli, p, "client", false);
	load(&srv, p, "server-ca2", true);
	cli.peer_name = "dest.example";
	run_two(&cli, &srv, NULL, NULL);
	printf("    client: %s\n    server: %s\n", cli.err.msg, srv.err.msg);
	assert_int_equal(cli.rc, -EKEYREJECTED);
	assert_non_null(strstr(cli.err.msg, "(CN=dest.example) is not signed by our CA"));
	assert_non_null(strstr(cli.err.msg, "another CA"));
	assert_int_equal(srv.rc, -EKEYREJECTED);
	assert_non_null(strstr(srv.err.msg, "the peer does not trust our certificate"));
	unload(&cli, &srv);
}

static void test_x509_wrong_name(void **state)
{
	struct pki *p = *state;
	struct side cli, srv;

	load(&cli, p, "client", false);
	load(&srv, p, "server", true);
	cli.peer_name = "other.example";
	run_two(&cli, &srv, NULL, NULL);
	printf("    client: %s\n    server: %s\n", cli.err.msg, srv.err.msg);
	assert_int_equal(cli.rc, -EKEYREJECTED);
	assert_non_null(strstr(cli.err.msg, "is not for 'other.example'"));
	assert_non_null(strstr(cli.err.msg, "host name mismatch"));
	assert_int_equal(srv.rc, -EKEYREJECTED);
	assert_non_null(strstr(srv.err.msg, "the peer refused our certificate"));
	unload(&cli, &srv);
}

/* A client without a certificate: our own API refuses to load one, so
 * this one is plain GnuTLS that trusts the CA and offers nothing. */
struct bare {
	int fd;
	const char *ca;
	int rc;
};

static void *bare_client(void *arg)
{
	struct bare *b = arg;
	gnutls_certificate_credentials_t x;
	gnutls_session_t s;
	int r;

	gnutls_certificate_allocate_credentials(&x);
	gnutls_certificate_set_x509_trust_file(x, b->ca, GNUTLS_X509_FMT_PEM);
	gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL);
	gnutls_priority_set_direct(s, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, x);
	gnutls_transport_set_int(s, b->fd);
	gnutls_handshake_set_timeout(s, 5000);
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r == 0) {	/* TLS 1.3: the refusal arrives after the client's Finished */
		char c;
		r = (int)gnutls_record_recv(s, &c, 1);
	}
	b->rc = r;
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(x);
	shutdown(b->fd, SHUT_RDWR);
	return NULL;
}

/* A server that shows a client's certificate: plain GnuTLS, since our own
 * loading refuses such a directory. */
struct bare_srv {
	int fd;
	const char *cert, *key;
};

static void *bare_server(void *arg)
{
	struct bare_srv *b = arg;
	gnutls_certificate_credentials_t x;
	gnutls_session_t s;
	int r;

	gnutls_certificate_allocate_credentials(&x);
	gnutls_certificate_set_x509_key_file(x, b->cert, b->key, GNUTLS_X509_FMT_PEM);
	gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL);
	gnutls_priority_set_direct(s, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, x);
	gnutls_transport_set_int(s, b->fd);
	gnutls_handshake_set_timeout(s, 5000);
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(x);
	shutdown(b->fd, SHUT_RDWR);
	return NULL;
}

static void test_x509_wrong_purpose(void **state)
{
	struct pki *p = *state;
	struct side cli;
	struct bare_srv b = { 0 };
	char cert[128], key[128];

	load(&cli, p, "client", false);
	snprintf(cert, sizeof(cert), "%s/client/client-cert.pem", p->root);
	snprintf(key, sizeof(key), "%s/client/client-key.pem", p->root);
	b.cert = cert;
	b.key = key;
	/* no expected name: the key purpose alone stops it */
	run_two(&cli, NULL, bare_server, &b);
	printf("    client: %s\n", cli.err.msg);
	assert_int_equal(cli.rc, -EKEYREJECTED);
	assert_non_null(strstr(cli.err.msg, "is not meant for a TLS server"));
	tls_creds_free(cli.creds);
}

static void test_x509_no_client_cert(void **state)
{
	struct pki *p = *state;
	struct side srv;
	struct bare b = { 0 };
	char ca[128], dir[128];
	struct kv_err err;
	struct tls_creds *c;

	load(&srv, p, "server", true);
	snprintf(ca, sizeof(ca), "%s/server/ca-cert.pem", p->root);
	b.ca = ca;
	run_two(&srv, NULL, bare_client, &b);
	printf("    server: %s\n", srv.err.msg);
	assert_int_equal(srv.rc, -EKEYREJECTED);
	assert_non_null(strstr(srv.err.msg, "the peer sent no client certificate"));
	assert_true(b.rc < 0);
	tls_creds_free(srv.creds);
	/* and a kvmove client without one is stopped before it connects */
	snprintf(dir, sizeof(dir), "%s/nocert", p->root);
	write_dir(dir, &p->ca, NULL, "client");
	assert_int_equal(tls_creds_load(&c, TLS_X509, dir, false, &err), -ENOENT);
	printf("    load: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "client-cert.pem"));
	assert_non_null(strstr(err.msg, "both sides authenticate"));
}

/* TLS 1.3: a client's handshake ends before the server has judged the
 * client's certificate; a refusal reaches the client at its first read. */
static int first_read(struct side *sd, struct channel *ch)
{
	struct stream s;
	struct stream_rec rec;
	int r = stream_init_channel(&s, ch, 4096, &sd->work_err);

	if (!r) {
		s.timeout_ms = 5000;
		r = stream_read(&s, &rec, &sd->work_err);
		stream_destroy(&s);
	}
	return r;
}

static void test_x509_expired(void **state)
{
	struct pki *p = *state;
	struct side cli, srv;
	struct ident shortlived;
	char dir[128];
	time_t now = time(NULL);

	/* valid while loaded, expired by the handshake: what another host's
	 * clock, or a VMM started long ago, would show */
	make_ident(&shortlived, "src.example", PURPOSE_CLIENT, NULL, now - 3600, now + 1, &p->ca);
	snprintf(dir, sizeof(dir), "%s/client-short", p->root);
	write_dir(dir, &p->ca, &shortlived, "client");
	load(&cli, p, "client-short", false);
	load(&srv, p, "server", true);
	cli.work = first_read;
	sleep(2);
	run_two(&cli, &srv, NULL, NULL);
	printf("    client: %s%s\n    server: %s\n", cli.err.msg, cli.work_err.msg, srv.err.msg);
	assert_int_equal(srv.rc, -EKEYEXPIRED);
	assert_non_null(strstr(srv.err.msg, "(CN=src.example) expired on"));
	if (cli.rc == 0) {
		assert_int_equal(cli.work_rc, -EKEYEXPIRED);
		assert_non_null(strstr(cli.work_err.msg, "has expired"));
	} else {
		assert_int_equal(cli.rc, -EKEYEXPIRED);
		assert_non_null(strstr(cli.err.msg, "has expired"));
	}
	unload(&cli, &srv);
	free_ident(&shortlived);
}

static void test_x509_load_checks(void **state)
{
	struct pki *p = *state;
	struct ident old;
	struct tls_creds *c;
	struct kv_err err;
	char dir[128], dst[256];
	gnutls_datum_t d;
	time_t now = time(NULL);

	/* our own certificate, expired */
	make_ident(&old, "old.example", PURPOSE_SERVER, NULL, now - 7200, now - 3600, &p->ca);
	snprintf(dir, sizeof(dir), "%s/expired", p->root);
	write_dir(dir, &p->ca, &old, "server");
	assert_int_equal(tls_creds_load(&c, TLS_X509, dir, true, &err), -EKEYEXPIRED);
	printf("    %s\n", err.msg);
	assert_non_null(strstr(err.msg, "server-cert.pem expired on"));
	free_ident(&old);
	/* our own certificate from another CA than the directory's */
	snprintf(dir, sizeof(dir), "%s/mixed", p->root);
	write_dir(dir, &p->ca, &p->server2, "server");
	assert_int_equal(tls_creds_load(&c, TLS_X509, dir, true, &err), -EKEYREJECTED);
	printf("    %s\n", err.msg);
	assert_non_null(strstr(err.msg, "is not signed by the CA in"));
	/* a client's certificate in a server's place */
	snprintf(dir, sizeof(dir), "%s/swapped", p->root);
	write_dir(dir, &p->ca, &p->client, "server");
	assert_int_equal(tls_creds_load(&c, TLS_X509, dir, true, &err), -EKEYREJECTED);
	printf("    %s\n", err.msg);
	assert_non_null(strstr(err.msg, "is not meant for a TLS server"));
	/* a key that is not the certificate's */
	snprintf(dir, sizeof(dir), "%s/wrongkey", p->root);
	write_dir(dir, &p->ca, &p->server, "server");
	assert_int_equal(gnutls_x509_privkey_export2(p->client.key, GNUTLS_X509_FMT_PEM, &d), 0);
	put_pem(dir, "server-key.pem", &d, 0600);
	assert_int_equal(tls_creds_load(&c, TLS_X509, dir, true, &err), -EINVAL);
	printf("    %s\n", err.msg);
	assert_non_null(strstr(err.msg, "is not the key of"));
	/* a private key every user can read */
	snprintf(dst, sizeof(dst), "%s/server-key.pem", dir);
	write_dir(dir, &p->ca, &p->server, "server");
	chmod(dst, 0644);
	assert_int_equal(tls_creds_load(&c, TLS_X509, dir, true, &err), -EPERM);
	assert_non_null(strstr(err.msg, "chmod 600"));
	/* not a directory; no such directory */
	assert_int_equal(tls_creds_load(&c, TLS_X509, dst, true, &err), -ENOTDIR);
	assert_int_equal(tls_creds_load(&c, TLS_X509, "/nonexistent", true, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_x509_roundtrip),
		cmocka_unit_test(test_x509_other_ca),
		cmocka_unit_test(test_x509_wrong_name),
		cmocka_unit_test(test_x509_wrong_purpose),
		cmocka_unit_test(test_x509_no_client_cert),
		cmocka_unit_test(test_x509_expired),
		cmocka_unit_test(test_x509_load_checks),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
