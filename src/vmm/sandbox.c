/*
 * sandbox.c - what a VMM that takes a VM from the network (or a file) may
 * still do once it is set up (sandbox.h).
 *
 * Capabilities (libcap-ng): every one is dropped but those the incoming VM
 * may need: CAP_DAC_OVERRIDE (disk images and TAPs owned by others),
 * CAP_NET_ADMIN (attaching to a TAP) and CAP_SYS_PTRACE (userfaultfd that
 * also catches KVM's own faults, for post-copy, needs it when
 * vm.unprivileged_userfaultfd is 0).  The bounding set goes too, and
 * no-new-privs is set, so nothing can get them back.
 *
 * System calls (libseccomp): an allowlist of what the VMM's threads use:
 * memory, files it already decided to open, sockets, KVM ioctls, threads,
 * timers, eventfds, userfaultfd.  Anything else fails with EPERM (never
 * kills: a VMM that trips over a rare path reports an error and keeps its
 * VM): exec, fork (clone without CLONE_THREAD), ptrace, mount, namespaces,
 * module loading, bpf, keyrings, reboot, ...  clone3 answers ENOSYS so that
 * glibc falls back to clone(), whose flags a filter can see.
 */
#define _GNU_SOURCE
#include "vmm/sandbox.h"

#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Everything a VMM thread calls while it serves an incoming VM. */
static const int allowed[] = {
	/* memory */
	SCMP_SYS(brk), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap),
	SCMP_SYS(madvise), SCMP_SYS(memfd_create), SCMP_SYS(membarrier), SCMP_SYS(mlock),
	SCMP_SYS(munlock),
	/* files and fds */
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
	SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(preadv2),
	SCMP_SYS(pwritev2), SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(open), SCMP_SYS(close),
	SCMP_SYS(fstat), SCMP_SYS(fstatfs), SCMP_SYS(statfs), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(stat), SCMP_SYS(lstat),
	SCMP_SYS(lseek), SCMP_SYS(fcntl), SCMP_SYS(flock), SCMP_SYS(dup), SCMP_SYS(dup2),
	SCMP_SYS(dup3), SCMP_SYS(pipe2), SCMP_SYS(fsync), SCMP_SYS(fdatasync),
	SCMP_SYS(fallocate), SCMP_SYS(ftruncate), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
	SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(fchmod), SCMP_SYS(chmod),
	SCMP_SYS(fchmodat),
	SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(access), SCMP_SYS(faccessat),
	SCMP_SYS(faccessat2), SCMP_SYS(getcwd), SCMP_SYS(umask), SCMP_SYS(getdents64),
	SCMP_SYS(ioctl), SCMP_SYS(eventfd2), SCMP_SYS(signalfd4), SCMP_SYS(timerfd_create),
	SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime), SCMP_SYS(userfaultfd),
	/* waiting */
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(select), SCMP_SYS(pselect6),
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait), SCMP_SYS(futex), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep),
	SCMP_SYS(sched_yield),
	/* sockets (migration, control, TAP setup) */
	SCMP_SYS(socket), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept),
	SCMP_SYS(accept4), SCMP_SYS(connect), SCMP_SYS(getsockname), SCMP_SYS(getpeername),
	SCMP_SYS(setsockopt), SCMP_SYS(getsockopt), SCMP_SYS(shutdown), SCMP_SYS(sendto),
	SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(sendmmsg),
	SCMP_SYS(recvmmsg),
	/* threads, signals, time */
	SCMP_SYS(set_robust_list), SCMP_SYS(get_robust_list), SCMP_SYS(rseq),
	SCMP_SYS(set_tid_address), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(gettid),
	SCMP_SYS(getpid), SCMP_SYS(getppid), SCMP_SYS(tgkill), SCMP_SYS(tkill),
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sigaltstack), SCMP_SYS(restart_syscall),
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(time),
	SCMP_SYS(timer_create), SCMP_SYS(timer_settime), SCMP_SYS(timer_gettime),
	SCMP_SYS(timer_delete),
	/* identity and limits (libc asks) */
	SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
	SCMP_SYS(getrandom), SCMP_SYS(uname), SCMP_SYS(sysinfo), SCMP_SYS(getrusage),
	SCMP_SYS(prlimit64), SCMP_SYS(sched_getaffinity), SCMP_SYS(arch_prctl),
};

static int drop_capabilities(bool keep_net, struct kv_err *err)
{
	capng_clear(CAPNG_SELECT_BOTH);
	if (capng_updatev(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_DAC_OVERRIDE,
			  CAP_SYS_PTRACE, -1) ||
	    (keep_net && capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED,
				      CAP_NET_ADMIN)))
		return kv_errf(err, EINVAL, "capng_update");
	if (capng_apply(CAPNG_SELECT_BOTH))
		return kv_errf(err, EPERM, "dropping capabilities (capng_apply)");
	return 0;
}

static int load_filter(struct kv_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	int r = 0;

	if (!ctx)
		return kv_errf(err, ENOMEM, "seccomp_init");
	/* every thread, now and later */
	if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)))
		goto out;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && !r; i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
	/* threads only: a clone that shares memory and makes a thread */
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | CLONE_VM,
					     CLONE_THREAD | CLONE_VM));
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* prctl: naming threads, reading no-new-privs */
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				     SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				     SCMP_A0(SCMP_CMP_EQ, PR_GET_NO_NEW_PRIVS));
	/* kill only ourselves (our own threads' kicks are tgkill) */
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
	if (!r)
		r = seccomp_load(ctx);
out:
	seccomp_release(ctx);
	return r ? kv_errf(err, -r, "loading the seccomp filter: %s", strerror(-r)) : 0;
}

int sandbox_enter(bool keep_net, struct kv_err *err)
{
	int r;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return kv_errf_sys(err, errno, "PR_SET_NO_NEW_PRIVS");
	if (geteuid() == 0 && (r = drop_capabilities(keep_net, err)))
		return r;
	return load_filter(err);
}

json_t *sandbox_probe(void)
{
	char path[] = "/nonexistent/kvmove-sandbox-probe";
	char *const argv[] = { path, NULL };
	json_t *o = json_object();
	int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	long pid;
	FILE *f;
	char line[256];

	/* what the kernel says of us */
	f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "Seccomp: %llu", &v) == 1)
			json_object_set_new(o, "seccomp", json_integer((json_int_t)v));
		else if (sscanf(line, "CapEff: %llx", &v) == 1)
			json_object_set_new(o, "cap-eff", json_integer((json_int_t)v));
		else if (sscanf(line, "CapBnd: %llx", &v) == 1)
			json_object_set_new(o, "cap-bnd", json_integer((json_int_t)v));
	}
	if (f)
		fclose(f);
	json_object_set_new(o, "no-new-privs", json_boolean(nnp == 1));
	/* what happens when we try: exec a path that does not exist (ENOENT
	 * if exec were allowed, so this never runs anything) */
	execve(path, argv, NULL);
	json_object_set_new(o, "execve", json_string(strerror(errno)));
	pid = syscall(SYS_fork);
	if (pid == 0)
		_exit(0);	/* only without the filter: the child goes at once */
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	json_object_set_new(o, "fork", json_string(pid < 0 ? strerror(errno) : "allowed"));
	json_object_set_new(o, "unshare", json_string(unshare(0) < 0 ? strerror(errno) :
						      "allowed"));
	return o;
}
