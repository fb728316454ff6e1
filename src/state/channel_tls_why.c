/*
 * channel_tls_why.c - why a TLS handshake failed, in the words a user
 * needs: what the peer's first bytes were (plaintext, or nothing), which
 * fault our verification found in its certificate, what the alert it
 * sent means for our credentials; and the alert we send so that the
 * peer's message can be as precise.  Also the byte patterns that tell a
 * plaintext endpoint its peer speaks TLS.
 */
#define _GNU_SOURCE
#include "state/channel_tls_int.h"

#include <errno.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

bool tls_looks_like_record(const uint8_t *p, size_t n)
{
	/* content type change_cipher_spec..application_data, version 3.x */
	return n >= 1 && p[0] >= 20 && p[0] <= 23 && (n < 2 || p[1] == 3) && (n < 3 || p[2] <= 4);
}

bool tls_looks_like_client_hello(const uint8_t *p, size_t n)
{
	unsigned len;

	if (n < 6 || p[0] != 22 || p[1] != 3 || p[2] > 4)
		return false;
	len = (unsigned)p[3] << 8 | p[4];
	return len >= 4 && len <= 16384 && p[5] == 1;	/* handshake type client_hello */
}

/* Peek at what the peer sent first, without taking it from GnuTLS. */

void tls_peek_first(struct tls_chan *t)
{
	ssize_t n;

	if (t->nfirst || t->peer_closed)
		return;
	n = recv(t->ch.fd, t->first, sizeof(t->first), MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		t->nfirst = (size_t)n;
	else if (n == 0)
		t->peer_closed = true;
}

static bool peer_sent_plaintext(const struct tls_chan *t)
{
	return t->nfirst && !tls_looks_like_record(t->first, t->nfirst);
}

static void peer_cert_names(struct tls_chan *t, char *cn, size_t cnlen, time_t *expires,
			    time_t *activates)
{
	const gnutls_datum_t *certs;
	unsigned n = 0;
	gnutls_x509_crt_t crt;
	size_t sz = cnlen;

	snprintf(cn, cnlen, "?");
	*expires = *activates = (time_t)-1;
	certs = gnutls_certificate_get_peers(t->sess, &n);
	if (!certs || !n || gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
		if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &sz) < 0)
			snprintf(cn, cnlen, "?");
		*expires = gnutls_x509_crt_get_expiration_time(crt);
		*activates = gnutls_x509_crt_get_activation_time(crt);
	}
	gnutls_x509_crt_deinit(crt);
}

static void fmt_time(time_t t, char *buf, size_t n)
{
	struct tm tm;

	if (t == (time_t)-1 || !gmtime_r(&t, &tm) ||
	    !strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, n, "?");
}

/* We refused the peer's certificate: say which of its faults it was. */
static int explain_verify(struct tls_chan *t, struct kv_err *err)
{
	unsigned st = gnutls_session_get_verify_cert_status(t->sess);
	char cn[256], when[64];
	time_t exp, act;
	gnutls_datum_t txt = { NULL, 0 };
	int r;

	peer_cert_names(t, cn, sizeof(cn), &exp, &act);
	if (st & GNUTLS_CERT_EXPIRED) {
		fmt_time(exp, when, sizeof(when));
		return kv_errf(err, EKEYEXPIRED, "the peer's certificate (CN=%s) expired on %s", cn,
			       when);
	}
	if (st & GNUTLS_CERT_NOT_ACTIVATED) {
		fmt_time(act, when, sizeof(when));
		return kv_errf(err, EKEYREJECTED, "the peer's certificate (CN=%s) is not valid "
			       "before %s (are both hosts' clocks right?)", cn, when);
	}
	if (st & GNUTLS_CERT_REVOKED)
		return kv_errf(err, EKEYREVOKED, "the peer's certificate (CN=%s) was revoked "
			       "(%s/ca-crl.pem)", cn, t->creds->path);
	if (st & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
		return kv_errf(err, EKEYREJECTED, "the peer's certificate (CN=%s) is not signed by "
			       "our CA (%s/ca-cert.pem): it comes from another CA", cn,
			       t->creds->path);
	if (st & GNUTLS_CERT_PURPOSE_MISMATCH)
		return kv_errf(err, EKEYREJECTED, "the peer's certificate (CN=%s) is not meant for "
			       "a TLS %s: its key purpose lacks %s (certtool's template keyword)",
			       cn, t->server ? "client" : "server",
			       t->server ? "tls_www_client" : "tls_www_server");
	if (st & GNUTLS_CERT_UNEXPECTED_OWNER)
		return kv_errf(err, EKEYREJECTED, "the peer's certificate (CN=%s) is not for '%s': "
			       "host name mismatch (its CN or subjectAltName must name the host "
			       "we connect to)", cn, t->peer_name);
	gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &txt, 0);
	r = kv_errf(err, EKEYREJECTED, "the peer's certificate (CN=%s) is not acceptable: %s",
		    cn, txt.data ? (const char *)txt.data : "verification failed");
	gnutls_free(txt.data);
	return r;
}

/*
 * The peer refused us, with an alert: what it means for our credentials.
 * In TLS 1.3 a client's handshake is over before the server has judged
 * the client's certificate, so a client may learn this at its first read.
 */
int tls_explain_alert(struct tls_chan *t, bool in_handshake, struct kv_err *err)
{
	gnutls_alert_description_t a = gnutls_alert_get(t->sess);
	bool psk = t->creds->kind == TLS_PSK;
	const char *id = psk && t->creds->nkeys ? t->creds->keys[0].id : "";

	switch (a) {
	case GNUTLS_A_UNKNOWN_CA:
		return kv_errf(err, EKEYREJECTED, "the peer does not trust our certificate: it is "
			       "signed by a CA the peer does not know (do both sides' ca-cert.pem "
			       "hold the same CA?)");
	case GNUTLS_A_CERTIFICATE_EXPIRED:
		return kv_errf(err, EKEYEXPIRED, "the peer says our certificate (%s) has expired "
			       "or is not valid yet (check both hosts' clocks)", t->creds->path);
	case GNUTLS_A_CERTIFICATE_REVOKED:
		return kv_errf(err, EKEYREVOKED, "the peer says our certificate was revoked");
	case GNUTLS_A_BAD_CERTIFICATE:
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
		return kv_errf(err, EKEYREJECTED, "the peer refused our certificate (%s): %s%s",
			       t->creds->path, gnutls_alert_get_name(a), t->server ?
			       " (the client's log says why: a host name it expects that our "
			       "certificate does not carry, for one)" : "");
	case GNUTLS_A_CERTIFICATE_REQUIRED:
		return kv_errf(err, EKEYREJECTED, "the peer requires a client certificate "
			       "(mutual authentication) and we sent none");
	case GNUTLS_A_DECRYPT_ERROR:
	case GNUTLS_A_BAD_RECORD_MAC:
	case GNUTLS_A_ILLEGAL_PARAMETER:	/* what GnuTLS itself says for a bad binder */
		if (psk)
			return kv_errf(err, EKEYREJECTED, "the peer refused our pre-shared key for "
				       "identity '%s': the two key files hold different keys for it",
				       id);
		return kv_errf(err, EKEYREJECTED, "the peer could not verify our handshake (%s)",
			       gnutls_alert_get_name(a));
	case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
		return kv_errf(err, EKEYREJECTED, "the peer does not know PSK identity '%s' (its key "
			       "file needs our line)", id);
	case GNUTLS_A_HANDSHAKE_FAILURE:
	case GNUTLS_A_INSUFFICIENT_SECURITY:
	case GNUTLS_A_PROTOCOL_VERSION:
		if (psk)
			return kv_errf(err, EKEYREJECTED, "the peer refused the TLS handshake (%s): "
				       "it may not know PSK identity '%s', or use x509 "
				       "credentials", gnutls_alert_get_name(a), id);
		return kv_errf(err, EPROTO, "the peer refused the TLS handshake (%s): does it use "
			       "TLS 1.3 and x509 credentials too?", gnutls_alert_get_name(a));
	default:
		if (!in_handshake)
			return kv_errf(err, ECONNRESET, "TLS: the peer ended the session (%s)",
				       gnutls_alert_get_name(a));
		return kv_errf(err, EPROTO, "the peer refused the TLS handshake: %s",
			       gnutls_alert_get_name(a));
	}
}

/* GnuTLS reports a PSK binder that does not verify (the client proved a
 * different key for a known identity) as an illegal parameter. */
static bool binder_mismatch(const struct tls_chan *t, int ret)
{
	return t->creds->kind == TLS_PSK && t->server && t->ctx.offered[0] && !t->ctx.unknown &&
	       (ret == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER || ret == GNUTLS_E_DECRYPTION_FAILED);
}

int tls_explain(struct tls_chan *t, int ret, struct kv_err *err)
{
	tls_peek_first(t);
	if (peer_sent_plaintext(t))
		return kv_errf(err, EPROTO, "the peer speaks plaintext, not TLS (was it started "
			       "with --insecure?)");
	if (t->ctx.unknown)
		return kv_errf(err, EKEYREJECTED, "the peer offered PSK identity '%s', which %s "
			       "does not hold", t->ctx.offered, t->creds->path);
	if (binder_mismatch(t, ret))
		return kv_errf(err, EKEYREJECTED, "the peer's pre-shared key for identity '%s' "
			       "differs from the one in %s: the two key files do not match",
			       t->ctx.offered, t->creds->path);
	switch (ret) {
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
	case GNUTLS_E_CERTIFICATE_ERROR:
		return explain_verify(t, err);
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		return tls_explain_alert(t, true, err);
	case GNUTLS_E_NO_CERTIFICATE_FOUND:
	case GNUTLS_E_CERTIFICATE_REQUIRED:
		return kv_errf(err, EKEYREJECTED, "the peer sent no client certificate; mutual "
			       "authentication requires one (client-cert.pem and client-key.pem in "
			       "its x509 directory)");
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNEXPECTED_PACKET:
		return kv_errf(err, EPROTO, "the peer does not speak TLS 1.3 (%s): is it plaintext "
			       "(--insecure), or another program?", gnutls_strerror(ret));
	case GNUTLS_E_NO_CIPHER_SUITES:
	case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
	case GNUTLS_E_UNKNOWN_CIPHER_SUITE:
	case GNUTLS_E_NO_COMMON_KEY_SHARE:
		return kv_errf(err, EPROTO, "no common TLS 1.3 settings with the peer (%s): does "
			       "it use the same credential kind (%s)?", gnutls_strerror(ret),
			       t->creds->kind == TLS_PSK ? "psk" : "x509");
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		if (t->peer_closed || ret == GNUTLS_E_PREMATURE_TERMINATION)
			return kv_errf(err, ECONNRESET, "the peer closed the connection during the "
				       "TLS handshake (it may have refused our credentials, or not "
				       "speak TLS: see its log)");
		return kv_errf(err, ECONNRESET, "TLS handshake: %s", gnutls_strerror(ret));
	}
	return kv_errf(err, EPROTO, "TLS handshake: %s", gnutls_strerror(ret));
}

/* The alert that tells a PSK client what we found wrong (GnuTLS would say
 * internal_error or illegal_parameter), or -1 to let GnuTLS choose. */
int tls_alert_for(const struct tls_chan *t, int ret)
{
	if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || ret == GNUTLS_E_CERTIFICATE_ERROR) {
		/* the specific alert, so the peer's message can be specific */
		unsigned st = gnutls_session_get_verify_cert_status(t->sess);

		if (st & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED))
			return GNUTLS_A_CERTIFICATE_EXPIRED;
		if (st & GNUTLS_CERT_REVOKED)
			return GNUTLS_A_CERTIFICATE_REVOKED;
		if (st & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
			return GNUTLS_A_UNKNOWN_CA;
		return GNUTLS_A_BAD_CERTIFICATE;
	}
	if (t->ctx.unknown)
		return GNUTLS_A_UNKNOWN_PSK_IDENTITY;
	if (binder_mismatch(t, ret))
		return GNUTLS_A_DECRYPT_ERROR;	/* RFC 8446 4.2.11: a binder that fails */
	return -1;
}

int tls_explain_timeout(struct tls_chan *t, int timeout_ms, struct kv_err *err)
{
	tls_peek_first(t);
	if (peer_sent_plaintext(t))
		return kv_errf(err, EPROTO, "the peer speaks plaintext, not TLS (was it started "
			       "with --insecure?)");
	return kv_errf(err, ETIMEDOUT, "TLS handshake timed out after %d ms (%s)", timeout_ms,
		       t->nfirst ? "the peer stopped answering" : "the peer sent nothing");
}
