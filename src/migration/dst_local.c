/*
 * dst_local.c - receive a same-host hand-over's memory and TAPs as fds.
 *
 * Everything in the LOCAL record is the peer's word: the RAM size must be
 * the one CONFIG announced (and the memfd's own size, checked when it is
 * mapped), each device named must be one of CONFIG's virtio-net devices,
 * named once, and exactly one fd per entry must have arrived.  Extra fds
 * are closed; none is ever used for anything but what it was checked for.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "migration/dst_local.h"
#include "migration/proto.h"
#include "state/channel.h"
#include "state/stream.h"

static int device_index(const struct mig_vm_config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->ndevices; i++)
		if (!strcmp(cfg->devices[i].name, name))
			return (int)i;
	return -1;
}

static int check_record(json_t *j, struct mig_vm_config *cfg, int idx[], size_t *ndev,
			struct kv_err *err)
{
	json_t *size = json_object_get(j, "ram-size"), *devs = json_object_get(j, "devices"), *d;
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach(j, key, v)
		if (strcmp(key, "ram-size") && strcmp(key, "devices"))
			return kv_errf(err, EBADMSG, "LOCAL: unknown key '%s'", key);
	if (!json_is_integer(size) || (uint64_t)json_integer_value(size) != cfg->mem_size)
		return kv_errf(err, EBADMSG, "LOCAL: 'ram-size' is not the VM's %llu bytes",
			       (unsigned long long)cfg->mem_size);
	if (!json_is_array(devs) || json_array_size(devs) > CHANNEL_MAX_FDS - 1)
		return kv_errf(err, EBADMSG, "LOCAL: 'devices' must be a list of at most %d",
			       CHANNEL_MAX_FDS - 1);
	json_array_foreach(devs, i, d) {
		const char *name = json_string_value(d);
		int k = name ? device_index(cfg, name) : -1;

		if (k < 0 || strcmp(cfg->devices[k].type, "virtio-net"))
			return kv_errf(err, EBADMSG, "LOCAL: '%s' is not a network device of the "
				       "VM", name ? name : "(not a string)");
		for (size_t p = 0; p < i; p++)
			if (idx[p] == k)
				return kv_errf(err, EBADMSG, "LOCAL: '%s' named twice", name);
		idx[i] = k;
	}
	*ndev = json_array_size(devs);
	return 0;
}

int dst_local_receive(struct stream *s, struct mig_vm_config *cfg, struct kv_err *err)
{
	struct stream_rec rec;
	int idx[CHANNEL_MAX_FDS], fd;
	size_t ndev = 0;
	json_t *j = NULL;
	int r = mig_expect(s, MIG_REC_LOCAL, &rec, err);

	if (!r)
		r = mig_parse_json(&rec, &j, err);
	if (!r)
		r = check_record(j, cfg, idx, &ndev, err);
	json_decref(j);
	if (r)
		return r;
	/* they came with the record's first byte, in the order named */
	if ((fd = stream_take_fd(s)) < 0)
		return kv_errf(err, EBADMSG, "LOCAL: no guest RAM fd came with the record");
	cfg->ram_fd = fd;
	for (size_t i = 0; i < ndev; i++) {
		if ((fd = stream_take_fd(s)) < 0)
			return kv_errf(err, EBADMSG, "LOCAL: %zu device fds named, %zu came", ndev,
				       i);
		cfg->dev_fd[idx[i]] = fd;
	}
	if ((fd = stream_take_fd(s)) >= 0) {
		close(fd);
		return kv_errf(err, EBADMSG, "LOCAL: more fds came than the record names");
	}
	/* every TAP comes along: the previous VMM holds it, so it cannot be
	 * attached again here */
	for (unsigned i = 0; i < cfg->ndevices; i++)
		if (!strcmp(cfg->devices[i].type, "virtio-net") && cfg->dev_fd[i] < 0)
			return kv_errf(err, EBADMSG, "LOCAL: no fd for network device %s",
				       cfg->devices[i].name);
	return 0;
}
