/*
 * protocol.h - the control protocol without sockets (internal to
 * src/control/): splitting a byte stream into JSON texts, validating a
 * request, dispatching it to a command table and formatting replies and
 * events.  Everything here is pure and unit-testable; server.c and client.c
 * only move bytes.
 */
#ifndef KVMOVE_CONTROL_PROTOCOL_H
#define KVMOVE_CONTROL_PROTOCOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "control/control.h"

/* Deepest nesting of arrays/objects accepted in a request (QMP requests
 * need a handful; jansson recurses once per level). */
#define CTL_MAX_DEPTH 256

/* ---- stream splitting ----
 *
 * Input is a sequence of JSON texts, one per line or back to back (like
 * QEMU's JSON streamer).  The splitter does not parse: it tracks strings and
 * bracket depth to find where each top-level text ends, so a request split
 * across reads, several requests in one read, and requests without newlines
 * all work.  Garbage is delimited so the connection stays usable:
 *   - a top-level token that is not '{', '[' or '"' runs to the end of the
 *     line (or to the next '{') and is handed out as one text, which then
 *     fails to parse or is not an object;
 *   - a raw control character inside a string (never valid JSON; a newline
 *     there means an unterminated string) ends the text as CTL_TOK_BAD and
 *     the rest of that line is discarded.
 * A text longer than max bytes yields CTL_TOK_TOOBIG (the caller is expected
 * to drop the connection: there is no safe place to resynchronise).
 */
enum ctl_tok {
	CTL_TOK_NONE,		/* need more input */
	CTL_TOK_TEXT,		/* a complete text, to be parsed */
	CTL_TOK_BAD,		/* a text known to be malformed; why says how */
	CTL_TOK_TOOBIG,		/* the current text exceeds max */
};

struct ctl_stream {
	char *buf;
	size_t head;		/* start of unconsumed data */
	size_t len;		/* end of data */
	size_t cap;
	size_t max;		/* largest text accepted */
	/* scanner state for the text starting at head */
	size_t pos;		/* next byte to scan */
	size_t skip;		/* bytes to drop at the next call (last token) */
	int mode;		/* scanner mode (protocol.c) */
	long depth;
	bool escape;
	bool too_deep;
};

void ctl_stream_init(struct ctl_stream *st, size_t max);
void ctl_stream_fini(struct ctl_stream *st);
/* Append bytes.  -ENOBUFS if the buffer would exceed max plus a margin
 * (the caller reads only after draining complete texts, so this means a
 * misbehaving caller, not a client). */
int ctl_stream_feed(struct ctl_stream *st, const void *data, size_t n);
/* Next token.  For TEXT and BAD, *text and *len point into the buffer and stay
 * valid until the next call to ctl_stream_feed or ctl_stream_next; for BAD,
 * *why is a static description. */
enum ctl_tok ctl_stream_next(struct ctl_stream *st, const char **text,
			     size_t *len, const char **why);
/* Bytes buffered but not yet handed out (a partial text). */
size_t ctl_stream_pending(const struct ctl_stream *st);

/* ---- requests ---- */

struct ctl_request {
	json_t *root;		/* owned; NULL if the text did not parse */
	const char *execute;	/* borrowed from root */
	json_t *args;		/* borrowed from root, or an owned empty object */
	json_t *id;		/* borrowed from root; NULL if none */
	bool args_owned;
};

/*
 * Parse and validate one request text.  0 on success.  On failure -EINVAL,
 * desc holds a QMP-style message ("JSON parse error, ...", "QMP input member
 * 'arguments' must be an object", ...) and req->id is set if the text was an
 * object carrying an "id" (so the error can echo it).  Call
 * ctl_request_fini() in both cases.
 */
int ctl_request_parse(struct ctl_request *req, const char *text, size_t len,
		      struct kv_err *desc);
void ctl_request_fini(struct ctl_request *req);

/* ---- output formatting: each returns a malloc'd line ending in "\n" ---- */

char *ctl_fmt_greeting(void);
/* ret is borrowed (NULL means {}); id borrowed, may be NULL. */
char *ctl_fmt_return(json_t *ret, json_t *id);
char *ctl_fmt_error(const char *cls, const char *desc, json_t *id);
/* data borrowed, may be NULL; timestamp given so tests can pin it. */
char *ctl_fmt_event(const char *event, json_t *data, long long sec, long usec);

/* A JSON string from untrusted bytes: invalid UTF-8 becomes '?'. */
json_t *ctl_safe_string(const char *s, size_t n);

/* ---- dispatch ---- */

struct ctl_table {
	const struct ctl_cmd *cmds;
	size_t ncmds;
	void *opaque;
};

/*
 * Handle one request text for a session (negotiated is the session's state,
 * updated by qmp_capabilities).  Returns the reply line (malloc'd, ends in
 * "\n"), or NULL only if out of memory.
 */
char *ctl_dispatch(const struct ctl_table *t, bool *negotiated,
		   const char *text, size_t len);

/* The reply for a malformed token (CTL_TOK_BAD) or an oversized request. */
char *ctl_reply_bad(const char *why);
char *ctl_reply_toobig(void);

#endif
