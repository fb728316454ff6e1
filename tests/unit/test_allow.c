/*
 * The destination's own policy (migration/allow.c): which disks and TAPs
 * an incoming VM may use, whatever its stream says.  Real files in a
 * temporary directory: a symlink inside an allowed directory must not lead
 * out of it, ".." must not either.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "migration/allow.h"

static char dir[64], inside[128], outside[128], link_out[128], other_dir[128];

static int setup(void **state)
{
	int fd;

	(void)state;
	strcpy(dir, "/tmp/kvallow-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(other_dir, sizeof(other_dir), "%s/images", dir);
	assert_int_equal(mkdir(other_dir, 0700), 0);
	snprintf(inside, sizeof(inside), "%s/images/web1.img", dir);
	snprintf(outside, sizeof(outside), "%s/secret", dir);
	snprintf(link_out, sizeof(link_out), "%s/images/escape.img", dir);
	fd = open(inside, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = open(outside, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(symlink(outside, link_out), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(link_out);
	unlink(inside);
	unlink(outside);
	rmdir(other_dir);
	rmdir(dir);
	return 0;
}

static void names(void **state)
{
	(void)state;
	assert_true(mig_name_ok("web1"));
	assert_true(mig_name_ok("db-2.prod_x"));
	assert_false(mig_name_ok(""));
	assert_false(mig_name_ok("../etc"));
	assert_false(mig_name_ok("a/b"));
	assert_false(mig_name_ok(".hidden"));
	assert_false(mig_name_ok("-rf"));
	assert_false(mig_name_ok("sp ace"));
	assert_false(mig_name_ok("0123456789012345678901234567890123456789012345678901234567890123"));
}

static void nothing_allowed(void **state)
{
	struct mig_allow a = { 0 };
	struct kv_err err;

	(void)state;
	assert_int_equal(mig_allow_disk(&a, inside, &err), -EPERM);
	assert_non_null(strstr(err.msg, "takes no disks"));
	assert_int_equal(mig_allow_open_disk(&a, "/etc/shadow", false, &err), -EPERM);
	assert_int_equal(mig_allow_tap(&a, "tap0", &err), -EPERM);
}

static void directory_entry(void **state)
{
	struct mig_allow a = { .disks = { other_dir }, .ndisks = 1 };
	char p[192];
	struct kv_err err;
	int fd;

	(void)state;
	fd = mig_allow_open_disk(&a, inside, false, &err);
	assert_true(fd >= 0);
	close(fd);
	/* a symlink inside that points out */
	assert_int_equal(mig_allow_open_disk(&a, link_out, false, &err), -EPERM);
	assert_non_null(strstr(err.msg, "outside"));
	/* lexical escapes */
	snprintf(p, sizeof(p), "%s/../secret", other_dir);
	assert_int_equal(mig_allow_open_disk(&a, p, false, &err), -EPERM);
	snprintf(p, sizeof(p), "%s/./web1.img", other_dir);
	assert_int_equal(mig_allow_disk(&a, p, &err), -EPERM);
	snprintf(p, sizeof(p), "%s//web1.img", other_dir);
	assert_int_equal(mig_allow_disk(&a, p, &err), -EPERM);
	/* a sibling whose name starts like the directory */
	snprintf(p, sizeof(p), "%sX/web1.img", other_dir);
	assert_int_equal(mig_allow_disk(&a, p, &err), -EPERM);
	/* relative, the directory itself */
	assert_int_equal(mig_allow_disk(&a, "images/web1.img", &err), -EPERM);
	assert_int_equal(mig_allow_disk(&a, other_dir, &err), -EPERM);
	assert_int_equal(mig_allow_disk(&a, outside, &err), -EPERM);
}

static void file_entry(void **state)
{
	struct mig_allow a = { .disks = { inside }, .ndisks = 1, .taps = { "vmtap0" },
			       .ntaps = 1 };
	struct kv_err err;
	int fd;

	(void)state;
	fd = mig_allow_open_disk(&a, inside, true, &err);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mig_allow_disk(&a, outside, &err), -EPERM);
	assert_non_null(strstr(err.msg, inside));	/* says what is allowed */
	assert_int_equal(mig_allow_tap(&a, "vmtap0", &err), 0);
	assert_int_equal(mig_allow_tap(&a, "vmtap", &err), -EPERM);
	assert_int_equal(mig_allow_tap(&a, "eth0", &err), -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names),
		cmocka_unit_test(nothing_allowed),
		cmocka_unit_test(directory_entry),
		cmocka_unit_test(file_entry),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
