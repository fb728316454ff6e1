/*
 * fuzz_pc_ranges - post-copy range records (DISCARD from the source,
 * NEEDED from the destination, or any other type) through
 * pc_parse_ranges() (src/migration/postcopy_src.c) on a VM with RAM on
 * both sides of the PCI hole.
 *
 * Input: u16 record type, then the payload (u32 count, count times u64 gpa
 * and u64 pages).
 * Checks: 0 or -errno with a message; every range handed to the callback
 * is a run of memfd pages inside the VM that starts where its guest
 * address says and does not cross into the hole (the receivers punch or
 * mark exactly those pages); the count it reports is the number of ranges
 * it handed out; a refusal from the callback stops the walk and is passed
 * on unchanged.
 */
#include <errno.h>
#include <string.h>

#include "core/vm.h"
#include "fuzz.h"
#include "migration/postcopy.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "state/stream.h"

#define STOP_AFTER 5	/* the callback refuses the 5th range of some inputs */

static struct vm *vm;

struct walk {
	unsigned calls;
	bool refuse;
};

static int range(void *opaque, uint64_t first, uint64_t n, struct kv_err *err)
{
	struct walk *w = opaque;
	uint64_t gpa0, gpa1;

	FUZZ_CHECK(n >= 1 && first < vm->mem.npages && n <= vm->mem.npages - first,
		   "range %llu+%llu of %llu pages", (unsigned long long)first,
		   (unsigned long long)n, (unsigned long long)vm->mem.npages);
	gpa0 = ram_page_gpa(vm, first);
	gpa1 = ram_page_gpa(vm, first + n - 1);
	FUZZ_CHECK(gpa0 != UINT64_MAX && gpa1 == gpa0 + ((n - 1) << MEM_PAGE_SHIFT),
		   "range %llu+%llu crosses a region edge", (unsigned long long)first,
		   (unsigned long long)n);
	if (++w->calls == STOP_AFTER && w->refuse)
		return kv_errf(err, EDOM, "refused by the callback");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream_rec rec = { 0 };
	struct walk w = { 0 };
	struct kv_err err = { "" };
	unsigned count = 0;
	int r;

	if (!vm)
		vm = fuzz_vm_new(FUZZ_MEM_SPLIT, FUZZ_VM_BARE);
	if (size < 2 || size - 2 > MIG_MAX_RECORD)
		return 0;
	rec.type = st_get16(data);
	rec.len = (uint32_t)(size - 2);
	rec.payload = data + 2;
	/* odd types let the callback refuse: the walk must stop there */
	w.refuse = rec.type & 1;
	r = pc_parse_ranges(vm, &rec, range, &w, &count, &err);
	FUZZ_CHECK(r <= 0 && r > -4096 && (r == 0 || err.msg[0]), "pc_parse_ranges: %d", r);
	if (r == -EDOM)
		FUZZ_CHECK(w.refuse && w.calls == STOP_AFTER, "a refusal that was not ours");
	else if (w.refuse)
		FUZZ_CHECK(w.calls < STOP_AFTER, "the walk went on after a refusal");
	if (!r)
		FUZZ_CHECK(count == w.calls, "%u ranges reported, %u handed out", count, w.calls);
	return 0;
}
