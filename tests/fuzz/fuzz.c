/* fuzz.c - the fake VM and helpers every fuzz target shares (fuzz.h). */
#define _GNU_SOURCE
#include "fuzz.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/vm.h"
#include "devices/debug_exit.h"
#include "devices/pci.h"
#include "devices/uart8250.h"
#include "devices/virtio_blk.h"

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz invariant broken: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static void must(int r, const struct kv_err *err, const char *what)
{
	if (r < 0)
		fuzz_fail("building the fake VM: %s: %s", what, err->msg);
}

/* The devices every VMM has, plus one disk, in the VMM's order (vmm.c):
 * the same instance names a real stream carries. */
static void add_devices(struct vm *vm)
{
	struct uart8250 *u;
	struct device *d;
	struct pci_host *pci;
	struct kv_err err;
	int disk = memfd_create("fuzz-blk0", MFD_CLOEXEC);

	if (disk < 0 || ftruncate(disk, 1 << 20) < 0)
		fuzz_fail("memfd for the disk");
	/* out_fd -1 and no IRQ callback: guest output and interrupts go nowhere */
	must(uart_create(&u, "serial0", -1, NULL, NULL, &err), &err, "uart");
	must(vm_add_device(vm, uart_device(u), &err), &err, "uart");
	must(bus_register(&vm->pio_bus, UART_COM1_BASE, UART_NREGS, uart_device(u), &err), &err,
	     "uart ports");
	must(debug_exit_create(&d, &err), &err, "debug-exit");
	must(vm_add_device(vm, d, &err), &err, "debug-exit");
	must(pci_host_create(&pci, vm, &err), &err, "pci host");
	/* an incoming VM's disk: opened for it, not locked yet */
	must(virtio_blk_create(&d, vm, pci, "blk0", "/fuzz/blk0.img", disk, false, false, &err),
	     &err, "virtio-blk");
}

struct vm *fuzz_vm_new(uint64_t mem_size, enum fuzz_vm_devices devices)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct kv_err err;

	if (!vm)
		fuzz_fail("out of memory");
	vm->kvm_fd = vm->vm_fd = vm->shutdown_efd = -1;
	snprintf(vm->cfg.name, sizeof(vm->cfg.name), "fuzz");
	vm->cfg.mem_size = mem_size;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	bus_init(&vm->pio_bus, "pio", true);
	bus_init(&vm->mmio_bus, "mmio", false);
	must(mem_init(&vm->mem, mem_size, MEM_BACKEND_MEMFD, &err), &err, "guest memory");
	if (devices == FUZZ_VM_DEVICES)
		add_devices(vm);
	return vm;
}

void fuzz_mem_reset(struct guest_mem *mem)
{
	/* A hole costs nothing to keep and reads as zeros, like fresh RAM;
	 * punching the whole file is cheap when few pages are present. */
	if (fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      (off_t)mem->size) < 0)
		fuzz_fail("punching guest memory: %m");
	memset(mem->vmm_dirty, 0, ((mem->npages + 63) / 64) * sizeof(uint64_t));
}
