/*
 * sandbox.h - a VMM that takes its VM from a peer or a file confines itself
 * before it reads a byte of it: no-new-privs, only the capabilities it may
 * still need, and a seccomp allowlist of system calls (sandbox.c says which
 * and why).  On by default for --incoming and --restore; --no-sandbox turns
 * it off (for debugging only).
 */
#ifndef KVMOVE_VMM_SANDBOX_H
#define KVMOVE_VMM_SANDBOX_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"

/* keep_net: keep CAP_NET_ADMIN (the incoming VM may attach to a TAP). */
int sandbox_enter(bool keep_net, struct kv_err *err);

/* For tests (x-query-sandbox): the process's seccomp mode, capabilities,
 * no-new-privs, and what exec, fork and unshare answer when tried. */
json_t *sandbox_probe(void);

#endif
