/*
 * secure.c - TLS (or, with --insecure, plaintext) migration connections
 * (secure.h).
 */
#define _GNU_SOURCE
#include "migration/secure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/proto.h"
#include "state/channel.h"
#include "state/channel_tls.h"
#include "state/stream.h"

int mig_tls_setup(struct mig_tls *t, const char *psk, const char *x509, bool insecure,
		  const char *peer, struct kv_err *err)
{
	enum tls_kind kind = psk ? TLS_PSK : TLS_X509;
	const char *path = psk ? psk : x509;
	int r;

	memset(t, 0, sizeof(*t));
	t->insecure = insecure;
	t->peer = peer;
	t->kind = "";
	if (!path)
		return 0;
	/* an x509 directory may hold one role only (a host that only takes
	 * VMs): what is there is loaded, and a missing role fails when used */
	{
		struct kv_err e2;
		int rc = tls_creds_load(&t->client, kind, path, false, err);
		int rs = tls_creds_load(&t->server, kind, path, true, rc ? &e2 : err);
		r = rc && rs ? rc : 0;
		if (r)
			return r;
	}
	t->kind = psk ? "psk" : "x509";
	t->path = path;
	return 0;
}

void mig_tls_free(struct mig_tls *t)
{
	tls_creds_free(t->client);
	tls_creds_free(t->server);
	t->client = t->server = NULL;
}

bool mig_tls_usable(const struct mig_tls *t)
{
	return t && (t->client || t->server || t->insecure);
}

/* "tcp:HOST:PORT" -> HOST (brackets of an IPv6 literal dropped) */
static void host_of(const char *uri, char *out, size_t cap)
{
	const char *h = uri + 4, *colon = strrchr(h, ':');
	size_t n = colon ? (size_t)(colon - h) : strlen(h);

	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	snprintf(out, cap, "%.*s", (int)n, h);
}

/* A UNIX socket, either end: the peer must be this user or root; no TLS. */
static int local_stream(int fd, struct stream *s, struct kv_err *err)
{
	int r = mig_check_local_peer(fd, err);

	return r ? r : stream_init(s, fd, MIG_MAX_RECORD, err);
}

int mig_client_stream(const struct mig_tls *t, int fd, const char *uri, int timeout_ms,
		      struct stream *s, struct kv_err *err)
{
	struct channel *ch = NULL;
	char host[256];
	int r;

	/* same host: the kernel names the peer, and the memory never leaves */
	if (mig_uri_is_local(uri)) {
		if ((r = local_stream(fd, s, err)))
			kv_err_prefix(err, r, "%s", uri);
		return r;
	}
	if (!mig_tls_usable(t))
		return kv_errf(err, EPERM, "this VMM has no TLS credentials: start it with "
			       "--tls-psk FILE or --tls-creds DIR (or --insecure, for benchmarks)");
	if (!t->client && !t->insecure)
		return kv_errf(err, EPERM, "%s has no client certificate (client-cert.pem): this "
			       "VMM can take VMs but not send them", t->path);
	if (t->client) {
		host_of(uri, host, sizeof(host));
		r = channel_tls_client(&ch, fd, t->client, t->peer ? t->peer : host, timeout_ms,
				       err);
		if (!r && t->peer && strcmp(channel_tls_peer(ch), t->peer)) {
			r = kv_errf(err, EPERM, "the destination is '%s', not '%s' (--tls-peer)",
				    channel_tls_peer(ch), t->peer);
			channel_close(ch);
		}
		if (!r)
			r = stream_adopt_channel(s, ch, MIG_MAX_RECORD, err);
		if (r)
			kv_err_prefix(err, r, "TLS with %s", uri);
	} else {
		r = stream_init(s, fd, MIG_MAX_RECORD, err);
	}
	return r;
}

int mig_open_client(const struct mig_tls *t, const char *uri, int timeout_ms,
		    struct stream *s, int *fd_out, struct kv_err *err)
{
	int fd = mig_connect(uri, timeout_ms, err), r;

	if (fd < 0)
		return fd;
	r = mig_client_stream(t, fd, uri, timeout_ms, s, err);
	if (r) {
		close(fd);
		return r;
	}
	*fd_out = fd;
	return 0;
}

/* A plaintext peer at a TLS destination hears why in its own language. */
static void tell_plaintext_peer(int fd, const char *why)
{
	uint8_t b[8];
	struct stream ps;

	if (recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT) != (ssize_t)sizeof(b) ||
	    st_get16(b) != MIG_REC_HELLO || stream_init(&ps, fd, MIG_MAX_RECORD, NULL))
		return;
	mig_send_error(&ps, "tls", why);
	stream_destroy(&ps);
}

/* An authenticated but unauthorized peer hears why, after its HELLO (so
 * that closing with unread data does not reset the answer away). */
static void tell_tls_peer(struct channel *ch, int timeout_ms, const char *why)
{
	struct stream ps;
	struct stream_rec rec;

	if (stream_adopt_channel(&ps, ch, MIG_MAX_RECORD, NULL))
		return;		/* the stream closed ch */
	ps.timeout_ms = timeout_ms;
	if (stream_read(&ps, &rec, NULL) == 0 && rec.type == MIG_REC_HELLO) {
		mig_send_error(&ps, "tls", why);
		stream_flush(&ps, NULL);
	}
	stream_destroy(&ps);
}

int mig_open_server(const struct mig_tls *t, int fd, int timeout_ms, struct stream *s,
		    struct kv_err *err)
{
	struct channel *ch = NULL;
	int r, dom = 0;
	socklen_t len = sizeof(dom);

	/* a UNIX socket (a same-host hand-over): the peer's uid, not TLS */
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 && dom == AF_UNIX)
		return local_stream(fd, s, err);
	if (!t || (!t->server && t->insecure))	/* a TLS peer is told by the stream */
		return stream_init(s, fd, MIG_MAX_RECORD, err);
	if (!t->server)
		return kv_errf(err, EPERM, "%s has no server certificate (server-cert.pem): this "
			       "VMM cannot take VMs", t->path);
	r = channel_tls_server(&ch, fd, t->server, timeout_ms, err);
	if (r) {
		tell_plaintext_peer(fd, "this destination takes migrations over TLS only: start "
				    "the source VMM with the same credentials (--tls-psk or "
				    "--tls-creds)");
		return kv_err_prefix(err, r, "TLS");
	}
	/* authorization, not just encryption: only the expected source */
	if (t->peer && strcmp(channel_tls_peer(ch), t->peer)) {
		r = kv_errf(err, EPERM, "TLS peer '%s' is not the source this destination takes "
			    "('%s', --tls-peer)", channel_tls_peer(ch), t->peer);
		tell_tls_peer(ch, timeout_ms, err->msg);
		return r;
	}
	return stream_adopt_channel(s, ch, MIG_MAX_RECORD, err);
}
