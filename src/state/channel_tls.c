/*
 * channel_tls.c - a TLS 1.3 channel over a caller's socket (GnuTLS).
 *
 * Handshake: non-blocking, polled to a deadline; mutual authentication
 * by PSK (both prove the same key) or x509 (the server requires a client
 * certificate, both verify against their CA, the client checks the host
 * name).  A failure is explained in the user's terms (channel_tls_why.c):
 * the peer's first bytes (peeked, never consumed) tell a plaintext peer
 * from a TLS one, the verification status tells another CA from an
 * expired certificate, the alert the peer sent tells why it refused us.
 *
 * Records: GnuTLS's default transport (plain recv/send on the fd), so
 * that kernel TLS can take over where GnuTLS is configured for it (see
 * docs/TLS.md).  A caller's write becomes full-size records: one buffer
 * is sent as it is (GnuTLS cuts 16 KiB records from it), several pieces
 * are corked into full records first.  In TLS 1.3 receiving never writes
 * (a peer's key update request is answered by the next send) and sending
 * never reads, so one thread may read while another writes.
 */
#define _GNU_SOURCE
#include "state/channel_tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/socket.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * TLS 1.3 only; AES-GCM first (AES-NI/VAES make it the fastest here; see
 * bench/tls_throughput.c), ChaCha20 for hosts without.  PSK only with an
 * (EC)DHE exchange (psk_dhe_ke): a key file that leaks later does not
 * open recorded migrations.
 */
#define PRIO_BASE "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
		  "+CHACHA20-POLY1305"
#define PRIO_PSK PRIO_BASE ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"
#define PRIO_X509 PRIO_BASE

#define BYE_MS 1000		/* how long shutdown(SHUT_WR) tries to send close_notify */

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- after the handshake: who is the peer ---- */

static int learn_peer(struct tls_chan *t, struct kv_err *err)
{
	const gnutls_datum_t *certs;
	gnutls_datum_t dn = { NULL, 0 };
	gnutls_x509_crt_t crt;
	char *d;
	unsigned n = 0;
	size_t sz = sizeof(t->peer);

	if (t->creds->kind == TLS_PSK) {
		gnutls_datum_t id = { NULL, 0 };

		if (!t->server) {	/* the server proved it holds our identity's key */
			snprintf(t->peer, sizeof(t->peer), "%s", t->creds->keys[0].id);
			return 0;
		}
		if (gnutls_psk_server_get_username2(t->sess, &id) < 0 || !id.size)
			return kv_errf(err, EKEYREJECTED, "TLS: the peer named no PSK identity");
		/* the lookup matched it against our file: printable, no NUL */
		snprintf(t->peer, sizeof(t->peer), "%.*s", (int)id.size, (const char *)id.data);
		return 0;
	}
	certs = gnutls_certificate_get_peers(t->sess, &n);
	if (!certs || !n)
		return kv_errf(err, EKEYREJECTED, "the peer sent no certificate; mutual "
			       "authentication requires one");
	if (gnutls_x509_crt_init(&crt) < 0)
		return kv_errf(err, ENOMEM, "TLS: out of memory");
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0 ||
	    gnutls_x509_crt_get_dn3(crt, &dn, 0) < 0) {
		gnutls_x509_crt_deinit(crt);
		return kv_errf(err, EKEYREJECTED, "TLS: the peer's certificate has no readable "
			       "subject");
	}
	snprintf(t->dn, sizeof(t->dn), "%s", (const char *)dn.data);
	gnutls_free(dn.data);
	if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, t->peer,
					  &sz) < 0)
		t->peer[0] = '\0';
	gnutls_x509_crt_deinit(crt);
	/* keep the names printable: they end up in logs and messages */
	for (d = t->peer; *d; d++)
		if ((unsigned char)*d < ' ' || *d == 0x7f)
			*d = '?';
	for (d = t->dn; *d; d++)
		if ((unsigned char)*d < ' ' || *d == 0x7f)
			*d = '?';
	return 0;
}

static void describe(struct tls_chan *t)
{
	int k = gnutls_transport_is_ktls_enabled(t->sess);

	snprintf(t->desc, sizeof(t->desc), "%s %s %s, kTLS %s",
		 gnutls_protocol_get_name(gnutls_protocol_get_version(t->sess)),
		 gnutls_cipher_get_name(gnutls_cipher_get(t->sess)),
		 t->creds->kind == TLS_PSK ? "psk" : "x509",
		 k == GNUTLS_KTLS_DUPLEX ? "on" : k == GNUTLS_KTLS_SEND ? "send only" :
		 k == GNUTLS_KTLS_RECV ? "receive only" : "off");
}

/* ---- I/O ---- */

static int io_error(struct tls_chan *t, ssize_t r, const char *what, struct kv_err *err)
{
	switch (r) {
	case GNUTLS_E_DECRYPTION_FAILED:
		return kv_errf(err, EBADMSG, "TLS: a record from the peer failed authentication "
			       "(data altered on the way)");
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		return tls_explain_alert(t, false, err);
	case GNUTLS_E_PUSH_ERROR:
		return kv_errf(err, EPIPE, "%s: %s", what, strerror(errno ? errno : EPIPE));
	case GNUTLS_E_PULL_ERROR:
		return kv_errf(err, ECONNRESET, "%s: %s", what,
			       strerror(errno ? errno : ECONNRESET));
	}
	return kv_errf(err, EPROTO, "TLS %s: %s", what, gnutls_strerror((int)r));
}

static ssize_t tls_readv(struct channel *ch, const struct iovec *iov, int cnt,
			 struct kv_err *err)
{
	struct tls_chan *t = (struct tls_chan *)ch;
	size_t got = 0;

	if (t->rx_eof)
		return 0;
	for (int i = 0; i < cnt; i++) {
		size_t off = 0;

		while (off < iov[i].iov_len) {
			ssize_t r = gnutls_record_recv(t->sess, (uint8_t *)iov[i].iov_base + off,
						       iov[i].iov_len - off);
			if (r > 0) {
				off += (size_t)r;
				got += (size_t)r;
				continue;
			}
			if (r == GNUTLS_E_INTERRUPTED)
				continue;
			if (r == GNUTLS_E_AGAIN)
				return got ? (ssize_t)got : -EAGAIN;
			/*
			 * End of stream, with or without close_notify: the stream's
			 * framing (lengths, checksums, explicit END records) tells a
			 * truncated migration from a finished one, so a missing
			 * close_notify need not be an error of its own.
			 */
			if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION) {
				t->rx_eof = true;
				return (ssize_t)got;
			}
			return io_error(t, r, "read", err);
		}
	}
	return (ssize_t)got;
}

/* Send what gnutls_record_cork() held (its bytes were counted when corked): 0 sent or
 * nothing held, -EAGAIN, or an error. */
static int uncork(struct tls_chan *t, struct kv_err *err)
{
	ssize_t r;

	if (!t->tx_corked)
		return 0;
	do
		r = gnutls_record_uncork(t->sess, 0);
	while (r == GNUTLS_E_INTERRUPTED);
	if (r == GNUTLS_E_AGAIN)
		return -EAGAIN;
	if (r < 0)
		return io_error(t, r, "write", err);
	t->tx_corked = false;
	return 0;
}

/* Send what an earlier call left in GnuTLS: >0 bytes of the caller's that
 * it carried, 0 nothing was left, <0 -EAGAIN or an error. */
static ssize_t resume(struct tls_chan *t, struct kv_err *err)
{
	ssize_t r = uncork(t, err);

	if (r)
		return r;
	if (t->tx_retry) {
		/* GnuTLS keeps the record it could not finish; NULL resumes it
		 * and returns the bytes of ours it holds */
		do
			r = gnutls_record_send(t->sess, NULL, 0);
		while (r == GNUTLS_E_INTERRUPTED);
		if (r == GNUTLS_E_AGAIN)
			return -EAGAIN;
		if (r < 0)
			return io_error(t, r, "write", err);
		t->tx_retry = false;
		return r;
	}
	return 0;
}

/*
 * Kernel TLS sends: the socket takes plain bytes and makes the records
 * itself, so a write is a plain sendmsg with its exact partial count.
 * (GnuTLS 3.7's own kTLS send loops over sendmsg and answers -EAGAIN even
 * after part of the data went out, which a non-blocking caller cannot
 * repeat correctly.)
 */
static ssize_t ktls_writev(struct tls_chan *t, const struct iovec *iov, int cnt,
			   struct kv_err *err)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt };
	ssize_t r;

	do
		r = sendmsg(t->ch.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return -EAGAIN;
	return kv_errf(err, errno, "write: %s", strerror(errno));
}

static ssize_t tls_writev(struct channel *ch, const struct iovec *iov, int cnt,
			  unsigned flags, struct kv_err *err)
{
	struct tls_chan *t = (struct tls_chan *)ch;
	size_t sent = 0;
	ssize_t r;

	if (flags & CHANNEL_WRITE_ZEROCOPY)
		return kv_errf(err, EOPNOTSUPP, "zero-copy writes are not supported over TLS");
	if (t->ktls_tx)
		return ktls_writev(t, iov, cnt, err);
	if ((r = resume(t, err)))
		return r;	/* the head of this call went out (or could not) */
	if (cnt > 1) {
		/* pieces (a header, pages, a trailer) would each make a short
		 * record: cork them into full ones */
		gnutls_record_cork(t->sess);
		for (int i = 0; i < cnt; i++) {
			if (!iov[i].iov_len)
				continue;
			r = gnutls_record_send(t->sess, iov[i].iov_base, iov[i].iov_len);
			if (r < 0) {
				gnutls_record_discard_queued(t->sess);
				gnutls_record_uncork(t->sess, 0);
				return io_error(t, r, "write", err);
			}
			sent += iov[i].iov_len;
		}
		do
			r = gnutls_record_uncork(t->sess, 0);
		while (r == GNUTLS_E_INTERRUPTED);
		if (r == GNUTLS_E_AGAIN)
			t->tx_corked = true;	/* taken; flush() or the next call sends it */
		else if (r < 0)
			return io_error(t, r, "write", err);
		return (ssize_t)sent;
	}
	for (size_t off = 0; cnt == 1 && off < iov[0].iov_len;) {
		r = gnutls_record_send(t->sess, (const uint8_t *)iov[0].iov_base + off,
				       iov[0].iov_len - off);
		while (r == GNUTLS_E_INTERRUPTED)	/* resume the record it holds */
			r = gnutls_record_send(t->sess, NULL, 0);
		if (r == GNUTLS_E_AGAIN) {
			/* GnuTLS holds the record: resume() finishes it at the next
			 * call, which by the channel's contract starts with these
			 * same bytes */
			t->tx_retry = true;
			return sent ? (ssize_t)sent : -EAGAIN;
		}
		if (r < 0)
			return io_error(t, r, "write", err);
		off += (size_t)r;
		sent += (size_t)r;
	}
	return (ssize_t)sent;
}

static int tls_flush(struct channel *ch, struct kv_err *err)
{
	/* a record held for tx_retry is not ours yet to flush */
	return uncork((struct tls_chan *)ch, err);
}

static size_t tls_pending(const struct channel *ch)
{
	const struct tls_chan *t = (const struct tls_chan *)ch;

	return gnutls_record_check_pending(t->sess);
}

static int tls_wait(struct channel *ch, short events, int timeout_ms, struct kv_err *err)
{
	struct tls_chan *t = (struct tls_chan *)ch;
	struct pollfd p = { .fd = ch->fd, .events = events };
	int64_t deadline = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;

	/* decrypted bytes wait in GnuTLS: the fd will not announce them */
	if ((events & POLLIN) && (t->rx_eof || gnutls_record_check_pending(t->sess)))
		return POLLIN;
	for (;;) {
		int left = timeout_ms < 0 ? -1 : (int)(deadline - now_ms()), r;

		if (timeout_ms >= 0 && left < 0)
			left = 0;
		r = poll(&p, 1, left);
		if (r >= 0)
			return r ? p.revents : 0;
		if (errno != EINTR)
			return kv_errf(err, errno, "poll: %s", strerror(errno));
	}
}

static int tls_shutdown(struct channel *ch, int how, struct kv_err *err)
{
	struct tls_chan *t = (struct tls_chan *)ch;

	if (how == SHUT_WR || how == SHUT_RDWR) {
		/* close_notify, briefly: the framing already tells a finished
		 * stream from a cut one, so a full socket does not hold us */
		int64_t deadline = now_ms() + BYE_MS;
		int r;

		while (t->tx_corked && tls_flush(ch, NULL) == -EAGAIN && now_ms() < deadline) {
			struct pollfd p = { .fd = ch->fd, .events = POLLOUT };
			poll(&p, 1, 50);
		}
		while ((r = gnutls_bye(t->sess, GNUTLS_SHUT_WR)) == GNUTLS_E_AGAIN ||
		       r == GNUTLS_E_INTERRUPTED) {
			struct pollfd p = { .fd = ch->fd, .events = POLLOUT };
			int left = (int)(deadline - now_ms());
			if (left <= 0 || poll(&p, 1, left) <= 0)
				break;
		}
	}
	if (shutdown(ch->fd, how) < 0)
		return kv_errf(err, errno, "shutdown: %s", strerror(errno));
	return 0;
}

static void tls_close(struct channel *ch)
{
	struct tls_chan *t = (struct tls_chan *)ch;

	if (t->sess)
		gnutls_deinit(t->sess);
	free(t);
}

static const struct channel_ops tls_ops = {
	.kind = "tls",
	.readv = tls_readv,
	.writev = tls_writev,
	.flush = tls_flush,
	.wait = tls_wait,
	.pending = tls_pending,
	.shutdown = tls_shutdown,
	.close = tls_close,
};

/* ---- setting up ---- */

/*
 * The peer's certificate must chain to our CA, be meant for its role (key
 * purpose TLS WWW server or client, as certtool's tls_www_server and
 * tls_www_client write it; a certificate without any purpose passes, as
 * in QEMU), and for a server, name the host we asked for.  Without the
 * purpose, any host's client certificate from the same CA could pose as a
 * destination to a source that does not check names.
 */
static void verify_peer_cert(struct tls_chan *t, bool server, const char *peer_name)
{
	unsigned n = 0;

	t->verify[n++] = (gnutls_typed_vdata_st){
		.type = GNUTLS_DT_KEY_PURPOSE_OID,
		.data = (unsigned char *)(server ? GNUTLS_KP_TLS_WWW_CLIENT : GNUTLS_KP_TLS_WWW_SERVER),
	};
	if (server) {
		gnutls_certificate_server_set_request(t->sess, GNUTLS_CERT_REQUIRE);
	} else if (peer_name && *peer_name) {
		struct in6_addr a6;
		struct in_addr a4;

		/* SNI carries host names only (RFC 6066) */
		if (inet_pton(AF_INET, peer_name, &a4) != 1 &&
		    inet_pton(AF_INET6, peer_name, &a6) != 1)
			gnutls_server_name_set(t->sess, GNUTLS_NAME_DNS, peer_name,
					       strlen(peer_name));
		t->verify[n++] = (gnutls_typed_vdata_st){
			.type = GNUTLS_DT_DNS_HOSTNAME,
			.data = (unsigned char *)t->peer_name,
		};
	}
	/* the array lives in t, as long as the session */
	gnutls_session_set_verify_cert2(t->sess, t->verify, n, 0);
}

static int handshake(struct tls_chan *t, int timeout_ms, struct kv_err *err)
{
	int64_t deadline = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;

	for (;;) {
		int r, left = -1;
		struct pollfd p = { .fd = t->ch.fd };

		tls_peek_first(t);	/* before GnuTLS takes them */
		r = gnutls_handshake(t->sess);
		if (r == GNUTLS_E_SUCCESS)
			return 0;
		if (gnutls_error_is_fatal(r)) {
			int e = tls_explain(t, r, err), a = tls_alert_for(t, r);
			/* tell the peer why, if the socket has room: best effort */
			if (a >= 0)
				gnutls_alert_send(t->sess, GNUTLS_AL_FATAL, (gnutls_alert_description_t)a);
			else
				gnutls_alert_send_appropriate(t->sess, r);
			return e;
		}
		if (timeout_ms >= 0 && (left = (int)(deadline - now_ms())) <= 0)
			return tls_explain_timeout(t, timeout_ms, err);
		if (r != GNUTLS_E_AGAIN)
			continue;	/* interrupted, or a warning alert */
		p.events = gnutls_record_get_direction(t->sess) ? POLLOUT : POLLIN;
		r = poll(&p, 1, left);
		if (r < 0 && errno != EINTR)
			return kv_errf_sys(err, errno, "TLS handshake: poll");
		if (r == 0)
			return tls_explain_timeout(t, timeout_ms, err);
	}
}

static int tls_open(struct channel **out, int fd, struct tls_creds *c, bool server,
		    const char *peer_name, int timeout_ms, struct kv_err *err)
{
	struct tls_chan *t;
	const char *errpos = NULL;
	int r, fl;

	if (c->server != server)
		return kv_errf(err, EINVAL, "TLS credentials from %s were loaded for a %s, not a %s",
			       c->path, c->server ? "server" : "client",
			       server ? "server" : "client");
	if (timeout_ms == 0)
		return kv_errf(err, EINVAL, "TLS handshake: a deadline of 0 ms");
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return kv_errf_sys(err, errno, "TLS: fd %d", fd);
	t = calloc(1, sizeof(*t));
	if (!t)
		return kv_errf(err, ENOMEM, "allocating a TLS channel");
	t->ch.ops = &tls_ops;
	t->ch.fd = fd;
	t->ch.caps = CHANNEL_CAP_SHUTDOWN;
	t->creds = c;
	t->server = server;
	t->ctx.creds = c;
	if (peer_name)
		snprintf(t->peer_name, sizeof(t->peer_name), "%s", peer_name);
	/* no session tickets: nothing to resume, nothing to steal */
	r = gnutls_init(&t->sess, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_SIGNAL |
			GNUTLS_NO_TICKETS);
	if (r < 0) {
		free(t);
		return kv_errf(err, ENOMEM, "TLS: %s", gnutls_strerror(r));
	}
	gnutls_session_set_ptr(t->sess, &t->ctx);
	r = gnutls_priority_set_direct(t->sess, c->kind == TLS_PSK ? PRIO_PSK : PRIO_X509,
				       &errpos);
	if (r < 0) {
		r = kv_errf(err, EINVAL, "TLS priorities at '%s': %s", errpos ? errpos : "?",
			    gnutls_strerror(r));
		goto fail;
	}
	if (c->kind == TLS_PSK) {
		r = gnutls_credentials_set(t->sess, GNUTLS_CRD_PSK, server ?
					   (void *)c->psk_server : (void *)c->psk_client);
	} else {
		r = gnutls_credentials_set(t->sess, GNUTLS_CRD_CERTIFICATE, c->x509);
		if (r >= 0)
			verify_peer_cert(t, server, peer_name);
	}
	if (r < 0) {
		r = kv_errf(err, EINVAL, "TLS credentials: %s", gnutls_strerror(r));
		goto fail;
	}
	gnutls_transport_set_int(t->sess, fd);
	if ((r = handshake(t, timeout_ms, err)) || (r = learn_peer(t, err)))
		goto fail;
	t->ktls_tx = gnutls_transport_is_ktls_enabled(t->sess) & GNUTLS_KTLS_SEND;
	describe(t);
	*out = &t->ch;
	return 0;
fail:
	tls_close(&t->ch);
	return r;
}

int channel_tls_client(struct channel **out, int fd, struct tls_creds *c,
		       const char *peer_name, int timeout_ms, struct kv_err *err)
{
	return tls_open(out, fd, c, false, peer_name, timeout_ms, err);
}

int channel_tls_server(struct channel **out, int fd, struct tls_creds *c, int timeout_ms,
		       struct kv_err *err)
{
	return tls_open(out, fd, c, true, NULL, timeout_ms, err);
}

const char *channel_tls_peer(const struct channel *ch)
{
	return ch && ch->ops == &tls_ops ? ((const struct tls_chan *)ch)->peer : NULL;
}

const char *channel_tls_peer_dn(const struct channel *ch)
{
	return ch && ch->ops == &tls_ops ? ((const struct tls_chan *)ch)->dn : NULL;
}

const char *channel_tls_desc(const struct channel *ch)
{
	return ch && ch->ops == &tls_ops ? ((const struct tls_chan *)ch)->desc : NULL;
}
