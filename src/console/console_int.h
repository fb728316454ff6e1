/*
 * console_int.h - what the console's files share: the server state, one
 * request's answer, the API and metrics entry points.
 */
#ifndef KVMOVE_CONSOLE_CONSOLE_INT_H
#define KVMOVE_CONSOLE_CONSOLE_INT_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/store.h"
#include "console/console.h"
#include "console/tokens.h"

#define CONSOLE_MAX_BODY (64u << 10)

struct console {
	struct console_options o;
	char self[PATH_MAX];
	struct kv_store *st;
	pthread_mutex_t lock;		/* tokens */
	struct console_tokens *tokens;
	/* changes under /kvmove/, for the event streams */
	pthread_mutex_t ev_lock;
	pthread_cond_t ev_cond;
	int64_t rev;
	bool stopping;
	pthread_t watcher;
	bool watcher_started;
};

struct console_answer {
	int status;
	char *body;		/* malloc'ed */
	const char *type;	/* Content-Type */
};

/* Fill an answer: JSON (stolen reference) or {"error": msg}. */
void answer_json(struct console_answer *a, int status, json_t *j);
void answer_error(struct console_answer *a, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The API below /api/ (but login/logout); path without "/api/". */
void console_api(struct console *c, const char *method, const char *path, bool all,
		 const struct console_user *u, const char *body, size_t n,
		 struct console_answer *a);
/* GET /metrics */
void console_metrics(struct console *c, struct console_answer *a);
/* Run a CLI verb with --json and --etcd: its parsed stdout, or NULL with
 * an error answer filled. */
json_t *console_cli_json(struct console *c, const char *const *args, struct console_answer *a);

/* /kvmove/drains/NODE -> {"NODE": drain record} (empty on an error). */
json_t *console_drains(struct console *c);

/* ---- shared by the API's files ---- */

#define CONSOLE_MAX_ARGS 48	/* a CLI verb's arguments at most */

/* Run a state-changing verb; ok_status (200, 202) with {"result": its last
 * line} or its error mapped to HTTP. */
void console_write_verb(struct console *c, const char *const *args, int ok_status,
			struct console_answer *a);
/* The body as an object with only these keys ({} when empty), or NULL with
 * a 400 answer. */
json_t *console_body_object(const char *body, size_t n, const char *const *keys,
			    struct console_answer *a);
/* Does /kvmove/KIND/NAME[SUFFIX] exist?  404 or 503 answered if not. */
bool console_exists(struct console *c, const char *kind, const char *name, const char *suffix,
		    struct console_answer *a, const char *what);
/* Record a state-changing call in the audit log (args may be NULL). */
void console_audit(struct console *c, const struct console_user *u, const char *action,
		   const char *target, json_t *args, const struct console_answer *a);
/* api_define.c: POST /api/vms (create), DELETE /api/vms/VM, POST
 * /api/vms/VM/set, POST /api/nodes/NODE/set, POST /api/balancer. */
void console_define(struct console *c, const char *method, char parts[3][128], size_t np,
		    const struct console_user *u, const char *body, size_t n,
		    struct console_answer *a);

/* The built-in page (console_assets.c, generated from share/console/). */
struct console_asset {
	const char *path;		/* "/", "/console.js", ... */
	const char *type;
	const unsigned char *data;
	size_t len;
};
extern const struct console_asset console_assets[];
extern const size_t console_nassets;

#endif
