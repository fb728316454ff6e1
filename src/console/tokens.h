/*
 * tokens.h - the console's users: a token file of "ROLE NAME TOKEN" lines
 * (ROLE admin or read, TOKEN 64 hex digits), mode 0600, read again when it
 * changes (docs/API.md, "Access").
 */
#ifndef KVMOVE_CONSOLE_TOKENS_H
#define KVMOVE_CONSOLE_TOKENS_H

#include <stdbool.h>
#include <time.h>

#include "common/err.h"

#define CONSOLE_MAX_USERS 256
#define CONSOLE_TOKEN_HEX 64

enum console_role { CONSOLE_READ, CONSOLE_ADMIN };

struct console_user {
	char name[64];
	enum console_role role;
	char token[CONSOLE_TOKEN_HEX + 1];
};

struct console_tokens {
	unsigned n;
	struct console_user users[CONSOLE_MAX_USERS];
	struct timespec mtime;		/* of the file when read */
	long long size;
};

const char *console_role_name(enum console_role r);
/* Read the file: refused if group/other may read it, or a line is bad. */
int console_tokens_load(const char *path, struct console_tokens *t, struct kv_err *err);
/* Has the file changed since t was read? */
bool console_tokens_stale(const char *path, const struct console_tokens *t);
/* The user with this token (compared in constant time), or NULL. */
const struct console_user *console_tokens_find(const struct console_tokens *t,
					       const char *token);
/* Append a user with a new random token (created 0600 if missing); the
 * token is written to token_out (CONSOLE_TOKEN_HEX + 1 bytes). */
int console_token_add(const char *path, const char *name, enum console_role role,
		      char *token_out, struct kv_err *err);
bool console_user_name_ok(const char *s);

#endif
