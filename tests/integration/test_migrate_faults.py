#!/usr/bin/env python3
"""Faults during a live migration, injected by a proxy between source and
destination (kvfault.py).  One source VM (1 GiB, 256 MiB working set at
32 MiB/s) lives through all of them:

  1. destination killed during pre-copy   (proxy holds the 2nd RAM record)
  2. destination killed in stop-and-copy  (proxy holds the VCPU record: the
                                           VM is paused on the source)
  3. connection cut in the middle of RAM
  4. a corrupted page record              (one byte of a RAM record flipped)
  5. a corrupted state record             (one byte of the VCPU record flipped)

Every time: kvmove migrate exits 1 with status failed; the source VM runs
and verifies all of its memory afterwards with consecutive heartbeats; the
destination has exited (with a message naming the cause unless we killed
it) and never ran the guest.

  6. destination killed after GO was sent, without a lock file to ask: the
     outcome is indeterminate (exit 6); the VM stays paused on the source and
     the message tells the operator what to check; this destination never
     ran it, so 'kvmove resume' on the source is the right call, after which
     the VM verifies all of its memory.
  7. the source VMM itself is killed during pre-copy (last: the VM dies
     with it): kvmove migrate cannot learn the outcome and exits 6 saying
     so; the destination exits with a message and never runs the guest."""
import signal

import kvtest
from kvfault import FaultProxy
from kvtest import check


def after_fault(h, src, dst, mig, killed, stderr_words=()):
    """The common checks after a failed migration; returns the MigrateRun."""
    run = mig.finish(timeout=180)
    run.expect(1, "failed")
    rc = dst.wait_exit(timeout=90)
    if killed:
        check(rc == -signal.SIGKILL, "the killed destination exited %d" % rc)
    else:
        check(rc == 1, "the destination exited %d, expected 1" % rc)
        err = dst.stderr()
        check("incoming migration failed" in err, "destination stderr: %r" % err)
        check(any(w in err.lower() for w in stderr_words),
              "the destination's stderr %r names none of %r" % (err, stderr_words))
    kvtest.check_never_ran(dst)
    src.check_alive()
    st = src.cmd("query-status")
    check(st.get("status") == "running", "source after the fault: %r" % st)
    src.wait_verified()
    kvtest.check_serial(src)
    return run


def test(h):
    src = h.vmm(name="src", mem="1G",
                append=kvtest.guest_cmdline(wss="256M", rate=32, hb=1000))
    src.wait_ready()
    src.wait_verified()

    # 1. destination killed during pre-copy
    dst = h.incoming("dst1", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "RAM", nth=2)
    mig = src.migrate_bg(px.uri)
    hold.wait()
    check(src.cmd("query-migrate")["status"] == "active", "not in pre-copy while held")
    dst.proc.kill()
    hold.release()
    run = after_fault(h, src, dst, mig, killed=True)
    h.log("1. destination killed in pre-copy: %s: %s" % (run.stat("x-error-id"),
                                                         run.stat("error-desc")))
    px.close()

    # 2. destination killed during stop-and-copy (the VM is paused)
    dst = h.incoming("dst2", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "VCPU", nth=1)
    mig = src.migrate_bg(px.uri)
    hold.wait()
    q = src.cmd("query-migrate")
    check(q["status"] == "device", "not in stop-and-copy while VCPU is held: %r" % q["status"])
    check(src.cmd("query-status")["status"] == "paused", "the VM runs during stop-and-copy")
    dst.proc.kill()
    hold.release()
    run = after_fault(h, src, dst, mig, killed=True)
    h.log("2. destination killed in stop-and-copy: %s: %s" % (run.stat("x-error-id"),
                                                              run.stat("error-desc")))
    px.close()

    # 3. the connection is cut in the middle of RAM
    dst = h.incoming("dst3", src)
    px = FaultProxy(h, dst.port)
    cut = px.cut("src", "RAM", nth=100)
    mig = src.migrate_bg(px.uri)
    cut.wait()
    run = after_fault(h, src, dst, mig, killed=False,
                      stderr_words=("closed", "end of stream", "connection", "truncat"))
    h.log("3. connection cut: %s: %s; destination: %s"
          % (run.stat("x-error-id"), run.stat("error-desc"), dst.stderr().strip().splitlines()[-1]))
    px.close()

    # 4. a corrupted page record
    dst = h.incoming("dst4", src)
    px = FaultProxy(h, dst.port)
    flip = px.flip("src", "RAM", nth=50)
    mig = src.migrate_bg(px.uri)
    flip.wait()
    run = after_fault(h, src, dst, mig, killed=False, stderr_words=("checksum",))
    h.log("4. corrupted RAM record: %s: %s; destination: %s"
          % (run.stat("x-error-id"), run.stat("error-desc"), dst.stderr().strip().splitlines()[-1]))
    px.close()

    # 5. a corrupted state record
    dst = h.incoming("dst5", src)
    px = FaultProxy(h, dst.port)
    flip = px.flip("src", "VCPU", nth=1)
    mig = src.migrate_bg(px.uri)
    flip.wait()
    run = after_fault(h, src, dst, mig, killed=False, stderr_words=("checksum",))
    h.log("5. corrupted VCPU record: %s: %s; destination: %s"
          % (run.stat("x-error-id"), run.stat("error-desc"), dst.stderr().strip().splitlines()[-1]))
    px.close()

    # 6. destination killed after GO, no lock: indeterminate
    dst = h.incoming("dst6", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "GO")
    mig = src.migrate_bg(px.uri)
    hold.wait()
    dst.proc.kill()
    dst.wait_exit()
    hold.release()
    run = mig.finish(timeout=180)
    run.expect(6, "indeterminate", "indeterminate")
    desc = run.stat("error-desc", default="")
    check("kvmove resume" in desc and "kvmove stop" in desc,
          "the indeterminate message does not say what to do: %r" % desc)
    check(desc in mig.stderr(), "kvmove migrate did not print the instructions: %r"
          % mig.stderr())
    kvtest.check_never_ran(dst)
    check(src.cmd("query-status")["status"] == "paused",
          "the source VM is not paused after an indeterminate switchover")
    h.log("6. destination killed after GO without a lock: %s" % desc)
    r = src.cli("resume")
    check(r.returncode == 0, "kvmove resume after indeterminate: exit %d: %s"
          % (r.returncode, r.stderr))
    src.wait_verified()
    kvtest.check_serial(src)
    px.close()

    # 7. the source VMM dies during pre-copy
    dst = h.incoming("dst7", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "RAM", nth=2)
    mig = src.migrate_bg(px.uri)
    hold.wait()
    src.proc.kill()
    src.wait_exit()
    hold.release()
    run = mig.finish(timeout=120)
    check(run.rc == 6, "kvmove migrate exited %d after losing the source VMM, expected 6"
          % run.rc)
    check("lost the VMM's control socket" in run.stderr, "stderr: %r" % run.stderr)
    rc = dst.wait_exit(timeout=90)
    check(rc == 1, "the destination exited %d after the source died" % rc)
    check("closed" in dst.stderr(), "destination stderr: %r" % dst.stderr())
    kvtest.check_never_ran(dst)
    h.log("7. source killed: kvmove migrate: %s; destination: %s"
          % (run.stderr.strip(), dst.stderr().strip().splitlines()[-1]))
    px.close()


kvtest.main(test)
