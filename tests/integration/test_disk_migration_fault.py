"""The disk lock as the arbiter (no --lock file): the destination is killed
after READY but before it gets GO.  The source must resume, its disk must
still be its own (a second VMM cannot open it, and the guest's disk
verifier keeps passing), and the destination must never have run the
guest.  Then a migration that completes moves the disk with the VM."""

import os
import signal

import kvtest
from kvtest import check
from kvfault import FaultProxy


def disk_refused(h, disk, who):
    other = h.vmm(name="other-%d" % len(h.vmms), mem="64M", append="wss=1M",
                  extra=["--disk", disk])
    check(other.wait_exit(timeout=30) != 0, "a second VMM opened the disk held by %s" % who)
    check("in use" in other.stderr(), "no clear message: %r" % other.stderr()[-300:])


def no_disk_errors(vm):
    text = "\n".join(line for _, line in vm.console.snapshot())
    for bad in ("DISK FAIL", "DISK BAD", "DISK STALL"):
        check(bad not in text, "%s on %s's console" % (bad, vm.name))


def test(h):
    disk = os.path.join(h.tmpdir, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(32 << 20)
    src = h.vmm(name="src", mem="512M", append="wss=128M rate=16 hb=5000 net=0 diskrate=200",
                extra=["--disk", disk])
    src.wait_ready()
    src.console.wait_for(r"^DISK OK ", timeout=120)
    disk_refused(h, disk, "the running source")

    dst = h.incoming("dst-killed", src, extra=["--allow-disk", disk])
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "GO")
    mig = src.migrate_bg(px.uri)
    hold.wait()
    check(px.count("dst", "READY") == 1, "GO held before READY: %s" % px.summary())
    dst.proc.kill()
    dst.wait_exit()
    hold.release()
    run = mig.finish(timeout=180)
    run.expect(1, "failed")
    h.log("destination killed before GO: %s: %s" % (run.stat("x-error-id"),
                                                     run.stat("error-desc")))
    kvtest.check_never_ran(dst)
    check(src.cmd("query-status")["status"] == "running", "the source did not resume")
    start = len(src.console)
    src.console.wait_for(r"^DISK OK ", start=start, timeout=60)
    src.wait_verified()
    disk_refused(h, disk, "the source, after it took the VM back")
    no_disk_errors(src)
    px.close()

    # and a migration that completes moves the disk with the VM
    dst = h.incoming("dst", src, extra=["--allow-disk", disk])
    run = src.migrate(dst.uri)
    kvtest.check_migrated(src, dst, run, wss=128 << 20)
    dst.console.wait_for(r"^DISK OK ", start=len(dst.console), timeout=60)
    disk_refused(h, disk, "the destination")
    no_disk_errors(dst)
    h.log("then migrated with its disk: %s" % run.summary())


kvtest.main(test)
