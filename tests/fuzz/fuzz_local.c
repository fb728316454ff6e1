/*
 * fuzz_local - the LOCAL record of a same-host hand-over, through
 * dst_local_receive() (src/migration/dst_local.c): what the previous VMM
 * says about the fds it hands over (the RAM size, which devices get one).
 * The peer is a process of our own uid on a UNIX socket, but the record is
 * still checked like any other; this drives its JSON checks.  Fds cannot
 * come through a fuzzer's bytes: tests/unit/test_local.c covers them.
 *
 * Input: the LOCAL payload (JSON), framed as a record and read back.
 * Checks: always -errno with a message (without fds nothing is accepted);
 * the config's fd slots stay -1 and nothing leaks (mig_config_free).
 */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "migration/config.h"
#include "migration/dst_local.h"
#include "migration/proto.h"
#include "state/channel.h"
#include "state/stream.h"

static void config(struct mig_vm_config *cfg)
{
	static const char *const devs[][2] = {
		{ "serial0", "uart8250" }, { "blk0", "virtio-blk" }, { "net0", "virtio-net" },
		{ "net1", "virtio-net" } };

	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->name, "web1");
	cfg->mem_size = 256ULL << 20;
	cfg->ncpus = 1;
	cfg->ndevices = sizeof(devs) / sizeof(devs[0]);
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		strcpy(cfg->devices[i].name, devs[i][0]);
		strcpy(cfg->devices[i].type, devs[i][1]);
	}
	cfg->local = true;
	cfg->ram_fd = -1;
	for (unsigned i = 0; i < MIG_MAX_DEVICES; i++)
		cfg->dev_fd[i] = -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_vm_config cfg;
	struct kv_err err = { "" };
	struct channel *w, *rd;
	struct stream ws, rs;
	const uint8_t *bytes;
	size_t n;
	int r;

	if (size > MIG_MAX_JSON)
		return 0;
	/* frame it as the source would, then read it as the destination does */
	if (channel_mem_open(&w, NULL, 0, NULL) || stream_init_channel(&ws, w, MIG_MAX_RECORD, NULL))
		fuzz_fail("writer");
	if (stream_write(&ws, MIG_REC_LOCAL, STREAM_F_MANDATORY, data, (uint32_t)size, NULL) ||
	    stream_flush(&ws, NULL))
		fuzz_fail("framing %zu bytes", size);
	bytes = channel_mem_written(w, &n);
	if (channel_mem_open(&rd, bytes, n, NULL) ||
	    stream_init_channel(&rs, rd, MIG_MAX_RECORD, NULL))
		fuzz_fail("reader");
	config(&cfg);
	r = dst_local_receive(&rs, &cfg, &err);
	FUZZ_CHECK(r < 0 && r > -4096 && err.msg[0], "dst_local_receive: %d without any fd", r);
	FUZZ_CHECK(memchr(err.msg, 0, sizeof(err.msg)) != NULL, "message not terminated");
	FUZZ_CHECK(cfg.ram_fd == -1, "a RAM fd from nowhere: %d", cfg.ram_fd);
	for (unsigned i = 0; i < MIG_MAX_DEVICES; i++)
		FUZZ_CHECK(cfg.dev_fd[i] == -1, "device %u got fd %d from nowhere", i,
			   cfg.dev_fd[i]);
	mig_config_free(&cfg);
	stream_destroy(&rs);
	channel_close(rd);
	stream_destroy(&ws);
	channel_close(w);
	return 0;
}
