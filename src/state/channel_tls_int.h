/*
 * channel_tls_int.h - what channel_tls.c (sessions and I/O),
 * channel_tls_why.c (explaining failures) and channel_tls_creds.c
 * (credential files) share.  Not for other modules: they see channel_tls.h.
 */
#ifndef KVMOVE_STATE_CHANNEL_TLS_INT_H
#define KVMOVE_STATE_CHANNEL_TLS_INT_H

#include <gnutls/gnutls.h>
#include <limits.h>

#include "state/channel_tls.h"

struct tls_psk_key {
	char id[TLS_ID_MAX + 1];
	uint8_t *key;
	size_t len;
};

struct tls_creds {
	enum tls_kind kind;
	bool server;
	char path[PATH_MAX];	/* the PSK file or the x509 directory, for messages */
	/* PSK: a server's every line; a client's first */
	struct tls_psk_key *keys;
	size_t nkeys;
	gnutls_psk_server_credentials_t psk_server;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_certificate_credentials_t x509;
};

/*
 * A session's view for the PSK lookup: GnuTLS calls the server's key
 * callback with the session only, whose user pointer is this.  The lookup
 * notes an identity it did not find, so the error can name it.
 */
struct tls_session_ctx {
	const struct tls_creds *creds;
	char offered[TLS_ID_MAX + 1];	/* printable copy of the identity offered */
	bool unknown;			/* offered is not in the key file */
};

/* The server's PSK callback (gnutls_psk_set_server_credentials_function2). */
int tls_psk_lookup(gnutls_session_t s, const gnutls_datum_t *id, gnutls_datum_t *key);

/* A TLS channel: the channel_ops' object (channel_tls.c). */
struct tls_chan {
	struct channel ch;
	gnutls_session_t sess;
	struct tls_session_ctx ctx;	/* the session's user pointer */
	const struct tls_creds *creds;
	bool server;
	bool tx_retry;		/* a record got -EAGAIN: GnuTLS holds it, resume it first */
	bool tx_corked;		/* uncork got -EAGAIN: corked records wait in GnuTLS */
	bool rx_eof;
	bool ktls_tx;		/* the kernel encrypts what we send: plain sendmsg */
	uint8_t first[8];	/* the peer's first bytes, peeked: TLS or plaintext? */
	size_t nfirst;
	bool peer_closed;	/* it closed before sending anything */
	char peer_name[256];	/* client, x509: the name the server's certificate must carry */
	gnutls_typed_vdata_st verify[2];	/* what the peer's certificate must show */
	char peer[TLS_ID_MAX + 256];	/* PSK identity, or certificate CN */
	char dn[1024];
	char desc[192];
};

/* channel_tls_why.c: explaining a failed handshake */
void tls_peek_first(struct tls_chan *t);	/* note the peer's first bytes, unread */
int tls_explain(struct tls_chan *t, int gnutls_ret, struct kv_err *err);
int tls_explain_timeout(struct tls_chan *t, int timeout_ms, struct kv_err *err);
int tls_explain_alert(struct tls_chan *t, bool in_handshake, struct kv_err *err);
/* the alert to send the peer for our failure, or -1: GnuTLS's choice */
int tls_alert_for(const struct tls_chan *t, int gnutls_ret);

#endif
