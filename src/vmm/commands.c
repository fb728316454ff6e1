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
#include "migration/arbiter.h"
#include "vmm/cmds.h"
#include "vmm/vmm.h"
#include "vmm/sandbox.h"

/* QMP rejects arguments it does not know; so do we. */
int check_args(json_t *args, const char *const *allowed, struct kv_err *err)
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

const char *const no_args[] = { NULL };

/* Between the pause for stop-and-copy and the end of a migration, only the
 * migration may pause or resume the VM. */
bool migration_busy(struct vmm *vmm)
{
	bool busy;

	pthread_mutex_lock(&vmm->mig_lock);
	busy = vmm->mig && !mig_finished(vmm->mig) && mig_get_status(vmm->mig) >= MIG_DEVICE;
	pthread_mutex_unlock(&vmm->mig_lock);
	return busy;
}

/* An incoming VMM has no VM until the migration's config arrived. */
struct vm *need_vm(struct vmm *vmm, struct kv_err *err)
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
	pthread_mutex_lock(&vmm->mig_lock);
	/* QMP's RunState: the VM moved away, this stopped copy waits for quit */
	r = st == VM_STATE_PAUSED && vmm->mig && mig_migrated(vmm->mig);
	pthread_mutex_unlock(&vmm->mig_lock);
	*ret = json_pack("{s:s, s:b, s:b}", "status", r ? "postmigrate" : vm_state_name(st),
			 "running", st == VM_STATE_RUNNING, "singlestep", 0);
	return 0;
}

/*
 * A migrated VM runs again here only if the arbiter says the destination
 * let go: it holds the VM's lock (and disk locks) while it runs it, and the
 * kernel frees them when its VMM dies; in a cluster the owner key must name
 * this node again.  Without an arbiter nothing can tell, so it never does.
 */
static int take_back(struct vmm *vmm, struct kv_err *err)
{
	int r;

	if (!vmm->arb)
		return kv_errf(err, EPERM, "the VM was migrated away and runs elsewhere; without "
			       "a lock file (--lock) there is no way to know that the destination "
			       "stopped, so it cannot run here again");
	if ((r = arbiter_acquire(vmm->arb, NULL, 5000, err)))
		return kv_err_prefix(err, r, "the VM was migrated away and its destination still "
				     "holds it");
	if ((r = vm_acquire_resources(vmm->vm, err))) {
		(void)arbiter_release(vmm->arb, NULL, NULL);
		return kv_err_prefix(err, r, "the VM was migrated away");
	}
	mig_destroy(vmm->mig);	/* this copy is the VM again */
	vmm->mig = NULL;
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
	*ret = json_pack("{s:s, s:i, s:I, s:s, s:I, s:I, s:s}", "name", vmm->vm->cfg.name,
			 "cpus", (int)vmm->vm->nvcpus, "mem", (json_int_t)vmm->vm->mem.size,
			 "mem-backend", mem_backend_name(vmm->vm->mem.backend),
			 "mem-resident", (json_int_t)mem_resident_bytes(&vmm->vm->mem),
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
	if (vmm->mig && mig_migrated(vmm->mig))
		r = take_back(vmm, err);
	pthread_mutex_unlock(&vmm->mig_lock);
	return r ? r : vm_resume(vmm->vm, err);
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

/* Tests: is this VMM confined (seccomp, capabilities), and what do exec,
 * fork and unshare answer here. */
static int cmd_query_sandbox(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
{
	int r = check_args(args, no_args, err);

	if (r)
		return r;
	*ret = sandbox_probe();
	return 0;
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

static const struct ctl_cmd commands[] = {
	{ "query-status", cmd_query_status, "run state (QMP StatusInfo)", NULL },
	{ "query-vm", cmd_query_vm, "name, vCPUs, memory, uptime", NULL },
	{ "stop", cmd_stop, "pause every vCPU", NULL },
	{ "cont", cmd_cont, "resume a paused VM", NULL },
	{ "quit", cmd_quit, "shut the VM down and exit the VMM", NULL },
	{ "system_powerdown", qmp_system_powerdown,
	  "not available: kvmove has no ACPI power button yet (use quit)", NULL },
	{ "query-version", qmp_query_version, "kvmove's version, in QMP's shape", NULL },
	{ "query-name", qmp_query_name, "the VM's name", NULL },
	{ "query-kvm", qmp_query_kvm, "KVM is present and used (always)", NULL },
	{ "query-cpus-fast", qmp_query_cpus_fast, "the vCPUs and their host threads", NULL },
	{ "query-block", qmp_query_block, "the disks (QMP BlockInfo)", NULL },
	{ "query-blockstats", qmp_query_blockstats, "the disks' I/O counters",
	  "?query-nodes:bool" },
	{ "query-qmp-schema", qmp_query_qmp_schema,
	  "what this VMM implements (QAPI introspection)", NULL },
	{ "migrate", qmp_migrate,
	  "start a migration: uri tcp:HOST:PORT (live) or file:PATH (save); downtime-ms, "
	  "bandwidth (MiB/s), max-rounds, policy (fail, force, auto-converge, postcopy, "
	  "auto), postcopy-after, channels (connections for RAM), check-only, via; or resume=true with uri to reconnect a "
	  "paused post-copy",
	  "uri:str ?detach:bool ?blk:bool ?inc:bool ?resume:bool ?downtime-ms:int "
	  "?bandwidth:int ?max-rounds:int ?policy:str ?postcopy-after:int ?check-only:bool "
	  "?via:str ?channels:int" },
	{ "query-migrate", qmp_query_migrate, "status and stats of the migration (either side)", NULL },
	{ "migrate_cancel", qmp_migrate_cancel, "cancel the migration; the VM stays here", NULL },
	{ "migrate-set-capabilities", qmp_migrate_set_capabilities,
	  "set migration capabilities (QMP names)", "capabilities:any" },
	{ "query-migrate-capabilities", qmp_query_migrate_capabilities,
	  "every QMP migration capability and its state here", NULL },
	{ "migrate-set-parameters", qmp_migrate_set_parameters,
	  "set migration parameters (QMP names)",
	  "?downtime-limit:int ?max-bandwidth:int ?cpu-throttle-initial:int "
	  "?cpu-throttle-increment:int ?max-cpu-throttle:int ?multifd-channels:int" },
	{ "query-migrate-parameters", qmp_query_migrate_parameters,
	  "the migration parameters kvmove has", NULL },
	{ "migrate-start-postcopy", qmp_migrate_start_postcopy,
	  "switch the running migration to post-copy (needs postcopy-ram)", NULL },
	{ "migrate-continue", qmp_migrate_continue,
	  "go on from pre-switchover (pause-before-switchover)", "state:str" },
	{ "migrate-incoming", qmp_migrate_incoming,
	  "start listening (a VMM started with --incoming defer)", "uri:str" },
	{ "x-query-emulation", cmd_query_emulation,
	  "instructions finished for KVM's emulator (int3, fwait) and failures", NULL },
	{ "x-query-vcpus", cmd_query_vcpus,
	  "debug: per-vCPU exit counts; registers and mode while paused", NULL },
	{ "x-set-throttle", cmd_set_throttle,
	  "throttle the vCPUs to 'percent' (0..99) of their time off, as auto-converge "
	  "does; refused while a migration runs", "percent:int" },
	{ "x-query-sandbox", cmd_query_sandbox,
	  "test: seccomp mode, capabilities, and what exec/fork/unshare answer", NULL },
	{ "x-corrupt-page", cmd_corrupt_page,
	  "debug: flip the byte at guest-physical address 'gpa'", "gpa:int" },
};

const struct ctl_cmd *vmm_commands(size_t *n)
{
	*n = sizeof(commands) / sizeof(commands[0]);
	return commands;
}
