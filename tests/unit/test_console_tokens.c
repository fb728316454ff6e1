/*
 * test_console_tokens.c - the console's token file (console/tokens.h):
 * parsing, refusals (mode, bad lines, duplicates), lookup, adding users.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "console/tokens.h"

static char path[64];

static int setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/kvmove-tokens-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void write_file(const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

#define T1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define T2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void test_load_find(void **state)
{
	struct console_tokens *t = calloc(1, sizeof(*t));
	const struct console_user *u;
	struct kv_err err;

	(void)state;
	write_file("# users\n\nadmin alice " T1 "\n  read bob " T2 "\n", 0600);
	assert_int_equal(console_tokens_load(path, t, &err), 0);
	assert_int_equal(t->n, 2);
	u = console_tokens_find(t, T2);
	assert_non_null(u);
	assert_string_equal(u->name, "bob");
	assert_int_equal(u->role, CONSOLE_READ);
	assert_int_equal(console_tokens_find(t, T1)->role, CONSOLE_ADMIN);
	assert_null(console_tokens_find(t, "0123"));
	assert_null(console_tokens_find(t, NULL));
	assert_null(console_tokens_find(t, T1 "0"));
	assert_false(console_tokens_stale(path, t));
	write_file("admin alice " T1 "\n", 0600);
	assert_true(console_tokens_stale(path, t));
	free(t);
}

static void test_refusals(void **state)
{
	static const struct {
		const char *text;
		mode_t mode;
		const char *why;
	} bad[] = {
		{ "admin alice " T1 "\n", 0644, "readable by others" },
		{ "root alice " T1 "\n", 0600, "role 'root'" },
		{ "admin al/ice " T1 "\n", 0600, "user name" },
		{ "admin alice 1234\n", 0600, "64 lowercase hex" },
		{ "admin alice " T1 " extra\n", 0600, "not 'ROLE NAME TOKEN'" },
		{ "admin alice " T1 "\nread alice " T2 "\n", 0600, "listed twice" },
	};
	struct console_tokens *t = calloc(1, sizeof(*t));
	struct kv_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(bad[i].text, bad[i].mode);
		assert_true(console_tokens_load(path, t, &err) < 0);
		if (!strstr(err.msg, bad[i].why))
			fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, bad[i].why);
	}
	free(t);
}

static void test_add(void **state)
{
	struct console_tokens *t = calloc(1, sizeof(*t));
	char tok[CONSOLE_TOKEN_HEX + 1], tok2[CONSOLE_TOKEN_HEX + 1];
	struct kv_err err;
	struct stat sb;

	(void)state;
	unlink(path);
	assert_int_equal(console_token_add(path, "alice", CONSOLE_ADMIN, tok, &err), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(console_token_add(path, "bob", CONSOLE_READ, tok2, &err), 0);
	assert_string_not_equal(tok, tok2);
	assert_int_equal(console_token_add(path, "alice", CONSOLE_READ, tok2, &err), -EEXIST);
	assert_int_equal(console_token_add(path, "-x", CONSOLE_READ, tok2, &err), -EINVAL);
	assert_int_equal(console_tokens_load(path, t, &err), 0);
	assert_int_equal(t->n, 2);
	assert_string_equal(console_tokens_find(t, tok)->name, "alice");
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_load_find, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
