/*
 * loader_opts.h - what the loader targets (fuzz_elf, fuzz_bzimage) take
 * besides the kernel: the input's last byte picks a command line and an
 * initrd, so the fuzzer varies where things land without a second file.
 *   bits 0-2: command line: none, "", a short one, the longest a PVH
 *             kernel takes (4095 bytes), one byte too long
 *   bits 3-5: initrd: none, 1 byte, 4 KiB, 1 MiB, 15 MiB (does not fit)
 */
#ifndef KVMOVE_FUZZ_LOADER_OPTS_H
#define KVMOVE_FUZZ_LOADER_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LOADER_INITRD_MAX (15u << 20)

struct loader_opts {
	const char *cmdline;
	const uint8_t *initrd;
	size_t isize;
};

static inline void loader_opts(uint8_t b, struct loader_opts *o)
{
	static char longest[4097];
	static const size_t isizes[] = { 0, 1, 4096, 1u << 20, LOADER_INITRD_MAX };
	/* never written: its pages stay the shared zero page */
	static uint8_t initrd[LOADER_INITRD_MAX];
	unsigned c = (b & 7) % 5, i = ((b >> 3) & 7) % 5;

	if (!longest[0])
		memset(longest, 'a', sizeof(longest) - 1);
	switch (c) {
	case 0: o->cmdline = NULL; break;
	case 1: o->cmdline = ""; break;
	case 2: o->cmdline = "console=ttyS0 wss=4M"; break;
	case 3: o->cmdline = longest + 1; break;	/* 4095 bytes */
	default: o->cmdline = longest; break;		/* 4096 bytes */
	}
	o->isize = isizes[i];
	o->initrd = i ? initrd : NULL;
}

#endif
