#!/usr/bin/env python3
"""The VM lock file (--lock, on shared storage) as the switchover's arbiter.
One VM (1 GiB, 256 MiB working set) guarded by a lock file:

  1. while it runs, another 'kvmove run --lock' on the same file refuses to
     start (the lock is held)
  2. a destination without --lock is refused at preflight (failure id lock)
  3. the destination is killed after READY, while GO is held by the proxy:
     the source takes the lock back and resumes (status failed, x-error-id
     switchover or destination); the destination never ran the guest; the
     lock is the source's again
  4. a migration to a destination with --lock on the same file completes;
     afterwards the destination holds the lock (a third VMM cannot start)."""
import os
import signal

import kvtest
from kvfault import FaultProxy
from kvtest import check

WSS = 256 << 20


def lock_refuses(h, lock, who):
    """Another VMM on the same lock file must fail to start, naming the lock."""
    r = h.run([h.kvmove, "run", "--name", "intruder", "--mem", "64M", "--kernel", h.guest,
               "--console", "none", "--lock", lock], timeout=60)
    check(r.returncode == 1, "a second VMM on the lock held by %s exited %d, expected 1"
          % (who, r.returncode))
    check("lock" in r.stderr.lower(), "its message does not mention the lock: %r" % r.stderr)


def test(h):
    lock = os.path.join(h.tmpdir, "vm.lock")
    src = h.vmm(name="src", mem="1G", append=kvtest.guest_cmdline(wss="256M", rate=32, hb=1000),
                extra=["--lock", lock])
    src.wait_ready()
    src.wait_verified()

    # 1. the running VM holds its lock
    lock_refuses(h, lock, "the running source")

    # 2. a destination without --lock cannot take a locked VM
    nolock = h.incoming("nolock", src)
    run = src.migrate(nolock.uri)
    run.expect(3, "failed", "preflight")
    fails = run.stat("x-preflight", "failures", default=[])
    check(any(f.get("id") == "lock" for f in fails), "no 'lock' failure in %r" % fails)
    check(nolock.wait_exit(timeout=60) == 3, "the refusing destination did not exit 3")
    kvtest.check_never_ran(nolock)
    h.log("destination without --lock: %s" % fails)

    # 3. destination killed after READY, before it got GO
    dst = h.incoming("dst-killed", src, extra=["--lock", lock])
    px = FaultProxy(h, dst.port)
    hold = px.stall("src", "GO")
    mig = src.migrate_bg(px.uri)
    hold.wait()
    check(px.count("dst", "READY") == 1, "GO held before READY: %s" % px.summary())
    check(src.cmd("query-status")["status"] == "paused", "source VM not paused at GO")
    dst.proc.kill()
    dst.wait_exit()
    hold.release()
    run = mig.finish(timeout=180)
    run.expect(1, "failed")
    check(run.stat("x-error-id") in ("switchover", "destination"),
          "x-error-id %r after losing the destination at GO" % run.stat("x-error-id"))
    check(dst.proc.returncode == -signal.SIGKILL, "destination exit %r" % dst.proc.returncode)
    kvtest.check_never_ran(dst)
    check(src.cmd("query-status")["status"] == "running", "source not running again")
    src.wait_verified()
    kvtest.check_serial(src)
    lock_refuses(h, lock, "the source, after taking it back")
    h.log("destination killed at GO: %s: %s" % (run.stat("x-error-id"), run.stat("error-desc")))
    px.close()

    # 4. the lock moves with the VM
    dst = h.incoming("dst", src, extra=["--lock", lock])
    run = src.migrate(dst.uri)
    kvtest.check_migrated(src, dst, run, wss=WSS)
    lock_refuses(h, lock, "the destination")
    h.log("with the lock: %s" % run.summary())


kvtest.main(test)
