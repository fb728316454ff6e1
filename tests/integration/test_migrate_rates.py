#!/usr/bin/env python3
"""Live migration over loopback at guest dirty rates of 0, 32 and 128 MiB/s
(1 GiB guests, 512 MiB working set): each completes, the source VMM exits 0,
the guest verifies all of its memory on the destination, its heartbeats
continue with consecutive sequence numbers across the switchover, and the
stats are sane.  The measured numbers go to the log (no timing assertions)."""
import kvtest
from kvtest import check

WSS = 512 << 20


def one(h, rate):
    src = h.vmm(name="src%d" % rate, mem="1G",
                append=kvtest.guest_cmdline(wss="512M", rate=rate, hb=1000))
    dst = h.incoming("dst%d" % rate, src)
    src.wait_ready()
    src.wait_verified()
    run = src.migrate(dst.uri)
    check(run.named("MIGRATION_PASS"), "no MIGRATION_PASS event: %r" % run.events)
    statuses = run.statuses()
    for st in ("setup", "active", "device", "completed"):
        check(st in statuses, "status %s missing from the events %r" % (st, statuses))
    seqs = kvtest.check_migrated(src, dst, run, cpus=1, wss=WSS)
    gap = kvtest.heartbeat_gap_ms(src, dst)
    h.log("rate %3d MiB/s: %s; heartbeat gap %.0f ms; heartbeats %d..%d consecutive"
          % (rate, run.summary(), gap, seqs[0], seqs[-1]))
    dst.kill()      # free its RAM before the next pair
    return run, gap


def test(h):
    results = [(rate, one(h, rate)) for rate in (0, 32, 128)]
    h.log("summary (1 GiB guest, wss 512 MiB, loopback, no bandwidth limit):")
    for rate, (run, gap) in results:
        r = run.result
        h.log("  dirty %3d MiB/s: total %5d ms, downtime %4d ms (heartbeat gap %4.0f ms), "
              "transferred %7.1f MiB, rounds %d"
              % (rate, r["total-time"], r["downtime"], gap,
                 r["ram"]["transferred"] / 1048576.0, r["ram"]["dirty-sync-count"]))


kvtest.main(test)
