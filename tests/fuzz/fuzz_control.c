/*
 * fuzz_control - the control socket's server side without the socket
 * (src/control/protocol.c): what a client sends is split into texts,
 * each text parsed, validated and dispatched to a command table, each
 * malformed piece answered, the way server.c drives it.
 *
 * Input: one options byte, then the client's bytes.
 *   bits 0-5  the size of the reads the bytes arrive in (1..64; 0: one)
 *   bit 6     a 256-byte request limit instead of CTL_MAX_REQUEST
 * Commands: echo (returns its arguments), fail (an error with a message),
 * fail-silent (an error without one), nothing (returns {}).
 * Checks: the texts do not depend on how the bytes were cut into reads
 * (the same tokens as one read of everything); every reply is one line of
 * one JSON object holding "return" or "error" ({class, desc}), and the
 * request's "id" when it had one; a too-large request ends the session.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"
#include "control/protocol.h"
#include "fuzz.h"

#define OPT_READ_SIZE 0x3f
#define OPT_SMALL_MAX 0x40
#define SMALL_MAX 256
#define MAX_TOKENS 512

static int h_echo(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	*ret = json_deep_copy(args);
	return 0;
}

static int h_fail(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	return kv_errf(err, EBUSY, "the VM is busy");
}

static int h_fail_silent(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	return -EBUSY;
}

static int h_nothing(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	return 0;
}

static const struct ctl_cmd cmds[] = {
	{ .name = "echo", .fn = h_echo, .help = "return the arguments" },
	{ .name = "fail", .fn = h_fail, .help = "fail" },
	{ .name = "fail-silent", .fn = h_fail_silent, .help = "fail without a message" },
	{ .name = "nothing", .fn = h_nothing, .help = "return {}" },
};

struct tok {
	enum ctl_tok kind;
	size_t len;
	char *text;
};

struct session {
	struct ctl_stream st;
	struct tok toks[MAX_TOKENS];
	unsigned n;
	bool over;		/* TOOBIG seen or too many tokens: stop */
};

/* One reply line: exactly one object, "return" or "error", the id echoed. */
static void check_reply(char *out, const char *req, size_t req_len)
{
	json_t *r, *id = NULL, *req_j, *e;
	json_error_t je;
	size_t n;

	FUZZ_CHECK(out, "no reply");
	n = strlen(out);
	FUZZ_CHECK(n >= 2 && out[n - 1] == '\n' && !memchr(out, '\n', n - 1),
		   "reply is not one line: %s", out);
	r = json_loads(out, JSON_ALLOW_NUL, &je);
	FUZZ_CHECK(json_is_object(r), "reply is not a JSON object (%s): %s", je.text, out);
	FUZZ_CHECK(!!json_object_get(r, "return") != !!(e = json_object_get(r, "error")),
		   "reply has neither or both of return and error: %s", out);
	if (e)
		FUZZ_CHECK(json_is_string(json_object_get(e, "class")) &&
			   json_is_string(json_object_get(e, "desc")), "error without class/desc: %s",
			   out);
	FUZZ_CHECK(json_object_size(r) <= 2, "reply has extra members: %s", out);
	if (req) {
		req_j = json_loadb(req, req_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
		if (json_is_object(req_j))
			id = json_object_get(req_j, "id");
		FUZZ_CHECK(!id || json_equal(id, json_object_get(r, "id")),
			   "the reply does not echo the request's id: %s", out);
		FUZZ_CHECK(id || !json_object_get(r, "id"), "the reply invents an id: %s", out);
		json_decref(req_j);
	}
	json_decref(r);
	free(out);
}

static void drain(struct session *s, bool dispatch, bool *negotiated,
		  const struct ctl_table *t)
{
	const char *text, *why;
	size_t len;
	enum ctl_tok k;

	while (!s->over && (k = ctl_stream_next(&s->st, &text, &len, &why)) != CTL_TOK_NONE) {
		struct tok *tk = &s->toks[s->n++];

		tk->kind = k;
		tk->len = len;
		tk->text = NULL;
		if (k != CTL_TOK_TOOBIG) {
			tk->text = malloc(len ? len : 1);
			if (!tk->text)
				fuzz_fail("out of memory");
			memcpy(tk->text, text, len);
		}
		if (k == CTL_TOK_TOOBIG || s->n == MAX_TOKENS)
			s->over = true;
		if (!dispatch)
			continue;
		switch (k) {
		case CTL_TOK_TEXT:
			check_reply(ctl_dispatch(t, negotiated, text, len), text, len);
			break;
		case CTL_TOK_BAD:
			FUZZ_CHECK(why && why[0], "a bad token without a reason");
			check_reply(ctl_reply_bad(why), NULL, 0);
			break;
		case CTL_TOK_TOOBIG:
			check_reply(ctl_reply_toobig(), NULL, 0);
			break;
		default:
			break;
		}
	}
}

static void feed(struct session *s, const uint8_t *p, size_t n)
{
	int r = ctl_stream_feed(&s->st, p, n);

	/* a reader drains complete texts before reading more, so the buffer
	 * holds at most one partial text plus one read */
	FUZZ_CHECK(r == 0, "ctl_stream_feed: %d with %zu bytes pending", r,
		   ctl_stream_pending(&s->st));
}

static void end(struct session *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->toks[i].text);
	ctl_stream_fini(&s->st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ctl_table t = { cmds, sizeof(cmds) / sizeof(cmds[0]), NULL };
	struct session *whole, *cut;
	bool negotiated = false;
	size_t chunk, max;

	if (size < 1 || size > 65536)
		return 0;
	chunk = data[0] & OPT_READ_SIZE;
	max = data[0] & OPT_SMALL_MAX ? SMALL_MAX : CTL_MAX_REQUEST;
	data++;
	size--;
	whole = calloc(1, sizeof(*whole));
	cut = calloc(1, sizeof(*cut));
	if (!whole || !cut)
		fuzz_fail("out of memory");

	ctl_stream_init(&whole->st, max);
	if (size)
		feed(whole, data, size);
	drain(whole, false, NULL, NULL);

	ctl_stream_init(&cut->st, max);
	for (size_t pos = 0; pos < size && !cut->over;) {
		size_t n = chunk && chunk < size - pos ? chunk : size - pos;

		feed(cut, data + pos, n);
		pos += n;
		drain(cut, true, &negotiated, &t);
	}

	FUZZ_CHECK(whole->n == cut->n, "%u tokens from one read, %u from reads of %zu", whole->n,
		   cut->n, chunk);
	for (unsigned i = 0; i < whole->n; i++) {
		const struct tok *a = &whole->toks[i], *b = &cut->toks[i];

		FUZZ_CHECK(a->kind == b->kind && a->len == b->len &&
			   (!a->text || !memcmp(a->text, b->text, a->len)),
			   "token %u differs between one read and reads of %zu", i, chunk);
	}
	end(whole);
	end(cut);
	free(whole);
	free(cut);
	return 0;
}
