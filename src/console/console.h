/*
 * console.h - kvmove console: the cluster's management console over HTTP
 * (libmicrohttpd): the JSON API of docs/API.md, server-sent events fed by
 * an etcd watch, Prometheus metrics and the page (share/console/, built
 * into the binary).
 */
#ifndef KVMOVE_CONSOLE_CONSOLE_H
#define KVMOVE_CONSOLE_CONSOLE_H

#include "common/err.h"

struct console_options {
	const char *listen;	/* HOST:PORT (IPv4) */
	const char *tokens;	/* the token file */
	const char *etcd;	/* endpoints */
	const char *self;	/* this binary, to run CLI verbs */
};

/* Serve until SIGINT or SIGTERM. */
int console_serve(const struct console_options *o, struct kv_err *err);

#endif
