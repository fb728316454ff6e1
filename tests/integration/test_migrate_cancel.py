#!/usr/bin/env python3
"""Cancelling a live migration, held in each state by the fault proxy:

  setup   (the destination's HELLO is held)   QMP migrate_cancel
  active  (the 2nd RAM record is held)        Ctrl-C (SIGINT) to kvmove migrate
  device  (the VCPU record is held; the VM    Ctrl-C
           is paused on the source)
  after GO (RESUMED is held: GO was sent;     Ctrl-C is refused (too late), a
           x-go-sent)                         second Ctrl-C only says it waits;
                                              released, the migration completes

After each cancel: kvmove migrate exits 4 with status cancelled, the VM runs
and verifies all of its memory on the source with consecutive heartbeats,
and the destination never ran the guest: a destination that had the VM's
configuration exits with a message; one cancelled during the handshake
cannot tell the source from a stranger and keeps waiting (it says so).  (The proxy
releases what it held once the source cancelled, so the destination sees the
source's close instead of waiting out a timeout.)"""
import signal
import time

import kvtest
from kvfault import FaultProxy
from kvtest import check

WSS = 256 << 20


def wait_status(src, want, timeout=60):
    deadline = kvtest.now() + kvtest.scaled(timeout)
    while True:
        st = src.cmd("query-migrate").get("status")
        if st == want:
            return
        check(kvtest.now() < deadline, "migration status %r, waited for %r" % (st, want))
        time.sleep(0.05)


def wait_stderr(mig, text, timeout=30):
    deadline = kvtest.now() + kvtest.scaled(timeout)
    while text not in mig.stderr():
        check(mig.proc.poll() is None or text in mig.stderr(),
              "kvmove migrate exited without saying %r: %r" % (text, mig.stderr()))
        check(kvtest.now() < deadline, "kvmove migrate did not say %r: %r"
              % (text, mig.stderr()))
        time.sleep(0.05)


def cancelled(h, src, dst, mig, state, hold, dst_waits=False):
    run = mig.finish(timeout=120)
    run.expect(4, "cancelled", "cancelled")
    # What the proxy held goes on, then the source's close: the destination
    # learns that the source went away (rather than waiting for its timeout).
    hold.release()
    check("cancelling" in run.statuses(), "no 'cancelling' event: %r" % run.statuses())
    if dst_waits:
        deadline = kvtest.now() + kvtest.scaled(30)
        while "refused a connection" not in dst.stderr():
            dst.check_alive()
            check(kvtest.now() < deadline, "the destination did not drop the cancelled "
                  "handshake: %r" % dst.stderr())
            time.sleep(0.05)
        check(dst.cmd("query-status")["status"] == "inmigrate", "destination not waiting")
        err = dst.stderr()
        dst.kill()
    else:
        rc = dst.wait_exit(timeout=90)
        err = dst.stderr()
        check(rc == 1, "the destination exited %d after the cancel, expected 1" % rc)
    check(any(w in err for w in ("closed", "end of stream", "cancel", "gave up")),
          "the destination's stderr does not say the source went away: %r" % err)
    kvtest.check_never_ran(dst)
    check(src.cmd("query-status")["status"] == "running", "source not running after cancel")
    src.wait_verified()
    kvtest.check_serial(src)
    h.log("cancelled in %s: %s; destination: %s"
          % (state, run.stat("error-desc"), err.strip().splitlines()[-1]))


def test(h):
    src = h.vmm(name="src", mem="1G", append=kvtest.guest_cmdline(wss="256M", rate=32, hb=1000))
    src.wait_ready()
    src.wait_verified()

    # setup: QMP migrate_cancel
    dst = h.incoming("dst-setup", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("dst", "HELLO")
    mig = src.migrate_bg(px.uri)
    hold.wait()
    wait_status(src, "setup")
    with src.qmp() as q:
        q.cmd("migrate_cancel")
    cancelled(h, src, dst, mig, "setup", hold, dst_waits=True)
    px.close()

    # active: Ctrl-C
    dst = h.incoming("dst-active", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "RAM", nth=2)
    mig = src.migrate_bg(px.uri)
    hold.wait()
    wait_status(src, "active")
    mig.signal(signal.SIGINT)
    cancelled(h, src, dst, mig, "active", hold)
    check("cancelling" in mig.stderr(), "no word from kvmove migrate on Ctrl-C: %r"
          % mig.stderr())
    px.close()

    # device: Ctrl-C while the VM is paused for stop-and-copy
    dst = h.incoming("dst-device", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "VCPU")
    mig = src.migrate_bg(px.uri)
    hold.wait()
    wait_status(src, "device")
    check(src.cmd("query-status")["status"] == "paused", "VM not paused in stop-and-copy")
    mig.signal(signal.SIGINT)
    cancelled(h, src, dst, mig, "device", hold)
    px.close()

    # after GO: too late; the migration completes
    dst = h.incoming("dst-late", src)
    px = FaultProxy(h, dst.port)
    hold = px.stall("dst", "RESUMED")
    mig = src.migrate_bg(px.uri)
    hold.wait()
    deadline = kvtest.now() + kvtest.scaled(60)
    while not src.cmd("query-migrate").get("x-go-sent"):
        check(kvtest.now() < deadline, "GO never sent: %r" % src.cmd("query-migrate"))
        time.sleep(0.05)
    try:
        with src.qmp() as q:
            q.cmd("migrate_cancel")
        raise kvtest.TestFailure("migrate_cancel accepted after GO")
    except kvtest.QMPError as e:
        h.log("migrate_cancel after GO: %s" % e)
    mig.signal(signal.SIGINT)
    wait_stderr(mig, "cannot cancel")
    mig.signal(signal.SIGINT)
    wait_stderr(mig, "still waiting")
    hold.release()
    run = mig.finish(timeout=120)
    kvtest.check_migrated(src, dst, run, wss=WSS)
    h.log("Ctrl-C after GO: refused, then %s" % run.summary())


kvtest.main(test)
