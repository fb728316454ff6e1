/*
 * agent_vmm.c - the VMMs an agent runs: one `kvmove run` process per VM,
 * detached (its own session) so that it outlives the agent, with its
 * control socket, console, log, pid and role under the run directory:
 *   RUN/VM.sock  RUN/VM.console  RUN/VM.log  RUN/VM.pid  RUN/VM.role
 * A restarted agent finds them there again (lvmm_adopt).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster/agent_int.h"
#include "cluster/records.h"
#include "control/control.h"

#define MAX_ARGS 96

void lvmm_sock(struct agent *a, const char *vm, const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s.%s", a->o.run_dir, vm, what);
}

struct lvmm *lvmm_find(struct agent *a, const char *vm)
{
	for (struct lvmm *v = a->vmms; v; v = v->next)
		if (!strcmp(v->vm, vm))
			return v;
	return NULL;
}

static void write_file(const char *path, const char *text)
{
	char tmp[600];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return;
	fputs(text, f);
	if (fclose(f) == 0)
		rename(tmp, path);
}

static void write_role(struct agent *a, struct lvmm *v)
{
	char path[512], text[256];

	lvmm_sock(a, v->vm, "role", path, sizeof(path));
	if (v->role == LV_RUN)
		snprintf(text, sizeof(text), "run\n");
	else
		snprintf(text, sizeof(text), "incoming %s %d %s\n", v->mig, v->attempt, v->addr);
	write_file(path, text);
}

void lvmm_set_role(struct agent *a, struct lvmm *v, enum lvmm_role role)
{
	v->role = role;
	write_role(a, v);
}

static pid_t spawn(struct agent *a, const char *vm, char *const argv[], struct kv_err *err)
{
	char log[512], pidf[512], num[32];
	sigset_t all;
	pid_t pid;
	int lf;

	lvmm_sock(a, vm, "log", log, sizeof(log));
	lf = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (lf < 0)
		return kv_errf_sys(err, errno, "%s", log);
	pid = fork();
	if (pid < 0) {
		close(lf);
		return kv_errf_sys(err, errno, "fork");
	}
	if (pid == 0) {
		/* only async-signal-safe calls from here on */
		int nul = open("/dev/null", O_RDONLY);
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		setsid();	/* the agent's end is not the VM's */
		if (nul >= 0)
			dup2(nul, 0);
		dup2(lf, 1);
		dup2(lf, 2);
		closefrom(3);
		execv(argv[0], argv);
		_exit(127);
	}
	close(lf);
	lvmm_sock(a, vm, "pid", pidf, sizeof(pidf));
	snprintf(num, sizeof(num), "%d\n", (int)pid);
	write_file(pidf, num);
	return pid;
}

/* A VM the cluster restarts elsewhere when its node dies (restart policy
 * on-failure or always) runs only while our lease lives (cluster/fence.h):
 * its VMM ends it when it cannot confirm the lease, agent or no agent. */
static bool fenced(const struct vm_spec *spec)
{
	return spec->restart != VM_RESTART_NEVER;
}

static int add_common(struct agent *a, const char *vm, const struct vm_spec *spec, char **av,
		      unsigned *n, char *bufs, size_t blen)
{
	/* bufs: three 512-byte strings (console, control, lease) */
	lvmm_sock(a, vm, "console", bufs, 512);
	lvmm_sock(a, vm, "sock", bufs + 512, 512);
	av[(*n)++] = "--console";
	av[(*n)++] = bufs;
	av[(*n)++] = "--control";
	av[(*n)++] = bufs + 512;
	av[(*n)++] = "--etcd";
	av[(*n)++] = (char *)store_endpoints(a->st);
	av[(*n)++] = "--node";
	av[(*n)++] = (char *)a->o.name;
	if (fenced(spec)) {
		snprintf(bufs + 1024, 512, "%lld", (long long)agent_lease(a));
		av[(*n)++] = "--fence-lease";
		av[(*n)++] = bufs + 1024;
	}
	if (a->host.hide_list[0]) {
		/* testing: the features this node claims not to have are not
		 * given to guests booted here, and an incoming guest that
		 * needs them is refused */
		av[(*n)++] = "--x-hide-host-feature";
		av[(*n)++] = a->host.hide_list;
	}
	if (a->o.tls_psk) {
		av[(*n)++] = "--tls-psk";
		av[(*n)++] = (char *)a->o.tls_psk;
	} else {
		av[(*n)++] = "--insecure";
	}
	return 0;
}

static struct lvmm *lvmm_new(struct agent *a, const char *vm, enum lvmm_role role, pid_t pid)
{
	struct lvmm *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	snprintf(v->vm, sizeof(v->vm), "%s", vm);
	v->role = role;
	v->pid = pid;
	v->child = true;
	v->next = a->vmms;
	a->vmms = v;
	return v;
}

/* spec: checked by vm_spec_parse (records.c) */
int lvmm_start_run(struct agent *a, const char *vm, const struct vm_spec *spec,
		   struct kv_err *err)
{
	json_t *d;
	char *av[MAX_ARGS], bufs[3 * 512], mem[32], cpus[16], dbuf[CLUSTER_VM_DISKS_MAX][600];
	char nbufs[CLUSTER_VM_NETS_MAX][64];
	unsigned n = 0, nd = 0;
	size_t i;
	pid_t pid;
	struct lvmm *v;

	snprintf(mem, sizeof(mem), "%lluK", (unsigned long long)(spec->mem >> 10));
	snprintf(cpus, sizeof(cpus), "%u", spec->cpus);
	av[n++] = a->self;
	av[n++] = "run";
	av[n++] = "--name";
	av[n++] = (char *)vm;
	av[n++] = "--mem";
	av[n++] = mem;
	av[n++] = "--cpus";
	av[n++] = cpus;
	av[n++] = "--kernel";
	av[n++] = (char *)spec->kernel;
	if (spec->initrd) {
		av[n++] = "--initrd";
		av[n++] = (char *)spec->initrd;
	}
	av[n++] = "--append";
	av[n++] = (char *)spec->append;
	if (strcmp(spec->cpu.spec, "host")) {
		/* the canonical spelling cpu_model_parse() made of the definition's
		 * "cpu": only model and feature names from its tables */
		av[n++] = "--cpu";
		av[n++] = (char *)spec->cpu.spec;
	}
	if ((pid = net_ensure(a, vm, spec->j, err)))
		return pid;
	net_args(vm, spec->j, false, av, &n, nbufs);
	json_array_foreach(json_object_get(spec->j, "disks"), i, d) {
		const char *p = json_string_value(json_object_get(d, "path"));
		if (!p || nd >= CLUSTER_VM_DISKS_MAX || strchr(p, ','))
			return kv_errf(err, EINVAL, "VM %s: disk '%s' cannot be given to a VMM "
				       "(a comma in its path?)", vm, p ? p : "");
		snprintf(dbuf[nd], sizeof(dbuf[nd]), "%s%s", p,
			 json_is_true(json_object_get(d, "readonly")) ? ",readonly" : "");
		av[n++] = "--disk";
		av[n++] = dbuf[nd++];
	}
	add_common(a, vm, spec, av, &n, bufs, sizeof(bufs));
	av[n] = NULL;
	pid = spawn(a, vm, av, err);
	if (pid < 0)
		return pid;
	v = lvmm_new(a, vm, LV_RUN, pid);
	if (!v)
		return kv_errf(err, ENOMEM, "vmm");
	write_role(a, v);
	agent_log(a, "started VM %s (pid %d)", vm, (int)pid);
	return 0;
}

int lvmm_start_incoming(struct agent *a, const char *vm, const struct vm_spec *spec,
			const char *mig, int attempt, const char *addr, struct kv_err *err)
{
	char *av[MAX_ARGS], bufs[3 * 512], nbufs[CLUSTER_VM_NETS_MAX][64];
	unsigned n = 0;
	pid_t pid;
	struct lvmm *v;

	/* its NICs' TAPs, by the names the migrated devices carry */
	if ((pid = net_ensure(a, vm, spec->j, err)))
		return pid;

	av[n++] = a->self;
	av[n++] = "run";
	av[n++] = "--incoming";
	av[n++] = "defer";	/* listening once migrate-incoming returns */
	av[n++] = "--expect";
	av[n++] = (char *)vm;
	for (unsigned i = 0; i < a->o.nallow; i++) {
		av[n++] = "--allow-disk";
		av[n++] = (char *)a->o.allow[i];
	}
	if (a->o.quick_dir) {
		av[n++] = "--via";
		av[n++] = (char *)a->o.quick_dir;
	}
	net_args(vm, spec->j, true, av, &n, nbufs);
	add_common(a, vm, spec, av, &n, bufs, sizeof(bufs));
	av[n] = NULL;
	pid = spawn(a, vm, av, err);
	if (pid < 0)
		return pid;
	v = lvmm_new(a, vm, LV_INCOMING, pid);
	if (!v)
		return kv_errf(err, ENOMEM, "vmm");
	snprintf(v->mig, sizeof(v->mig), "%s", mig);
	snprintf(v->addr, sizeof(v->addr), "%s", addr);
	v->attempt = attempt;
	write_role(a, v);
	agent_log(a, "waiting for VM %s on %s (migration %s, attempt %d, pid %d)", vm, addr,
		  mig, attempt, (int)pid);
	return 0;
}

int lvmm_exec(struct agent *a, const char *vm, const char *cmd, json_t *args, json_t **ret,
	      struct kv_err *err)
{
	struct ctl_client *c;
	char sock[512];
	json_t *r = NULL;
	int rc;

	lvmm_sock(a, vm, "sock", sock, sizeof(sock));
	rc = ctl_client_connect(&c, sock, 2000, err);
	if (rc)
		return rc;
	rc = ctl_client_execute(c, cmd, args, &r, NULL, err);
	ctl_client_close(c);
	if (ret)
		*ret = r;
	else
		json_decref(r);
	return rc;
}

static bool alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

void lvmm_reap(struct agent *a)
{
	for (struct lvmm *v = a->vmms; v; v = v->next) {
		if (v->exited)
			continue;
		if (v->child) {
			int st;
			pid_t r = waitpid(v->pid, &st, WNOHANG);
			if (r == v->pid || (r < 0 && errno == ECHILD)) {
				v->exited = true;
				v->status = r == v->pid ? st : 0;
			}
		} else if (!alive(v->pid)) {
			v->exited = true;
		}
	}
}

void lvmm_stop(struct agent *a, struct lvmm *v, bool force)
{
	if (v->exited)
		return;
	if (!force && !v->stopping) {
		struct kv_err err;
		if (!lvmm_exec(a, v->vm, "quit", NULL, NULL, &err)) {
			v->stopping = true;
			return;
		}
	}
	kill(v->pid, force ? SIGKILL : SIGTERM);
	v->stopping = true;
}

void lvmm_remove(struct agent *a, struct lvmm *v)
{
	char path[512];

	for (struct lvmm **pp = &a->vmms; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	}
	lvmm_sock(a, v->vm, "pid", path, sizeof(path));
	unlink(path);
	lvmm_sock(a, v->vm, "role", path, sizeof(path));
	unlink(path);
	net_release(a, v->vm);	/* the VM's TAPs go with its VMM */
	free(v);
}

/* A restarted agent: every VMM still running under the run directory is
 * ours again, in the role it had. */
void lvmm_adopt(struct agent *a, const struct snap *s)
{
	DIR *d = opendir(a->o.run_dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char vm[NAME_MAX_LEN], path[512], role[256] = "";
		size_t len = strlen(e->d_name);
		long pid = 0;
		FILE *f;
		struct lvmm *v;

		if (len < 5 || len - 4 >= sizeof(vm) || strcmp(e->d_name + len - 4, ".pid"))
			continue;
		snprintf(vm, sizeof(vm), "%.*s", (int)(len - 4), e->d_name);
		if (lvmm_find(a, vm))
			continue;
		lvmm_sock(a, vm, "pid", path, sizeof(path));
		if ((f = fopen(path, "re"))) {
			if (fscanf(f, "%ld", &pid) != 1)
				pid = 0;
			fclose(f);
		}
		if (pid <= 0 || !alive((pid_t)pid)) {
			unlink(path);
			continue;
		}
		lvmm_sock(a, vm, "role", path, sizeof(path));
		if ((f = fopen(path, "re"))) {
			if (!fgets(role, sizeof(role), f))
				role[0] = '\0';
			fclose(f);
		}
		v = lvmm_new(a, vm, LV_RUN, (pid_t)pid);
		if (!v)
			break;
		v->child = false;
		if (!strncmp(role, "incoming ", 9)) {
			v->role = LV_INCOMING;
			if (sscanf(role + 9, "%47s %d %63s", v->mig, &v->attempt, v->addr) != 3)
				v->attempt = 0;
			v->listening = true;	/* it was, or it would not be here */
		}
		agent_log(a, "adopted the VMM of %s (pid %ld, %s)", vm, pid,
			  v->role == LV_RUN ? "running" : "incoming");
	}
	closedir(d);
	(void)s;
}
