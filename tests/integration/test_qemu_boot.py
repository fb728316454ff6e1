#!/usr/bin/env python3
"""QEMU boots the same test guest ELF (PVH): heartbeats and VERIFY OK.  This
keeps the guest honest (it does not depend on kvmove quirks) and is the
baseline the benchmarks compare against.  Skipped if QEMU is not installed."""
import os
import shutil
import subprocess

import kvtest
from kvtest import check


def test(h):
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise kvtest.Skip("qemu-system-x86_64 is not installed")
    serial = os.path.join(h.tmpdir, "qemu-serial.log")
    errlog = os.path.join(h.tmpdir, "qemu.stderr")
    open(serial, "wb").close()
    argv = [qemu, "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", "1G",
            "-nographic", "-no-reboot", "-kernel", h.guest,
            "-append", "wss=64M rate=32 hb=1000",
            "-serial", "file:" + serial, "-display", "none", "-monitor", "none"]
    with open(errlog, "wb") as err:
        p = h.popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    console = kvtest.Console(serial)

    def dead():
        rc = p.poll()
        if rc is None:
            return None
        with open(errlog, "rb") as f:
            return "QEMU exited with status %d: %s" % (rc, f.read().decode(errors="replace"))
    console.alive = dead
    try:
        # QEMU's firmware alone takes ~20 s on this host.
        console.wait_for(r"KVMOVE-TESTGUEST v1 ", timeout=90, fail_on=kvtest.RX_BAD,
                         what="the guest banner under QEMU")
        console.wait_for(r"^READY$", timeout=90, fail_on=kvtest.RX_BAD)
        i, _, seq, _ = kvtest.wait_hb(console, timeout=60)
        kvtest.wait_hb(console, min_seq=seq + 20, start=i, timeout=60)
        console.wait_for(kvtest.RX_VERIFY_OK, timeout=120, fail_on=kvtest.RX_BAD,
                         what="VERIFY OK under QEMU")
        kvtest.check_no_errors(console)
        check(p.poll() is None, dead() or "QEMU exited")
    except kvtest.TestFailure:
        print("---- QEMU serial tail:")
        print("\n".join("  " + l for l in console.tail(40)))
        raise
    finally:
        p.kill()
        p.wait()
        console.close()


kvtest.main(test)
