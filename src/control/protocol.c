/*
 * protocol.c - the control protocol without sockets: stream splitting,
 * request validation, dispatch and output formatting (see protocol.h).
 *
 * Every byte given here is untrusted.  The splitter only counts brackets
 * and tracks strings, so its cost is linear and its memory is bounded by
 * the stream's max; jansson does the real parsing of each complete text.
 */
#include "common/version.h"
#include "control/protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* Extra room beyond max for the bytes of one read after a partial text. */
#define STREAM_MARGIN (64 * 1024)

enum {
	M_IDLE,		/* between texts: skipping whitespace */
	M_VALUE,	/* inside an object/array, outside strings */
	M_STRING,	/* inside a string (depth 0: a top-level string) */
	M_BARE,		/* a top-level token that is not a container/string */
	M_SKIPLINE,	/* discarding the rest of a malformed line */
};

void ctl_stream_init(struct ctl_stream *st, size_t max)
{
	memset(st, 0, sizeof(*st));
	st->max = max;
	st->mode = M_IDLE;
}

void ctl_stream_fini(struct ctl_stream *st)
{
	free(st->buf);
	memset(st, 0, sizeof(*st));
}

size_t ctl_stream_pending(const struct ctl_stream *st)
{
	return st->len - st->head - st->skip;
}

int ctl_stream_feed(struct ctl_stream *st, const void *data, size_t n)
{
	size_t keep;

	if (n == 0)
		return 0;
	st->head += st->skip;
	st->skip = 0;
	keep = st->len - st->head;
	if (keep + n > st->max + STREAM_MARGIN)
		return -ENOBUFS;
	/* Compact: the consumed prefix is never needed again. */
	if (st->head) {
		memmove(st->buf, st->buf + st->head, keep);
		st->pos -= st->head;
		st->len = keep;
		st->head = 0;
	}
	if (st->len + n > st->cap) {
		size_t cap = st->cap ? st->cap : 4096;
		char *nb;

		while (cap < st->len + n)
			cap *= 2;
		nb = realloc(st->buf, cap);
		if (!nb)
			return -ENOMEM;
		st->buf = nb;
		st->cap = cap;
	}
	memcpy(st->buf + st->len, data, n);
	st->len += n;
	return 0;
}

static enum ctl_tok take(struct ctl_stream *st, const char **text, size_t *len)
{
	if (st->pos - st->head > st->max)
		return CTL_TOK_TOOBIG;
	*text = st->buf + st->head;
	*len = st->pos - st->head;
	st->skip = *len;
	st->mode = M_IDLE;
	return CTL_TOK_TEXT;
}

enum ctl_tok ctl_stream_next(struct ctl_stream *st, const char **text,
			     size_t *len, const char **why)
{
	*text = NULL;
	*len = 0;
	*why = NULL;
	st->head += st->skip;
	st->skip = 0;
	if (st->pos < st->head)
		st->pos = st->head;

	while (st->pos < st->len) {
		unsigned char c = (unsigned char)st->buf[st->pos];

		switch (st->mode) {
		case M_IDLE:
			if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				st->head = ++st->pos;
				continue;
			}
			st->depth = 0;
			st->escape = false;
			st->too_deep = false;
			if (c == '{' || c == '[') {
				st->mode = M_VALUE;
				st->depth = 1;
				st->pos++;
			} else if (c == '"') {
				st->mode = M_STRING;
				st->pos++;
			} else {
				st->mode = M_BARE;	/* c is scanned below */
			}
			break;
		case M_STRING:
			st->pos++;
			if (c < 0x20) {
				/* Raw control characters are never valid in a
				 * string; a newline means it was unterminated.
				 * Drop the rest of the line and resynchronise. */
				*text = st->buf + st->head;
				*len = st->pos - st->head;
				st->skip = *len;
				st->mode = c == '\n' ? M_IDLE : M_SKIPLINE;
				*why = "control character in string (unterminated string?)";
				return CTL_TOK_BAD;
			}
			if (st->escape)
				st->escape = false;
			else if (c == '\\')
				st->escape = true;
			else if (c == '"') {
				if (st->depth == 0)
					return take(st, text, len);
				st->mode = M_VALUE;
			}
			break;
		case M_VALUE:
			st->pos++;
			if (c == '"') {
				st->mode = M_STRING;
			} else if (c == '{' || c == '[') {
				if (++st->depth > CTL_MAX_DEPTH)
					st->too_deep = true;
			} else if (c == '}' || c == ']') {
				if (--st->depth == 0) {
					if (st->too_deep) {
						if (take(st, text, len) != CTL_TOK_TEXT)
							return CTL_TOK_TOOBIG;
						*why = "nesting too deep";
						return CTL_TOK_BAD;
					}
					return take(st, text, len);
				}
			}
			break;
		case M_BARE:
			if (c == '\n' || c == '{')
				return take(st, text, len);
			st->pos++;
			break;
		case M_SKIPLINE:
			st->pos++;
			st->head = st->pos;
			if (c == '\n')
				st->mode = M_IDLE;
			continue;
		}
		if (st->pos - st->head > st->max)
			return CTL_TOK_TOOBIG;
	}
	return CTL_TOK_NONE;
}

/* ---- requests ---- */

void ctl_request_fini(struct ctl_request *req)
{
	if (req->args_owned)
		json_decref(req->args);
	json_decref(req->root);
	memset(req, 0, sizeof(*req));
}

int ctl_request_parse(struct ctl_request *req, const char *text, size_t len,
		      struct kv_err *desc)
{
	json_error_t je;
	const char *key;
	json_t *val, *exec;

	memset(req, 0, sizeof(*req));
	req->root = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
			       &je);
	if (!req->root)
		return kv_errf(desc, EINVAL, "JSON parse error, %s", je.text);
	if (!json_is_object(req->root))
		return kv_errf(desc, EINVAL, "QMP input must be a JSON object");
	req->id = json_object_get(req->root, "id");

	json_object_foreach(req->root, key, val) {
		if (strcmp(key, "execute") && strcmp(key, "arguments") &&
		    strcmp(key, "id"))
			return kv_errf(desc, EINVAL,
				       "QMP input member '%.64s' is unexpected", key);
	}
	exec = json_object_get(req->root, "execute");
	if (!exec)
		return kv_errf(desc, EINVAL, "QMP input lacks member 'execute'");
	if (!json_is_string(exec))
		return kv_errf(desc, EINVAL,
			       "QMP input member 'execute' must be a string");
	req->execute = json_string_value(exec);
	req->args = json_object_get(req->root, "arguments");
	if (req->args && !json_is_object(req->args)) {
		req->args = NULL;
		return kv_errf(desc, EINVAL,
			       "QMP input member 'arguments' must be an object");
	}
	if (!req->args) {
		req->args = json_object();
		if (!req->args)
			return kv_errf(desc, ENOMEM, "out of memory");
		req->args_owned = true;
	}
	return 0;
}

/* ---- formatting ---- */

json_t *ctl_safe_string(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	char *copy;

	if (j)
		return j;
	/* Invalid UTF-8 (e.g. jansson quoting the bytes it choked on). */
	copy = malloc(n ? n : 1);
	if (!copy)
		return NULL;
	for (size_t i = 0; i < n; i++)
		copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	j = json_stringn(copy, n);
	free(copy);
	return j;
}

/* Dump obj (stolen) as one line: QMP's ", " / ": " separators, then "\n". */
static char *line(json_t *obj)
{
	char *s, *out;
	size_t n;

	if (!obj)
		return NULL;
	s = json_dumps(obj, 0);
	json_decref(obj);
	if (!s)
		return NULL;
	n = strlen(s);
	out = realloc(s, n + 2);
	if (!out) {
		free(s);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	return out;
}

char *ctl_fmt_greeting(void)
{
	/* kvmove's own version in QMP's shape (query-version says the same) */
	return line(json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[]}}", "QMP",
			      "version", "qemu", "micro", KVMOVE_VERSION_MICRO, "minor",
			      KVMOVE_VERSION_MINOR, "major", KVMOVE_VERSION_MAJOR,
			      "package", "kvmove " KVMOVE_VERSION, "capabilities"));
}

static int set_id(json_t *obj, json_t *id)
{
	return id ? json_object_set(obj, "id", id) : 0;
}

char *ctl_fmt_return(json_t *ret, json_t *id)
{
	json_t *obj = json_object();

	if (!obj)
		return NULL;
	if (json_object_set_new(obj, "return", ret ? json_incref(ret) : json_object()) ||
	    set_id(obj, id)) {
		json_decref(obj);
		return NULL;
	}
	return line(obj);
}

char *ctl_fmt_error(const char *cls, const char *desc, json_t *id)
{
	json_t *obj = json_object(), *e = json_object();

	if (!obj || !e ||
	    json_object_set_new(e, "class", json_string(cls)) ||
	    json_object_set_new(e, "desc", ctl_safe_string(desc, strlen(desc))) ||
	    json_object_set(obj, "error", e) || set_id(obj, id)) {
		json_decref(e);
		json_decref(obj);
		return NULL;
	}
	json_decref(e);
	return line(obj);
}

char *ctl_fmt_event(const char *event, json_t *data, long long sec, long usec)
{
	json_t *obj = json_object();

	if (!obj)
		return NULL;
	if (json_object_set_new(obj, "event", ctl_safe_string(event, strlen(event))) ||
	    (data && json_object_set(obj, "data", data)) ||
	    json_object_set_new(obj, "timestamp",
				json_pack("{s:I,s:I}", "seconds", (json_int_t)sec,
					  "microseconds", (json_int_t)usec))) {
		json_decref(obj);
		return NULL;
	}
	return line(obj);
}

char *ctl_reply_bad(const char *why)
{
	char desc[256];

	snprintf(desc, sizeof(desc), "JSON parse error, %s", why);
	return ctl_fmt_error("GenericError", desc, NULL);
}

char *ctl_reply_toobig(void)
{
	char desc[128];

	snprintf(desc, sizeof(desc),
		 "request too large (more than %d bytes), closing the connection",
		 CTL_MAX_REQUEST);
	return ctl_fmt_error("GenericError", desc, NULL);
}

/* ---- dispatch ---- */

static const struct ctl_cmd builtins[] = {
	{ "qmp_capabilities", NULL, "negotiate capabilities (none are offered)", NULL },
	{ "query-commands", NULL, "list the commands this VMM accepts", NULL },
};

static char *query_commands(const struct ctl_table *t, json_t *id)
{
	json_t *list = json_array();
	char *out;

	if (!list)
		return NULL;
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		json_array_append_new(list, json_pack("{s:s}", "name", builtins[i].name));
	for (size_t i = 0; i < t->ncmds; i++)
		json_array_append_new(list, json_pack("{s:s}", "name", t->cmds[i].name));
	out = ctl_fmt_return(list, id);
	json_decref(list);
	return out;
}

static char *capabilities(json_t *args, bool *negotiated, json_t *id)
{
	const char *key;
	json_t *val, *enable;
	char desc[160];

	json_object_foreach(args, key, val) {
		if (strcmp(key, "enable")) {
			snprintf(desc, sizeof(desc), "Parameter '%.64s' is unexpected", key);
			return ctl_fmt_error("GenericError", desc, id);
		}
	}
	enable = json_object_get(args, "enable");
	if (enable && !json_is_array(enable))
		return ctl_fmt_error("GenericError",
				     "Parameter 'enable' must be an array", id);
	if (enable && json_array_size(enable) > 0) {
		json_t *cap = json_array_get(enable, 0);

		snprintf(desc, sizeof(desc), "Capability '%.64s' not available",
			 json_is_string(cap) ? json_string_value(cap) : "?");
		return ctl_fmt_error("GenericError", desc, id);
	}
	*negotiated = true;
	return ctl_fmt_return(NULL, id);
}

static char *run_handler(const struct ctl_table *t, const struct ctl_cmd *cmd,
			 struct ctl_request *req)
{
	struct kv_err err;
	json_t *ret = NULL;
	char *out;
	int rc;

	kv_err_clear(&err);
	rc = cmd->fn(t->opaque, req->args, &ret, &err);
	if (rc < 0) {
		json_decref(ret);
		if (!err.msg[0])
			snprintf(err.msg, sizeof(err.msg), "%s: %s", cmd->name,
				 strerror(-rc));
		return ctl_fmt_error("GenericError", err.msg, req->id);
	}
	out = ctl_fmt_return(ret, req->id);
	json_decref(ret);
	return out;
}

char *ctl_dispatch(const struct ctl_table *t, bool *negotiated,
		   const char *text, size_t len)
{
	struct ctl_request req;
	struct kv_err desc;
	char *out = NULL;
	const char *name;

	if (ctl_request_parse(&req, text, len, &desc) < 0) {
		out = ctl_fmt_error("GenericError", desc.msg, req.id);
		goto done;
	}
	name = req.execute;
	if (!strcmp(name, "qmp_capabilities")) {
		if (*negotiated)
			out = ctl_fmt_error("CommandNotFound",
					    "Capabilities negotiation is already complete, command ignored",
					    req.id);
		else
			out = capabilities(req.args, negotiated, req.id);
		goto done;
	}
	if (!*negotiated) {
		out = ctl_fmt_error("CommandNotFound",
				    "Expecting capabilities negotiation with 'qmp_capabilities'",
				    req.id);
		goto done;
	}
	if (!strcmp(name, "query-commands")) {
		out = query_commands(t, req.id);
		goto done;
	}
	for (size_t i = 0; i < t->ncmds; i++) {
		if (!strcmp(name, t->cmds[i].name)) {
			out = run_handler(t, &t->cmds[i], &req);
			goto done;
		}
	}
	snprintf(desc.msg, sizeof(desc.msg), "The command %.128s has not been found",
		 name);
	out = ctl_fmt_error("CommandNotFound", desc.msg, req.id);
done:
	ctl_request_fini(&req);
	return out;
}
