#!/usr/bin/env python3
"""Post-copy when the guest dirties memory faster than the link carries it:
the link is set to a third of the guest's own dirty rate, sampled here
(--check-only), so pre-copy alone could never converge on any host.

  postcopy   after the first pass the VM resumes on the destination; pages
             it lacks come on demand and in the background.  Completes, the
             guest verifies all of its memory on the destination with
             heartbeats unbroken, pages were asked for on demand, none is
             missing at the end, and the destination reported its progress
             (MIGRATION events postcopy-active then completed).
  hybrid     --postcopy-after 3 on the way on: three pre-copy rounds first,
             then post-copy; completes, verified.
  auto       --policy auto picks post-copy here (pre-copy cannot converge and
             the destination offers post-copy), and says so (x-policy).

Nothing asserts on time: fault latency and durations are logged for bench/."""
import kvtest
from kvtest import check

WSS = 32 << 20
GUEST = kvtest.guest_cmdline(wss="32M", rate=256, hb=1000)


def check_postcopy(h, run, dst, events):
    check(run.stat("x-postcopy-time", default=-1) >= 0, "no post-copy happened: %r"
          % run.result)
    ram = run.stat("ram")
    check(ram.get("postcopy-requests", 0) > 0, "the guest never asked for a page: %r" % ram)
    d = run.stat("x-postcopy-destination", default={})
    check(d.get("missing") == 0, "the destination ended post-copy missing pages: %r" % d)
    statuses = []
    while True:
        try:
            statuses.append(events.wait_event("MIGRATION", timeout=5)["data"]["status"])
        except kvtest.TestFailure:
            break
        if statuses[-1] in ("completed", "failed"):
            break
    check("postcopy-active" in statuses and statuses[-1] == "completed",
          "the destination's MIGRATION events: %r" % statuses)
    q = dst.cmd("query-migrate")
    check(q.get("status") == "completed", "destination query-migrate: %r" % q)
    h.log("post-copy: %s; %d pages asked for; fault latency p50 %s us p99 %s us; post-copy "
          "%s ms" % (run.summary(), ram["postcopy-requests"], d.get("fault-latency-p50-us"),
                     d.get("fault-latency-p99-us"), run.stat("x-postcopy-time")))


def test(h):
    a = h.vmm(name="a", mem="512M", append=GUEST)
    b = h.incoming("b", a)
    a.wait_ready()
    a.wait_verified()
    bw = kvtest.link_slower_than_guest(a, b.uri)
    h.log("link: --bandwidth %d MiB/s" % bw)

    # ---- post-copy after the first pass ----
    ev = b.qmp()
    run = a.migrate(b.uri, "--bandwidth", str(bw), "--policy", "postcopy")
    kvtest.check_migrated(a, b, run, wss=WSS)
    check(run.stat("x-policy") == "postcopy", "x-policy %r" % run.stat("x-policy"))
    check_postcopy(h, run, b, ev)
    ev.close()

    # ---- hybrid: three pre-copy rounds, then post-copy ----
    c = h.incoming("c", b)
    ev = c.qmp()
    run = b.migrate(c.uri, "--bandwidth", str(bw), "--postcopy-after", "3")
    kvtest.check_migrated(b, c, run, wss=WSS)
    check(run.stat("ram", "dirty-sync-count") >= 3, "hybrid switched after %r rounds"
          % run.stat("ram", "dirty-sync-count"))
    check_postcopy(h, run, c, ev)
    ev.close()

    # ---- auto: the prediction chooses ----
    d = h.incoming("d", c)
    run = c.migrate(d.uri, "--bandwidth", str(bw), "--policy", "auto")
    kvtest.check_migrated(c, d, run, wss=WSS)
    pred = run.stat("x-prediction")
    check(pred and pred.get("choice") == run.stat("x-policy"),
          "x-policy %r is not the prediction's choice %r" % (run.stat("x-policy"), pred))
    check(run.stat("x-policy") == "postcopy", "auto chose %r for a guest that out-dirties "
          "the link: %r" % (run.stat("x-policy"), pred))
    d.wait_verified()
    kvtest.check_serial(a, b, c, d)


kvtest.main(test)
