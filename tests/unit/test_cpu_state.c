/*
 * CPU and irqchip state on real KVM: a guest counts in ECX and stores the
 * count to memory; we pause it, save every vCPU and VM state block through
 * the state walker's wire format, build a second VM from its RAM and that
 * state, and check the copy resumes exactly where the original stopped.
 * Needs /dev/kvm (fails without it unless KVMOVE_ALLOW_NO_KVM=1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/cpu_state.h"
#include "core/vm.h"

#define CODE_GPA 0x100000ULL
#define COUNTER_GPA 0x200000ULL

/* 32-bit: xor ecx,ecx; 1: inc ecx; mov [0x200000],ecx; jmp 1b */
static const uint8_t code[] = { 0x31, 0xc9, 0x41, 0x89, 0x0d, 0x00, 0x00, 0x20, 0x00,
				0xeb, 0xf7 };

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static uint32_t counter(struct vm *vm)
{
	uint32_t v;
	struct kv_err err;
	assert_int_equal(mem_read(&vm->mem, COUNTER_GPA, &v, 4, &err), 0);
	return v;
}

static struct vm *make_vm(void)
{
	struct vm_config cfg = { .name = "t", .mem_size = 32ULL << 20, .ncpus = 2 };
	struct vm *vm = NULL;
	struct kv_err err;
	int r = vm_create(&vm, &cfg, &err);

	if (r)
		fail_msg("vm_create: %s", err.msg);
	return vm;
}

/* Round-trip a state struct through the walker's wire format. */
static void through_wire(const struct vmstate_desc *d, const void *in, void *out)
{
	size_t cap = vmstate_saved_size(d), len;
	uint8_t *buf = malloc(cap);
	struct kv_err err;

	assert_int_equal(vmstate_save(d, in, buf, cap, &len, &err), 0);
	memset(out, 0, d->struct_size);
	if (vmstate_load(d, out, buf, len, &err))
		fail_msg("load %s: %s", d->name, err.msg);
	free(buf);
}

static void test_save_restore_continues(void **state)
{
	struct vm *a, *b;
	struct kv_err err;
	struct vcpu_state *sa, *sb, *check;
	struct vm_arch_state arch_a, arch_b;
	uint32_t at_pause;

	/* before anything is allocated: skip() and fail_msg() do not return */
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		if (getenv("KVMOVE_ALLOW_NO_KVM"))
			skip();
		fail_msg("/dev/kvm is not usable (set KVMOVE_ALLOW_NO_KVM=1 to skip)");
	}
	sa = calloc(2, sizeof(*sa));
	sb = calloc(2, sizeof(*sb));
	check = calloc(1, sizeof(*check));
	a = make_vm();
	assert_true(a->nmsrs > 0);
	assert_int_equal(mem_write(&a->mem, CODE_GPA, code, sizeof(code), &err), 0);
	assert_int_equal(vm_setup_pvh_boot(a, (uint32_t)CODE_GPA, 0, &err), 0);
	assert_int_equal(vm_start(a, &err), 0);
	for (int i = 0; i < 200 && counter(a) < 1000; i++)
		sleep_ms(10);
	assert_int_equal(vm_pause(a, &err), 0);
	at_pause = counter(a);
	assert_true(at_pause >= 1000);

	for (unsigned i = 0; i < 2; i++) {
		if (vcpu_state_save(a, i, &sa[i], &err))
			fail_msg("save vCPU %u: %s", i, err.msg);
		through_wire(&vcpu_state_vmstate, &sa[i], &sb[i]);
	}
	assert_int_equal(vm_arch_state_save(a, &arch_a, &err), 0);
	through_wire(&vm_arch_vmstate, &arch_a, &arch_b);
	/* the paused guest is where memory says: ECX == stored count (or one
	 * ahead, if it stopped between the inc and the store) */
	assert_true(sa[0].regs.rcx == at_pause || sa[0].regs.rcx == at_pause + 1ULL);
	assert_int_equal(sa[1].mp_state.mp_state, KVM_MP_STATE_UNINITIALIZED);

	b = make_vm();
	memcpy(b->mem.host, a->mem.host, a->mem.size);
	if (vm_arch_state_load(b, &arch_b, &err))
		fail_msg("arch load: %s", err.msg);
	for (unsigned i = 0; i < 2; i++)
		if (vcpu_state_load(b, i, &sb[i], &err))
			fail_msg("load vCPU %u: %s", i, err.msg);

	/* what we load is what KVM now holds */
	assert_int_equal(vcpu_state_save(b, 0, check, &err), 0);
	assert_memory_equal(&check->regs, &sa[0].regs, sizeof(check->regs));
	assert_int_equal(check->sregs.cr0, sa[0].sregs.cr0);
	assert_memory_equal(&check->sregs.cs, &sa[0].sregs.cs, sizeof(check->sregs.cs));
	assert_int_equal(check->mp_state.mp_state, sa[0].mp_state.mp_state);

	/* a hostile MSR index is refused before KVM sees it */
	sb[0].msr_index[0] = 0xc0000080 + 0x7000;
	assert_int_equal(vcpu_state_load(b, 0, &sb[0], &err), -EPERM);
	sb[0].nmsrs = CPU_MAX_MSRS + 1;
	assert_int_equal(vcpu_state_load(b, 0, &sb[0], &err), -ERANGE);

	/* the copy continues counting from where the original stopped */
	assert_int_equal(vm_start(b, &err), 0);
	for (int i = 0; i < 200 && counter(b) < at_pause + 1000; i++)
		sleep_ms(10);
	assert_int_equal(vm_pause(b, &err), 0);
	assert_true(counter(b) >= at_pause + 1000);
	assert_int_equal(vcpu_state_save(b, 0, check, &err), 0);
	assert_true(check->regs.rcx > sa[0].regs.rcx);
	assert_int_equal(counter(a), at_pause);	/* the original stayed paused */

	vm_destroy(b);
	vm_destroy(a);
	free(sa);
	free(sb);
	free(check);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_save_restore_continues),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
