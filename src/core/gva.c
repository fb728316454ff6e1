/*
 * gva.c - read guest memory at a guest-virtual address by walking the
 * guest's page tables (x86-64 4-level paging), for error reports and
 * emulate.c.  Everything read from the guest is untrusted: every table
 * entry and every data byte goes through mem_gpa_to_hva() bounds checks.
 */
#include <errno.h>
#include <string.h>

#include "core/emulate.h"

#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
#define EFER_LMA (1ULL << 10)
#define PTE_P 0x1ULL
#define PTE_PS 0x80ULL
#define PTE_ADDR 0x000ffffffffff000ULL	/* bits 51:12 */

static int read_pte(const struct guest_mem *mem, uint64_t table, unsigned idx, uint64_t *pte)
{
	const uint8_t *p = mem_gpa_to_hva(mem, (table & PTE_ADDR) + 8ULL * idx, 8);

	if (!p)
		return -EFAULT;
	memcpy(pte, p, 8);
	return (*pte & PTE_P) ? 0 : -EFAULT;
}

/* Guest-physical address of gva, or -errno. */
static int translate(const struct guest_mem *mem, const struct kvm_sregs *s, uint64_t gva,
		     uint64_t *gpa)
{
	uint64_t e = s->cr3;
	int r;

	if (!(s->cr0 & CR0_PG)) {
		*gpa = gva & 0xffffffffULL;
		return 0;
	}
	if (!(s->cr4 & CR4_PAE) || !(s->efer & EFER_LMA) || (s->cr4 & CR4_LA57))
		return -ENOTSUP;	/* 32-bit paging, PAE or 5-level: not needed here */
	for (int level = 4; level >= 1; level--) {
		unsigned shift = 12 + 9 * (unsigned)(level - 1);
		unsigned idx = (unsigned)(gva >> shift) & 511;

		if ((r = read_pte(mem, e, idx, &e)))
			return r;
		if ((level == 2 || level == 3) && (e & PTE_PS)) {
			uint64_t page = 1ULL << shift;
			*gpa = (e & PTE_ADDR & ~(page - 1)) | (gva & (page - 1));
			return 0;
		}
	}
	*gpa = (e & PTE_ADDR) | (gva & 0xfff);
	return 0;
}

int gva_read(const struct guest_mem *mem, const struct kvm_sregs *sregs, uint64_t gva,
	     uint8_t *buf, unsigned len)
{
	unsigned done = 0;

	while (done < len) {
		uint64_t addr = gva + done, gpa;
		unsigned chunk = 4096 - (unsigned)(addr & 0xfff);
		const uint8_t *p;
		int r;

		if (chunk > len - done)
			chunk = len - done;
		if ((r = translate(mem, sregs, addr, &gpa)))
			return done ? (int)done : r;
		p = mem_gpa_to_hva(mem, gpa, chunk);
		if (!p)
			return done ? (int)done : -EFAULT;
		memcpy(buf + done, p, chunk);
		done += chunk;
	}
	return (int)done;
}
