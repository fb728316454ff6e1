/*
 * agent_load.c - what this node's VMs use, published every LOAD_EVERY_S as
 * /kvmove/load/NODE (bound to the lease) for the balancer:
 *   {"t": wall time, "interval": s, "cpus": N, "cpu": % of the N CPUs,
 *    "ram-used": bytes, "vms": {"web1": {"cpu": % of one CPU, "mem": bytes}}}
 * A VM's CPU is what its VMM process (vCPU threads, devices, migration)
 * used since the last sample: utime + stime from /proc/PID/stat.  The
 * node's is the sum over its VMs, against the CPUs it offers VMs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/agent_int.h"
#include "cluster/records.h"

#define LOAD_EVERY_S 3.0

/* utime + stime of pid in clock ticks, or -1 */
static long long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces and parentheses: fields after the
	 * last ')' are "state ppid ... utime(14) stime(15)" */
	if (!(p = strrchr(buf, ')')))
		return -1;
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st)
	    != 2)
		return -1;
	return (long long)(ut + st);
}

void load_publish(struct agent *a, const struct snap *s)
{
	double now = agent_now(), dt = now - a->t_load;
	long hz = sysconf(_SC_CLK_TCK);
	json_t *vms, *prev, *rec;
	double total = 0;
	uint64_t ram = 0;
	char key[KEY_MAX_LEN];
	struct kv_err err;

	if (a->t_load && dt < LOAD_EVERY_S)
		return;
	vms = json_object();
	prev = json_object();
	for (struct lvmm *v = a->vmms; v; v = v->next) {
		long long ticks;
		json_t *spec, *old;
		double cpu = -1;
		uint64_t mem = 0;

		if (v->role != LV_RUN || v->exited || (ticks = cpu_ticks(v->pid)) < 0)
			continue;
		old = json_object_get(a->load_prev, v->vm);
		/* a sample needs an earlier one of the same VMM */
		if (a->t_load && json_is_array(old) &&
		    json_integer_value(json_array_get(old, 0)) == v->pid &&
		    ticks >= json_integer_value(json_array_get(old, 1)) && dt > 0 && hz > 0)
			cpu = 100.0 * (double)(ticks - json_integer_value(json_array_get(old, 1))) /
			      (double)hz / dt;
		json_object_set_new(prev, v->vm, json_pack("[I, I]", (json_int_t)v->pid,
							   (json_int_t)ticks));
		if ((spec = snap_json(s, "/kvmove/vms/%s/spec", v->vm))) {
			mem = (uint64_t)cluster_jint(spec, "mem", 0);
			json_decref(spec);
		}
		ram += mem;
		if (cpu < 0)
			continue;
		total += cpu;
		json_object_set_new(vms, v->vm, json_pack("{s:f, s:I}", "cpu", cpu, "mem",
							  (json_int_t)mem));
	}
	json_decref(a->load_prev);
	a->load_prev = prev;
	if (!a->t_load) {	/* the first look only starts the counters */
		a->t_load = now;
		json_decref(vms);
		return;
	}
	a->t_load = now;
	rec = json_pack("{s:f, s:f, s:i, s:f, s:I, s:o}", "t", agent_wall(), "interval", dt,
			"cpus", (int)a->host.cpus, "cpu", a->host.cpus ? total / a->host.cpus : 0,
			"ram-used", (json_int_t)ram, "vms", vms);
	snprintf(key, sizeof(key), "/kvmove/load/%s", a->o.name);
	if (agent_put_json(a, key, rec, true, &err))
		agent_log(a, "publishing the load: %s", err.msg);
}
