#!/usr/bin/env python3
"""kvmove migrate / kvmove save: usage errors (exit 2), an unreachable
control socket (exit 5), a VMM that refuses the command (exit 1: no VM yet,
a migration already in progress), a failed save (exit 1, the VM keeps
running and verifying), and the human summary of a completed migration.
The migrations themselves are tested in test_migrate_*.py."""
import os
import re

import kvtest
from kvfault import FaultProxy
from kvtest import check


def expect(r, code, what, stdout=None, stderr=None):
    check(r.returncode == code, "%s: exit %d, expected %d (stdout %r, stderr %r)"
          % (what, r.returncode, code, r.stdout, r.stderr))
    if stdout is not None:
        check(re.search(stdout, r.stdout), "%s: stdout %r does not match %r"
              % (what, r.stdout, stdout))
    if stderr is not None:
        check(re.search(stderr, r.stderr), "%s: stderr %r does not match %r"
              % (what, r.stderr, stderr))


def test(h):
    kv = h.kvmove
    to = "tcp:127.0.0.1:1"

    # ---- usage: exit 2 ----
    for verb in ("migrate", "save"):
        expect(h.run([kv, verb, "--help"]), 0, verb + " --help",
               stdout=r"(?s)usage: kvmove %s.*exit status" % verb)
    expect(h.run([kv, "migrate", "--to", to]), 2, "no --control", stderr="--control")
    expect(h.run([kv, "migrate", "--control", "x"]), 2, "no --to", stderr="--to")
    for bad in (["--to", "file:/tmp/x"], ["--to", "tcp:host"], ["--to", "tcp:h:0"],
                ["--to", to, "--policy", "sometimes"], ["--to", to, "--downtime-ms", "0"],
                ["--to", to, "--bandwidth", "-1"], ["--to", to, "--max-rounds", "x"],
                ["--to", to, "--timeout", "0"], ["--to", to, "--bogus"],
                ["--to", to, "extra"]):
        expect(h.run([kv, "migrate", "--control", "x"] + bad), 2, "migrate %s" % bad)
    expect(h.run([kv, "save", "--control", "x"]), 2, "save without FILE")
    expect(h.run([kv, "save", "--control", "x", "a", "b"]), 2, "save with two FILEs")
    expect(h.run([kv, "save", "f"]), 2, "save without --control")

    # ---- unreachable control socket: exit 5 ----
    missing = os.path.join(h.tmpdir, "missing.sock")
    expect(h.run([kv, "migrate", "--control", missing, "--to", to]), 5, "migrate, no VMM",
           stderr="no such file")
    expect(h.run([kv, "save", "--control", missing, "f"]), 5, "save, no VMM",
           stderr="no such file")

    # ---- a destination VMM has no VM to migrate: exit 1 ----
    dst = h.incoming("dst", "cli")
    expect(dst.cli("migrate", "--to", to), 1, "migrate from an incoming VMM",
           stderr="no VM yet")
    expect(dst.cli("save", os.path.join(h.tmpdir, "none")), 1, "save an incoming VMM",
           stderr="no VM yet")

    vm = h.vmm(name="cli", mem="512M", append=kvtest.guest_cmdline(wss="64M", rate=32, hb=1000))
    vm.wait_ready()

    # ---- a failed save: the VM runs on ----
    run = vm.save(os.path.join(h.tmpdir, "no-such-dir", "vm.kvmstate"))
    run.expect(1, "failed", "io")
    h.log("save into a missing directory: %s" % run.stat("error-desc"))
    check(vm.cmd("query-status")["status"] == "running", "VM not running after a failed save")
    vm.wait_verified()

    # ---- one migration at a time: exit 1 for the second ----
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "RAM", nth=2)
    first = vm.migrate_bg(px.uri)
    hold.wait()
    expect(vm.cli("migrate", "--to", dst.uri), 1, "a second migration",
           stderr="migration process in progress")
    vm.cmd("migrate_cancel")
    first.finish().expect(4, "cancelled")
    hold.release()
    dst.wait_exit(timeout=90)
    vm.wait_verified()

    # ---- the human summary of a completed migration ----
    dst2 = h.incoming("dst2", vm)
    r = vm.cli("migrate", "--to", dst2.uri, "--downtime-ms", "300", "--max-rounds", "10",
               timeout=300)
    expect(r, 0, "migrate (human)", stdout=r"cli: migrated to " + re.escape(dst2.uri))
    for key in ("total time", "downtime", "transferred", "rounds", "throughput"):
        check(re.search(r"^  %s +\S" % key, r.stdout, re.M), "no %r in the summary: %r"
              % (key, r.stdout))
    check(re.search(r"target 300 ms", r.stdout), "downtime target not shown: %r" % r.stdout)
    check(vm.wait_exit(timeout=60) == 0, "source did not exit 0")
    dst2.wait_verified(start=0)
    kvtest.check_serial(vm, dst2)


kvtest.main(test)
