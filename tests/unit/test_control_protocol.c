/*
 * test_control_protocol.c - the control protocol without sockets: stream
 * splitting, request validation, dispatch, output formatting.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "control/control.h"
#include "control/protocol.h"

/* ------------------------------------------------------------------ */
/* stream splitting                                                    */
/* ------------------------------------------------------------------ */

/* Feed s, then collect every token as "T:<text>", "B", "BIG" joined by '|'. */
static void split(struct ctl_stream *st, const char *s, size_t n, char *out,
		  size_t cap)
{
	const char *text, *why;
	size_t len;
	enum ctl_tok t;

	assert_int_equal(ctl_stream_feed(st, s, n), 0);
	while ((t = ctl_stream_next(st, &text, &len, &why)) != CTL_TOK_NONE) {
		size_t o = strlen(out);

		if (t == CTL_TOK_TEXT)
			snprintf(out + o, cap - o, "T:%.*s|", (int)len, text);
		else if (t == CTL_TOK_BAD)
			snprintf(out + o, cap - o, "B|");
		else {
			snprintf(out + o, cap - o, "BIG|");
			break;
		}
	}
}

static void check_split(const char *in, const char *expect)
{
	struct ctl_stream st;
	char out[4096] = "";

	ctl_stream_init(&st, CTL_MAX_REQUEST);
	split(&st, in, strlen(in), out, sizeof(out));
	assert_string_equal(out, expect);
	ctl_stream_fini(&st);

	/* The same input one byte at a time gives the same tokens. */
	ctl_stream_init(&st, CTL_MAX_REQUEST);
	out[0] = '\0';
	for (size_t i = 0; in[i]; i++)
		split(&st, in + i, 1, out, sizeof(out));
	assert_string_equal(out, expect);
	ctl_stream_fini(&st);
}

static void test_stream_lines(void **state)
{
	check_split("{\"execute\": \"a\"}\n", "T:{\"execute\": \"a\"}|");
	check_split("{\"a\":1}\n{\"b\":2}\r\n  {\"c\":3}\n",
		    "T:{\"a\":1}|T:{\"b\":2}|T:{\"c\":3}|");
	/* back to back, no newline */
	check_split("{\"a\":1}{\"b\":[2,{}]}[3]", "T:{\"a\":1}|T:{\"b\":[2,{}]}|T:[3]|");
	/* brackets and quotes inside strings do not count */
	check_split("{\"a\":\"}{\\\"]\"}\n", "T:{\"a\":\"}{\\\"]\"}|");
	check_split("{\"a\":\"\\\\\"}x\n", "T:{\"a\":\"\\\\\"}|T:x|");
	/* pretty-printed over several lines */
	check_split("{\n  \"execute\":\n  \"a\"\n}\n", "T:{\n  \"execute\":\n  \"a\"\n}|");
	/* incomplete: nothing yet */
	check_split("{\"execute\": \"a\"", "");
	check_split("   \n\n", "");
}

static void test_stream_garbage(void **state)
{
	/* a bare token runs to the end of the line or the next '{' */
	check_split("hello world\n{\"a\":1}\n", "T:hello world|T:{\"a\":1}|");
	check_split("42 junk{\"a\":1}", "T:42 junk|T:{\"a\":1}|");
	check_split("\"str\"\n", "T:\"str\"|");
	check_split("}\n", "T:}|");
	/* raw control characters in a string: bad, rest of line dropped */
	check_split("{\"a\":\"x\ny\"}\n{\"b\":1}\n", "B|T:y\"}|T:{\"b\":1}|");
	check_split("{\"a\":\"x\001\"}, more\n{\"b\":1}\n", "B|T:{\"b\":1}|");
	/* a NUL byte */
	{
		struct ctl_stream st;
		char out[256] = "";
		static const char in[] = "{\"a\":\"\0\"}\n{\"b\":1}\n";

		ctl_stream_init(&st, CTL_MAX_REQUEST);
		split(&st, in, sizeof(in) - 1, out, sizeof(out));
		assert_string_equal(out, "B|T:{\"b\":1}|");
		ctl_stream_fini(&st);
	}
}

static void test_stream_deep(void **state)
{
	size_t n = CTL_MAX_DEPTH + 10;
	char *s = malloc(2 * n + 2);
	struct ctl_stream st;
	char out[256] = "";

	memset(s, '[', n);
	memset(s + n, ']', n);
	s[2 * n] = '\n';
	s[2 * n + 1] = '\0';
	ctl_stream_init(&st, CTL_MAX_REQUEST);
	split(&st, s, strlen(s), out, sizeof(out));
	assert_string_equal(out, "B|");
	ctl_stream_fini(&st);
	free(s);
}

static void test_stream_toobig(void **state)
{
	struct ctl_stream st;
	char out[64] = "";
	size_t n = CTL_MAX_REQUEST + 100;
	char *s = malloc(n);

	/* one huge string inside an object */
	memset(s, 'a', n);
	memcpy(s, "{\"a\":\"", 6);
	ctl_stream_init(&st, CTL_MAX_REQUEST);
	split(&st, s, n, out, sizeof(out));
	assert_string_equal(out, "BIG|");
	ctl_stream_fini(&st);

	/* exactly at the limit is fine */
	ctl_stream_init(&st, 16);
	out[0] = '\0';
	split(&st, "{\"a\":\"01234567\"}", 16, out, sizeof(out));
	assert_string_equal(out, "T:{\"a\":\"01234567\"}|");
	out[0] = '\0';
	split(&st, "{\"a\":\"012345678\"}", 17, out, sizeof(out));
	assert_string_equal(out, "BIG|");
	ctl_stream_fini(&st);

	/* garbage lines without a newline are discarded as they come, so an
	 * unterminated bad line does not grow the buffer */
	ctl_stream_init(&st, 64);
	out[0] = '\0';
	split(&st, "{\"a\":\"\001", 7, out, sizeof(out));
	for (int i = 0; i < 1000; i++)
		split(&st, s, 100, out, sizeof(out));
	assert_string_equal(out, "B|");
	assert_true(ctl_stream_pending(&st) == 0);
	ctl_stream_fini(&st);
	free(s);
}

/* ------------------------------------------------------------------ */
/* requests and dispatch                                               */
/* ------------------------------------------------------------------ */

static int h_echo(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	int *calls = opaque;

	(*calls)++;
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

static int h_bad_utf8(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	return kv_errf(err, EIO, "bad \xff\xfe bytes");
}

static int h_nothing(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	return 0;
}

static const struct ctl_cmd fake_cmds[] = {
	{ "echo", h_echo, "return the arguments", NULL },
	{ "fail", h_fail, "fail", NULL },
	{ "fail-silent", h_fail_silent, "fail without a message", NULL },
	{ "bad-utf8", h_bad_utf8, "fail with invalid UTF-8", NULL },
	{ "nothing", h_nothing, "return {}", NULL },
};

/* Dispatch text and return the parsed reply (asserts it is one line). */
static json_t *disp(const struct ctl_table *t, bool *neg, const char *text, size_t n)
{
	char *out = ctl_dispatch(t, neg, text, n);
	json_error_t je;
	json_t *v;

	assert_non_null(out);
	/* exactly one line */
	assert_true(strchr(out, '\n') == out + strlen(out) - 1);
	v = json_loads(out, 0, &je);
	assert_non_null(v);
	free(out);
	return v;
}

static void expect_error(json_t *v, const char *cls, const char *desc_prefix)
{
	json_t *e = json_object_get(v, "error");
	const char *c = json_string_value(json_object_get(e, "class"));
	const char *d = json_string_value(json_object_get(e, "desc"));

	if (!c || strcmp(c, cls) || !d || strncmp(d, desc_prefix, strlen(desc_prefix))) {
		char *s = json_dumps(v, 0);
		print_error("expected %s \"%s...\", got %s\n", cls, desc_prefix, s);
		free(s);
		fail();
	}
}

#define D(str) disp(&t, &neg, str, strlen(str))

static void test_dispatch_negotiation(void **state)
{
	int calls = 0;
	struct ctl_table t = { fake_cmds, 5, &calls };
	bool neg = false;
	json_t *v;

	v = D("{\"execute\": \"echo\"}");
	expect_error(v, "CommandNotFound",
		     "Expecting capabilities negotiation with 'qmp_capabilities'");
	json_decref(v);
	v = D("{\"execute\": \"query-commands\", \"id\": 1}");
	expect_error(v, "CommandNotFound", "Expecting capabilities");
	assert_int_equal(json_integer_value(json_object_get(v, "id")), 1);
	json_decref(v);
	assert_false(neg);
	assert_int_equal(calls, 0);

	/* unknown capability refused, negotiation not done */
	v = D("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}");
	expect_error(v, "GenericError", "Capability 'oob' not available");
	json_decref(v);
	assert_false(neg);

	v = D("{\"execute\": \"qmp_capabilities\", \"id\": \"x\"}");
	assert_true(json_is_object(json_object_get(v, "return")));
	assert_int_equal(json_object_size(json_object_get(v, "return")), 0);
	assert_string_equal(json_string_value(json_object_get(v, "id")), "x");
	json_decref(v);
	assert_true(neg);

	v = D("{\"execute\": \"qmp_capabilities\"}");
	expect_error(v, "CommandNotFound", "Capabilities negotiation is already complete");
	json_decref(v);
}

static void test_dispatch_commands(void **state)
{
	int calls = 0;
	struct ctl_table t = { fake_cmds, 5, &calls };
	bool neg = true;
	json_t *v, *r;

	v = D("{\"execute\": \"echo\", \"arguments\": {\"gpa\": 4096}, \"id\": {\"k\": [1]}}");
	r = json_object_get(v, "return");
	assert_int_equal(json_integer_value(json_object_get(r, "gpa")), 4096);
	assert_int_equal(json_integer_value(json_array_get(
		json_object_get(json_object_get(v, "id"), "k"), 0)), 1);
	json_decref(v);
	assert_int_equal(calls, 1);

	/* no arguments: handler gets an empty object */
	v = D("{\"execute\": \"echo\"}");
	r = json_object_get(v, "return");
	assert_true(json_is_object(r) && json_object_size(r) == 0);
	assert_null(json_object_get(v, "id"));
	json_decref(v);

	v = D("{\"execute\": \"nothing\", \"id\": null}");
	assert_true(json_is_object(json_object_get(v, "return")));
	assert_true(json_is_null(json_object_get(v, "id")));
	json_decref(v);

	v = D("{\"execute\": \"fail\", \"id\": 7}");
	expect_error(v, "GenericError", "the VM is busy");
	assert_int_equal(json_integer_value(json_object_get(v, "id")), 7);
	json_decref(v);
	v = D("{\"execute\": \"fail-silent\"}");
	expect_error(v, "GenericError", "fail-silent: Device or resource busy");
	json_decref(v);
	v = D("{\"execute\": \"bad-utf8\"}");
	expect_error(v, "GenericError", "bad ?? bytes");
	json_decref(v);

	v = D("{\"execute\": \"no-such-thing\", \"id\": 3}");
	expect_error(v, "CommandNotFound", "The command no-such-thing has not been found");
	assert_int_equal(json_integer_value(json_object_get(v, "id")), 3);
	json_decref(v);

	v = D("{\"execute\": \"query-commands\"}");
	r = json_object_get(v, "return");
	assert_int_equal(json_array_size(r), 7);
	assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "name")),
			    "qmp_capabilities");
	assert_string_equal(json_string_value(json_object_get(json_array_get(r, 1), "name")),
			    "query-commands");
	assert_string_equal(json_string_value(json_object_get(json_array_get(r, 2), "name")),
			    "echo");
	json_decref(v);
	assert_int_equal(calls, 2);
}

static void test_dispatch_malformed(void **state)
{
	int calls = 0;
	struct ctl_table t = { fake_cmds, 5, &calls };
	bool neg = true;
	json_t *v;
	static const struct {
		const char *in;
		const char *desc;
	} cases[] = {
		{ "{\"execute\": ", "JSON parse error, " },
		{ "hello", "JSON parse error, " },
		{ "}", "JSON parse error, " },
		{ "{\"execute\": \"echo\"]", "JSON parse error, " },
		{ "{'execute': 'echo'}", "JSON parse error, " },
		{ "42", "QMP input must be a JSON object" },
		{ "[{\"execute\": \"echo\"}]", "QMP input must be a JSON object" },
		{ "\"echo\"", "QMP input must be a JSON object" },
		{ "null", "QMP input must be a JSON object" },
		{ "{}", "QMP input lacks member 'execute'" },
		{ "{\"id\": 1}", "QMP input lacks member 'execute'" },
		{ "{\"execute\": 1}", "QMP input member 'execute' must be a string" },
		{ "{\"execute\": null}", "QMP input member 'execute' must be a string" },
		{ "{\"execute\": \"echo\", \"arguments\": []}",
		  "QMP input member 'arguments' must be an object" },
		{ "{\"execute\": \"echo\", \"arguments\": \"x\"}",
		  "QMP input member 'arguments' must be an object" },
		{ "{\"execute\": \"echo\", \"extra\": 1}",
		  "QMP input member 'extra' is unexpected" },
		{ "{\"execute\": \"echo\", \"execute\": \"echo\"}", "JSON parse error, " },
		{ "{\"execute\": \"echo\", \"arguments\": {\"n\": 123456789012345678901234567890}}",
		  "JSON parse error, " },
		{ "{\"execute\": \"echo\", \"arguments\": {\"n\": 1e99999}}", "JSON parse error, " },
		{ "{\"execute\": \"ec\\u0000ho\"}", "JSON parse error, " },
		{ "{\"execute\": \"\xff\xfe\"}", "JSON parse error, " },
		{ "{\"execute\": \"\xc3\"}", "JSON parse error, " },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		v = D(cases[i].in);
		expect_error(v, "GenericError", cases[i].desc);
		json_decref(v);
	}
	/* the id of a well-formed but invalid request is echoed */
	v = D("{\"execute\": 5, \"id\": \"abc\"}");
	expect_error(v, "GenericError", "QMP input member 'execute'");
	assert_string_equal(json_string_value(json_object_get(v, "id")), "abc");
	json_decref(v);
	/* embedded NUL in the raw text */
	v = disp(&t, &neg, "{\"execute\": \"echo\0\"}", 20);
	expect_error(v, "GenericError", "JSON parse error, ");
	json_decref(v);
	assert_int_equal(calls, 0);

	/* a valid request with huge but legal numbers still works */
	v = D("{\"execute\": \"echo\", \"arguments\": {\"n\": 9223372036854775807, \"d\": 1e300}}");
	assert_non_null(json_object_get(v, "return"));
	json_decref(v);
	assert_int_equal(calls, 1);
}

/* Random bytes and mangled requests through the splitter and dispatcher:
 * nothing crashes (run under ASan), every reply is one JSON line. */
static void test_random_input(void **state)
{
	static const char *const frags[] = {
		"{\"execute\": \"echo\", \"arguments\": {\"a\": [1, 2.5, \"x\"]}, \"id\": 1}\n",
		"{\"execute\":\"qmp_capabilities\"}", "{", "}", "[", "]", "\"", "\\",
		"\\u00", "\\ud800", "\n", "\xff", "\xc3\xa9", "\0", "1e999", "-",
		"{\"execute\": \"fail\"}", "null", "true", ",", ":", " ",
	};
	int calls = 0;
	struct ctl_table t = { fake_cmds, 5, &calls };
	unsigned int seed = 12345;

	for (int round = 0; round < 200; round++) {
		struct ctl_stream st;
		bool neg = false;

		ctl_stream_init(&st, 4096);
		for (int i = 0; i < 200; i++) {
			char buf[128];
			size_t n;
			const char *text, *why;
			size_t len;
			enum ctl_tok tok;

			if (rand_r(&seed) % 3 == 0) {
				n = (size_t)(rand_r(&seed) % sizeof(buf));
				for (size_t k = 0; k < n; k++)
					buf[k] = (char)rand_r(&seed);
			} else {
				const char *fr = frags[rand_r(&seed) % (sizeof(frags) / sizeof(frags[0]))];

				n = fr[0] ? strlen(fr) : 1;
				memcpy(buf, fr, n);
			}
			assert_int_equal(ctl_stream_feed(&st, buf, n), 0);
			while ((tok = ctl_stream_next(&st, &text, &len, &why)) != CTL_TOK_NONE) {
				char *out;
				json_t *v;

				if (tok == CTL_TOK_TOOBIG) {
					ctl_stream_fini(&st);
					ctl_stream_init(&st, 4096);
					break;
				}
				out = tok == CTL_TOK_TEXT ? ctl_dispatch(&t, &neg, text, len)
							  : ctl_reply_bad(why);
				assert_non_null(out);
				assert_true(strchr(out, '\n') == out + strlen(out) - 1);
				v = json_loads(out, 0, NULL);
				assert_non_null(v);
				json_decref(v);
				free(out);
			}
		}
		ctl_stream_fini(&st);
	}
}

static void test_format(void **state)
{
	char *s = ctl_fmt_greeting();
	json_t *data;

	assert_string_equal(s, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
			    "\"major\": 0}, \"package\": \"kvmove 0.2.0\"}, \"capabilities\": []}}\n");
	free(s);
	data = json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-quit");
	s = ctl_fmt_event("SHUTDOWN", data, 1700000000, 123456);
	assert_string_equal(s, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, "
			    "\"reason\": \"host-qmp-quit\"}, \"timestamp\": "
			    "{\"seconds\": 1700000000, \"microseconds\": 123456}}\n");
	free(s);
	json_decref(data);
	s = ctl_fmt_event("STOP", NULL, 1, 2);
	assert_string_equal(s, "{\"event\": \"STOP\", \"timestamp\": "
			    "{\"seconds\": 1, \"microseconds\": 2}}\n");
	free(s);
	s = ctl_reply_toobig();
	assert_non_null(strstr(s, "too large"));
	free(s);
	s = ctl_reply_bad("nesting too deep");
	assert_non_null(strstr(s, "JSON parse error, nesting too deep"));
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_lines),
		cmocka_unit_test(test_stream_garbage),
		cmocka_unit_test(test_stream_deep),
		cmocka_unit_test(test_stream_toobig),
		cmocka_unit_test(test_dispatch_negotiation),
		cmocka_unit_test(test_dispatch_commands),
		cmocka_unit_test(test_dispatch_malformed),
		cmocka_unit_test(test_random_input),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
