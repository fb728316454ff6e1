/*
 * fuzz_ram - RAM records (src/migration/ram.c) on any payload, through all
 * three receivers against each other:
 *   ram_visit()    the post-copy receiver: which pages, with which data;
 *   ram_apply()    a whole payload in memory into guest RAM;
 *   ram_receive()  the same payload as a record on a stream (its check
 *                  computed here), read straight into guest RAM.
 * Input: the payload of one RAM record (docs/FORMAT.md).  The VM has RAM on
 * both sides of the PCI hole, so entries at its edges mean something.  The
 * receivers have a decoder (compression agreed), so lz4 and zstd pages
 * are decoded too.
 * Checks: the three agree on accepting or refusing (and with which errno);
 * every page handed out is inside the VM and its data inside the payload
 * (a raw page) or decoded to exactly one page (a compressed one);
 * a record naming a page twice is refused by all three (docs/FORMAT.md:
 * a page appears at most once per record); after an accepted record guest
 * memory holds exactly what the entries say (ZERO pages are zeros) and
 * every page is marked dirty.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "core/vm.h"
#include "fuzz.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "state/stream.h"

static struct vm *vm;
static int memfd = -1;
static const uint8_t zeros[MEM_PAGE_SIZE];
static struct ram_decoder dec;
static uint8_t decoded[MIG_RAM_BATCH][MEM_PAGE_SIZE];	/* visit's compressed pages */

struct seen {
	const uint8_t *lo, *hi;		/* the payload */
	unsigned n;
	uint64_t page[MIG_RAM_BATCH];
	const uint8_t *data[MIG_RAM_BATCH];
};

static int visit(void *opaque, uint64_t page, const uint8_t *data, struct kv_err *err)
{
	struct seen *sn = opaque;

	(void)err;
	FUZZ_CHECK(page < vm->mem.npages, "page %llu of %llu handed out",
		   (unsigned long long)page, (unsigned long long)vm->mem.npages);
	FUZZ_CHECK(ram_page_gpa(vm, page) != UINT64_MAX, "page %llu is not RAM",
		   (unsigned long long)page);
	FUZZ_CHECK(sn->n < MIG_RAM_BATCH, "more than %d pages in one record", MIG_RAM_BATCH);
	/* raw data lies in the payload; a decoded page is in the decoder's
	 * scratch, valid only now */
	if (data && !(data >= sn->lo && data + MEM_PAGE_SIZE <= sn->hi)) {
		FUZZ_CHECK(data + MEM_PAGE_SIZE <= sn->lo || data >= sn->hi,
			   "page data straddles the payload's end");
		memcpy(decoded[sn->n], data, MEM_PAGE_SIZE);
		data = decoded[sn->n];
	}
	sn->page[sn->n] = page;
	sn->data[sn->n++] = data;
	return 0;
}

/* Guest memory holds what the record said, and all of it is dirty. */
static void check_memory(const struct seen *sn, const char *who)
{
	for (unsigned i = 0; i < sn->n; i++) {
		uint64_t gpa = ram_page_gpa(vm, sn->page[i]);
		const uint8_t *want = sn->data[i] ? sn->data[i] : zeros;

		FUZZ_CHECK(mem_test_dirty(&vm->mem, gpa), "%s: page 0x%llx not marked dirty", who,
			   (unsigned long long)gpa);
		FUZZ_CHECK(!memcmp(vm->mem.host + (sn->page[i] << MEM_PAGE_SHIFT), want,
				   MEM_PAGE_SIZE),
			   "%s: page 0x%llx does not hold its data", who, (unsigned long long)gpa);
	}
}

static bool has_duplicates(const struct seen *sn)
{
	for (unsigned i = 0; i < sn->n; i++)
		for (unsigned k = i + 1; k < sn->n; k++)
			if (sn->page[k] == sn->page[i])
				return true;
	return false;
}

/*
 * The payload as a record on a memory file, read back by ram_receive().
 * One stream for all inputs, made again only after a stream error: its
 * buffers are megabytes, which ASan would map and poison per input.  What
 * an input leaves behind (a record read half-way when ram_receive()
 * refused its entries) is harmless: the next input starts with a header
 * read from offset 0 of a rewritten file.
 */
static int receive(const uint8_t *p, uint32_t len, uint64_t *pages, struct kv_err *err)
{
	static struct stream s;
	static bool live;
	uint8_t hdr[STREAM_HDR_SIZE], tr[STREAM_TRAILER_SIZE];
	XXH3_state_t *h = XXH3_createState();
	struct stream_rec rec;
	int r;

	st_put16(hdr, MIG_REC_RAM);
	st_put16(hdr + 2, STREAM_F_MANDATORY);
	st_put32(hdr + 4, len);
	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, hdr, sizeof(hdr));
	XXH3_64bits_update(h, p, len);
	st_put64(tr, XXH3_64bits_digest(h));
	XXH3_freeState(h);
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, hdr, sizeof(hdr), 0) != sizeof(hdr) ||
	    pwrite(memfd, p, len, sizeof(hdr)) != (ssize_t)len ||
	    pwrite(memfd, tr, sizeof(tr), sizeof(hdr) + len) != sizeof(tr) ||
	    lseek(memfd, 0, SEEK_SET) != 0)
		fuzz_fail("memfd: %m");
	if (live && s.rerr.code) {
		stream_destroy(&s);
		live = false;
	}
	if (!live && stream_init(&s, memfd, MIG_MAX_RECORD, err))
		fuzz_fail("stream_init: %s", err->msg);
	live = true;
	r = stream_read_head(&s, &rec, err);
	FUZZ_CHECK(!r, "the record header was refused: %s", err->msg);
	return ram_receive(vm, &s, &rec, &dec, pages, NULL, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen *sn;
	struct kv_err err = { "" };
	uint64_t pages_apply = 0, pages_rx = 0;
	uint32_t len = (uint32_t)size;
	int rv, ra, rx;

	if (!vm) {
		vm = fuzz_vm_new(FUZZ_MEM_SPLIT, FUZZ_VM_BARE);
		memfd = memfd_create("fuzz-ram", MFD_CLOEXEC);
		if (memfd < 0)
			fuzz_fail("memfd_create: %m");
	}
	if (size > MIG_MAX_RECORD)
		return 0;	/* the stream refuses it before any receiver sees it */
	sn = calloc(1, sizeof(*sn));
	if (!sn)
		fuzz_fail("out of memory");
	sn->lo = data;
	sn->hi = data + size;

	rv = ram_visit(vm, data, len, &dec, visit, sn, &err);
	FUZZ_CHECK(rv == 0 || (rv == -EBADMSG && err.msg[0]), "ram_visit: %d (%s)", rv, err.msg);
	FUZZ_CHECK(rv || sn->n >= 1, "an accepted record without pages");
	FUZZ_CHECK(rv || !has_duplicates(sn), "ram_visit accepted a page named twice");

	err.msg[0] = '\0';
	ra = ram_apply(vm, data, len, &dec, &pages_apply, &err);
	FUZZ_CHECK(ra == rv, "ram_apply says %d (%s), ram_visit %d", ra, err.msg, rv);
	FUZZ_CHECK(ra || pages_apply == sn->n, "ram_apply counted %llu pages of %u",
		   (unsigned long long)pages_apply, sn->n);
	if (!ra)
		check_memory(sn, "ram_apply");
	fuzz_mem_reset(&vm->mem);

	err.msg[0] = '\0';
	rx = receive(data, len, &pages_rx, &err);
	FUZZ_CHECK(rx == rv, "ram_receive says %d (%s), ram_visit %d", rx, err.msg, rv);
	FUZZ_CHECK(rx || pages_rx == sn->n, "ram_receive counted %llu pages of %u",
		   (unsigned long long)pages_rx, sn->n);
	if (!rx)
		check_memory(sn, "ram_receive");
	fuzz_mem_reset(&vm->mem);
	free(sn);
	return 0;
}
