#!/usr/bin/env python3
"""A destination that goes silent (no error, no close: a hung host, a
partitioned link) while the VM is paused for stop-and-copy.  The proxy
holds the VCPU record forever, so the source waits for READY that never
comes.  The source must give up after its peer timeout (30 s) and resume
the VM: never left paused after a failure.  The destination, which never
got the rest of the state, must give up after its own timeout (60 s) and
exit without running the guest.  (Only liveness bounds here, generous
ones: the test waits minutes, not the exact timeouts.)"""
import time

import kvtest
from kvfault import FaultProxy
from kvtest import check


def test(h):
    src = h.vmm(name="src", mem="1G", append=kvtest.guest_cmdline(wss="256M", rate=32, hb=1000))
    dst = h.incoming("dst", src)
    src.wait_ready()
    src.wait_verified()
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "VCPU")

    mig = src.migrate_bg(px.uri)
    hold.wait()
    check(src.cmd("query-status")["status"] == "paused", "VM not paused in stop-and-copy")
    t0 = kvtest.now()
    while mig.proc.poll() is None:
        waited = kvtest.now() - t0
        if waited > kvtest.scaled(150):
            raise kvtest.TestFailure(
                "the destination has been silent for %.0f s and the source still waits: "
                "migration %s, VM %s (its peer timeout never fired)"
                % (waited, src.cmd("query-migrate")["status"],
                   src.cmd("query-status")["status"]))
        time.sleep(0.5)
    waited = kvtest.now() - t0
    run = mig.finish()
    run.expect(1, "failed", "destination")
    h.log("source gave up after %.1f s held: %s" % (waited, run.stat("error-desc")))
    check(src.cmd("query-status")["status"] == "running", "source VM not running again")
    src.wait_verified()
    kvtest.check_serial(src)

    rc = dst.wait_exit(timeout=150)
    check(rc == 1, "the silent destination exited %d, expected 1" % rc)
    err = dst.stderr()
    check("incoming migration failed" in err, "destination stderr: %r" % err)
    kvtest.check_never_ran(dst)
    h.log("destination: %s" % err.strip().splitlines()[-1])


kvtest.main(test)
