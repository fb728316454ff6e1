/*
 * runcli.h - run one kvmove CLI verb (this very binary) for the console, so
 * that an API call and the CLI verb of the same name are the same code.
 * No shell: the arguments go to execv as they are (names checked before).
 */
#ifndef KVMOVE_CONSOLE_RUNCLI_H
#define KVMOVE_CONSOLE_RUNCLI_H

#include "common/err.h"

struct cli_result {
	int status;		/* the verb's exit status; -1 killed (timeout) */
	char *out;		/* its stdout, NUL-terminated (malloc'ed) */
	char *err;		/* its stderr */
};

/* argv[0] is ignored (the binary is self, e.g. /proc/self/exe's target);
 * NULL-terminated.  Returns 0 when the verb ran (whatever its status). */
int console_run_cli(const char *self, const char *const *argv, unsigned timeout_ms,
		    struct cli_result *res, struct kv_err *err);
void cli_result_free(struct cli_result *res);

#endif
