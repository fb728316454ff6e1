#include "migration/devstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_state.h"
#include "devices/device.h"
#include "migration/proto.h"
#include "state/stream.h"

/* prefix (may be empty) + vmstate section, as one record */
static int send_section(struct stream *s, uint16_t type, const uint8_t *prefix, size_t plen,
			const struct vmstate_desc *d, const void *state, struct kv_err *err)
{
	size_t cap = plen + vmstate_saved_size(d), len;
	uint8_t *buf = malloc(cap);
	int r;

	if (!buf)
		return kv_errf(err, ENOMEM, "state buffer");
	if (plen)
		memcpy(buf, prefix, plen);	/* memcpy(.., NULL, 0) is undefined */
	r = vmstate_save(d, state, buf + plen, cap - plen, &len, err);
	if (!r)
		r = stream_write(s, type, STREAM_F_MANDATORY, buf, (uint32_t)(plen + len), err);
	free(buf);
	return r;
}

int devstate_send_all(struct vm *vm, struct stream *s, struct kv_err *err)
{
	struct vm_arch_state arch;
	struct vcpu_state *vs = malloc(sizeof(*vs));
	int r;

	if (!vs)
		return kv_errf(err, ENOMEM, "vCPU state");
	r = vm_arch_state_save(vm, &arch, err);
	if (!r)
		r = send_section(s, MIG_REC_VM_ARCH, NULL, 0, &vm_arch_vmstate, &arch, err);
	for (unsigned i = 0; !r && i < vm->nvcpus; i++) {
		uint8_t idx[4];
		st_put32(idx, i);
		r = vcpu_state_save(vm, i, vs, err);
		if (!r)
			r = send_section(s, MIG_REC_VCPU, idx, 4, &vcpu_state_vmstate, vs, err);
	}
	for (unsigned i = 0; !r && i < vm->ndevices; i++) {
		struct device *d = vm->devices[i];
		uint8_t name[1 + sizeof(d->name)];
		size_t nl = strlen(d->name);

		if (!d->ops->state)
			continue;
		name[0] = (uint8_t)nl;
		memcpy(name + 1, d->name, nl);
		r = send_section(s, MIG_REC_DEVICE, name, 1 + nl, d->ops->state,
				 d->ops->state_ptr(d), err);
	}
	free(vs);
	return r;
}

/*
 * A device's section: the table walker refuses a bad section before it
 * touches the live state, but the device's post_load checks what was
 * copied in (queues it does not have, a config space not its own).  When it
 * refuses, the state it refused is put back to what it was, so a refused
 * record leaves the device exactly as before.
 */
static int load_device(struct device *d, const uint8_t *p, uint32_t len, struct kv_err *err)
{
	size_t size = d->ops->state->struct_size;
	void *st = d->ops->state_ptr(d), *was = NULL;
	int r;

	if (d->ops->post_load) {
		was = malloc(size);
		if (!was)
			return kv_errf(err, ENOMEM, "state copy");
		memcpy(was, st, size);
	}
	r = vmstate_load(d->ops->state, st, p, len, err);
	if (!r && d->ops->post_load) {
		r = d->ops->post_load(d, err);
		if (r)
			memcpy(st, was, size);
	}
	free(was);
	return r;
}

int devstate_apply(struct vm *vm, struct devstate_rx *rx, uint16_t type,
		   const uint8_t *p, uint32_t len, struct kv_err *err)
{
	int r;

	switch (type) {
	case MIG_REC_VM_ARCH: {
		struct vm_arch_state arch;
		if (rx->arch)
			return kv_errf(err, EBADMSG, "VM_ARCH state sent twice");
		memset(&arch, 0, sizeof(arch));
		r = vmstate_load(&vm_arch_vmstate, &arch, p, len, err);
		if (!r)
			r = vm_arch_state_load(vm, &arch, err);
		rx->arch = !r;
		return r;
	}
	case MIG_REC_VCPU: {
		struct vcpu_state *vs;
		uint32_t idx;
		if (len < 4)
			return kv_errf(err, EBADMSG, "VCPU record truncated");
		idx = st_get32(p);
		if (idx >= vm->nvcpus)
			return kv_errf(err, EBADMSG, "state for vCPU %u; the VM has %u", idx,
				       vm->nvcpus);
		if (rx->vcpu[idx])
			return kv_errf(err, EBADMSG, "state for vCPU %u sent twice", idx);
		vs = calloc(1, sizeof(*vs));
		if (!vs)
			return kv_errf(err, ENOMEM, "vCPU state");
		r = vmstate_load(&vcpu_state_vmstate, vs, p + 4, len - 4, err);
		if (!r)
			r = vcpu_state_load(vm, idx, vs, err);
		free(vs);
		rx->vcpu[idx] = !r;
		return r;
	}
	case MIG_REC_DEVICE: {
		size_t nl;
		if (len < 1 || (nl = p[0]) + 1 > len)
			return kv_errf(err, EBADMSG, "DEVICE record truncated");
		for (unsigned i = 0; i < vm->ndevices; i++) {
			struct device *d = vm->devices[i];
			if (strlen(d->name) != nl || memcmp(d->name, p + 1, nl))
				continue;
			if (!d->ops->state)
				return kv_errf(err, EBADMSG, "device %s has no state", d->name);
			if (rx->device[i])
				return kv_errf(err, EBADMSG, "state for device %s sent twice",
					       d->name);
			r = load_device(d, p + 1 + nl, len - 1 - (uint32_t)nl, err);
			if (r)
				return kv_err_prefix(err, r, "device %s", d->name);
			rx->device[i] = true;
			return 0;
		}
		return kv_errf(err, EBADMSG, "state for unknown device '%.*s'", (int)nl,
			       (const char *)p + 1);
	}
	}
	return kv_errf(err, EBADMSG, "not a state record: %u", type);
}

int devstate_complete(struct vm *vm, const struct devstate_rx *rx, struct kv_err *err)
{
	if (!rx->arch)
		return kv_errf(err, EBADMSG, "stream ended without irqchip/clock state");
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (!rx->vcpu[i])
			return kv_errf(err, EBADMSG, "stream ended without state for vCPU %u", i);
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i]->ops->state && !rx->device[i])
			return kv_errf(err, EBADMSG, "stream ended without state for device %s",
				       vm->devices[i]->name);
	return 0;
}
