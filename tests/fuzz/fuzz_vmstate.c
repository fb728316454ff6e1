/*
 * fuzz_vmstate - the generic state walker (src/state/vmstate.c) loading
 * any section into the real tables (the vCPU, the irqchip/PIT/clock, the
 * 16550A, virtio-pci) and into a test table with every element size,
 * arrays, a blob and a field added in version 2.
 *
 * Input: one byte choosing the table (modulo their number), then the
 * section (docs/FORMAT.md, "State sections").
 * Checks: a refused section leaves the state untouched, byte for byte; an
 * accepted one saves to exactly vmstate_saved_size() bytes, and that
 * section loads back into the same state (save and load are one walker,
 * so what one writes the other must take).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_state.h"
#include "devices/uart8250.h"
#include "devices/virtio_pci.h"
#include "fuzz.h"
#include "state/vmstate.h"

struct mixed {
	uint8_t b;
	uint16_t w;
	uint32_t l;
	uint64_t q;
	uint16_t wa[3];
	uint64_t qa[2];
	uint8_t blob[5];
	uint32_t added;		/* version 2 */
};

static const struct vmstate_field mixed_fields[] = {
	VMS_FIELD(struct mixed, b, 1),
	VMS_FIELD(struct mixed, w, 1),
	VMS_FIELD(struct mixed, l, 1),
	VMS_FIELD(struct mixed, q, 1),
	VMS_ARRAY(struct mixed, wa, 1),
	VMS_ARRAY(struct mixed, qa, 1),
	VMS_BLOB(struct mixed, blob, 1),
	VMS_FIELD(struct mixed, added, 2),
};

static int mixed_validate(const void *p, struct kv_err *err)
{
	const struct mixed *m = p;

	return m->wa[0] > 1000 ? kv_errf(err, ERANGE, "wa[0] %u", m->wa[0]) : 0;
}

static const struct vmstate_desc mixed_vmstate =
	VMS_DESC("mixed", struct mixed, 2, mixed_fields, mixed_validate);

static const struct vmstate_desc *const descs[] = {
	&mixed_vmstate,
	&vcpu_state_vmstate,
	&vm_arch_vmstate,
	&virtio_vmstate,
	NULL,			/* the UART's: filled in from its ops */
};
#define NDESCS (sizeof(descs) / sizeof(descs[0]))

static const struct vmstate_desc *pick(uint8_t sel)
{
	const struct vmstate_desc *d = descs[sel % NDESCS];

	return d ? d : uart8250_ops.state;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct vmstate_desc *d;
	uint8_t *state, *before, *again, *saved;
	size_t cap, len = 0;
	struct kv_err err = { "" };
	int r;

	if (size < 1)
		return 0;
	d = pick(data[0]);
	state = malloc(d->struct_size);
	before = malloc(d->struct_size);
	again = malloc(d->struct_size);
	cap = vmstate_saved_size(d);
	saved = malloc(cap);
	if (!state || !before || !again || !saved)
		fuzz_fail("out of memory");
	/* a pattern, not zeros: fields the section lacks must keep it */
	memset(state, 0xa5, d->struct_size);
	memcpy(before, state, d->struct_size);

	r = vmstate_load(d, state, data + 1, size - 1, &err);
	FUZZ_CHECK(r <= 0 && r > -4096 && (r == 0 || err.msg[0]), "vmstate_load: %d (%s)", r,
		   err.msg);
	if (r) {
		FUZZ_CHECK(!memcmp(state, before, d->struct_size),
			   "%s: a refused section (%s) changed the state", d->name, err.msg);
		goto out;
	}
	r = vmstate_save(d, state, saved, cap, &len, &err);
	FUZZ_CHECK(!r && len == cap, "%s: saving a loaded state: %d (%s), %zu of %zu bytes",
		   d->name, r, err.msg, len, cap);
	memcpy(again, before, d->struct_size);
	r = vmstate_load(d, again, saved, len, &err);
	FUZZ_CHECK(!r, "%s: its own section refused: %s", d->name, err.msg);
	FUZZ_CHECK(!memcmp(state, again, d->struct_size), "%s: save and load disagree", d->name);
out:
	free(state);
	free(before);
	free(again);
	free(saved);
	return 0;
}
