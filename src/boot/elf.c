#include "boot/elf.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* Unaligned little-endian reads: the buffer is arbitrary bytes. */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* true if [off, off+len) lies within size bytes, overflow-safe */
static bool in_file(uint64_t off, uint64_t len, size_t size)
{
	return off <= size && len <= size - off;
}

struct phdr {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

static void read_phdr(const uint8_t *p, bool is64, struct phdr *ph)
{
	if (is64) {
		ph->type = rd32(p + 0);
		ph->offset = rd64(p + 8);
		ph->paddr = rd64(p + 24);
		ph->filesz = rd64(p + 32);
		ph->memsz = rd64(p + 40);
	} else {
		ph->type = rd32(p + 0);
		ph->offset = rd32(p + 4);
		ph->paddr = rd32(p + 12);
		ph->filesz = rd32(p + 16);
		ph->memsz = rd32(p + 20);
	}
}

/* Walk the notes in one PT_NOTE segment looking for the PVH entry. */
static int scan_notes(const uint8_t *buf, const struct phdr *ph, struct elf_image *img,
		      struct kv_err *err)
{
	uint64_t pos = ph->offset, end = ph->offset + ph->filesz;

	while (end - pos >= 12) {
		uint32_t namesz = rd32(buf + pos), descsz = rd32(buf + pos + 4);
		uint32_t type = rd32(buf + pos + 8);
		uint64_t name_off = pos + 12;
		uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ULL);
		uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ULL);

		if (next > end || next <= pos)
			return kv_errf(err, ENOEXEC, "ELF note at offset 0x%" PRIx64
				       " runs past its segment", pos);
		if (namesz == 4 && memcmp(buf + name_off, "Xen", 4) == 0 &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t e;
			if (descsz == 4)
				e = rd32(buf + desc_off);
			else if (descsz == 8)
				e = rd64(buf + desc_off);
			else
				return kv_errf(err, ENOEXEC, "PVH entry note has size %u "
					       "(expected 4 or 8)", descsz);
			if (e > UINT32_MAX)
				return kv_errf(err, ENOEXEC, "PVH entry 0x%" PRIx64
					       " is above 4 GiB", e);
			img->has_pvh = true;
			img->pvh_entry = (uint32_t)e;
		}
		pos = next;
	}
	return 0;
}

int elf_parse(const uint8_t *buf, size_t size, struct elf_image *img,
	      struct kv_err *err)
{
	bool is64;
	uint64_t phoff;
	uint16_t phentsize, phnum, machine;
	int r;

	memset(img, 0, sizeof(*img));
	img->lowest = UINT64_MAX;
	if (size < EI_NIDENT || memcmp(buf, ELFMAG, SELFMAG) != 0)
		return kv_errf(err, ENOEXEC, "not an ELF file");
	if (buf[EI_DATA] != ELFDATA2LSB)
		return kv_errf(err, ENOEXEC, "ELF is not little-endian");
	if (buf[EI_CLASS] == ELFCLASS64)
		is64 = true;
	else if (buf[EI_CLASS] == ELFCLASS32)
		is64 = false;
	else
		return kv_errf(err, ENOEXEC, "unknown ELF class %u", buf[EI_CLASS]);
	if (size < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr)))
		return kv_errf(err, ENOEXEC, "ELF header truncated");

	machine = rd16(buf + 18);
	if (machine != EM_X86_64 && machine != EM_386)
		return kv_errf(err, ENOEXEC, "ELF machine %u is not x86", machine);
	if (rd16(buf + 16) != ET_EXEC && rd16(buf + 16) != ET_DYN)
		return kv_errf(err, ENOEXEC, "ELF type %u is not executable", rd16(buf + 16));
	if (is64) {
		phoff = rd64(buf + 32);
		phentsize = rd16(buf + 54);
		phnum = rd16(buf + 56);
	} else {
		phoff = rd32(buf + 28);
		phentsize = rd16(buf + 42);
		phnum = rd16(buf + 44);
	}
	if (phentsize != (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)))
		return kv_errf(err, ENOEXEC, "ELF program header size %u is wrong", phentsize);
	if (phnum == 0 || phnum == PN_XNUM || phnum > 256)
		return kv_errf(err, ENOEXEC, "ELF has %u program headers", phnum);
	if (!in_file(phoff, (uint64_t)phnum * phentsize, size))
		return kv_errf(err, ENOEXEC, "ELF program headers lie outside the file");

	for (unsigned i = 0; i < phnum; i++) {
		struct phdr ph;

		read_phdr(buf + phoff + (uint64_t)i * phentsize, is64, &ph);
		if (ph.type == PT_NOTE) {
			if (!in_file(ph.offset, ph.filesz, size))
				return kv_errf(err, ENOEXEC, "ELF note segment %u lies outside "
					       "the file", i);
			r = scan_notes(buf, &ph, img, err);
			if (r)
				return r;
			continue;
		}
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		if (!in_file(ph.offset, ph.filesz, size))
			return kv_errf(err, ENOEXEC, "ELF segment %u (offset 0x%" PRIx64
				       ", 0x%" PRIx64 " bytes) lies outside the file",
				       i, ph.offset, ph.filesz);
		if (ph.filesz > ph.memsz)
			return kv_errf(err, ENOEXEC, "ELF segment %u has more file bytes "
				       "than memory bytes", i);
		if (ph.paddr + ph.memsz < ph.paddr)
			return kv_errf(err, ENOEXEC, "ELF segment %u wraps around", i);
		if (img->nload >= ELF_MAX_LOAD)
			return kv_errf(err, ENOEXEC, "ELF has more than %d loadable segments",
				       ELF_MAX_LOAD);
		img->load[img->nload++] = (struct elf_load){
			.paddr = ph.paddr, .offset = ph.offset,
			.filesz = ph.filesz, .memsz = ph.memsz };
		if (ph.paddr < img->lowest)
			img->lowest = ph.paddr;
		if (ph.paddr + ph.memsz > img->highest)
			img->highest = ph.paddr + ph.memsz;
	}
	if (!img->nload)
		return kv_errf(err, ENOEXEC, "ELF has no loadable segments");
	return 0;
}
