#define _GNU_SOURCE
#include "vmm/vmm.h"
#include "vmm/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "boot/bzimage.h"
#include "boot/mptable.h"
#include "boot/pvh.h"
#include "common/file.h"
#include "control/control.h"
#include "core/cpumodel.h"
#include "core/uffd.h"
#include "core/vm.h"
#include "devices/debug_exit.h"
#include "devices/pci.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "devices/uart8250.h"
#include "migration/migration.h"
#include "migration/arbiter.h"
#include "cluster/arbiter_etcd.h"
#include "cluster/fence.h"

#define KERNEL_MAX (512u << 20)
#define INITRD_MAX (2048u << 20)

struct vm *vmm_vm(struct vmm *vmm)
{
	return __atomic_load_n(&vmm->vm, __ATOMIC_ACQUIRE);
}

static void uart_irq(void *opaque, int level)
{
	vm_irq_line(opaque, UART_COM1_IRQ, level);
}

static void on_vm_event(void *opaque, enum vm_event ev)
{
	struct vmm *vmm = opaque;

	if (vmm->ctl)
		ctl_server_emit(vmm->ctl, ev == VM_EVENT_STOP ? "STOP" : "RESUME", NULL);
}

static int open_console(struct vmm *vmm, struct kv_err *err)
{
	const char *c = vmm->opts.console ? vmm->opts.console : "stdio";

	vmm->input_fd = -1;
	if (!strcmp(c, "stdio")) {
		vmm->console_fd = STDOUT_FILENO;
		vmm->input_fd = STDIN_FILENO;
		return 0;
	}
	if (!strcmp(c, "none")) {
		vmm->console_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	} else {
		vmm->console_fd = open(c, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
				       0644);
	}
	if (vmm->console_fd < 0)
		return kv_errf_sys(err, errno, "console %s", c);
	return 0;
}

/* The kernel's file type picks the boot path: a bzImage ("HdrS", the
 * 64-bit boot protocol) or an ELF with the PVH note (the test guest, a
 * vmlinux).  Either way the MP table tells the guest about its CPUs and
 * IOAPIC (docs/linux-guests.md). */
static int boot_kernel(struct vm *vm, const uint8_t *kernel, size_t klen,
		       const uint8_t *initrd, size_t ilen, const char *cmdline,
		       struct kv_err *err)
{
	struct bz_boot bz;
	struct pvh_boot pvh;
	int r;

	if (!bzimage_detect(kernel, klen)) {
		if ((r = pvh_load(&vm->mem, kernel, klen, initrd, ilen, cmdline, &pvh, err)) ||
		    (r = mptable_write(&vm->mem, vm->cfg.ncpus, err)))
			return r;
		return vm_setup_pvh_boot(vm, pvh.entry, pvh.start_info, err);
	}
	if ((r = bzimage_load(&vm->mem, kernel, klen, initrd, ilen, cmdline, &bz, err)) ||
	    (r = mptable_write(&vm->mem, vm->cfg.ncpus, err)))
		return r;
	return vm_setup_boot64(vm, &(struct vm_boot64){
		.rip = bz.entry, .rsi = bz.zero_page, .cr3 = bz.cr3, .gdt_base = bz.gdt_base,
		.gdt_limit = bz.gdt_limit, .cs = BZ_BOOT_CS, .ds = BZ_BOOT_DS }, err);
}

static int load_kernel(struct vmm *vmm, struct kv_err *err)
{
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t klen = 0, ilen = 0;
	int r;

	r = file_read_all(vmm->opts.kernel, KERNEL_MAX, &kernel, &klen, err);
	if (r)
		return kv_err_prefix(err, r, "kernel");
	if (vmm->opts.initrd) {
		r = file_read_all(vmm->opts.initrd, INITRD_MAX, &initrd, &ilen, err);
		if (r) {
			kv_err_prefix(err, r, "initrd");
			goto out;
		}
	}
	r = boot_kernel(vmm->vm, kernel, klen, initrd, ilen, vmm->opts.append, err);
	if (r)
		kv_err_prefix(err, r, "%s", vmm->opts.kernel);
out:
	free(kernel);
	free(initrd);
	return r;
}

/* incoming: the specs come from the stream, so the disks and TAPs go
 * through this host's own policy (preflight checked it; checked again) */
static int add_devices(struct vm *vm, struct vmm *vmm, const struct dev_spec *specs,
		       unsigned nspecs, bool incoming, const int *handed_fds, struct kv_err *err)
{
	struct device *dexit, *d;
	struct pci_host *pci;
	int r;

	r = uart_create(&vmm->uart, "serial0", vmm->console_fd, uart_irq, vm, err);
	if (r)
		return r;
	r = vm_add_device(vm, uart_device(vmm->uart), err);
	if (r) {
		uart_device(vmm->uart)->ops->destroy(uart_device(vmm->uart));
		return r;
	}
	r = bus_register(&vm->pio_bus, UART_COM1_BASE, UART_NREGS, uart_device(vmm->uart), err);
	if (r)
		return r;

	r = debug_exit_create(&dexit, err);
	if (r)
		return r;
	r = vm_add_device(vm, dexit, err);
	if (r) {
		dexit->ops->destroy(dexit);
		return r;
	}
	if ((r = bus_register(&vm->pio_bus, DEBUG_EXIT_PORT, 1, dexit, err)) ||
	    (r = pci_host_create(&pci, vm, err)))
		return r;

	/* PCI devices in spec order: the same order gives the same slots on a
	 * migration destination */
	for (unsigned i = 0; i < nspecs; i++) {
		const struct dev_spec *sp = &specs[i];
		int fd = -1;

		if (!strcmp(sp->type, "virtio-blk")) {
			if (incoming &&
			    (fd = mig_allow_open_disk(&vmm->opts.allow, sp->path, sp->readonly,
						      err)) < 0)
				return kv_err_prefix(err, fd, "%s", sp->name);
			/* at boot the disks are ours at once; an incoming VM takes
			 * them when the source has let go */
			r = virtio_blk_create(&d, vm, pci, sp->name, sp->path, fd, sp->readonly,
					      !incoming, err);
		} else if (!strcmp(sp->type, "virtio-net")) {
			if (incoming && (r = mig_allow_tap(&vmm->opts.allow, sp->tap, err)))
				return kv_err_prefix(err, r, "%s", sp->name);
			/* a same-host hand-over brings the TAP along: the
			 * previous VMM still holds it */
			r = virtio_net_create(&d, vm, pci, sp->name, sp->tap, sp->mac,
					      handed_fds ? handed_fds[i] : -1, err);
		} else {
			continue;	/* the always-present devices above */
		}
		if (r)
			return kv_err_prefix(err, r, "%s", sp->name);
	}
	return 0;
}

/* Build the VM and its devices: from options at boot, from the received
 * config on a migration destination (mig_build_fn). */
/* The guest's CPUID at boot: this host's, as --x-hide-host-feature leaves
 * it, masked to --cpu.  A model the host cannot give fails here, naming
 * what is missing. */
static int boot_cpuid(struct vmm *vmm, struct kvm_cpuid2 **out, char *spec, size_t cap,
		      struct kv_err *err)
{
	struct kvm_cpuid2 *host = NULL;
	struct cpu_model m;
	int r;

	if ((r = cpu_model_parse(vmm->opts.cpu ? vmm->opts.cpu : "host", &m, err)) ||
	    (r = kvm_host_cpuid(&vmm->opts.hide, &host, err)))
		return r;
	r = cpu_model_apply(&m, host, out, err);
	free(host);
	if (!r)
		snprintf(spec, cap, "%s", m.spec);
	return r;
}

static int build_vm(void *opaque, const struct mig_vm_config *mc, struct vm **out,
		    struct kv_err *err)
{
	struct vmm *vmm = opaque;
	struct vm_config cfg = { .mem_size = vmm->opts.mem_size, .ncpus = vmm->opts.ncpus,
				 .mem_backend = vmm->opts.mem_backend };
	struct kvm_cpuid2 *cpuid = NULL;
	struct vm *vm;
	int r;

	snprintf(cfg.name, sizeof(cfg.name), "%s", vmm->opts.name ? vmm->opts.name : "vm");
	if (mc) {
		/* a migrated VM keeps its name, size, vCPUs and CPU model */
		snprintf(cfg.name, sizeof(cfg.name), "%s", mc->name);
		cfg.mem_size = mc->mem_size;
		cfg.ncpus = mc->ncpus;
		cfg.cpuid = mc->cpuid;
		snprintf(cfg.cpu_model, sizeof(cfg.cpu_model), "%s", mc->cpu_model);
		cfg.has_memfd = mc->local;
		cfg.memfd = mc->local ? mc->ram_fd : -1;
	} else {
		if ((r = boot_cpuid(vmm, &cpuid, cfg.cpu_model, sizeof(cfg.cpu_model), err)))
			return r;
		cfg.cpuid = cpuid;
	}
	r = vm_create(&vm, &cfg, err);
	free(cpuid);
	if (r)
		return r;
	r = mc ? add_devices(vm, vmm, mc->devices, mc->ndevices, true,
			     mc->local ? mc->dev_fd : NULL, err)
	       : add_devices(vm, vmm, vmm->opts.devs, vmm->opts.ndevs, false, NULL, err);
	if (r) {
		vm_destroy(vm);
		return r;
	}
	vm->on_event = on_vm_event;
	vm->event_opaque = vmm;
	__atomic_store_n(&vmm->vm, vm, __ATOMIC_RELEASE);
	if (out)
		*out = vm;
	return 0;
}

static int setup_signals(struct vmm *vmm, struct kv_err *err)
{
	sigset_t set;

	/* Blocked here, before any thread exists, so every thread inherits the
	 * mask and only the signalfd sees these. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return kv_errf(err, EINVAL, "pthread_sigmask");
	vmm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vmm->signal_fd < 0)
		return kv_errf_sys(err, errno, "signalfd");
	signal(SIGPIPE, SIG_IGN);	/* a console or peer going away is not fatal */
	return 0;
}

static int setup_lock(struct vmm *vmm, struct kv_err *err)
{
	const char *name = vmm->opts.incoming || vmm->opts.restore ? vmm->opts.allow.expect
								    : vmm->opts.name;
	struct arbiter *a = NULL;
	int r;

	/* the cluster's owner key first (the commit point), the lock file on
	 * shared storage second */
	if (vmm->opts.etcd) {
		if (!name)
			return kv_errf(err, EINVAL, "a cluster VM needs a name (--name, --expect)");
		r = arbiter_etcd_new(&a, vmm->opts.etcd, name, vmm->opts.node, err);
		if (r)
			return r;
		arbiter_chain(&vmm->arb, a);
	}
	if (vmm->opts.lock) {
		r = arbiter_lockfile_new(&a, vmm->opts.lock, err);
		if (r)
			return r;
		arbiter_chain(&vmm->arb, a);
	}
	/* A VM that boots here owns itself from the start; an incoming one
	 * only once the source has let go (at GO, or from a saved file). */
	if (vmm->arb && !vmm->opts.incoming && !vmm->opts.restore)
		return arbiter_acquire(vmm->arb, NULL, 10000, err);
	return 0;
}

/* The node's lease could not be confirmed: end the VM now, before the
 * cluster may boot it elsewhere.  _exit: no teardown that could block (the
 * kernel drops the disk locks with the process). */
static void fenced(void *opaque, const char *why)
{
	struct vmm *vmm = opaque;
	const char *name = vmm->opts.incoming || vmm->opts.restore ? vmm->opts.allow.expect
								    : vmm->opts.name;

	fprintf(stderr, "kvmove: %s: FENCED: %s; the VM ends now\n", name ? name : "vm", why);
	_exit(FENCE_EXIT_STATUS);
}

int vmm_create(struct vmm **out, const struct vmm_options *opts, struct kv_err *err)
{
	struct vmm *vmm;
	size_t ncmds;
	const struct ctl_cmd *cmds;
	int r;

	if (!opts->kernel && !opts->incoming && !opts->restore)
		return kv_errf(err, EINVAL, "nothing to run: give --kernel, --incoming or --restore");
	vmm = calloc(1, sizeof(*vmm));
	if (!vmm)
		return kv_errf(err, ENOMEM, "allocating the VMM");
	vmm->opts = *opts;
	vmm->console_fd = vmm->input_fd = vmm->signal_fd = -1;
	vmm->defer_efd = vmm->defer_listen_fd = -1;
	mig_settings_defaults(&vmm->settings);
	vmm->settings.exit_after = opts->exit_after_migration;
	pthread_mutex_init(&vmm->mig_lock, NULL);

	if ((r = setup_signals(vmm, err)) || (r = open_console(vmm, err)) ||
	    (r = setup_lock(vmm, err)) ||
	    (r = mig_tls_setup(&vmm->tls, opts->tls_psk, opts->tls_creds, opts->insecure,
			       opts->tls_peer, err)))
		goto fail;
	if (opts->kernel) {
		if ((r = build_vm(vmm, NULL, NULL, err)) || (r = load_kernel(vmm, err)))
			goto fail;
	}
	/* Before the first byte of a VM from elsewhere, and before any thread
	 * exists (capabilities are per thread): confine this process. */
	if ((opts->incoming || opts->restore) && !opts->no_sandbox &&
	    (r = sandbox_enter(opts->allow.ntaps > 0, err))) {
		kv_err_prefix(err, r, "sandbox");
		goto fail;
	}
	/* after the sandbox: its threads are confined too */
	if (opts->fence_lease && (r = fence_start(&vmm->fence, opts->etcd, opts->fence_lease,
						  fenced, vmm, err))) {
		kv_err_prefix(err, r, "fencing");
		goto fail;
	}
	if (opts->incoming && !strcmp(opts->incoming, "defer") &&
	    (vmm->defer_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		r = kv_errf_sys(err, errno, "eventfd");
		goto fail;
	}
	if (opts->control) {
		cmds = vmm_commands(&ncmds);
		r = ctl_server_create(&vmm->ctl, opts->control, cmds, ncmds, vmm, err);
		if (r) {
			kv_err_prefix(err, r, "control socket");
			goto fail;
		}
	}
	*out = vmm;
	return 0;
fail:
	vmm_destroy(vmm);
	return r;
}

static void forward_input(struct vmm *vmm)
{
	uint8_t buf[64];
	ssize_t n = read(vmm->input_fd, buf, sizeof(buf));

	if (n <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN))
			vmm->input_fd = -1;	/* EOF: stop listening */
		return;
	}
	/* The FIFO holds 64 bytes; a guest that never reads loses the rest,
	 * like a real UART. */
	uart_input(vmm->uart, buf, (size_t)n);
}

/* ---- incoming migration / restore, in a thread so signals still work ---- */

struct incoming_job {
	struct vmm *vmm;
	struct mig_incoming in;
	struct kv_err err;
	pthread_t thread;
	bool running;		/* the thread is to be joined */
	int rc;
	int done_efd;		/* the thread ended */
	int resumed_efd;	/* post-copy: the VM runs, pages still come */
	int cancel;
	struct kvm_cpuid2 *supported;
};

static void *incoming_main(void *arg)
{
	struct incoming_job *j = arg;
	uint64_t one = 1;

	j->rc = mig_incoming_run(&j->in, &j->err);
	if (write(j->done_efd, &one, sizeof(one)) < 0) {
		/* cannot happen with an eventfd */
	}
	return NULL;
}

static void incoming_resumed(void *opaque)
{
	struct vmm *vmm = opaque;
	uint64_t one = 1;

	if (write(vmm->inc->resumed_efd, &one, sizeof(one)) < 0) {
		/* cannot happen with an eventfd */
	}
}

static void incoming_event(void *opaque, const char *event, json_t *data)
{
	struct vmm *vmm = opaque;

	if (vmm->ctl)
		ctl_server_emit(vmm->ctl, event, data);
	else
		json_decref(data);
}

/* Stop waiting: wake any blocked read or accept. */
static void incoming_cancel(struct incoming_job *j)
{
	int fd;

	__atomic_store_n(&j->cancel, 1, __ATOMIC_RELEASE);
	fd = __atomic_load_n(&j->in.conn_fd, __ATOMIC_ACQUIRE);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

/* End the incoming side (cancel it if still running) and free it; a
 * post-copy still waiting for pages lets its faulting threads go. */
static void incoming_finish(struct vmm *vmm)
{
	struct incoming_job *j = vmm->inc;

	if (!j)
		return;
	if (j->running) {
		incoming_cancel(j);
		pthread_join(j->thread, NULL);
		j->running = false;
	}
	mig_incoming_destroy(&j->in);
	if (j->done_efd >= 0)
		close(j->done_efd);
	if (j->resumed_efd >= 0)
		close(j->resumed_efd);
	free(j->supported);
	free(j);
	vmm->inc = NULL;
}

const char *vmm_tls_creds_name(struct vmm *vmm)
{
	return vmm->tls.kind;
}

int vmm_incoming_start(struct vmm *vmm, const char *uri, struct kv_err *err)
{
	uint64_t one = 1;

	if (!vmm->opts.incoming || strcmp(vmm->opts.incoming, "defer"))
		return kv_errf(err, EINVAL, "this VMM was not started with --incoming defer");
	if (__atomic_load_n(&vmm->defer_uri_set, __ATOMIC_ACQUIRE) ||
	    strlen(uri) >= sizeof(vmm->defer_uri))
		return kv_errf(err, EINVAL, "The incoming migration has already been started");
	snprintf(vmm->defer_uri, sizeof(vmm->defer_uri), "%s", uri);
	/* listening when this returns, like QEMU's migrate-incoming */
	vmm->defer_listen_fd = mig_listen(uri, err);
	if (vmm->defer_listen_fd < 0)
		return vmm->defer_listen_fd;
	__atomic_store_n(&vmm->defer_uri_set, true, __ATOMIC_RELEASE);
	if (write(vmm->defer_efd, &one, sizeof(one)) < 0)
		return kv_errf_sys(err, errno, "eventfd");
	return 0;
}

/* --incoming defer: wait for migrate-incoming (or a signal: 1). */
static int wait_defer(struct vmm *vmm)
{
	fprintf(stderr, "kvmove: waiting for migrate-incoming on the control socket\n");
	for (;;) {
		struct pollfd pfd[2] = { { .fd = vmm->defer_efd, .events = POLLIN },
					 { .fd = vmm->signal_fd, .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			return 1;
		if (pfd[0].revents & POLLIN)
			return 0;
		if (pfd[1].revents & POLLIN)
			return 1;
	}
}

json_t *vmm_incoming_query(struct vmm *vmm)
{
	return vmm->inc ? mig_incoming_query(&vmm->inc->in) : NULL;
}

bool vmm_incoming_postcopy(struct vmm *vmm)
{
	enum mig_status st;

	if (!vmm->inc)
		return false;
	pthread_mutex_lock(&vmm->inc->in.mu);
	st = vmm->inc->in.status;
	pthread_mutex_unlock(&vmm->inc->in.mu);
	return st == MIG_POSTCOPY_ACTIVE || st == MIG_POSTCOPY_PAUSED;
}

static int run_incoming(struct vmm *vmm)
{
	struct incoming_job *j = calloc(1, sizeof(*j));
	bool resumed = false;
	int r;

	if (!j) {
		fprintf(stderr, "kvmove: out of memory\n");
		return 1;
	}
	vmm->inc = j;
	j->vmm = vmm;
	j->done_efd = j->resumed_efd = -1;
	mig_incoming_init(&j->in);
	j->in.listen_fd = vmm->defer_listen_fd;	/* --incoming defer: already listening */
	vmm->defer_listen_fd = -1;
	j->in.uri = vmm->opts.incoming && !strcmp(vmm->opts.incoming, "defer") ?
		    vmm->defer_uri : vmm->opts.incoming;
	j->in.file = vmm->opts.restore;
	j->in.keep_file = vmm->opts.keep_image;
	j->in.arb = vmm->arb;
	j->in.tls = &vmm->tls;
	j->in.build = build_vm;
	j->in.opaque = vmm;
	j->in.on_resumed = incoming_resumed;
	j->in.ev = incoming_event;
	j->in.ev_opaque = vmm;
	/* Post-copy finds the pages still to come as missing pages, which only a
	 * memfd guarantees: userfaultfd on hugetlb would place 2 MiB at a time,
	 * and in anon memory a page received during pre-copy brings its whole
	 * 2 MiB transparent huge page in, so never-sent neighbours read as
	 * zeros instead of faulting (test_uffd shows it). */
	j->in.postcopy_ok = uffd_supported() && vmm->opts.mem_backend == MEM_BACKEND_MEMFD;
	j->in.cancel = &j->cancel;
	j->in.host.max_mem = vmm->opts.max_mem;
	j->in.host.has_lock = vmm->arb != NULL;
	j->in.host.allow = &vmm->opts.allow;
	if (mig_host_probe(&j->in.host, &j->supported, &j->err)) {
		fprintf(stderr, "kvmove: %s\n", j->err.msg);
		return 1;
	}
	if (vmm->opts.mem_backend == MEM_BACKEND_HUGETLB) {
		/* what an incoming VM's RAM would come from */
		j->in.host.hugetlb = true;
		j->in.host.avail_mem = mem_hugetlb_free();
	}
	cpu_cpuid_hide(j->supported, &vmm->opts.hide);	/* preflight sees what the VM would */
	{
		/* more vCPUs than the host has CPUs only when asked (--max-vcpus) */
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		unsigned lim = vmm->opts.max_vcpus ? vmm->opts.max_vcpus :
			       online > 0 ? (unsigned)online : 1;
		if (lim < j->in.host.max_vcpus)
			j->in.host.max_vcpus = lim;
	}
	j->done_efd = eventfd(0, EFD_CLOEXEC);
	j->resumed_efd = eventfd(0, EFD_CLOEXEC);
	if (j->done_efd < 0 || j->resumed_efd < 0 ||
	    pthread_create(&j->thread, NULL, incoming_main, j)) {
		fprintf(stderr, "kvmove: cannot start the incoming migration\n");
		return 1;
	}
	j->running = true;
	if (vmm->opts.incoming)
		fprintf(stderr, "kvmove: waiting for a migration on %s\n", j->in.uri);
	for (;;) {
		struct pollfd pfd[3] = { { .fd = j->done_efd, .events = POLLIN },
					 { .fd = vmm->signal_fd, .events = POLLIN },
					 { .fd = j->resumed_efd, .events = POLLIN } };
		if (poll(pfd, 3, -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN)
			break;
		if (pfd[2].revents & POLLIN) {
			resumed = true;	/* post-copy goes on in the thread */
			break;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(vmm->signal_fd, &si, sizeof(si)) != sizeof(si))
				continue;
			incoming_cancel(j);
		}
	}
	if (!resumed) {
		pthread_join(j->thread, NULL);
		j->running = false;
	}
	r = resumed ? 0 : j->rc;
	vmm->incoming_refused = j->in.refused;
	if (r) {
		fprintf(stderr, "kvmove: incoming migration failed: %s\n", j->err.msg);
		return j->in.refused ? 3 : 1;
	}
	if (resumed)
		fprintf(stderr, "kvmove: %s: resumed in post-copy after %.1f ms of loading; the "
			"rest of its memory follows\n", vmm->vm->cfg.name, j->in.load_ms);
	else
		fprintf(stderr, "kvmove: %s: resumed after receiving %" PRIu64 " pages "
			"(%.1f MiB); %.1f ms from the first CPU/device state record to resume\n",
			vmm->vm->cfg.name, j->in.pages, (double)j->in.bytes / 1048576.0,
			j->in.load_ms);
	return 0;
}

int vmm_run(struct vmm *vmm)
{
	struct kv_err err;
	struct vm *vm;
	int status;

	if (vmm->opts.incoming && !strcmp(vmm->opts.incoming, "defer") && wait_defer(vmm))
		return 0;	/* told to stop before any migration came */
	if (vmm->opts.incoming || vmm->opts.restore) {
		status = run_incoming(vmm);
		if (status)
			return status;
		vm = vmm->vm;	/* running: take_and_resume started it */
	} else {
		vm = vmm->vm;
		if (vm_start(vm, &err)) {
			fprintf(stderr, "kvmove: %s\n", err.msg);
			return 1;
		}
	}
	if (vmm->opts.start_paused && vm_pause(vm, &err))
		fprintf(stderr, "kvmove: %s\n", err.msg);

	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = vm_shutdown_fd(vm), .events = POLLIN },
			{ .fd = vmm->signal_fd, .events = POLLIN },
			{ .fd = vmm->input_fd, .events = POLLIN },
		};
		/* Output is line-buffered; a partial line (a prompt) must still
		 * show up, so flush what waits every 100 ms. */
		int n = poll(pfd, 3, 100);

		if (n < 0 && errno != EINTR)
			break;
		if (n == 0) {
			uart_flush(vmm->uart);
			continue;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(vmm->signal_fd, &si, sizeof(si)) == sizeof(si))
				vm_request_shutdown(vm, VM_SHUTDOWN_SIGNAL, 0, "signal %s",
						    strsignal((int)si.ssi_signo));
		}
		if (pfd[2].revents & (POLLIN | POLLHUP | POLLERR))
			forward_input(vmm);
		if (pfd[0].revents & POLLIN)
			break;
	}

	/* A post-copy may still hold vCPUs on missing pages: tell them to end,
	 * then release them (incoming_finish), then wait for them. */
	vm_stop_begin(vm);
	incoming_finish(vmm);
	vm_stop(vm);
	switch (vm->shutdown_reason) {
	case VM_SHUTDOWN_HOST:
	case VM_SHUTDOWN_SIGNAL:
	case VM_SHUTDOWN_MIGRATED:
		status = 0;
		break;
	case VM_SHUTDOWN_GUEST:
		status = vm->shutdown_code;
		break;
	default:
		status = 1;
		break;
	}
	if (vm->shutdown_reason == VM_SHUTDOWN_GUEST_RESET ||
	    vm->shutdown_reason == VM_SHUTDOWN_ERROR)
		fprintf(stderr, "kvmove: %s: VM stopped: %s\n", vm->cfg.name, vm->shutdown_msg);
	if (vm->shutdown_reason == VM_SHUTDOWN_MIGRATED)
		fprintf(stderr, "kvmove: %s: %s; this VMM exits\n", vm->cfg.name,
			vm->shutdown_msg);
	if (vmm->ctl) {
		bool guest = vm->shutdown_reason == VM_SHUTDOWN_GUEST ||
			     vm->shutdown_reason == VM_SHUTDOWN_GUEST_RESET;
		ctl_server_emit(vmm->ctl, "SHUTDOWN",
				json_pack("{s:b, s:s}", "guest", guest, "reason",
					  vm_shutdown_reason_name(vm->shutdown_reason)));
	}
	return status;
}

void vmm_destroy(struct vmm *vmm)
{
	if (!vmm)
		return;
	{
	/* An outgoing migration still running is cancelled (the VM stays, or
	 * if past GO, the lock decides) and joined while the control socket
	 * can still take its events. */
	struct migration *mig;

	pthread_mutex_lock(&vmm->mig_lock);
	mig = vmm->mig;
	vmm->mig = NULL;
	pthread_mutex_unlock(&vmm->mig_lock);
	if (mig && !mig_finished(mig))
		mig_abandon(mig);
	mig_destroy(mig);
	}
	if (vmm->vm)
		vm_stop_begin(vmm->vm);
	incoming_finish(vmm);
	/* Then the control socket: no command may reach a half-destroyed VM. */
	ctl_server_destroy(vmm->ctl);
	vmm->ctl = NULL;
	vm_destroy(vmm->vm);
	fence_stop(vmm->fence);
	vmm->fence = NULL;
	if (vmm->arb) {
		arbiter_destroy(vmm->arb);
		vmm->arb = NULL;
	}
	if (vmm->console_fd > STDERR_FILENO)
		close(vmm->console_fd);
	if (vmm->signal_fd >= 0)
		close(vmm->signal_fd);
	if (vmm->defer_efd >= 0)
		close(vmm->defer_efd);
	if (vmm->defer_listen_fd >= 0)
		close(vmm->defer_listen_fd);
	mig_tls_free(&vmm->tls);
	pthread_mutex_destroy(&vmm->mig_lock);
	free(vmm);
}
