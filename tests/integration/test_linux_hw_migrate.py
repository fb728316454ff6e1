#!/usr/bin/env python3
"""Linux to userspace, then live migration (hosts with VMX or SVM only).

Debian's kernel boots (PVH vmlinux, 2 vCPUs, 1 GiB) with the initramfs of
guest/linux/: busybox, the kernel's virtio modules and kvload, which dirties
and verifies 64 MiB of memory, prints a heartbeat every 100 ms and keeps
writing and reading back a file on a virtio-blk disk (ext2 through the ext4
module).  The VM is live-migrated; on the destination the heartbeats continue
with consecutive sequence numbers, the memory verifies and the file round
written on one host is read back intact on the other.

On a host without hardware virtualisation (PVM: the kernel's CPL-0 code runs
in KVM's instruction emulator, and a stock kernel takes no interrupts there)
this test is not applicable and says so (exit 77, shown as skipped).
"""
import os
import re

import kvlinux
import kvtest
from kvtest import check

RX_HB = r"^KVLOAD HB (\d+) (\d+)$"
RX_BAD = r"^KVLOAD (VERIFY FAIL|FILE FAIL|ERROR)|^KVINIT ERROR|Kernel panic|BUG:|Oops"


def hb_seqs(*vms):
    rx = re.compile(RX_HB)
    return [int(m.group(1)) for m in map(rx.match, kvtest.serial_lines(*vms)) if m]


def test(h):
    if not kvlinux.hw_virt_host():
        raise kvtest.Skip("not applicable on this host: no VMX/SVM in /proc/cpuinfo or KVM "
                          "is PVM (kvm_pvm loaded); a stock kernel cannot reach userspace "
                          "here (docs/linux-guests.md)")
    vmlinux = kvlinux.vmlinux(h)
    initrd = kvlinux.initramfs(h)
    disk = os.path.join(h.tmpdir, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    append = (kvlinux.CMDLINE + " quiet kvload.hb_ms=100 kvload.wss_mb=64 kvload.rate_mb=32"
              " kvload.file_kb=1024")
    src = h.vmm(name="src", mem="1G", cpus=2, kernel=vmlinux, append=append,
                extra=["--initrd", initrd, "--disk", disk])
    src.console.wait_for(r"^KVINIT ready", timeout=180, fail_on=RX_BAD,
                         what="the initramfs set up (modules, disk)")
    check(src.console.find(r"^KVINIT disk /dev/vda mounted"), "the virtio disk was not "
          "mounted: %s" % src.console.tail(20))
    src.console.wait_for(r"^KVLOAD FILE OK \d+", timeout=120, fail_on=RX_BAD,
                         what="a file round verified on the source")
    src.console.wait_for(r"^KVLOAD VERIFY OK", timeout=120, fail_on=RX_BAD)
    n_src = len(hb_seqs(src))

    dst = h.incoming("dst", src, extra=["--allow-disk", disk])
    run = src.migrate(dst.uri, timeout=300)
    h.log("migration: %s" % run.summary())
    run.expect(0, "completed")
    check(src.wait_exit(timeout=60) == 0, "the source VMM did not exit 0")

    # Heartbeats, memory and the file on the destination.
    start = len(dst.console)
    i, _, _ = dst.console.wait_for(r"^KVLOAD VERIFY OK", start=start, timeout=120,
                                   fail_on=RX_BAD, what="memory verified on the destination")
    dst.console.wait_for(r"^KVLOAD VERIFY OK", start=i + 1, timeout=120, fail_on=RX_BAD)
    dst.console.wait_for(r"^KVLOAD FILE OK \d+", start=start, timeout=120, fail_on=RX_BAD,
                         what="a file round verified on the destination")
    dst.console.wait_for(r"^KVLOAD HB \d+", start=len(dst.console), timeout=60)
    seqs = hb_seqs(src, dst)
    check(len(seqs) > n_src + 10, "too few heartbeats on the destination")
    for a, b in zip(seqs, seqs[1:]):
        check(b == a + 1, "heartbeat %d follows %d: console output lost or repeated" % (b, a))
    bad = [l for l in kvtest.serial_lines(src, dst) if re.search(RX_BAD, l)]
    check(not bad, "the guest reported errors: %s" % bad[:5])
    # the heartbeat gap a user would have felt
    rx = re.compile(RX_HB)
    lines = [(t, m) for t, text in src.console.snapshot() + dst.console.snapshot()
             for m in [rx.match(text)] if m]
    gaps = [(b[0] - a[0]) for a, b in zip(lines, lines[1:])]
    h.log("RESULT downtime %s ms (stats); longest heartbeat gap %.1f ms; %d heartbeats"
          % (run.stat("downtime"), max(gaps) * 1000 if gaps else -1, len(seqs)))


kvtest.main(test)
