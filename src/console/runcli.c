/*
 * runcli.c - run a kvmove verb and collect what it says (runcli.h).
 */
#define _GNU_SOURCE
#include "console/runcli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLI_MAX_OUTPUT (16u << 20)

extern char **environ;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

struct buf {
	char *p;
	size_t n, cap;
};

static int grow(struct buf *b, size_t want)
{
	char *np;

	if (b->n + want + 1 <= b->cap)
		return 0;
	b->cap = (b->n + want + 1) * 2;
	if (!(np = realloc(b->p, b->cap)))
		return -ENOMEM;
	b->p = np;
	return 0;
}

void cli_result_free(struct cli_result *res)
{
	free(res->out);
	free(res->err);
	res->out = res->err = NULL;
}

int console_run_cli(const char *self, const char *const *argv, unsigned timeout_ms,
		    struct cli_result *res, struct kv_err *err)
{
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, r = 0, st;
	posix_spawn_file_actions_t fa;
	struct buf bo = { 0 }, be = { 0 };
	long long deadline = now_ms() + timeout_ms;
	bool killed = false;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		r = kv_errf_sys(err, errno, "pipe");
		goto close;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	r = posix_spawn(&pid, self, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r) {
		r = kv_errf_sys(err, r, "running %s", self);
		goto close;
	}
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;
	for (int open_fds = 2; open_fds > 0;) {
		struct pollfd pf[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
		long long left = deadline - now_ms();
		if (left <= 0 && !killed) {
			kill(pid, SIGKILL);
			killed = true;
		}
		if (poll(pf, 2, killed ? 1000 : (int)(left > 1000 ? 1000 : left)) < 0 &&
		    errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			struct buf *b = i ? &be : &bo;
			ssize_t n;
			if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (grow(b, 65536)) {
				kill(pid, SIGKILL);
				killed = true;
				n = 0;
			} else {
				n = read(pf[i].fd, b->p + b->n, 65536);
			}
			if (n > 0 && b->n + (size_t)n <= CLI_MAX_OUTPUT) {
				b->n += (size_t)n;
			} else if (n != -1 || errno != EINTR) {
				close(pf[i].fd);
				if (i)
					pe[0] = -1;
				else
					po[0] = -1;
				open_fds--;
			}
		}
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	res->status = killed ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (grow(&bo, 0) || grow(&be, 0)) {
		r = kv_errf(err, ENOMEM, "output");
		goto close;
	}
	bo.p[bo.n] = be.p[be.n] = '\0';
	res->out = bo.p;
	res->err = be.p;
	bo.p = be.p = NULL;
close:
	free(bo.p);
	free(be.p);
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	return r;
}
