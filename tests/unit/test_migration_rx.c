/*
 * The receiving side against forged content: records whose framing and
 * checksum are fine but whose payload lies (pages outside the VM, unknown
 * flags, truncation, state for vCPUs or devices that do not exist, the same
 * block twice), and configs that lie.  Nothing here needs KVM: every one of
 * these must be refused before KVM is asked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>
#include <lz4.h>

#include "core/vm.h"
#include "devices/uart8250.h"
#include "migration/config.h"
#include "migration/devstate.h"
#include "migration/proto.h"
#include "migration/ram.h"
#include "state/stream.h"

#define MEM (32ULL << 20)

static struct vm *fake_vm_on(enum mem_backend backend)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct uart8250 *u;
	struct kv_err err;

	if (mem_init(&vm->mem, MEM, backend, &err))
		fail_msg("guest memory on %s: %s", mem_backend_name(backend), err.msg);
	vm->nvcpus = 2;
	assert_int_equal(uart_create(&u, "serial0", -1, NULL, NULL, &err), 0);
	vm->devices[vm->ndevices++] = uart_device(u);
	return vm;
}

static struct vm *fake_vm(void)
{
	return fake_vm_on(MEM_BACKEND_MEMFD);
}

static void free_vm(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++)
		vm->devices[i]->ops->destroy(vm->devices[i]);
	mem_destroy(&vm->mem);
	free(vm);
}

/* Build a RAM record payload: sequence 0, count, the entries (gpa|flags),
 * then the data of the entries without ZERO (page i filled with 0x10 + i). */
static size_t ram_rec(uint8_t *buf, uint32_t count, const uint64_t *gpaflags, int with_data)
{
	size_t pos = 8 + 8 * (size_t)count;

	st_put32(buf, 0);
	st_put32(buf + 4, count);
	for (uint32_t i = 0; i < count; i++) {
		st_put64(buf + 8 + 8 * i, gpaflags[i]);
		if (with_data && !(gpaflags[i] & MIG_PAGE_ZERO)) {
			memset(buf + pos, (int)(0x10 + i), 4096);
			pos += 4096;
		}
	}
	return pos;
}

/* The payload as a record on a memory file, read back with ram_receive()
 * expecting sequence number want_seq. */
static int receive_rec_dec(struct vm *vm, const uint8_t *payload, size_t n, int flip_at,
			   uint32_t want_seq, struct ram_decoder *dec, uint64_t *pages,
			   struct kv_err *err)
{
	struct stream s;
	struct stream_rec rec;
	int fd = memfd_create("ram", 0), r;
	uint8_t *wire;
	off_t len;

	assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, err), 0);
	assert_int_equal(stream_write(&s, MIG_REC_RAM, STREAM_F_MANDATORY, payload,
				      (uint32_t)n, err), 0);
	assert_int_equal(stream_flush(&s, err), 0);
	stream_destroy(&s);
	len = lseek(fd, 0, SEEK_CUR);
	if (flip_at >= 0) {	/* one byte changed on the wire */
		wire = malloc((size_t)len);
		assert_int_equal(pread(fd, wire, (size_t)len, 0), len);
		wire[flip_at] ^= 0x40;
		assert_int_equal(pwrite(fd, wire, (size_t)len, 0), len);
		free(wire);
	}
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, err), 0);
	r = stream_read_head(&s, &rec, err);
	if (!r)
		r = ram_receive(vm, &s, &rec, dec, pages, &want_seq, err);
	stream_destroy(&s);
	close(fd);
	return r;
}

static int receive_rec_seq(struct vm *vm, const uint8_t *payload, size_t n, int flip_at,
			   uint32_t want_seq, uint64_t *pages, struct kv_err *err)
{
	return receive_rec_dec(vm, payload, n, flip_at, want_seq, NULL, pages, err);
}

static int receive_rec(struct vm *vm, const uint8_t *payload, size_t n, int flip_at,
		       uint64_t *pages, struct kv_err *err)
{
	return receive_rec_seq(vm, payload, n, flip_at, 0, pages, err);
}

/* A record with a data page, a ZERO page and the last page of RAM: through
 * ram_apply() and ram_receive() it lands; with a byte of page data changed
 * on the wire, ram_receive()'s checksum refuses it (the data page already
 * landed, but this VM can never run) and nothing after the check (clearing
 * the ZERO page, dirty bits, the page count) is applied. */
static void test_ram_records(void **state)
{
	enum { WHOLE, STREAMED, STREAMED_CORRUPT };

	for (int mode = WHOLE; mode <= STREAMED_CORRUPT; mode++) {
		struct vm *vm = fake_vm();
		uint8_t *buf = malloc(3 * (8 + 4096) + 4);
		uint64_t g[3] = { 0x100000, 0x200000 | MIG_PAGE_ZERO, MEM - 4096 };
		uint64_t pages = 0;
		struct kv_err err;
		size_t n = ram_rec(buf, 3, g, 1);
		int r;

		memset(mem_gpa_to_hva(&vm->mem, 0x200000, 4096), 0x77, 4096);
		if (mode == WHOLE)
			r = ram_apply(vm, buf, (uint32_t)n, NULL, &pages, &err);
		else
			r = receive_rec(vm, buf, n, mode == STREAMED ? -1 :
					STREAM_HDR_SIZE + 8 + 24 + 100, &pages, &err);
		if (mode == STREAMED_CORRUPT) {
			assert_int_equal(r, -EBADMSG);
			assert_non_null(strstr(err.msg, "checksum"));
			assert_int_equal(pages, 0);
			assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&vm->mem, 0x200fff, 1), 0x77);
			assert_false(mem_test_dirty(&vm->mem, 0x200000));
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(pages, 3);
			assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&vm->mem, 0x100000, 1), 0x10);
			assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&vm->mem, 0x100fff, 1), 0x10);
			assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&vm->mem, 0x200fff, 1), 0);
			assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&vm->mem, MEM - 1, 1), 0x12);
			/* VMM writes are tracked */
			assert_true(mem_test_dirty(&vm->mem, 0x100000));
			assert_true(mem_test_dirty(&vm->mem, MEM - 4096));
		}
		free(buf);
		free_vm(vm);
	}
}

static void expect_ram_bad(struct vm *vm, const uint8_t *buf, size_t n, const char *why)
{
	uint64_t pages = 0;
	struct kv_err err = { "" };
	int r = ram_apply(vm, buf, (uint32_t)n, NULL, &pages, &err);

	if (r != -EBADMSG)
		fail_msg("%s: got %d", why, r);
	assert_true(err.msg[0]);
	/* the streaming receiver refuses the same payload */
	err.msg[0] = 0;
	r = receive_rec(vm, buf, n, -1, &pages, &err);
	if (r != -EBADMSG)
		fail_msg("%s (streamed): got %d", why, r);
	assert_true(err.msg[0]);
	assert_int_equal(pages, 0);
}

static void test_ram_hostile(void **state)
{
	struct vm *vm = fake_vm();
	uint8_t *buf = malloc((MIG_RAM_BATCH + 2) * (8 + 4096) + 8);
	uint64_t g[2];
	size_t n;

	expect_ram_bad(vm, buf, 7, "shorter than the sequence and count");
	st_put32(buf, 0);
	st_put32(buf + 4, 0);
	expect_ram_bad(vm, buf, 8, "zero pages");
	st_put32(buf + 4, MIG_RAM_BATCH + 1);
	expect_ram_bad(vm, buf, 8, "count above the batch limit");
	g[0] = MEM;	/* first byte past RAM */
	n = ram_rec(buf, 1, g, 1);
	expect_ram_bad(vm, buf, n, "page past the end of RAM");
	g[0] = 0xfee00000;	/* the LAPIC, in the hole */
	n = ram_rec(buf, 1, g, 1);
	expect_ram_bad(vm, buf, n, "page in the MMIO hole");
	g[0] = 0xfffffffffffff000ULL;
	n = ram_rec(buf, 1, g, 1);
	expect_ram_bad(vm, buf, n, "page at the top of the address space");
	g[0] = 0x100000 | 0x8;	/* unknown flag */
	n = ram_rec(buf, 1, g, 1);
	expect_ram_bad(vm, buf, n, "unknown flag");
	g[0] = 0x100000 | MIG_PAGE_LZ4;	/* compressed, but nobody agreed to it */
	n = ram_rec(buf, 1, g, 1);
	expect_ram_bad(vm, buf, n, "compressed page without the capability");
	g[0] = 0x100000 | MIG_PAGE_LZ4 | MIG_PAGE_ZSTD;
	n = ram_rec(buf, 1, g, 1);
	expect_ram_bad(vm, buf, n, "two codecs at once");
	g[0] = 0x100000;
	n = ram_rec(buf, 1, g, 1);
	expect_ram_bad(vm, buf, n - 1, "page data truncated");
	expect_ram_bad(vm, buf, 8 + 7, "entry header truncated");
	buf[n] = 0;
	expect_ram_bad(vm, buf, n + 1, "stray byte after the last page");
	g[0] = 0x100000;
	g[1] = 0x101000;
	n = ram_rec(buf, 2, g, 1);
	st_put32(buf + 4, 3);	/* claims one more page than it holds */
	expect_ram_bad(vm, buf, n, "count larger than the entries");
	/* a page twice: the second copy must not silently win (nor, in the
	 * streaming receiver, fail the checksum of a correct record) */
	g[0] = 0x101000;
	g[1] = 0x101000;
	n = ram_rec(buf, 2, g, 1);
	expect_ram_bad(vm, buf, n, "the same page twice in a row");
	{
		uint64_t g3[3] = { 0x105000, 0x100000 | MIG_PAGE_ZERO, 0x105000 };
		n = ram_rec(buf, 3, g3, 1);
		expect_ram_bad(vm, buf, n, "the same page twice, another between");
	}
	/* a record out of sequence (dropped, replayed or reordered) */
	g[0] = 0x100000;
	g[1] = 0x101000;
	n = ram_rec(buf, 2, g, 1);
	{
		uint64_t pages = 0;
		struct kv_err err;
		assert_int_equal(receive_rec_seq(vm, buf, n, -1, 5, &pages, &err), -EBADMSG);
		assert_non_null(strstr(err.msg, "where 5 belongs"));
		assert_int_equal(pages, 0);
	}
	free(buf);
	free_vm(vm);
}

/* Post-copy may ask for a page twice before the sender gets to it: the
 * record names it once (a receiver refuses a repeat), and what a sender
 * writes is what the receivers take, in sequence. */
static void test_ram_sender_once(void **state)
{
	struct vm *src = fake_vm(), *dst = fake_vm();
	struct ram_sender rs;
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;
	uint64_t want = 0, pages = 0;
	uint64_t req[] = { 7, 3, 7, 3, 9 };
	uint32_t seq = 0;
	int fd = memfd_create("ram", 0);

	memset(mem_gpa_to_hva(&src->mem, 7 * 4096, 4096), 0xa7, 4096);
	memset(mem_gpa_to_hva(&src->mem, 9 * 4096, 4096), 0xa9, 4096);
	assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
	assert_int_equal(ram_sender_init(&rs, src, &s, NULL, &err), 0);
	assert_int_equal(ram_send_list(&rs, req, 5, &err), 0);
	assert_int_equal(ram_send_list(&rs, req + 4, 1, &err), 0);	/* again: a new record */
	assert_int_equal(rs.st.entries, 4);
	assert_int_equal(stream_flush(&s, &err), 0);
	ram_sender_destroy(&rs);
	stream_destroy(&s);

	lseek(fd, 0, SEEK_SET);
	assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(stream_read_head(&s, &rec, &err), 0);
		assert_int_equal(rec.type, MIG_REC_RAM);
		if (ram_receive(dst, &s, &rec, NULL, &pages, &seq, &err))
			fail_msg("record %d: %s", i, err.msg);
	}
	want = 4;	/* 7, 3 (zero), 9, then 9 again */
	assert_int_equal(pages, want);
	assert_int_equal(seq, 2);
	assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&dst->mem, 7 * 4096 + 100, 1), 0xa7);
	assert_int_equal(*(uint8_t *)mem_gpa_to_hva(&dst->mem, 9 * 4096 + 4095, 1), 0xa9);
	stream_destroy(&s);
	close(fd);
	free_vm(src);
	free_vm(dst);
}

/* Fill a page that compresses to about a quarter (compressible) or not at
 * all (every word a hash). */
static void fill_test_page(uint8_t *p, uint64_t n, bool compressible)
{
	uint64_t x = n * 0x9e3779b97f4a7c15ULL + 1;

	for (unsigned i = 0; i < 512; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		((uint64_t *)(void *)p)[i] = compressible && i >= 128 ? n : x;
	}
}

/* Every backend sends what its guest wrote and nothing it never touched
 * (memfd by SEEK_DATA, anon by pagemap, hugetlb whole), and every backend
 * receives it byte for byte, in every pairing.  hugetlb joins where the
 * host has 2 MiB pages free for two 32 MiB VMs. */
static void test_ram_backends(void **state)
{
	static const uint64_t at[] = { 0, 1, 2, 511, 512, 4000, 4095, 5000, 8191 };
#define NAT (sizeof(at) / sizeof(at[0]))
	enum mem_backend bs[] = { MEM_BACKEND_MEMFD, MEM_BACKEND_ANON, MEM_BACKEND_HUGETLB };
	unsigned nb = mem_hugetlb_free() >= 2 * MEM ? 3 : 2;

	(void)state;
	for (unsigned a = 0; a < nb; a++)
		for (unsigned b = 0; b < nb; b++) {
			struct vm *src = fake_vm_on(bs[a]), *dst = fake_vm_on(bs[b]);
			struct ram_sender rs;
			struct stream s;
			struct stream_rec rec;
			struct kv_err err;
			uint64_t pages = 0, sent;
			uint32_t seq = 0;
			int fd = memfd_create("ram", 0);

			assert_int_equal(src->mem.backend, bs[a]);
			for (size_t i = 0; i < NAT; i++)
				fill_test_page(mem_gpa_to_hva(&src->mem, at[i] * 4096, 4096), at[i],
					       false);
			/* memfd: exactly the pages written; anon: the transparent
			 * huge pages they fell in (5 here) where THP is on;
			 * hugetlb cannot tell and says all */
			if (bs[a] == MEM_BACKEND_MEMFD)
				assert_int_equal(mem_resident_bytes(&src->mem), NAT * 4096);
			if (bs[a] == MEM_BACKEND_ANON) {
				assert_true(mem_resident_bytes(&src->mem) >= NAT * 4096);
				assert_true(mem_resident_bytes(&src->mem) <= 5 * MEM_HUGE_PAGE_SIZE);
			}
			assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
			assert_int_equal(ram_sender_init(&rs, src, &s, NULL, &err), 0);
			if (ram_send_all(&rs, &err))
				fail_msg("send from %s: %s", mem_backend_name(bs[a]), err.msg);
			sent = rs.st.entries;
			assert_int_equal(stream_flush(&s, &err), 0);
			ram_sender_destroy(&rs);
			stream_destroy(&s);
			if (bs[a] == MEM_BACKEND_MEMFD)
				assert_int_equal(sent, NAT);
			if (bs[a] == MEM_BACKEND_ANON)
				assert_true(sent >= NAT && sent <= 5 * 512);

			lseek(fd, 0, SEEK_SET);
			assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
			while (!stream_read_head(&s, &rec, &err)) {
				assert_int_equal(rec.type, MIG_REC_RAM);
				if (ram_receive(dst, &s, &rec, NULL, &pages, &seq, &err))
					fail_msg("%s -> %s: %s", mem_backend_name(bs[a]),
						 mem_backend_name(bs[b]), err.msg);
			}
			assert_int_equal(pages, sent);
			/* holes stay holes: only what was sent was touched (before the
			 * comparison below reads, and so allocates, shmem's holes) */
			if (bs[a] != MEM_BACKEND_HUGETLB && bs[b] != MEM_BACKEND_HUGETLB &&
			    mem_resident_bytes(&dst->mem) >
			    (bs[b] == MEM_BACKEND_ANON ? 5 * MEM_HUGE_PAGE_SIZE : NAT * 4096))
				fail_msg("%s -> %s: %llu bytes resident", mem_backend_name(bs[a]),
					 mem_backend_name(bs[b]),
					 (unsigned long long)mem_resident_bytes(&dst->mem));
			if (memcmp(src->mem.host, dst->mem.host, MEM))
				fail_msg("%s -> %s: memory differs", mem_backend_name(bs[a]),
					 mem_backend_name(bs[b]));
			stream_destroy(&s);
			close(fd);
			free_vm(src);
			free_vm(dst);
		}
}

/* What a compressing sender writes, a receiver with a decoder puts back
 * byte for byte (compressible and incompressible pages, a zero page, over
 * several records); without a decoder (compression not agreed) the first
 * compressed record is refused. */
static void test_ram_compressed(void **state)
{
	static const enum ram_compress modes[] = { RAM_COMPRESS_LZ4, RAM_COMPRESS_ZSTD };

	for (unsigned mi = 0; mi < 2; mi++) {
		for (int with_dec = 1; with_dec >= 0; with_dec--) {
			struct vm *src = fake_vm(), *dst = fake_vm();
			struct ram_decoder dec = { 0 };
			struct ram_sender rs;
			struct stream s;
			struct stream_rec rec;
			struct kv_err err = { "" };
			uint64_t pages = 0, npages = 600;
			uint32_t seq = 0;
			int fd = memfd_create("ram", 0), r = 0;

			for (uint64_t p = 1; p <= npages; p++)
				if (p != 77)	/* stays zero */
					fill_test_page(mem_gpa_to_hva(&src->mem, p * 4096, 4096), p,
						       p % 3 != 0);
			assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
			assert_int_equal(ram_sender_init(&rs, src, &s, NULL, &err), 0);
			assert_int_equal(ram_sender_set_compress(&rs, modes[mi], &err), 0);
			for (uint64_t p = 1; p <= npages; p++)
				rs.dirty[p / 64] |= 1ull << (p % 64);
			assert_int_equal(ram_send_dirty(&rs, &err), 0);
			assert_int_equal(stream_flush(&s, &err), 0);
			assert_int_equal(rs.st.entries, npages);
			assert_int_equal(rs.codec.st.pages[RAM_CODEC_RAW] +
					 rs.codec.st.pages[modes[mi] == RAM_COMPRESS_LZ4 ?
							   RAM_CODEC_LZ4 : RAM_CODEC_ZSTD], npages - 1);
			/* a third of the pages do not compress and go raw */
			assert_true(rs.codec.st.pages[RAM_CODEC_RAW] >= npages / 3 - 1);
			assert_true(rs.codec.st.out_bytes < rs.codec.st.in_bytes * 6 / 10);
			ram_sender_destroy(&rs);
			stream_destroy(&s);

			lseek(fd, 0, SEEK_SET);
			assert_int_equal(stream_init(&s, fd, MIG_MAX_RECORD, &err), 0);
			while (!r && pages < npages) {
				assert_int_equal(stream_read_head(&s, &rec, &err), 0);
				r = ram_receive(dst, &s, &rec, with_dec ? &dec : NULL, &pages, &seq,
						&err);
			}
			if (with_dec) {
				if (r)
					fail_msg("%s: %s", ram_compress_name(modes[mi]), err.msg);
				assert_memory_equal(mem_gpa_to_hva(&src->mem, 0, (npages + 1) * 4096),
						    mem_gpa_to_hva(&dst->mem, 0, (npages + 1) * 4096),
						    (npages + 1) * 4096);
			} else {
				assert_int_equal(r, -EBADMSG);
				assert_non_null(strstr(err.msg, "not agreed"));
			}
			ram_decoder_destroy(&dec);
			stream_destroy(&s);
			close(fd);
			free_vm(src);
			free_vm(dst);
		}
	}
}

/* One lz4 page at 0x100000 (data: what the length prefix says it is) */
static size_t lz4_rec(uint8_t *buf, const uint8_t *z, size_t zlen, uint16_t say)
{
	st_put32(buf, 0);
	st_put32(buf + 4, 1);
	st_put64(buf + 8, 0x100000 | MIG_PAGE_LZ4);
	st_put16(buf + 16, say);
	memcpy(buf + 18, z, zlen);
	return 18 + zlen;
}

static void expect_comp_bad(struct vm *vm, const uint8_t *buf, size_t n, const char *why)
{
	struct ram_decoder dec = { 0 };
	struct kv_err err = { "" };
	uint64_t pages = 0;
	int r = ram_apply(vm, buf, (uint32_t)n, &dec, &pages, &err);

	if (r != -EBADMSG)
		fail_msg("%s: got %d", why, r);
	assert_true(err.msg[0]);
	err.msg[0] = 0;
	r = receive_rec_dec(vm, buf, n, -1, 0, &dec, &pages, &err);
	if (r != -EBADMSG)
		fail_msg("%s (streamed): got %d", why, r);
	assert_true(err.msg[0]);
	assert_int_equal(pages, 0);
	ram_decoder_destroy(&dec);
}

/* Hostile compressed pages: every length and every expansion is checked. */
static void test_ram_compressed_hostile(void **state)
{
	struct vm *vm = fake_vm();
	uint8_t page[4096], z[4096], buf[8192];
	struct ram_decoder dec = { 0 };
	struct kv_err err = { "" };
	uint64_t pages = 0;
	int zlen;
	size_t n;

	fill_test_page(page, 5, true);
	zlen = LZ4_compress_default((const char *)page, (char *)z, 4096, sizeof(z));
	assert_true(zlen > 0 && zlen < 2048);
	n = lz4_rec(buf, z, (size_t)zlen, (uint16_t)zlen);
	assert_int_equal(ram_apply(vm, buf, (uint32_t)n, &dec, &pages, &err), 0);
	assert_memory_equal(mem_gpa_to_hva(&vm->mem, 0x100000, 4096), page, 4096);
	assert_int_equal(pages, 1);
	ram_decoder_destroy(&dec);

	n = lz4_rec(buf, z, (size_t)zlen, 0);
	expect_comp_bad(vm, buf, n, "length 0");
	n = lz4_rec(buf, z, (size_t)zlen, (uint16_t)(zlen + 1));
	expect_comp_bad(vm, buf, n, "length past the record");
	n = lz4_rec(buf, z, (size_t)zlen, (uint16_t)(zlen - 1));
	expect_comp_bad(vm, buf, n, "one byte left over");
	n = lz4_rec(buf, z, (size_t)zlen, (uint16_t)zlen);
	buf[n++] = 0;
	expect_comp_bad(vm, buf, n, "a stray byte after the page");
	memset(z, 0xff, sizeof(z));
	n = lz4_rec(buf, z, 100, 100);
	expect_comp_bad(vm, buf, n, "garbage");
	zlen = LZ4_compress_default((const char *)page, (char *)z, 2048, sizeof(z));
	n = lz4_rec(buf, z, (size_t)zlen, (uint16_t)zlen);
	expect_comp_bad(vm, buf, n, "half a page");
	n = lz4_rec(buf, page, 4000, 4000);
	expect_comp_bad(vm, buf, n, "longer than a compressed page may be");
	st_put64(buf + 8, 0x100000 | MIG_PAGE_ZSTD);	/* lz4 bytes called zstd */
	zlen = LZ4_compress_default((const char *)page, (char *)z, 4096, sizeof(z));
	memcpy(buf + 18, z, (size_t)zlen);
	st_put16(buf + 16, (uint16_t)zlen);
	expect_comp_bad(vm, buf, 18 + (size_t)zlen, "lz4 data in a zstd entry");
	free_vm(vm);
}

static void test_devstate_hostile(void **state)
{
	struct vm *vm = fake_vm();
	struct devstate_rx rx = { 0 };
	struct kv_err err;
	uint8_t buf[512], sec[256];
	size_t slen;
	struct uart_state us = { .lcr = 3 };

	assert_int_equal(vmstate_save(uart8250_ops.state, &us, sec, sizeof(sec), &slen, &err), 0);

	/* vCPU index out of range, and truncated */
	st_put32(buf, 2);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_VCPU, buf, 4, &err), -EBADMSG);
	st_put32(buf, 0xffffffff);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_VCPU, buf, 4, &err), -EBADMSG);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_VCPU, buf, 3, &err), -EBADMSG);

	/* device: name longer than the record, unknown name, good, twice */
	buf[0] = 200;
	memcpy(buf + 1, "serial0", 7);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_DEVICE, buf, 8, &err), -EBADMSG);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_DEVICE, buf, 0, &err), -EBADMSG);
	buf[0] = 7;
	memcpy(buf + 1, "serial9", 7);
	memcpy(buf + 8, sec, slen);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_DEVICE, buf, (uint32_t)(8 + slen), &err),
			 -EBADMSG);
	memcpy(buf + 1, "serial0", 7);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_DEVICE, buf, (uint32_t)(8 + slen), &err), 0);
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_DEVICE, buf, (uint32_t)(8 + slen), &err),
			 -EBADMSG);
	/* a state record of the wrong type */
	assert_int_equal(devstate_apply(vm, &rx, MIG_REC_RAM, buf, 8, &err), -EBADMSG);
	/* STATE_END without the CPU and irqchip state */
	assert_int_equal(devstate_complete(vm, &rx, &err), -EBADMSG);
	rx.arch = true;
	assert_int_equal(devstate_complete(vm, &rx, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "vCPU 0"));
	rx.vcpu[0] = rx.vcpu[1] = true;
	assert_int_equal(devstate_complete(vm, &rx, &err), 0);
	free_vm(vm);
}

static json_t *good_config(void)
{
	return json_pack("{s:s, s:I, s:i, s:[[i,i,i,i,i,i,i]], s:[{s:s,s:s}], s:b}",
			 "name", "web1", "mem", (json_int_t)(64 << 20), "cpus", 2,
			 "cpuid", 0, 0, 0, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69,
			 "devices", "name", "serial0", "type", "uart8250", "lock", 0);
}

static void expect_cfg_bad(json_t *j, const char *why)
{
	struct mig_vm_config cfg;
	struct kv_err err = { "" };

	if (mig_config_from_json(j, &cfg, &err) >= 0) {
		mig_config_free(&cfg);
		fail_msg("accepted bad config: %s", why);
	}
	assert_true(err.msg[0]);
	json_decref(j);
}

static void test_config_hostile(void **state)
{
	struct mig_vm_config cfg;
	struct kv_err err;
	json_t *j = good_config();
	json_t *big = json_array();

	assert_int_equal(mig_config_from_json(j, &cfg, &err), 0);
	assert_string_equal(cfg.name, "web1");
	assert_int_equal(cfg.ncpus, 2);
	assert_int_equal(cfg.cpuid->nent, 1);
	mig_config_free(&cfg);
	json_decref(j);

	j = good_config(); json_object_set_new(j, "mem", json_integer(12345)); expect_cfg_bad(j, "odd size");
	j = good_config(); json_object_set_new(j, "mem", json_integer(-1)); expect_cfg_bad(j, "negative size");
	j = good_config(); json_object_set_new(j, "mem", json_string("1G")); expect_cfg_bad(j, "size as string");
	j = good_config(); json_object_set_new(j, "cpus", json_integer(0)); expect_cfg_bad(j, "no vCPUs");
	j = good_config(); json_object_set_new(j, "cpus", json_integer(100000)); expect_cfg_bad(j, "too many vCPUs");
	j = good_config(); json_object_set_new(j, "name", json_string("")); expect_cfg_bad(j, "empty name");
	j = good_config(); json_object_set_new(j, "name", json_stringn("a\0b", 3)); expect_cfg_bad(j, "NUL in name");
	j = good_config(); json_object_del(j, "lock"); expect_cfg_bad(j, "no lock flag");
	j = good_config(); json_object_set_new(j, "cpu-model", json_string("pentium")); expect_cfg_bad(j, "unknown CPU model");
	j = good_config(); json_object_set_new(j, "cpu-model", json_string("x86-64,+sse9")); expect_cfg_bad(j, "unknown CPU feature");
	j = good_config(); json_object_set_new(j, "cpu-model", json_integer(3)); expect_cfg_bad(j, "CPU model not a string");
	j = good_config(); json_object_set_new(j, "cpuid", json_pack("[[i,i,i]]", 1, 2, 3)); expect_cfg_bad(j, "short CPUID entry");
	j = good_config(); json_object_set_new(j, "cpuid", json_pack("[[i,i,i,i,i,i,I]]", 0, 0, 0, 0, 0, 0, (json_int_t)1 << 33)); expect_cfg_bad(j, "CPUID value > 32 bits");
	for (int i = 0; i <= MIG_MAX_CPUID; i++)
		json_array_append_new(big, json_pack("[i,i,i,i,i,i,i]", i, 0, 0, 0, 0, 0, 0));
	j = good_config(); json_object_set_new(j, "cpuid", big); expect_cfg_bad(j, "too many CPUID entries");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:i}]", "name", 3)); expect_cfg_bad(j, "device name not a string");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s,s:i}]", "name", "blk0", "type", "virtio-blk", "path", 7)); expect_cfg_bad(j, "disk path not a string");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s,s:s,s:s}]", "name", "net0", "type", "virtio-net", "tap", "t0", "mac", "01:00:5e:00:00:01")); expect_cfg_bad(j, "multicast MAC");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s,s:s,s:s}]", "name", "net0", "type", "virtio-net", "tap", "t0", "mac", "52:54:00:zz:00:01")); expect_cfg_bad(j, "malformed MAC");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s,s:s}]", "name", "net0", "type", "virtio-net", "tap", "a-tap-name-far-too-long")); expect_cfg_bad(j, "TAP name too long");
	/* strict: what the destination does not understand, it does not take */
	j = good_config(); json_object_set_new(j, "bios", json_string("x")); expect_cfg_bad(j, "unknown key");
	j = good_config(); json_object_set_new(j, "name", json_string("../../etc/x")); expect_cfg_bad(j, "name with slashes");
	j = good_config(); json_object_set_new(j, "name", json_string(".web1")); expect_cfg_bad(j, "hidden-file name");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "serial0", "type", "uart8250", "name", "serial0", "type", "uart8250")); expect_cfg_bad(j, "the same device twice");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s,s:s}]", "name", "serial0", "type", "uart8250", "shell", "x")); expect_cfg_bad(j, "unknown device key");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s}]", "name", "blk0", "type", "virtio-blk")); expect_cfg_bad(j, "a disk without a path");
	j = good_config(); json_object_set_new(j, "devices", json_pack("[{s:s,s:s,s:s}]", "name", "serial0", "type", "uart8250", "path", "/etc/shadow")); expect_cfg_bad(j, "a path on a UART");
	j = good_config(); json_object_set_new(j, "cpuid", json_pack("[[i,i,i,i,i,i,i],[i,i,i,i,i,i,i]]", 0, 0, 0, 0xd, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1)); expect_cfg_bad(j, "the same CPUID leaf twice");
}

static void test_preflight(void **state)
{
	struct mig_vm_config cfg;
	struct kv_err err;
	json_t *j = good_config(), *f;
	struct kvm_cpuid2 *host_cpuid = calloc(1, sizeof(*host_cpuid) + 2 * sizeof(host_cpuid->entries[0]));
	/* the destination allows this disk path and this TAP; neither exists */
	struct mig_allow allow = { .disks = { "/nonexistent/disk.img" }, .ndisks = 1,
				   .taps = { "kvnotap0" }, .ntaps = 1 };
	struct mig_host host = { .max_mem = 1ULL << 30, .avail_mem = 8ULL << 30, .max_vcpus = 4,
				 .has_lock = false, .supported = host_cpuid, .allow = &allow };

	host_cpuid->nent = 2;
	host_cpuid->entries[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd,
		.ebx = 0x756e6547, .edx = 0x49656e69, .ecx = 0x6c65746e };	/* GenuineIntel */
	host_cpuid->entries[1] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0x1, .edx = 0xff };
	assert_int_equal(mig_config_from_json(j, &cfg, &err), 0);
	f = mig_preflight(&cfg, &host);
	assert_int_equal(json_array_size(f), 0);
	json_decref(f);

	/* every check at once: features the host lacks, too much memory, too
	 * many vCPUs, an unknown device, a lock the destination lacks, a disk
	 * it cannot reach, another vendor */
	cfg.cpuid->entries[0].ebx = 0x68747541;	/* "Auth"enticAMD */
	cfg.mem_size = 2ULL << 30;
	cfg.ncpus = 8;
	strcpy(cfg.devices[0].type, "floppy");
	cfg.uses_lock = true;
	host.has_lock = false;
	cfg.ndevices = 3;
	strcpy(cfg.devices[1].type, "virtio-blk");
	strcpy(cfg.devices[1].name, "blk0");
	strcpy(cfg.devices[1].path, "/nonexistent/disk.img");
	strcpy(cfg.devices[2].type, "virtio-net");
	strcpy(cfg.devices[2].name, "net0");
	strcpy(cfg.devices[2].tap, "kvnotap0");
	{
		/* a feature bit the host does not have */
		struct kvm_cpuid2 *c = realloc(cfg.cpuid, sizeof(*c) + 2 * sizeof(c->entries[0]));
		cfg.cpuid = c;
		c->nent = 2;
		c->entries[1] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 0x3, .edx = 0xff };
	}
	f = mig_preflight(&cfg, &host);
	{
		const char *want[] = { "cpu-vendor", "cpu-features", "memory", "vcpus", "device",
				       "disk", "network", "lock" };
		assert_int_equal(json_array_size(f), 8);
		for (size_t i = 0; i < 8; i++)
			assert_string_equal(json_string_value(json_object_get(json_array_get(f, i), "id")),
					    want[i]);
	}
	json_decref(f);

	/* what this destination does not allow is refused as such, and never
	 * opened; a destination with a lock takes no VM without one */
	host.allow = NULL;
	cfg.uses_lock = false;
	host.has_lock = true;
	f = mig_preflight(&cfg, &host);
	{
		const char *want[] = { "cpu-vendor", "cpu-features", "memory", "vcpus", "device",
				       "disk-not-allowed", "network-not-allowed", "lock" };
		assert_int_equal(json_array_size(f), 8);
		for (size_t i = 0; i < 8; i++)
			assert_string_equal(json_string_value(json_object_get(json_array_get(f, i), "id")),
					    want[i]);
	}
	json_decref(f);
	mig_config_free(&cfg);
	json_decref(j);
	free(host_cpuid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ram_records),
		cmocka_unit_test(test_ram_hostile),
		cmocka_unit_test(test_ram_sender_once),
		cmocka_unit_test(test_ram_compressed),
		cmocka_unit_test(test_ram_backends),
		cmocka_unit_test(test_ram_compressed_hostile),
		cmocka_unit_test(test_devstate_hostile),
		cmocka_unit_test(test_config_hostile),
		cmocka_unit_test(test_preflight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
