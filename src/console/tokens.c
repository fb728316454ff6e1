/*
 * tokens.c - the console's token file (tokens.h).
 */
#define _GNU_SOURCE
#include "console/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

const char *console_role_name(enum console_role r)
{
	return r == CONSOLE_ADMIN ? "admin" : "read";
}

bool console_user_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 63 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr("._@-", s[i])))
			return false;
	return true;
}

static bool token_ok(const char *s)
{
	if (strlen(s) != CONSOLE_TOKEN_HEX)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static int parse_line(char *line, unsigned lineno, const char *path, struct console_user *u,
		      struct kv_err *err)
{
	char role[16], name[64], token[80], extra[2];

	if (sscanf(line, "%15s %63s %79s %1s", role, name, token, extra) != 3)
		return kv_errf(err, EINVAL, "%s:%u: not 'ROLE NAME TOKEN'", path, lineno);
	if (!strcmp(role, "admin"))
		u->role = CONSOLE_ADMIN;
	else if (!strcmp(role, "read"))
		u->role = CONSOLE_READ;
	else
		return kv_errf(err, EINVAL, "%s:%u: role '%s' is not admin or read", path, lineno,
			       role);
	if (!console_user_name_ok(name))
		return kv_errf(err, EINVAL, "%s:%u: user name '%s' is not 1..63 of "
			       "[A-Za-z0-9._@-]", path, lineno, name);
	if (!token_ok(token))
		return kv_errf(err, EINVAL, "%s:%u: the token is not %d lowercase hex digits",
			       path, lineno, CONSOLE_TOKEN_HEX);
	snprintf(u->name, sizeof(u->name), "%s", name);
	memcpy(u->token, token, CONSOLE_TOKEN_HEX + 1);
	return 0;
}

int console_tokens_load(const char *path, struct console_tokens *t, struct kv_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	struct stat sb;
	FILE *f;
	int r = 0;

	memset(t, 0, sizeof(*t));
	if (fd < 0)
		return kv_errf_sys(err, errno, "token file %s", path);
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		close(fd);
		return kv_errf(err, EINVAL, "token file %s is not a regular file", path);
	}
	if (sb.st_mode & 077) {
		close(fd);
		return kv_errf(err, EPERM, "token file %s is readable by others (mode %03o): "
			       "chmod 600 it", path, (unsigned)(sb.st_mode & 0777));
	}
	t->mtime = sb.st_mtim;
	t->size = (long long)sb.st_size;
	if (!(f = fdopen(fd, "r"))) {
		close(fd);
		return kv_errf_sys(err, errno, "token file %s", path);
	}
	while (getline(&line, &cap, f) > 0) {
		char *p = line + strspn(line, " \t");
		lineno++;
		if (*p == '#' || *p == '\n' || !*p)
			continue;
		if (t->n >= CONSOLE_MAX_USERS) {
			r = kv_errf(err, E2BIG, "%s: more than %d users", path, CONSOLE_MAX_USERS);
			break;
		}
		if ((r = parse_line(p, lineno, path, &t->users[t->n], err)))
			break;
		for (unsigned i = 0; i < t->n && !r; i++)
			if (!strcmp(t->users[i].name, t->users[t->n].name))
				r = kv_errf(err, EINVAL, "%s:%u: user %s is listed twice", path,
					    lineno, t->users[i].name);
		if (r)
			break;
		t->n++;
	}
	free(line);
	fclose(f);
	return r;
}

bool console_tokens_stale(const char *path, const struct console_tokens *t)
{
	struct stat sb;

	if (stat(path, &sb))
		return true;
	return sb.st_mtim.tv_sec != t->mtime.tv_sec || sb.st_mtim.tv_nsec != t->mtime.tv_nsec ||
	       (long long)sb.st_size != t->size;
}

const struct console_user *console_tokens_find(const struct console_tokens *t,
					       const char *token)
{
	const struct console_user *found = NULL;

	if (!token || strlen(token) != CONSOLE_TOKEN_HEX)
		return NULL;
	for (unsigned i = 0; i < t->n; i++) {
		unsigned char d = 0;
		for (unsigned k = 0; k < CONSOLE_TOKEN_HEX; k++)
			d |= (unsigned char)(t->users[i].token[k] ^ token[k]);
		if (!d && !found)
			found = &t->users[i];
	}
	return found;
}

int console_token_add(const char *path, const char *name, enum console_role role,
		      char *token_out, struct kv_err *err)
{
	struct console_tokens *t = calloc(1, sizeof(*t));
	unsigned char raw[CONSOLE_TOKEN_HEX / 2];
	char line[256];
	int fd, r = 0;
	ssize_t n;

	if (!t)
		return kv_errf(err, ENOMEM, "token file");
	if (!console_user_name_ok(name)) {
		free(t);
		return kv_errf(err, EINVAL, "user name '%s' is not 1..63 of [A-Za-z0-9._@-]", name);
	}
	if (access(path, F_OK) == 0) {
		if ((r = console_tokens_load(path, t, err))) {
			free(t);
			return r;
		}
		for (unsigned i = 0; i < t->n; i++)
			if (!strcmp(t->users[i].name, name)) {
				free(t);
				return kv_errf(err, EEXIST, "%s already has a user %s", path, name);
			}
	}
	free(t);
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return kv_errf_sys(err, errno, "getrandom");
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(token_out + 2 * i, "%02x", raw[i]);
	snprintf(line, sizeof(line), "%s %s %s\n", console_role_name(role), name, token_out);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return kv_errf_sys(err, errno, "token file %s", path);
	n = write(fd, line, strlen(line));
	if (n != (ssize_t)strlen(line))
		r = kv_errf_sys(err, n < 0 ? errno : EIO, "writing %s", path);
	if (close(fd) && !r)
		r = kv_errf_sys(err, errno, "writing %s", path);
	return r;
}
