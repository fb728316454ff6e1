/*
 * allow.h - what a destination (or a restore) lets an incoming VM use: the
 * receiving side decides, never the stream.  Its operator (or the cluster
 * agent) names the VM it expects, the disk images and directories the VM's
 * disks may live in, the TAP interfaces it may attach to, and the directory
 * a quick migration's image comes through.  CONFIG is checked against this
 * before anything is allocated, and disks are opened through it (a symlink
 * inside an allowed directory cannot lead outside it).
 */
#ifndef KVMOVE_MIGRATION_ALLOW_H
#define KVMOVE_MIGRATION_ALLOW_H

#include <stdbool.h>

#include "common/err.h"

#define MIG_ALLOW_MAX 16

struct mig_allow {
	const char *expect;			/* the VM's name; NULL: any (restore) */
	const char *disks[MIG_ALLOW_MAX];	/* image files, or directories */
	unsigned ndisks;
	const char *taps[MIG_ALLOW_MAX];	/* TAP interface names */
	unsigned ntaps;
	const char *via;			/* quick migration directory, or NULL */
};

/* A VM name safe to use in a file name: [A-Za-z0-9._-], 1..63, no leading '.' */
bool mig_name_ok(const char *name);

/* 0 if the disk may be used; -EPERM with the reason (and what is allowed). */
int mig_allow_disk(const struct mig_allow *a, const char *path, struct kv_err *err);
/* Open an allowed disk read-only or read-write (an fd, or -errno). */
int mig_allow_open_disk(const struct mig_allow *a, const char *path, bool readonly,
			struct kv_err *err);
int mig_allow_tap(const struct mig_allow *a, const char *tap, struct kv_err *err);

#endif
