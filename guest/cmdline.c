/*
 * cmdline.c - parse "key=value" words. Numbers are decimal or 0x-hex;
 * wss also takes K/M/G/T suffixes (binary: 1K = 1024).
 */
#include "cmdline.h"

#include "layout.h"
#include "lib.h"

void cmdline_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->wss = 64ULL << 20;
	cfg->rate = 0;
	cfg->hb_us = 1000;
	cfg->seed = 1;
	cfg->cpus = 1;
	cfg->runtime_s = 0;
	cfg->verify_every_ms = 1000;
	cfg->clock = CLOCK_AUTO;
	cfg->net = 1;
	cfg->disk = 1;
	cfg->disk_rate = 200;
	cfg->disk_blocks = 0;
	cfg->disk_verify = 4096;
	cfg->disk_depth = 4;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parse [start, end) as a number with an optional size suffix. */
static bool parse_num(const char *p, const char *end, bool size_suffix, uint64_t *out)
{
	uint64_t v = 0, base = 10;
	bool any = false;

	if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (; p < end; p++) {
		unsigned d;
		char c = *p;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			break;
		if (v > (UINT64_MAX - d) / base)
			return false;	/* overflow */
		v = v * base + d;
		any = true;
	}
	if (!any)
		return false;
	if (p < end && size_suffix) {
		unsigned shift;
		switch (*p) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return false;
		}
		p++;
		if (p < end && (*p == 'i'))	/* accept "MiB" / "MB" spellings */
			p++;
		if (p < end && (*p == 'B' || *p == 'b'))
			p++;
		if (v > (UINT64_MAX >> shift))
			return false;
		v <<= shift;
	}
	if (p != end)
		return false;
	*out = v;
	return true;
}

/* Dotted quad a.b.c.d, each part 0..255 in decimal. */
static bool parse_ipv4(const char *p, const char *end, uint8_t out[4])
{
	for (int i = 0; i < 4; i++) {
		unsigned v = 0, digits = 0;

		for (; p < end && *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
			v = v * 10 + (unsigned)(*p - '0');
		if (!digits || v > 255)
			return false;
		out[i] = (uint8_t)v;
		if (i < 3) {
			if (p == end || *p != '.')
				return false;
			p++;
		}
	}
	return p == end;
}

static bool key_is(const char *w, const char *eq, const char *key)
{
	size_t n = strlen(key);
	return (size_t)(eq - w) == n && memcmp(w, key, n) == 0;
}

static void note_bad(struct config *cfg, const char *w, const char *end)
{
	size_t n = MIN((size_t)(end - w), sizeof(cfg->bad[0]) - 1);

	if (cfg->nbad < CMDLINE_MAX_BAD) {
		memcpy(cfg->bad[cfg->nbad], w, n);
		cfg->bad[cfg->nbad][n] = 0;
	}
	cfg->nbad++;
}

static void parse_word(const char *w, const char *end, struct config *cfg)
{
	static const struct {
		const char *key;
		size_t off;
		bool size_suffix;
	} keys[] = {
		{ "wss", __builtin_offsetof(struct config, wss), true },
		{ "rate", __builtin_offsetof(struct config, rate), false },
		{ "hb", __builtin_offsetof(struct config, hb_us), false },
		{ "seed", __builtin_offsetof(struct config, seed), false },
		{ "compress", __builtin_offsetof(struct config, compress), false },
		{ "cpus", __builtin_offsetof(struct config, cpus), false },
		{ "runtime", __builtin_offsetof(struct config, runtime_s), false },
		{ "verify_every", __builtin_offsetof(struct config, verify_every_ms), false },
		{ "net", __builtin_offsetof(struct config, net), false },
		{ "disk", __builtin_offsetof(struct config, disk), false },
		{ "diskrate", __builtin_offsetof(struct config, disk_rate), false },
		{ "diskblocks", __builtin_offsetof(struct config, disk_blocks), false },
		{ "diskverify", __builtin_offsetof(struct config, disk_verify), false },
		{ "diskdepth", __builtin_offsetof(struct config, disk_depth), false },
		{ "cpuid", __builtin_offsetof(struct config, cpuid_report), false },
	};
	const char *eq = w;

	while (eq < end && *eq != '=')
		eq++;
	if (eq == end)
		return;		/* not key=value: somebody else's word */
	if (key_is(w, eq, "ip")) {
		uint8_t ip[4];
		if (parse_ipv4(eq + 1, end, ip)) {
			memcpy(cfg->ip, ip, 4);
			cfg->ip_set = true;
		} else
			note_bad(cfg, w, end);
		return;
	}
	if (key_is(w, eq, "clock")) {
		if (end - eq - 1 == 7 && memcmp(eq + 1, "tsc-pit", 7) == 0)
			cfg->clock = CLOCK_FORCE_TSC_PIT;
		else if (end - eq - 1 == 8 && memcmp(eq + 1, "kvmclock", 8) == 0)
			cfg->clock = CLOCK_AUTO;
		else
			note_bad(cfg, w, end);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		uint64_t v;
		if (!key_is(w, eq, keys[i].key))
			continue;
		if (parse_num(eq + 1, end, keys[i].size_suffix, &v))
			*(uint64_t *)((char *)cfg + keys[i].off) = v;
		else
			note_bad(cfg, w, end);
		return;
	}
}

void cmdline_parse(const char *s, struct config *cfg)
{
	while (*s) {
		const char *w;

		while (is_space(*s))
			s++;
		w = s;
		while (*s && !is_space(*s))
			s++;
		if (s > w)
			parse_word(w, s, cfg);
	}
	if (cfg->cpus < 1)
		cfg->cpus = 1;
	if (cfg->cpus > MAX_CPUS)
		cfg->cpus = MAX_CPUS;
	if (cfg->disk_depth < 1)
		cfg->disk_depth = 1;
	if (cfg->compress > 100)
		cfg->compress = 100;
}
