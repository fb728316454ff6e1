#define _GNU_SOURCE
#include "vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "boot/pvh.h"
#include "common/file.h"
#include "control/control.h"
#include "core/vm.h"
#include "devices/debug_exit.h"
#include "devices/uart8250.h"

#define KERNEL_MAX (512u << 20)
#define INITRD_MAX (2048u << 20)

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

static int load_kernel(struct vmm *vmm, struct kv_err *err)
{
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t klen = 0, ilen = 0;
	struct pvh_boot boot;
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
	r = pvh_load(&vmm->vm->mem, kernel, klen, initrd, ilen, vmm->opts.append, &boot, err);
	if (r) {
		kv_err_prefix(err, r, "%s", vmm->opts.kernel);
		goto out;
	}
	r = vm_setup_pvh_boot(vmm->vm, boot.entry, boot.start_info, err);
out:
	free(kernel);
	free(initrd);
	return r;
}

static int add_devices(struct vmm *vmm, struct kv_err *err)
{
	struct device *dexit;
	int r;

	r = uart_create(&vmm->uart, "serial0", vmm->console_fd, uart_irq, vmm->vm, err);
	if (r)
		return r;
	r = vm_add_device(vmm->vm, uart_device(vmm->uart), err);
	if (r) {
		uart_device(vmm->uart)->ops->destroy(uart_device(vmm->uart));
		return r;
	}
	r = bus_register(&vmm->vm->pio_bus, UART_COM1_BASE, UART_NREGS,
			 uart_device(vmm->uart), err);
	if (r)
		return r;

	r = debug_exit_create(&dexit, err);
	if (r)
		return r;
	r = vm_add_device(vmm->vm, dexit, err);
	if (r) {
		dexit->ops->destroy(dexit);
		return r;
	}
	return bus_register(&vmm->vm->pio_bus, DEBUG_EXIT_PORT, 1, dexit, err);
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
	signal(SIGPIPE, SIG_IGN);	/* a console or client going away is not fatal */
	return 0;
}

int vmm_create(struct vmm **out, const struct vmm_options *opts, struct kv_err *err)
{
	struct vm_config cfg = { .mem_size = opts->mem_size, .ncpus = opts->ncpus };
	struct vmm *vmm;
	size_t ncmds;
	const struct ctl_cmd *cmds;
	int r;

	if (!opts->kernel)
		return kv_errf(err, EINVAL, "no kernel given (--kernel ELF)");
	vmm = calloc(1, sizeof(*vmm));
	if (!vmm)
		return kv_errf(err, ENOMEM, "allocating the VMM");
	vmm->opts = *opts;
	vmm->console_fd = vmm->input_fd = vmm->signal_fd = -1;
	snprintf(cfg.name, sizeof(cfg.name), "%s", opts->name ? opts->name : "vm");

	if ((r = setup_signals(vmm, err)) || (r = open_console(vmm, err)))
		goto fail;
	r = vm_create(&vmm->vm, &cfg, err);
	if (r)
		goto fail;
	if ((r = add_devices(vmm, err)) || (r = load_kernel(vmm, err)))
		goto fail;
	vmm->vm->on_event = on_vm_event;
	vmm->vm->event_opaque = vmm;
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

int vmm_run(struct vmm *vmm)
{
	struct vm *vm = vmm->vm;
	struct kv_err err;
	int status;

	if (vm_start(vm, &err)) {
		fprintf(stderr, "kvmove: %s\n", err.msg);
		return 1;
	}
	if (vmm->opts.start_paused && vm_pause(vm, &err))
		fprintf(stderr, "kvmove: %s\n", err.msg);

	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = vm_shutdown_fd(vm), .events = POLLIN },
			{ .fd = vmm->signal_fd, .events = POLLIN },
			{ .fd = vmm->input_fd, .events = POLLIN },
		};
		int n = poll(pfd, 3, -1);

		if (n < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(vmm->signal_fd, &si, sizeof(si)) == sizeof(si))
				vm_request_shutdown(vm, VM_SHUTDOWN_HOST, 0, "signal %s",
						    strsignal((int)si.ssi_signo));
		}
		if (pfd[2].revents & (POLLIN | POLLHUP | POLLERR))
			forward_input(vmm);
		if (pfd[0].revents & POLLIN)
			break;
	}

	vm_stop(vm);
	switch (vm->shutdown_reason) {
	case VM_SHUTDOWN_HOST:
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
	if (vmm->ctl) {
		bool guest = vm->shutdown_reason != VM_SHUTDOWN_HOST;
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
	/* Control socket first: no command may reach a half-destroyed VM. */
	ctl_server_destroy(vmm->ctl);
	vm_destroy(vmm->vm);
	if (vmm->console_fd > STDERR_FILENO)
		close(vmm->console_fd);
	if (vmm->signal_fd >= 0)
		close(vmm->signal_fd);
	free(vmm);
}
