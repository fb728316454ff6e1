/*
 * channel_tls_creds.c - TLS credentials from files, in QEMU's conventions:
 * a PSK key file ("identity:hexkey" lines), or an x509 directory
 * (ca-cert.pem, {server,client}-{cert,key}.pem, optional ca-crl.pem).
 *
 * Everything that can be checked without a peer is checked here, so that
 * a mistake is reported when the VMM starts, naming the file, rather than
 * as a failed handshake in the middle of a migration: key lengths,
 * duplicate identities, a key file others can read, a certificate that
 * is expired, not yet valid, not signed by the directory's CA, or not
 * matching its key.
 */
#define _GNU_SOURCE
#include "state/channel_tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/file.h"

#define PSK_FILE_MAX (1u << 20)
#define PSK_KEY_MIN 16		/* bytes; kvmove keygen makes 32 */
#define PSK_KEY_MAX 256
#define PSK_KEYGEN_BYTES 32

/* ---- PSK ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool id_ok(const char *id, size_t n)
{
	if (n < 1 || n > TLS_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (id[i] <= ' ' || id[i] > '~' || id[i] == ':')
			return false;
	return true;
}

/* One "identity:hexkey" line (without its newline) into k. */
static int parse_psk_line(const char *path, int lineno, char *line, size_t n,
			  struct tls_psk_key *k, struct kv_err *err)
{
	char *colon = memchr(line, ':', n);
	size_t idlen, hexlen;
	const char *hex;

	if (!colon)
		return kv_errf(err, EINVAL, "%s line %d: expected IDENTITY:HEXKEY", path, lineno);
	idlen = (size_t)(colon - line);
	hex = colon + 1;
	hexlen = n - idlen - 1;
	if (!id_ok(line, idlen))
		return kv_errf(err, EINVAL, "%s line %d: the identity must be 1 to %d printable "
			       "characters without spaces or ':'", path, lineno, TLS_ID_MAX);
	if (hexlen % 2 || hexlen / 2 < PSK_KEY_MIN || hexlen / 2 > PSK_KEY_MAX)
		return kv_errf(err, EINVAL, "%s line %d: the key for '%.*s' is %zu hex digits; "
			       "it must be an even number, %d to %d bytes (kvmove keygen makes %d)",
			       path, lineno, (int)idlen, line, hexlen, PSK_KEY_MIN, PSK_KEY_MAX,
			       PSK_KEYGEN_BYTES);
	k->key = malloc(hexlen / 2);
	if (!k->key)
		return kv_errf(err, ENOMEM, "%s: out of memory", path);
	for (size_t i = 0; i < hexlen / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			explicit_bzero(k->key, hexlen / 2);
			free(k->key);
			k->key = NULL;
			return kv_errf(err, EINVAL, "%s line %d: the key for '%.*s' is not "
				       "hexadecimal", path, lineno, (int)idlen, line);
		}
		k->key[i] = (uint8_t)(hi << 4 | lo);
	}
	k->len = hexlen / 2;
	memcpy(k->id, line, idlen);
	k->id[idlen] = '\0';
	return 0;
}

static int parse_psk_file(struct tls_creds *c, char *text, size_t len, struct kv_err *err)
{
	size_t cap = 0;
	int lineno = 0;

	for (size_t pos = 0; pos < len;) {
		char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		struct tls_psk_key k = { .len = 0 };
		int r;

		pos += n + (nl ? 1 : 0);
		lineno++;
		while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
			n--;
		if (n == 0 || line[0] == '#')
			continue;
		if ((r = parse_psk_line(c->path, lineno, line, n, &k, err)))
			return r;
		for (size_t i = 0; i < c->nkeys; i++) {
			if (!strcmp(c->keys[i].id, k.id)) {
				explicit_bzero(k.key, k.len);
				free(k.key);
				return kv_errf(err, EINVAL, "%s line %d: identity '%s' appears twice",
					       c->path, lineno, k.id);
			}
		}
		if (c->nkeys == cap) {
			struct tls_psk_key *nk = reallocarray(c->keys, cap ? cap * 2 : 4, sizeof(*nk));
			if (!nk) {
				explicit_bzero(k.key, k.len);
				free(k.key);
				return kv_errf(err, ENOMEM, "%s: out of memory", c->path);
			}
			c->keys = nk;
			cap = cap ? cap * 2 : 4;
		}
		c->keys[c->nkeys++] = k;
		if (!c->server)
			break;	/* a client uses its first line */
	}
	if (!c->nkeys)
		return kv_errf(err, EINVAL, "%s: no keys (lines are IDENTITY:HEXKEY; kvmove keygen "
			       "writes one)", c->path);
	return 0;
}

int tls_psk_lookup(gnutls_session_t s, const gnutls_datum_t *id, gnutls_datum_t *key)
{
	struct tls_session_ctx *ctx = gnutls_session_get_ptr(s);
	const struct tls_creds *c = ctx->creds;
	size_t n = id->size < TLS_ID_MAX ? id->size : TLS_ID_MAX;

	/* a printable copy for messages: the bytes are the peer's */
	for (size_t i = 0; i < n; i++)
		ctx->offered[i] = id->data[i] > ' ' && id->data[i] <= '~' ? (char)id->data[i] : '?';
	ctx->offered[n] = '\0';
	for (size_t i = 0; i < c->nkeys; i++) {
		if (strlen(c->keys[i].id) == id->size && !memcmp(c->keys[i].id, id->data, id->size)) {
			key->data = gnutls_malloc(c->keys[i].len);
			if (!key->data)
				return -1;
			memcpy(key->data, c->keys[i].key, c->keys[i].len);
			key->size = (unsigned)c->keys[i].len;
			return 0;
		}
	}
	ctx->unknown = true;
	return -1;
}

static int load_psk(struct tls_creds *c, const char *path, struct kv_err *err)
{
	struct stat st;
	uint8_t *text = NULL;
	size_t len = 0;
	int r;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		/* QEMU's tls-creds-psk takes a directory holding keys.psk */
		if ((size_t)snprintf(c->path, sizeof(c->path), "%s/keys.psk", path) >=
		    sizeof(c->path))
			return kv_errf(err, ENAMETOOLONG, "%s: path too long", path);
		if (stat(c->path, &st) < 0)
			return kv_errf_sys(err, errno, "PSK key file %s", c->path);
	} else if (stat(path, &st) < 0) {
		return kv_errf_sys(err, errno, "PSK key file %s", path);
	}
	if (st.st_mode & (S_IROTH | S_IWOTH))
		return kv_errf(err, EPERM, "PSK key file %s can be read or written by every user; "
			       "it must be private (chmod 600 %s)", c->path, c->path);
	if ((r = file_read_all(c->path, PSK_FILE_MAX, &text, &len, err)))
		return r;
	r = parse_psk_file(c, (char *)text, len, err);
	explicit_bzero(text, len);
	free(text);
	if (r)
		return r;
	if (c->server) {
		if (gnutls_psk_allocate_server_credentials(&c->psk_server) < 0)
			return kv_errf(err, ENOMEM, "allocating PSK credentials");
		gnutls_psk_set_server_credentials_function2(c->psk_server, tls_psk_lookup);
	} else {
		gnutls_datum_t id = { (unsigned char *)c->keys[0].id,
				      (unsigned)strlen(c->keys[0].id) };
		gnutls_datum_t key = { c->keys[0].key, (unsigned)c->keys[0].len };

		if (gnutls_psk_allocate_client_credentials(&c->psk_client) < 0)
			return kv_errf(err, ENOMEM, "allocating PSK credentials");
		r = gnutls_psk_set_client_credentials2(c->psk_client, &id, &key, GNUTLS_PSK_KEY_RAW);
		if (r < 0)
			return kv_errf(err, EINVAL, "%s: %s", c->path, gnutls_strerror(r));
	}
	return 0;
}

/* ---- x509 ---- */

static void fmt_time(time_t t, char *buf, size_t n)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, n, "%lld", (long long)t);
}

/* Does crt carry key purpose oid (or none at all: then any purpose)? */
static bool has_purpose(gnutls_x509_crt_t crt, const char *oid)
{
	char buf[128];

	for (unsigned i = 0;; i++) {
		size_t sz = sizeof(buf);
		int r = gnutls_x509_crt_get_key_purpose_oid(crt, i, buf, &sz, NULL);

		if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			return i == 0;
		if (r < 0)
			return false;
		if (!strcmp(buf, oid) || !strcmp(buf, GNUTLS_KP_ANY))
			return true;
	}
}

/* Our own certificate (chain) must be usable now, meant for our role and
 * signed by our CA: a peer would refuse it anyway, later, with a vaguer
 * message. */
static int check_own_cert(const char *certf, const char *caf, bool server,
			  struct kv_err *err)
{
	gnutls_x509_crt_t *chain = NULL, *cas = NULL;
	unsigned nchain = 0, ncas = 0, status = 0;
	gnutls_datum_t data = { NULL, 0 };
	time_t now = time(NULL), t;
	char when[64];
	int r;

	r = gnutls_load_file(certf, &data);
	if (r >= 0)
		r = gnutls_x509_crt_list_import2(&chain, &nchain, &data, GNUTLS_X509_FMT_PEM, 0);
	gnutls_free(data.data);
	if (r < 0 || !nchain) {
		r = kv_errf(err, EINVAL, "%s: not a PEM certificate (%s)", certf,
			    r < 0 ? gnutls_strerror(r) : "none found");
		goto out;
	}
	data.data = NULL;
	r = gnutls_load_file(caf, &data);
	if (r >= 0)
		r = gnutls_x509_crt_list_import2(&cas, &ncas, &data, GNUTLS_X509_FMT_PEM, 0);
	gnutls_free(data.data);
	if (r < 0 || !ncas) {
		r = kv_errf(err, EINVAL, "%s: not a PEM certificate (%s)", caf,
			    r < 0 ? gnutls_strerror(r) : "none found");
		goto out;
	}
	if ((t = gnutls_x509_crt_get_expiration_time(chain[0])) != (time_t)-1 && t < now) {
		fmt_time(t, when, sizeof(when));
		r = kv_errf(err, EKEYEXPIRED, "%s expired on %s: make a new one (docs/TLS.md)",
			    certf, when);
		goto out;
	}
	if ((t = gnutls_x509_crt_get_activation_time(chain[0])) != (time_t)-1 && t > now) {
		fmt_time(t, when, sizeof(when));
		r = kv_errf(err, EKEYREJECTED, "%s is not valid before %s (is this host's clock "
			    "right?)", certf, when);
		goto out;
	}
	if (!has_purpose(chain[0], server ? GNUTLS_KP_TLS_WWW_SERVER : GNUTLS_KP_TLS_WWW_CLIENT)) {
		r = kv_errf(err, EKEYREJECTED, "%s is not meant for a TLS %s: its key purpose "
			    "lacks %s (certtool's template keyword); the peer would refuse it",
			    certf, server ? "server" : "client",
			    server ? "tls_www_server" : "tls_www_client");
		goto out;
	}
	r = gnutls_x509_crt_list_verify(chain, nchain, cas, ncas, NULL, 0, 0, &status);
	if (r < 0 || status) {
		gnutls_datum_t why = { NULL, 0 };
		if (r >= 0)
			gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
		if (r >= 0 && (status & GNUTLS_CERT_SIGNER_NOT_FOUND))
			r = kv_errf(err, EKEYREJECTED, "%s is not signed by the CA in %s: the peer "
				    "would refuse it", certf, caf);
		else
			r = kv_errf(err, EKEYREJECTED, "%s does not verify against the CA in %s "
				    "(%s): the peer would refuse it", certf, caf,
				    why.data ? (const char *)why.data : gnutls_strerror(r));
		gnutls_free(why.data);
		goto out;
	}
	r = 0;
out:
	for (unsigned i = 0; i < nchain; i++)
		gnutls_x509_crt_deinit(chain[i]);
	for (unsigned i = 0; i < ncas; i++)
		gnutls_x509_crt_deinit(cas[i]);
	gnutls_free(chain);
	gnutls_free(cas);
	return r;
}

static int need_file(const char *f, const char *what, struct kv_err *err)
{
	if (access(f, R_OK) == 0)
		return 0;
	return kv_errf(err, errno, "%s (%s): %s", f, what, strerror(errno));
}

static int load_x509(struct tls_creds *c, const char *dir, struct kv_err *err)
{
	const char *role = c->server ? "server" : "client";
	char ca[PATH_MAX], crl[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	struct stat st;
	int r;

	if (stat(dir, &st) < 0)
		return kv_errf_sys(err, errno, "x509 credentials directory %s", dir);
	if (!S_ISDIR(st.st_mode))
		return kv_errf(err, ENOTDIR, "x509 credentials: %s is not a directory (it holds "
			       "ca-cert.pem, %s-cert.pem and %s-key.pem)", dir, role, role);
	snprintf(c->path, sizeof(c->path), "%s", dir);
	if ((size_t)snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir) >= sizeof(ca) ||
	    (size_t)snprintf(crl, sizeof(crl), "%s/ca-crl.pem", dir) >= sizeof(crl) ||
	    (size_t)snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, role) >= sizeof(cert) ||
	    (size_t)snprintf(key, sizeof(key), "%s/%s-key.pem", dir, role) >= sizeof(key))
		return kv_errf(err, ENAMETOOLONG, "%s: path too long", dir);
	if ((r = need_file(ca, "the CA that signs both sides' certificates", err)))
		return r;
	if ((r = need_file(cert, c->server ? "this server's certificate" :
			   "this client's certificate: both sides authenticate", err)) ||
	    (r = need_file(key, "the private key of the certificate", err)))
		return r;
	if (stat(key, &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)))
		return kv_errf(err, EPERM, "%s can be read or written by every user; a private "
			       "key must not be (chmod 600 %s)", key, key);
	if (gnutls_certificate_allocate_credentials(&c->x509) < 0)
		return kv_errf(err, ENOMEM, "allocating x509 credentials");
	r = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
	if (r <= 0)
		return kv_errf(err, EINVAL, "%s: %s", ca, r < 0 ? gnutls_strerror(r) :
			       "no certificate in it");
	if (access(crl, F_OK) == 0) {
		r = gnutls_certificate_set_x509_crl_file(c->x509, crl, GNUTLS_X509_FMT_PEM);
		if (r < 0)
			return kv_errf(err, EINVAL, "%s: %s", crl, gnutls_strerror(r));
	}
	r = gnutls_certificate_set_x509_key_file2(c->x509, cert, key, GNUTLS_X509_FMT_PEM,
						  NULL, 0);
	if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
		return kv_errf(err, EINVAL, "%s is not the key of %s", key, cert);
	if (r < 0)
		return kv_errf(err, EINVAL, "%s, %s: %s", cert, key, gnutls_strerror(r));
	return check_own_cert(cert, ca, c->server, err);
}

int tls_creds_load(struct tls_creds **out, enum tls_kind kind, const char *path,
		   bool server, struct kv_err *err)
{
	struct tls_creds *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return kv_errf(err, ENOMEM, "allocating TLS credentials");
	c->kind = kind;
	c->server = server;
	snprintf(c->path, sizeof(c->path), "%s", path);
	if (kind == TLS_PSK)
		r = load_psk(c, path, err);
	else if (kind == TLS_X509)
		r = load_x509(c, path, err);
	else
		r = kv_errf(err, EINVAL, "unknown TLS credential kind %d", (int)kind);
	if (r) {
		tls_creds_free(c);
		return r;
	}
	*out = c;
	return 0;
}

void tls_creds_free(struct tls_creds *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nkeys; i++) {
		explicit_bzero(c->keys[i].key, c->keys[i].len);
		free(c->keys[i].key);
	}
	free(c->keys);
	if (c->psk_server)
		gnutls_psk_free_server_credentials(c->psk_server);
	if (c->psk_client)
		gnutls_psk_free_client_credentials(c->psk_client);
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	free(c);
}

/* ---- kvmove keygen ---- */

static int write_all_fd(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int tls_psk_keygen(const char *path, const char *identity, bool force, struct kv_err *err)
{
	uint8_t key[PSK_KEYGEN_BYTES];
	char line[TLS_ID_MAX + 2 + 2 * PSK_KEYGEN_BYTES + 2], tmp[PATH_MAX];
	const char *target = path;
	size_t n, got = 0;
	int fd, r;

	if (!id_ok(identity, strlen(identity)))
		return kv_errf(err, EINVAL, "identity '%s': 1 to %d printable characters without "
			       "spaces or ':'", identity, TLS_ID_MAX);
	while (got < sizeof(key)) {
		ssize_t g = getrandom(key + got, sizeof(key) - got, 0);
		if (g < 0 && errno == EINTR)
			continue;
		if (g < 0)
			return kv_errf_sys(err, errno, "getrandom");
		got += (size_t)g;
	}
	n = (size_t)snprintf(line, sizeof(line), "%s:", identity);
	for (size_t i = 0; i < sizeof(key); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%02x", key[i]);
	line[n++] = '\n';
	explicit_bzero(key, sizeof(key));
	if (force) {
		/* a new file renamed over the old: never a half-written key, and
		 * the mode is ours even if the old file's was wider */
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
		    sizeof(tmp)) {
			explicit_bzero(line, sizeof(line));
			return kv_errf(err, ENAMETOOLONG, "%s: path too long", path);
		}
		target = tmp;
	}
	fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		r = errno;
		explicit_bzero(line, sizeof(line));
		if (r == EEXIST && !force)
			return kv_errf(err, EEXIST, "%s exists; use --force to replace it (peers "
				       "holding the old key will then be refused)", path);
		return kv_errf_sys(err, r, "%s", target);
	}
	r = write_all_fd(fd, line, n);
	explicit_bzero(line, sizeof(line));
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	if (!r && force && rename(tmp, path) < 0)
		r = -errno;
	if (r) {
		unlink(target);
		return kv_errf_sys(err, r, "writing %s", path);
	}
	return 0;
}
