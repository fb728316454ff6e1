/*
 * channel_tls.h - TLS 1.3 channels (GnuTLS) with mutual authentication,
 * and the credentials they use.  docs/TLS.md is the user's side of this.
 *
 * Two kinds of credentials, in QEMU's conventions so that one set of
 * files can serve both:
 *   TLS_PSK   a key file of "identity:hexkey" lines (QEMU tls-creds-psk's
 *             keys.psk; a directory means DIR/keys.psk).  The client sends
 *             the identity of the file's first line; the server looks it
 *             up among all of its lines.  Both ends prove the same key.
 *   TLS_X509  a directory with ca-cert.pem, server-cert.pem, server-key.pem,
 *             client-cert.pem, client-key.pem (and optionally ca-crl.pem).
 *             The server requires and verifies a client certificate; the
 *             client verifies the server's, and its host name when given.
 *
 * The handshake runs to a deadline on a non-blocking fd (the channel sets
 * O_NONBLOCK and leaves it so), so a stalled or hostile peer cannot hold
 * the caller; its errors say what a user must fix ("the peer speaks
 * plaintext", "certificate from another CA", "the two key files differ").
 * After it, channel_tls_peer() names the authenticated peer so the caller
 * can decide whether this peer may do what it asks.
 */
#ifndef KVMOVE_STATE_CHANNEL_TLS_H
#define KVMOVE_STATE_CHANNEL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "state/channel.h"

enum tls_kind {
	TLS_PSK,
	TLS_X509,
};

#define TLS_ID_MAX 128		/* PSK identity: 1..128 printable bytes, no ':' */

struct tls_creds;

/* Load credentials for one role (server: the side that accepts).  Read
 * once; one tls_creds may serve many channels, from several threads. */
int tls_creds_load(struct tls_creds **out, enum tls_kind kind, const char *path,
		   bool server, struct kv_err *err);
void tls_creds_free(struct tls_creds *c);

/*
 * Handshake as client or server on a connected stream socket within
 * timeout_ms (-1: no deadline; callers facing a network should give one).
 * peer_name (client, may be NULL): the host name or address the server's
 * certificate must name (x509; ignored for PSK).  The fd stays the
 * caller's: close it after channel_close().
 */
int channel_tls_client(struct channel **out, int fd, struct tls_creds *c,
		       const char *peer_name, int timeout_ms, struct kv_err *err);
int channel_tls_server(struct channel **out, int fd, struct tls_creds *c, int timeout_ms,
		       struct kv_err *err);

/* The authenticated peer: its PSK identity, or its certificate's common
 * name (channel_tls_peer_dn(): the whole subject DN; "" for PSK).  NULL
 * for a channel that is not TLS. */
const char *channel_tls_peer(const struct channel *ch);
const char *channel_tls_peer_dn(const struct channel *ch);
/* "TLS1.3 AES-256-GCM psk, kTLS off" and the like, for logs. */
const char *channel_tls_desc(const struct channel *ch);

/* Do the first bytes read from a peer look like a TLS ClientHello (the
 * peer wants TLS), or like any TLS record (a TLS alert, a ServerHello)?
 * For a plaintext endpoint that wants to say so instead of "bad record". */
bool tls_looks_like_client_hello(const uint8_t *p, size_t n);
bool tls_looks_like_record(const uint8_t *p, size_t n);

/* Write a new PSK file at path: "identity:64 hex digits\n" (32 random
 * bytes from getrandom), mode 0600.  An existing file is refused unless
 * force (then replaced atomically). */
int tls_psk_keygen(const char *path, const char *identity, bool force, struct kv_err *err);

#endif
