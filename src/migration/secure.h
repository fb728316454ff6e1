/*
 * secure.h - every migration connection is TLS unless its operator said
 * --insecure: the credentials a VMM was started with (a PSK file or an
 * x509 directory, channel_tls.h), the peer it accepts, and the two ways a
 * migration stream comes to be: connecting out (a source, a post-copy
 * reconnection) and accepting (a destination).  A plaintext peer meeting a
 * TLS one gets a message that says so, on both sides.
 */
#ifndef KVMOVE_MIGRATION_SECURE_H
#define KVMOVE_MIGRATION_SECURE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

struct stream;
struct tls_creds;

struct mig_tls {
	struct tls_creds *client;	/* connecting out (NULL: none) */
	struct tls_creds *server;	/* accepting (NULL: none) */
	const char *peer;		/* the peer must be this PSK identity or
					 * certificate CN (NULL: any the credentials
					 * admit) */
	bool insecure;			/* plaintext (--insecure): no credentials */
	const char *kind;		/* "psk", "x509" or "" */
	const char *path;		/* the credentials' file or directory */
};

/* From kvmove run's options (at most one of psk and x509; neither needs
 * insecure). */
int mig_tls_setup(struct mig_tls *t, const char *psk, const char *x509, bool insecure,
		  const char *peer, struct kv_err *err);
void mig_tls_free(struct mig_tls *t);
/* Can this VMM migrate at all (credentials, or --insecure)? */
bool mig_tls_usable(const struct mig_tls *t);

/* Connect to tcp:HOST:PORT and make s over the connection (TLS unless
 * insecure; the server must be `peer` if set, else HOST).  *fd: the
 * socket, the caller's to close after stream_destroy() (and to shut down
 * from another thread to wake blocked I/O). */
int mig_open_client(const struct mig_tls *t, const char *uri, int timeout_ms,
		    struct stream *s, int *fd, struct kv_err *err);
/* The same on a socket already connected to uri (the caller's fd). */
int mig_client_stream(const struct mig_tls *t, int fd, const char *uri, int timeout_ms,
		      struct stream *s, struct kv_err *err);
/* On an accepted socket: handshake within timeout_ms, check the peer, make
 * s.  On failure the peer was told why (if it can hear it) and fd is the
 * caller's to close. */
int mig_open_server(const struct mig_tls *t, int fd, int timeout_ms, struct stream *s,
		    struct kv_err *err);

#endif
