#!/usr/bin/env python3
"""Quick migration: 'kvmove save' pauses the VM and writes it to a file (the
source VMM exits 0), 'kvmove run --restore' in another process resumes it.
For two RAM sizes (512 MiB with a 256 MiB working set, 1.5 GiB with 768 MiB):
the restored guest verifies all of its memory, its heartbeats continue with
consecutive sequence numbers (the 512 MiB VM is guarded by a lock file,
which the restored VMM holds afterwards), and the downtime is logged: the save's (pause
until the file is safe), and the one the guest felt (host arrival time of
the last heartbeat before the save to the first after the restore).  The
claim that downtime grows with RAM is in the log, not in an assertion."""
import os

import kvtest
from kvtest import check


def lock_held(h, lock):
    """Another VMM on the lock file fails to start, naming the lock."""
    r = h.run([h.kvmove, "run", "--name", "intruder", "--mem", "64M", "--kernel", h.guest,
               "--console", "none", "--lock", lock], timeout=60)
    check(r.returncode == 1 and "lock" in r.stderr.lower(),
          "a VMM on the held lock: exit %d, stderr %r" % (r.returncode, r.stderr))


def one(h, mem, wss, lock=False):
    tag = mem.lower()
    extra = ["--lock", os.path.join(h.tmpdir, "vm-%s.lock" % tag)] if lock else []
    src = h.vmm(name="src-" + tag, mem=mem, append=kvtest.guest_cmdline(wss=wss, rate=32, hb=1000),
                extra=extra)
    src.wait_ready()
    src.wait_verified()
    path = os.path.join(h.tmpdir, "vm-%s.kvmstate" % tag)

    run = src.save(path)
    run.expect(0, "completed")
    check(run.stat("downtime", default=0) > 0, "save downtime %r" % run.stat("downtime"))
    rc = src.wait_exit(timeout=60)
    check(rc == 0, "the source VMM exited %d after the save, expected 0" % rc)
    check(os.path.exists(path) and not os.path.exists(path + ".tmp"),
          "after the save: %s exists %s, .tmp exists %s" % (path, os.path.exists(path),
                                                            os.path.exists(path + ".tmp")))
    size = os.path.getsize(path)
    src_hbs = kvtest.heartbeats(src.console)
    time_last_src = src_hbs[-1][0]

    dst = h.restore("dst-" + tag, path, extra=extra, expect=src.vm_name)
    dst.wait_verified(start=0)
    _, t_first, _, _ = kvtest.wait_hb(dst.console, min_seq=0, timeout=120)
    seqs = kvtest.check_serial(src, dst)
    kvtest.wait_hb(dst.console, min_seq=seqs[-1] + 10, timeout=60)
    kvtest.check_serial(src, dst)
    if lock:
        lock_held(h, extra[1])     # the restored VMM took it
    info = dst.cmd("query-vm")
    check(info.get("mem") == kvtest_size(mem), "restored VM: %r" % info)
    # the image was consumed: restoring it again would run the VM a second
    # time, against the disks the first run changed
    check(not os.path.exists(path), "%s still exists after the VM was restored" % path)
    r = h.run([h.kvmove, "run", "--restore", path, "--console", "none"], timeout=60)
    check(r.returncode == 1 and "No such file" in r.stderr,
          "a second restore of the same image: exit %d, %r" % (r.returncode, r.stderr))
    felt = (t_first - time_last_src) * 1000
    h.log("quick migration %s (wss %s): save downtime %d ms, file %.1f MiB, heartbeat gap "
          "across save + restore %.0f ms; restore: %s"
          % (mem, wss, run.stat("downtime"), size / 1048576.0, felt,
             dst.stderr().strip().splitlines()[-1] if dst.stderr().strip() else "?"))
    dst.kill()
    return run.stat("downtime"), felt


def kvtest_size(s):
    units = {"M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * units[s[-1]]


def test(h):
    small = one(h, "512M", "256M", lock=True)
    big = one(h, "1536M", "768M")
    h.log("downtime by RAM size: 512 MiB: save %d ms, felt %.0f ms; 1.5 GiB: save %d ms, "
          "felt %.0f ms (%s)" % (small[0], small[1], big[0], big[1],
                                 "grows with RAM" if big[1] > small[1] else
                                 "did NOT grow with RAM this time"))


kvtest.main(test)
