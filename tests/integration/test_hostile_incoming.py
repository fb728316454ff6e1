#!/usr/bin/env python3
"""A destination among strangers (the attacks of issue 10, each one tried):

  1 another VM      a VMM running another VM ("evil") migrates to a
                    destination that expects "web1": refused (identity) and
                    the destination keeps waiting; a destination with --lock
                    refuses a web1 without a lock
  2 host files      a VM named web1 whose disk is a host file the destination
                    did not allow, or a symlink out of an allowed directory:
                    refused at preflight (disk-not-allowed), nothing opened,
                    the file unchanged
  3 quick images    the destination restores a quick migration only from its
                    own --via DIR/NAME.kvmstate; a destination without --via
                    refuses quick migrations; when the image there is not a
                    save file, the source learns nothing of its bytes
  4 rogue peers     garbage, a connection that is cut after HELLO, and a
                    silent one: the destination survives all three (a 5 s
                    handshake deadline), then the real migration completes
  5 forged streams  a whole RAM record dropped, replayed, or swapped with the
                    next (checksums intact): the destination refuses before
                    READY (the records' sequence numbers, STATE_END's page
                    count), the source keeps running and verifying its VM
  9 big VMs         a VM with more vCPUs than the destination takes is
                    refused at preflight, before anything is built
 10 quit mid-way    quit on the source in the device phase: kvmove migrate
                    says the VM was shut down (exit 1), not "cancelled, the
                    VM runs on the source"

Every completed migration is verified by the guest on the destination."""
import os
import socket
import time

import kvtest
from kvfault import FaultProxy
from kvtest import check

GUEST = kvtest.guest_cmdline(wss="32M", rate=32, hb=1000)


def boot(h, name, extra=(), cpus=1, mem="256M"):
    vm = h.vmm(name=name, mem=mem, cpus=cpus, append=GUEST, extra=list(extra))
    vm.wait_ready()
    vm.wait_verified()
    return vm


def refused(run, ident):
    ids = [f.get("id") for f in run.stat("x-preflight", "failures", default=[]) or []]
    check(run.rc == 3 and ident in ids, "expected a refusal %s, got exit %d, ids %r, %r"
          % (ident, run.rc, ids, run.result))


def still_waiting(dst):
    dst.check_alive()
    check(dst.cmd("query-status")["status"] == "inmigrate", "the destination is not waiting")


def test(h):
    web1 = boot(h, "web1")
    dst = h.incoming("dst", "web1")

    # ---- 1: another VM; then a lockless web1 at a destination with a lock ----
    evil = boot(h, "evil")
    run = evil.migrate(dst.uri)
    refused(run, "identity")
    still_waiting(dst)
    kvtest.check_never_ran(dst)
    evil.check_alive()
    lockdir = os.path.join(h.tmpdir, "locks")
    os.mkdir(lockdir)
    locked = h.incoming("locked", "web1", extra=["--lock", os.path.join(lockdir, "web1.lock")])
    refused(web1.migrate(locked.uri, "--check-only"), "lock")
    locked.kill()

    # ---- 2: host files as disks ----
    secret = os.path.join(h.tmpdir, "secret")
    with open(secret, "wb") as f:
        f.write(b"root:x:0:0 known content\n" * 200)
    images = os.path.join(h.tmpdir, "images")
    os.mkdir(images)
    escape = os.path.join(images, "escape.img")
    os.symlink(secret, escape)
    for disk in (secret, escape):
        name = "web1"
        bad = h.vmm(name=name + "x", mem="64M", append="wss=1M disk=0", extra=["--disk", disk])
        bad.wait_ready()
        strict = h.incoming("strict", bad, extra=["--allow-disk", images])
        run = bad.migrate(strict.uri)
        refused(run, "disk-not-allowed")
        strict.kill()
        bad.kill()
    with open(secret, "rb") as f:
        check(f.read() == b"root:x:0:0 known content\n" * 200, "the host file changed")

    # ---- 3: quick migration images come from the destination's own --via ----
    shared = os.path.join(h.tmpdir, "shared")
    elsewhere = os.path.join(h.tmpdir, "elsewhere")
    os.mkdir(shared)
    os.mkdir(elsewhere)
    noquick = h.incoming("noquick", web1)
    refused(web1.migrate(noquick.uri, "--quick", "--via", shared, "--check-only"), "quick")
    noquick.kill()
    with open(os.path.join(elsewhere, "web1.kvmstate"), "wb") as f:
        f.write(b"SECRETBYTES-not-a-save-file" * 100)
    wrongdir = h.incoming("wrongdir", web1, extra=["--via", elsewhere])
    run = web1.migrate(wrongdir.uri, "--quick", "--via", shared)
    check(run.rc != 0, "a quick migration restored something else: %r" % run.result)
    desc = run.stat("error-desc", default="") or ""
    check("SECRET" not in desc and "not-a-save" not in desc,
          "the source learned bytes of the destination's file: %r" % desc)
    h.log("quick migration against a foreign image: exit %d: %s" % (run.rc, desc))
    wrongdir.wait_exit(timeout=60)
    kvtest.check_never_ran(wrongdir)
    # the VM stayed paused? no: a failed quick migration before SAVED resumes it
    web1.console.wait_for(r"^HB ", start=len(web1.console), timeout=60)

    # ---- 4: rogue peers ----
    with socket.create_connection(("127.0.0.1", dst.port)) as s:
        s.sendall(os.urandom(4096))
        time.sleep(0.5)
    still_waiting(dst)
    px = FaultProxy(h, dst.port)
    px.cut("src", "CONFIG")             # a HELLO, then the connection ends
    run = web1.migrate(px.uri)
    check(run.rc != 0, "a cut handshake completed: %r" % run.result)
    px.close()
    still_waiting(dst)
    idle = socket.create_connection(("127.0.0.1", dst.port))    # says nothing
    t0 = kvtest.now()
    run = web1.migrate(dst.uri)     # queued behind the silent one until its deadline
    idle.close()
    kvtest.check_migrated(web1, dst, run)
    h.log("migrated behind a silent connection: %.1f s (handshake deadline 5 s)"
          % (kvtest.now() - t0))
    err = dst.stderr()
    check(err.count("refused a connection") >= 3, "the destination did not report the "
          "rogue connections: %r" % err[-2000:])

    # ---- 5: forged streams: a RAM record dropped, one replayed ----
    vm = dst
    for action in ("drop", "dup", "swap"):
        nxt = h.incoming("after-" + action, vm)
        px = FaultProxy(h, nxt.port)
        getattr(px, action)("src", "RAM", nth=3)
        # one connection: the forgery is a record-stream property (several
        # channels' forgeries are test_channels' cut channel).  Through this
        # proxy with two channels the source sometimes never hears the
        # destination's reason (the destination names it: checked below);
        # not understood yet, see the issue 13 note
        run = vm.migrate(px.uri, "--channels", "1")
        run.expect(1, "failed")
        desc = run.stat("error-desc") or ""
        check("lost, replayed or" in desc, "%s: %r" % (action, run.result))
        rc = nxt.wait_exit(timeout=60)
        check(rc == 1, "the destination exited %d after a %s record" % (rc, action))
        # and says so itself (not what its own wake-up of the first
        # connection's reader looks like: "stream truncated")
        check("lost, replayed or" in nxt.stderr(), "%s: the destination did not name the "
              "forgery: %r" % (action, nxt.stderr()[-1000:]))
        kvtest.check_never_ran(nxt)
        check(vm.cmd("query-status")["status"] == "running", "the source stopped")
        vm.wait_verified()
        h.log("RAM record %s: refused: %s" % (action, run.stat("error-desc")))
        px.close()

    # ---- 9: more vCPUs than the destination takes: refused before building ----
    wide = boot(h, "wide", cpus=8, mem="128M")
    narrow = h.incoming("narrow", wide, extra=["--max-vcpus", "2"])
    run = wide.migrate(narrow.uri)
    refused(run, "vcpus")
    rc = narrow.wait_exit(timeout=30)
    check(rc == 3, "the destination exited %d after refusing, expected 3" % rc)
    check("resumed" not in narrow.stderr(), "the destination built the VM")
    wide.kill()

    # ---- 10: quit on the source while the VM is paused for the device phase ----
    last = h.incoming("last", vm)
    px = FaultProxy(h, last.port)
    hold = px.stall("src", "VCPU")
    mig = vm.migrate_bg(px.uri)
    hold.wait()
    vm.cmd("quit")
    run = mig.finish()
    check(run.rc == 1 and run.stat("x-error-id") == "shutdown",
          "quit in the device phase: exit %d, %r" % (run.rc, run.result))
    check("runs nowhere" in (run.stat("error-desc") or ""),
          "kvmove migrate did not say the VM was shut down: %r" % run.result)
    hold.release()
    vm.wait_exit(timeout=30)


kvtest.main(test)
