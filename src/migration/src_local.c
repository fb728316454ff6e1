/*
 * src_local.c - the source of a same-host hand-over (kvmove migrate --to
 * unix:PATH): a new VMM on this host takes the running VM over without a
 * page being copied.
 *
 * After the preflight, while the VM still runs, one LOCAL record goes over
 * the UNIX socket with the guest RAM's memfd and every device's hand-over
 * fd (a TAP) attached (SCM_RIGHTS).  The destination maps the same pages and
 * builds the VM around them, and says so (LOCAL_BUILT): only then does the
 * VM pause here.  Then the ordinary stop-and-copy sends only the
 * vCPU, irqchip, clock and device state (no RAM pass: there is nothing the
 * destination lacks), READY, GO, RESUMED: the downtime is pause, state,
 * load and resume, whatever the RAM size.
 *
 * Both VMMs map the memory until this one exits, but only one runs the VM:
 * the same two-phase hand-over and locks as a live migration decide which.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>

#include "core/vm.h"
#include "devices/device.h"
#include "migration/proto.h"
#include "migration/source_internal.h"
#include "state/channel.h"
#include "state/stream.h"

int src_local_send_fds(struct migration *m, struct kv_err *err)
{
	struct vm *vm = m->vm;
	struct stream_rec rec;
	int fds[CHANNEL_MAX_FDS];
	unsigned n = 0;
	json_t *j, *devs;
	int r;

	fds[n++] = vm->mem.memfd;
	devs = json_array();
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = vm->devices[i];
		int fd = d->ops->handover_fd ? d->ops->handover_fd(d) : -1;

		if (fd < 0)
			continue;
		if (n == CHANNEL_MAX_FDS) {
			json_decref(devs);
			r = kv_errf(err, E2BIG, "more than %d devices to hand over",
				    CHANNEL_MAX_FDS - 1);
			return src_set_fail(m, "internal", err, r);
		}
		fds[n++] = fd;
		json_array_append_new(devs, json_string(d->name));
	}
	j = json_pack("{s:I, s:o}", "ram-size", (json_int_t)vm->mem.size, "devices", devs);
	src_set_status(m, MIG_ACTIVE);
	/* the fds travel with the record's first byte (stream_flush_fds) */
	r = stream_flush(&m->s, err);
	if (!r)
		r = mig_send_json(&m->s, MIG_REC_LOCAL, j, err);
	else
		json_decref(j);
	if (!r)
		r = stream_flush_fds(&m->s, fds, n, err);
	if (r)
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "io", err, r);
	/* the VM runs on here until the destination is built around the
	 * memory: building (KVM objects, vCPUs, devices) is not downtime */
	if ((r = mig_expect(&m->s, MIG_REC_LOCAL_BUILT, &rec, err)))
		return src_set_fail(m, src_is_cancelled(m) ? "cancelled" : "destination", err, r);
	pthread_mutex_lock(&m->mu);
	m->remaining = 0;
	pthread_mutex_unlock(&m->mu);
	return 0;
}
