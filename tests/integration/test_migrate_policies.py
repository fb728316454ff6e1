#!/usr/bin/env python3
"""Convergence policies when the guest dirties memory faster than the link
carries it: a guest writing over an 8 MiB working set, migrated over a link
set to a third of the dirty rate it was just measured to reach here
(--check-only's sample: hosts differ tenfold in how fast a guest dirties
memory under dirty logging, so no fixed --bandwidth is "too slow" on all).

  fail           gives up: status failed, x-error-id converge, exit 1; the VM
                 keeps running and verifying on the source; the destination
                 exits with the reason
  force          (same source, new destination) switches over at max-rounds
                 anyway: completes, memory verified; the downtime is reported
  auto-converge  (a new guest) throttles the vCPUs until it converges:
                 completes, memory verified, cpu-throttle-percentage reported

The working set is small so that each pass over the slow link stays short;
nothing asserts on time.  auto-converge must also show the throttle
working: the guest's dirty rate in the last pass is below the rate of the
first throttled one."""
import kvtest
from kvtest import check

WSS = 8 << 20
GUEST = kvtest.guest_cmdline(wss="8M", rate=256, hb=1000)


def test(h):
    a = h.vmm(name="a", mem="512M", append=GUEST)
    b = h.incoming("b", a)
    a.wait_ready()
    a.wait_verified()
    bw = str(kvtest.link_slower_than_guest(a, b.uri))
    h.log("link: --bandwidth %s MiB/s" % bw)

    # ---- fail: give up, stay on the source ----
    run = a.migrate(b.uri, "--bandwidth", bw, "--max-rounds", "5", "--policy", "fail")
    run.expect(1, "failed", "converge")
    check(run.stat("x-policy") == "fail", "x-policy %r" % run.stat("x-policy"))
    h.log("policy fail: %s; %s" % (run.summary(), run.stat("error-desc")))
    rc = b.wait_exit(timeout=90)
    check(rc == 1, "the destination exited %d after the source gave up, expected 1" % rc)
    err = b.stderr()
    check("converge" in err or "gave up" in err or "did not" in err,
          "the destination's stderr does not say why: %r" % err)
    kvtest.check_never_ran(b)
    a.check_alive()
    st = a.cmd("query-status")
    check(st.get("status") == "running", "source after the failed migration: %r" % st)
    a.wait_verified()
    kvtest.check_serial(a)

    # ---- force: switch over anyway at max-rounds ----
    c = h.incoming("c", a)
    run = a.migrate(c.uri, "--bandwidth", bw, "--max-rounds", "3", "--policy", "force")
    kvtest.check_migrated(a, c, run, wss=WSS)
    check(run.stat("ram", "dirty-sync-count") >= 3, "force switched over after %r rounds"
          % run.stat("ram", "dirty-sync-count"))
    h.log("policy force: %s (downtime target %s ms)" % (run.summary(),
                                                        run.stat("x-downtime-target")))
    c.kill()

    # ---- auto-converge: throttle until it fits ----
    d = h.vmm(name="d", mem="512M", append=GUEST)
    e = h.incoming("e", d)
    d.wait_ready()
    d.wait_verified()
    run = d.migrate(e.uri, "--bandwidth", bw, "--policy", "auto-converge")
    kvtest.check_migrated(d, e, run, wss=WSS)
    thr = run.stat("cpu-throttle-percentage")
    check(isinstance(thr, int) and thr > 0, "auto-converge reported no throttling: %r"
          % run.result)
    passes = run.named("MIGRATION_PASS")
    check(any(p["data"].get("cpu-throttle-percentage", 0) > 0 for p in passes),
          "no MIGRATION_PASS event reported throttling: %r" % [p["data"] for p in passes])
    h.log("policy auto-converge: %s; throttle per pass: %s; dirty pages/s per pass: %s"
          % (run.summary(), [p["data"]["cpu-throttle-percentage"] for p in passes],
             [p["data"]["dirty-pages-rate"] for p in passes]))
    throttled = [p["data"] for p in passes if p["data"].get("cpu-throttle-percentage", 0) > 0]
    check(passes[-1]["data"]["dirty-pages-rate"] < throttled[0]["dirty-pages-rate"],
          "the guest dirtied no slower at the end (%r pages/s at %r%%) than in the first "
          "throttled pass (%r pages/s at %r%%)" % (
              passes[-1]["data"]["dirty-pages-rate"],
              passes[-1]["data"]["cpu-throttle-percentage"],
              throttled[0]["dirty-pages-rate"], throttled[0]["cpu-throttle-percentage"]))


kvtest.main(test)
