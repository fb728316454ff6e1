/* vcpu_info.h - a debugging summary of one vCPU (x-query-vcpus). */
#ifndef KVMOVE_CORE_VCPU_INFO_H
#define KVMOVE_CORE_VCPU_INFO_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct vm;

struct vcpu_summary {
	uint64_t exits;
	bool have_regs;		/* registers are read only while paused */
	uint64_t rip, rsp, rflags, cr0, cr3, cr4, efer;
	unsigned cpl;
	uint32_t mp_state;
};

int vcpu_get_summary(struct vm *vm, unsigned idx, struct vcpu_summary *s,
		     struct kv_err *err);
const char *vcpu_mp_state_name(uint32_t st);

#endif
