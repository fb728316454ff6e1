/*
 * dst_local.h - the destination of a same-host hand-over (src_local.c has
 * the other side): the LOCAL record and the fds that came with it.
 */
#ifndef KVMOVE_MIGRATION_DST_LOCAL_H
#define KVMOVE_MIGRATION_DST_LOCAL_H

#include "common/err.h"
#include "migration/config.h"

struct stream;

/* Read LOCAL, take its fds and check them against cfg (the RAM size, the
 * devices that take one: virtio-net only, each once); on success
 * cfg->ram_fd and cfg->dev_fd[] hold them (mig_config_free closes them).
 * The fds themselves are checked where they are used: mem_init_fd (a memfd
 * of the VM's size), the TAP's name (virtio_net_create). */
int dst_local_receive(struct stream *s, struct mig_vm_config *cfg, struct kv_err *err);

#endif
