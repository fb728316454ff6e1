/*
 * debug_exit.h - a one-port device (0xf4, like QEMU's isa-debug-exit) that
 * lets a test guest end the VM cleanly: a write of value V shuts the VM down
 * with exit code V.  Reads return 0xff.
 */
#ifndef KVMOVE_DEVICES_DEBUG_EXIT_H
#define KVMOVE_DEVICES_DEBUG_EXIT_H

#include "common/err.h"
#include "devices/device.h"

#define DEBUG_EXIT_PORT 0xf4

int debug_exit_create(struct device **out, struct kv_err *err);

#endif
