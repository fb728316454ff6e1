#!/usr/bin/env python3
"""Same-host hand-over (kvmove migrate --to unix:PATH): a new VMM on this
host takes a running VM over with its RAM (a memfd), its disk and its TAP,
and no guest page is copied.

1. The listening socket is the user's own: mode 0600, and a process of
   another uid cannot connect (the destination keeps waiting).
2. The new VMM is killed after it built the VM around the memory and
   said READY, before GO: the source takes its disk back, the VM runs on
   there with its memory and disk intact, and the dead VMM never ran it.
3. A 1 GiB guest (working set 256 MiB, dirtying and verifying it) with a
   disk (its own verifier) and a NIC on a TAP of a namespace this test
   makes: after the hand-over the source VMM exited 0, the guest verifies
   all of its memory and its disk on the new VMM, heartbeats are
   consecutive across the switch, the new VMM holds the disk (another VMM
   cannot open it) and the guest still answers pings through the TAP
   (the VMMs run in a network namespace of the test's, with the TAP).
   What went over the socket is less than 1/100 of the RAM: the pages were
   handed over, not sent.
4. It goes on: the new VMM hands the VM to a third one the same way.
5. A hand-over to a path nobody listens on fails with a clear message and
   the VM runs on."""
import os
import subprocess

import kvtest
from kvtest import check

MAC = "52:54:00:12:34:77"
GUEST_IP, HOST_IP = "10.77.0.2", "10.77.0.1"


def sh(*argv, check_rc=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check_rc and r.returncode:
        raise kvtest.TestFailure("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


def wait_socket_file(h, vm, path):
    deadline = kvtest.now() + kvtest.scaled(30)
    while not os.path.exists(path):
        vm.check_alive()
        check(kvtest.now() < deadline, "%s did not appear" % path)
        kvtest.time.sleep(0.02)


def local_dest(h, name, src, ns, extra=()):
    path = os.path.join(h.tmpdir, name + ".mig")
    vm = h.vmm(name=name, incoming="unix:" + path, expect=src.vm_name, tls="none",
               netns=ns, extra=list(extra))
    wait_socket_file(h, vm, path)
    vm.uri = "unix:" + path
    vm.path = path
    return vm


def disk_refused(h, disk, who):
    other = h.vmm(name="other-" + who, mem="64M", append="wss=1M", extra=["--disk", disk])
    check(other.wait_exit(timeout=30) != 0, "a second VMM opened the disk held by %s" % who)


def check_handed_over(h, src, dst, run, what):
    run.expect(0, "completed")
    check(src.wait_exit(timeout=60) == 0, "the source VMM did not exit 0")
    start = dst.wait_verified(start=0)
    dst.console.wait_for(r"^DISK OK ", start=start, timeout=120, what="DISK OK")
    seqs = kvtest.check_serial(*what)
    kvtest.wait_hb(dst.console, min_seq=seqs[-1] + 5)
    kvtest.check_serial(*what)
    check(dst.cmd("query-status")["status"] == "running", "not running after the hand-over")
    sent = run.stat("ram", "transferred", default=None)
    check(sent is not None and sent < (1 << 30) // 100,
          "%r bytes went over the socket for a 1 GiB guest: pages were copied" % sent)
    check(run.stat("ram", "normal", default=-1) == 0, "RAM pages were sent: %r"
          % run.stat("ram"))
    check(run.stat("downtime", default=0) > 0, "no downtime reported")
    check(run.stat("x-local") is True, "x-local %r" % run.stat("x-local"))
    text = "\n".join(l for _, l in dst.console.snapshot())
    for bad in ("DISK FAIL", "DISK BAD", "DISK STALL"):
        check(bad not in text, "%s on %s" % (bad, dst.name))
    h.log("%s: %s" % (dst.name, run.summary()))


def ping(ns):
    return sh("ip", "netns", "exec", ns, "ping", "-c", "3", "-W", "2", GUEST_IP,
              check_rc=False)


def test(h):
    disk = os.path.join(h.tmpdir, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(32 << 20)
    # a namespace of ours with a TAP in it: the VMMs run there, and the
    # host end of the TAP answers for HOST_IP
    ns = "kvlocal%d" % os.getpid()
    tap = "kvltap0"
    sh("ip", "netns", "add", ns)
    h.add_cleanup(lambda: sh("ip", "netns", "del", ns, check_rc=False))
    nsx = ["ip", "netns", "exec", ns]
    sh(*nsx, "ip", "link", "set", "lo", "up")
    sh(*nsx, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
    sh(*nsx, "ip", "addr", "add", HOST_IP + "/24", "dev", tap)
    sh(*nsx, "ip", "link", "set", tap, "up")

    src = h.vmm(name="src", mem="1G", tls="none", netns=ns,
                append=kvtest.guest_cmdline(wss="256M", rate=32, hb=500, diskrate=200,
                                            ip=GUEST_IP),
                extra=["--disk", disk, "--net", "tap=%s,mac=%s" % (tap, MAC)])
    allow = ["--allow-disk", disk, "--allow-tap", tap]
    dst = local_dest(h, "dst", src, ns, allow)

    # 1. only this user reaches it
    mode = os.stat(dst.path).st_mode & 0o777
    check(mode == 0o600, "the hand-over socket is mode %o, not 600" % mode)
    r = subprocess.run(["python3", "-c", "import os, socket, sys\n"
                        "os.setgid(65534); os.setuid(65534)\n"
                        "s = socket.socket(socket.AF_UNIX)\n"
                        "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n"
                        "    print(e.errno); sys.exit(3)\n", dst.path],
                       capture_output=True, text=True)
    check(r.returncode == 3, "uid 65534 could connect to the hand-over socket: %r" % (r,))
    dst.check_alive()

    src.wait_ready()
    src.console.wait_for(r"^DISK OK ", timeout=120, what="DISK OK")
    src.wait_verified()
    check(ping(ns).returncode == 0, "the guest does not answer pings before the hand-over")

    # 2. the new VMM dies with the VM built around the memory, READY sent,
    # before GO (pause-before-switchover holds the source there): the
    # source takes its disk back and the VM runs on, its memory intact
    doomed = local_dest(h, "doomed", src, ns, allow)
    with src.qmp() as q:
        q.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "pause-before-switchover", "state": True}]})
        q.cmd("migrate", {"uri": doomed.uri})
        deadline = kvtest.now() + kvtest.scaled(60)
        while q.cmd("query-migrate").get("status") != "pre-switchover":
            check(kvtest.now() < deadline, "the hand-over never reached pre-switchover")
            kvtest.time.sleep(0.05)
        doomed.proc.kill()
        doomed.wait_exit()
        q.cmd("migrate-continue", {"state": "pre-switchover"})
        while q.cmd("query-migrate").get("status") not in ("failed", "completed"):
            check(kvtest.now() < deadline + kvtest.scaled(60), "the source never decided")
            kvtest.time.sleep(0.05)
        st = q.cmd("query-migrate")
        check(st["status"] == "failed", "hand-over to a dead VMM: %r" % st)
        check(q.cmd("query-status")["status"] == "running", "the source did not resume")
        h.log("new VMM killed before GO: %s" % st.get("error-desc"))
        q.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "pause-before-switchover", "state": False}]})
    kvtest.check_never_ran(doomed)
    start = len(src.console)
    src.console.wait_for(r"^DISK OK ", start=start, timeout=120, what="DISK OK after")
    src.wait_verified(start=start)

    # 3. the hand-over
    run = src.migrate(dst.uri)
    check_handed_over(h, src, dst, run, (src, dst))
    disk_refused(h, disk, "dst")
    out = ping(ns)
    check(out.returncode == 0, "no pings through the handed-over TAP: %s" % out.stdout)

    # 4. and again, from the new VMM
    dst2 = local_dest(h, "dst2", src, ns, allow)
    run = dst.migrate(dst2.uri)
    check_handed_over(h, dst, dst2, run, (src, dst, dst2))
    check(ping(ns).returncode == 0, "no pings after the second hand-over")
    check(not os.path.exists(dst2.path), "the finished destination left its socket behind")

    # 5. nobody listening: refused at once, the VM runs on where it was
    run = dst2.migrate("unix:" + os.path.join(h.tmpdir, "nobody.mig"))
    check(run.rc != 0, "a hand-over to a socket nobody listens on succeeded")
    why = run.stat("error-desc", default="")
    check("cannot reach" in why, "no clear message: %r" % why)
    check(dst2.cmd("query-status")["status"] == "running", "the VM stopped after a failed "
          "hand-over")
    dst2.wait_verified()


kvtest.main(test)
