/*
 * cmdline.h - the guest's options, parsed from the PVH command line.
 * Words are "key=value" separated by spaces; unknown words are ignored so
 * Linux-style command lines can be passed unchanged.
 */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

enum clock_choice { CLOCK_AUTO, CLOCK_FORCE_TSC_PIT };

#define CMDLINE_MAX_BAD 4

struct config {
	uint64_t wss;			/* working set bytes requested (wss=, K/M/G) */
	uint64_t rate;			/* MiB/s dirtied, 0 = write once (rate=) */
	uint64_t hb_us;			/* heartbeat period, 0 = off (hb=) */
	uint64_t seed;			/* content seed (seed=) */
	uint64_t compress;		/* % of each page a compressor removes (compress=) */
	uint64_t cpus;			/* CPUs to bring up (cpus=) */
	uint64_t runtime_s;		/* stop after this long, 0 = never (runtime=) */
	uint64_t verify_every_ms;	/* VERIFY line period, 0 = off (verify_every=) */
	enum clock_choice clock;	/* clock=tsc-pit forces the fallback clock */
	/* devices (virtio over PCI) */
	uint64_t net;			/* 0: leave a virtio-net device alone (net=) */
	uint8_t ip[4];			/* the guest's IPv4 address, /24 (ip=) */
	bool ip_set;
	uint64_t disk;			/* 0: leave a virtio-blk device alone (disk=) */
	uint64_t disk_rate;		/* block writes per second (diskrate=) */
	uint64_t disk_blocks;		/* 4 KiB blocks used, 0 = default (diskblocks=) */
	uint64_t disk_verify;		/* blocks verified per second, 0 = no limit (diskverify=) */
	uint64_t disk_depth;		/* requests in flight at most (diskdepth=) */
	uint64_t cpuid_report;		/* 1: print the CPUID leaves it sees (cpuid=) */
	unsigned nbad;			/* words with a known key but a bad value */
	char bad[CMDLINE_MAX_BAD][32];
};

void cmdline_defaults(struct config *cfg);
void cmdline_parse(const char *s, struct config *cfg);

#endif
