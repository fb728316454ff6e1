/*
 * control.h - the per-VM control socket: QMP's wire shape over a UNIX socket.
 *
 * The server owns one thread that accepts clients and answers commands; the
 * VMM gives it a table of commands (name -> handler) and an opaque pointer.
 * Any thread may emit asynchronous events.  The server knows nothing of VMs:
 * everything VM-specific is in the command table the VMM passes in.
 *
 * Wire protocol (compatible with QMP clients):
 *   server -> {"QMP": {"version": {...}, "capabilities": []}}       greeting
 *   client -> {"execute": "qmp_capabilities"}                          negotiation
 *   client -> {"execute": NAME, "arguments": {...}, "id": ANY}
 *   server -> {"return": {...}, "id": ANY} | {"error": {"class": C, "desc": D}, "id": ANY}
 *   server -> {"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": U}}
 */
#ifndef KVMOVE_CONTROL_CONTROL_H
#define KVMOVE_CONTROL_CONTROL_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

/* Largest request the server accepts; larger input gets an error and the
 * connection is closed (the VM is never affected). */
#define CTL_MAX_REQUEST (64 * 1024)

struct ctl_server;

/*
 * A command handler.  args is the "arguments" object (never NULL: an empty
 * object when the client sent none; borrowed).  On success return 0 and set
 * *ret to a new reference (or leave it NULL for {}).  On failure return a
 * negative errno and fill err; the client gets
 * {"error": {"class": "GenericError", "desc": err->msg}}.
 * Handlers run on the control thread, one at a time.
 */
typedef int (*ctl_handler_fn)(void *opaque, json_t *args, json_t **ret,
			      struct kv_err *err);

struct ctl_cmd {
	const char *name;
	ctl_handler_fn fn;
	const char *help;	/* one line, for query-commands / docs */
	/* Its arguments, for query-qmp-schema: "name:type" separated by
	 * spaces, '?' before optional ones; types str, int, bool, number, any
	 * (NULL: none). */
	const char *args;
};

/*
 * Create the server listening on path (an existing socket file at path is
 * replaced only if nothing listens there; otherwise -EADDRINUSE).  cmds must
 * stay valid for the server's lifetime.  The server answers qmp_capabilities
 * and query-commands itself; cmds must not contain those.
 * The thread starts at once.
 */
int ctl_server_create(struct ctl_server **out, const char *path,
		      const struct ctl_cmd *cmds, size_t ncmds, void *opaque,
		      struct kv_err *err);

/*
 * Send an event to every client that has completed qmp_capabilities.
 * data is stolen (may be NULL for no data).  Thread-safe; never blocks on a
 * slow client (a client that cannot keep up is disconnected).
 */
void ctl_server_emit(struct ctl_server *s, const char *event, json_t *data);

/* Stop the thread, close every client, unlink the socket, free.  NULL ok.
 * A reply or event already queued (a quit's {"return": {}}, a SHUTDOWN
 * event) still gets up to a second to reach its client.  Must not be called
 * from a handler (it joins the control thread), nor concurrently with
 * ctl_server_emit(). */
void ctl_server_destroy(struct ctl_server *s);

/* ---- client side (used by the CLI verbs and by tests) ---- */

struct ctl_client;

/* Connect, read the greeting, negotiate capabilities. timeout_ms bounds each
 * wait for the server. */
int ctl_client_connect(struct ctl_client **out, const char *path, int timeout_ms,
		       struct kv_err *err);

/*
 * Execute a command and wait for its reply, skipping events (which are
 * collected and can be read with ctl_client_next_event).  args may be NULL
 * (borrowed).  On {"return": R}: 0 and *ret = new reference to R.  On
 * {"error": ...}: -EREMOTEIO and err holds "desc" (class in *err_class if
 * not NULL, a new string to free()).
 */
int ctl_client_execute(struct ctl_client *c, const char *cmd, json_t *args,
		       json_t **ret, char **err_class, struct kv_err *err);

/* Wait up to timeout_ms for the next event; 0 and *event = new reference, or
 * -ETIMEDOUT, or another negative errno (connection closed: -ECONNRESET). */
int ctl_client_next_event(struct ctl_client *c, int timeout_ms, json_t **event,
			  struct kv_err *err);

/*
 * After a command that makes the VMM exit (quit): wait up to timeout_ms for
 * the server to close the connection and then for the VMM process itself
 * (found through SO_PEERCRED at connect time) to exit.  Events that arrive
 * meanwhile are queued.  0, or -ETIMEDOUT.
 */
int ctl_client_wait_closed(struct ctl_client *c, int timeout_ms, struct kv_err *err);

void ctl_client_close(struct ctl_client *c);

#endif
