/*
 * commands.c - what a VMM answers on its control socket.  Names follow QMP
 * where QEMU has the same command, so QMP clients work unchanged.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>

#include "control/control.h"
#include "core/dirty.h"
#include "core/vcpu_info.h"
#include "core/vm.h"
#include "migration/migration.h"
#include "vmm/vmm.h"

/* QMP rejects arguments it does not know; so do we. */
static int check_args(json_t *args, const char *const *allowed, struct kv_err *err)
{
	const char *key;
	json_t *val;

	json_object_foreach(args, key, val) {
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			if (!strcmp(key, *a))
				ok = true;
		if (!ok)
			return kv_errf(err, EINVAL, "Parameter '%s' is unexpected", key);
	}
	return 0;
}

static const char *const no_args[] = { NULL };

/* Between the pause for stop-and-copy and the end of a migration, only the
 * migration may pause or resume the VM. */
static bool migration_busy(struct vmm *vmm)
{
	bool busy;

	pthread_mutex_lock(&vmm->mig_lock);
	busy = vmm->mig && !mig_finished(vmm->mig) && mig_get_status(vmm->mig) >= MIG_DEVICE;
	pthread_mutex_unlock(&vmm->mig_lock);
	return busy;
}

/* An incoming VMM has no VM until the migration's config arrived. */
static struct vm *need_vm(struct vmm *vmm, struct kv_err *err)
{
	struct vm *vm = vmm_vm(vmm);

	if (!vm)
		kv_errf(err, EAGAIN, "no VM yet: this VMM is waiting for an incoming migration");
	return vm;
}

static int cmd_query_status(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	enum vm_state st;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	if (!vmm_vm(vmm)) {
		*ret = json_pack("{s:s, s:b, s:b}", "status", "inmigrate", "running", 0,
				 "singlestep", 0);
		return 0;
	}
	st = vm_get_state(vmm->vm);
	*ret = json_pack("{s:s, s:b, s:b}", "status", vm_state_name(st),
			 "running", st == VM_STATE_RUNNING, "singlestep", 0);
	return 0;
}

static int cmd_query_vm(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	if (!need_vm(vmm, err))
		return -EAGAIN;
	*ret = json_pack("{s:s, s:i, s:I, s:I, s:s}", "name", vmm->vm->cfg.name,
			 "cpus", (int)vmm->vm->nvcpus, "mem", (json_int_t)vmm->vm->mem.size,
			 "uptime-ms", (json_int_t)vm_uptime_ms(vmm->vm),
			 "status", vm_state_name(vm_get_state(vmm->vm)));
	return 0;
}

static int cmd_stop(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	if (!need_vm(vmm, err))
		return -EAGAIN;
	if (migration_busy(vmm))
		return kv_errf(err, EBUSY, "a migration is switching the VM over");
	if (vmm_incoming_postcopy(vmm))
		return kv_errf(err, EBUSY, "post-copy is still bringing this VM's memory in");
	return vm_pause(vmm->vm, err);
}

static int cmd_cont(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	if (!need_vm(vmm, err))
		return -EAGAIN;
	/* Never resume a VM another host may be running (or about to). */
	if (migration_busy(vmm))
		return kv_errf(err, EBUSY, "a migration is switching the VM over");
	if (vmm_incoming_postcopy(vmm))
		return kv_errf(err, EBUSY, "post-copy is still bringing this VM's memory in");
	pthread_mutex_lock(&vmm->mig_lock);
	r = vmm->mig && mig_get_status(vmm->mig) == MIG_COMPLETED;
	pthread_mutex_unlock(&vmm->mig_lock);
	if (r)
		return kv_errf(err, EPERM, "the VM was migrated away; it runs elsewhere now");
	return vm_resume(vmm->vm, err);
}

static int cmd_quit(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	if (!vmm_vm(vmm)) {
		/* nothing to stop yet: an incoming VMM exits like on a signal */
		raise(SIGTERM);
		return 0;
	}
	/* A destination that runs the VM still needs pages only we have. */
	pthread_mutex_lock(&vmm->mig_lock);
	r = vmm->mig && mig_postcopy_pending(vmm->mig);
	pthread_mutex_unlock(&vmm->mig_lock);
	if (r)
		return kv_errf(err, EBUSY, "post-copy: the destination runs the VM and still needs "
			       "pages from this VMM; quitting now would lose the VM (resume the "
			       "post-copy, or end this VMM with a signal if the VM is lost anyway)");
	/* The main loop stops the VM; this reply goes out first. */
	vm_request_shutdown(vmm->vm, VM_SHUTDOWN_HOST, 0, "quit command on the control socket");
	return 0;
}

/*
 * Debug: flip one byte of guest RAM behind the guest's back, as a lost or
 * corrupted page would look to it.  The write is marked dirty like every
 * VMM write, so a migration carries it (and the guest still notices).
 */
static int cmd_corrupt_page(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	static const char *const allowed[] = { "gpa", NULL };
	struct vmm *vmm = opaque;
	json_t *jg = json_object_get(args, "gpa");
	json_int_t gpa;
	uint8_t *p;
	int r = check_args(args, allowed, err);

	if (r)
		return r;
	if (!json_is_integer(jg) || json_integer_value(jg) < 0)
		return kv_errf(err, EINVAL, "'gpa' must be a non-negative integer");
	if (!need_vm(vmm, err))
		return -EAGAIN;
	gpa = json_integer_value(jg);
	p = mem_gpa_to_hva(&vmm->vm->mem, (uint64_t)gpa, 1);
	if (!p)
		return kv_errf(err, EFAULT, "0x%" PRIx64 " is not guest RAM", (uint64_t)gpa);
	__atomic_xor_fetch(p, 0xff, __ATOMIC_SEQ_CST);
	mem_mark_dirty(&vmm->vm->mem, (uint64_t)gpa, 1);
	*ret = json_pack("{s:I}", "gpa", gpa);
	return 0;
}

/*
 * Test and tuning aid: throttle the vCPUs as auto-converge would, with no
 * migration running (a migration sets its own throttle, so it is refused
 * then).  The guest's write counters show what a throttle step achieves.
 */
static int cmd_set_throttle(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	static const char *const allowed[] = { "percent", NULL };
	struct vmm *vmm = opaque;
	json_t *jp = json_object_get(args, "percent");
	int r = check_args(args, allowed, err);

	if (r)
		return r;
	if (!json_is_integer(jp) || json_integer_value(jp) < 0 || json_integer_value(jp) > 99)
		return kv_errf(err, EINVAL, "'percent' must be an integer 0..99");
	if (!need_vm(vmm, err))
		return -EAGAIN;
	pthread_mutex_lock(&vmm->mig_lock);
	if (vmm->mig && !mig_finished(vmm->mig))
		r = kv_errf(err, EBUSY, "a migration is in progress and sets the throttle itself");
	else
		r = vm_set_throttle(vmm->vm, (unsigned)json_integer_value(jp), err);
	pthread_mutex_unlock(&vmm->mig_lock);
	if (!r)
		*ret = json_pack("{s:i}", "percent", (int)vm_get_throttle(vmm->vm));
	return r;
}

/* Debug: per-vCPU exit counts, and where each vCPU is while paused. */
/* What core/emulate.c finished for KVM (PVM hosts only; always 0 on VMX/SVM). */
static int cmd_query_emulation(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct emu_stats st;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	if (!need_vm(vmm, err))
		return -EAGAIN;
	emu_stats_get(vmm->vm, &st);
	*ret = json_pack("{s:I, s:I, s:I}", "int3", (json_int_t)st.int3,
			 "fwait", (json_int_t)st.fwait, "failures", (json_int_t)st.failures);
	return 0;
}

static int cmd_query_vcpus(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	json_t *list;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	if (!need_vm(vmm, err))
		return -EAGAIN;
	list = json_array();
	for (unsigned i = 0; i < vmm->vm->nvcpus; i++) {
		struct vcpu_summary s;
		json_t *o;

		r = vcpu_get_summary(vmm->vm, i, &s, err);
		if (r) {
			json_decref(list);
			return r;
		}
		o = json_pack("{s:i, s:I}", "cpu", (int)i, "exits", (json_int_t)s.exits);
		if (s.have_regs) {
			json_object_set_new(o, "rip", json_integer((json_int_t)s.rip));
			json_object_set_new(o, "cpl", json_integer(s.cpl));
			json_object_set_new(o, "cr0", json_integer((json_int_t)s.cr0));
			json_object_set_new(o, "efer", json_integer((json_int_t)s.efer));
			json_object_set_new(o, "mp-state",
					    json_string(vcpu_mp_state_name(s.mp_state)));
		}
		json_array_append_new(list, o);
	}
	*ret = list;
	return 0;
}

static void on_mig_event(void *opaque, const char *event, json_t *data)
{
	struct vmm *vmm = opaque;

	if (vmm->ctl)
		ctl_server_emit(vmm->ctl, event, data);
	else
		json_decref(data);
}

/* QMP-style: returns at once; progress via query-migrate and MIGRATION /
 * MIGRATION_PASS events.  uri tcp:HOST:PORT (live) or file:PATH (save). */
static int cmd_migrate(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct mig_params p;
	int r;

	/* resume: reconnect a paused post-copy (QMP's migrate resume=true) */
	if (json_is_true(json_object_get(args, "resume"))) {
		static const char *const allowed[] = { "uri", "resume", NULL };
		json_t *u = json_object_get(args, "uri");
		if ((r = check_args(args, allowed, err)))
			return r;
		if (!json_is_string(u))
			return kv_errf(err, EINVAL, "'uri' is required");
		pthread_mutex_lock(&vmm->mig_lock);
		r = vmm->mig ? mig_resume(vmm->mig, json_string_value(u), err)
			     : kv_errf(err, EINVAL, "there is no migration to resume");
		pthread_mutex_unlock(&vmm->mig_lock);
		return r;
	}
	r = mig_params_from_json(args, &p, err);
	if (r)
		return r;
	if (!need_vm(vmm, err))
		return -EAGAIN;
	pthread_mutex_lock(&vmm->mig_lock);
	if (vmm->mig && !mig_finished(vmm->mig)) {
		r = kv_errf(err, EBUSY, "a migration is already in progress");
	} else {
		/* mig_start refuses a VM that is not running (migrated away,
		 * or paused after an indeterminate switchover) */
		mig_destroy(vmm->mig);
		vmm->mig = NULL;
		r = mig_start(&vmm->mig, vmm->vm, vmm->lock, &p, on_mig_event, vmm, err);
	}
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

static int cmd_query_migrate(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	pthread_mutex_lock(&vmm->mig_lock);
	*ret = vmm->mig ? mig_query(vmm->mig) : vmm_incoming_query(vmm);
	pthread_mutex_unlock(&vmm->mig_lock);
	if (!*ret)
		*ret = json_object();	/* QMP: {} before any */
	return 0;
}

static int cmd_migrate_cancel(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	struct vmm *vmm = opaque;
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	pthread_mutex_lock(&vmm->mig_lock);
	r = vmm->mig ? mig_cancel(vmm->mig, err) : kv_errf(err, EINVAL, "no migration in progress");
	pthread_mutex_unlock(&vmm->mig_lock);
	return r;
}

static const struct ctl_cmd commands[] = {
	{ "query-status", cmd_query_status, "run state (QMP StatusInfo)" },
	{ "query-vm", cmd_query_vm, "name, vCPUs, memory, uptime" },
	{ "stop", cmd_stop, "pause every vCPU" },
	{ "cont", cmd_cont, "resume a paused VM" },
	{ "quit", cmd_quit, "shut the VM down and exit the VMM" },
	{ "migrate", cmd_migrate,
	  "start a migration: uri tcp:HOST:PORT (live) or file:PATH (save); downtime-ms, "
	  "bandwidth (MiB/s), max-rounds, policy (fail, force, auto-converge, postcopy, "
	  "auto), postcopy-after, check-only, via; or resume=true with uri to reconnect a "
	  "paused post-copy" },
	{ "query-migrate", cmd_query_migrate, "status and stats of the last migration" },
	{ "migrate_cancel", cmd_migrate_cancel, "cancel the migration; the VM stays here" },
	{ "x-query-emulation", cmd_query_emulation,
	  "instructions finished for KVM's emulator (int3, fwait) and failures" },
	{ "x-query-vcpus", cmd_query_vcpus,
	  "debug: per-vCPU exit counts; registers and mode while paused" },
	{ "x-set-throttle", cmd_set_throttle,
	  "throttle the vCPUs to 'percent' (0..99) of their time off, as auto-converge "
	  "does; refused while a migration runs" },
	{ "x-corrupt-page", cmd_corrupt_page,
	  "debug: flip the byte at guest-physical address 'gpa'" },
};

const struct ctl_cmd *vmm_commands(size_t *n)
{
	*n = sizeof(commands) / sizeof(commands[0]);
	return commands;
}
