#!/usr/bin/env python3
"""The bzImage 64-bit boot protocol.

1. guest/linux/bzprobe.S (a file in the bzImage format whose "kernel"
   prints what it was handed) boots and reports: 64-bit mode, __BOOT_CS and
   __BOOT_DS, interrupts off, paging on, RSI = the zero page, loader type,
   the command line, the initrd (address, size, checksum of its bytes), the
   e820 map that is the VM's layout (with RAM above 4 GiB too), and the MP
   table's floating pointer.
2. Truncated and corrupted bzImages are refused with a clear message.
3. Debian's own bzImage starts: its decompressor runs in 64-bit mode and
   reads our command line from the zero page ("KASLR disabled: 'nokaslr' on
   cmdline.").  On VMX/SVM hosts it must then reach the kernel banner; on a
   PVM host the xz decompressor runs in KVM's instruction emulator for far
   longer than a test may take, so the banner is only reported if it comes
   within the budget.
"""
import os
import random
import re

import kvlinux
import kvtest
from kvtest import check

DEBIAN_BANNER_BUDGET = 120     # s, PVM host: report only


def build_probe(h):
    src = os.path.join(kvlinux.SCRIPTS, "bzprobe.S")
    obj = os.path.join(h.tmpdir, "bzprobe.o")
    out = os.path.join(h.tmpdir, "bzprobe.bzImage")
    for argv in (["gcc", "-c", "-o", obj, src],
                 ["objcopy", "-O", "binary", "-j", ".text", obj, out]):
        r = h.run(argv)
        check(r.returncode == 0, "%s failed: %s" % (argv[0], r.stderr))
    return out


def probe_fields(vm):
    lines = [t for _, t in vm.console.snapshot()]
    out = {"e820": []}
    for l in lines:
        if not l.startswith("BZPROBE "):
            continue
        body = l[len("BZPROBE "):]
        if body.startswith("cmdline="):
            out["cmdline"] = body[len("cmdline="):]
        elif body.startswith("mp="):
            out["mp"] = body[3:]
        elif re.match(r"e820 [0-9a-f]{16} ", body):
            a, s, t = (int(x, 16) for x in body.split()[1:4])
            out["e820"].append((a, a + s - 1, {1: "usable", 2: "reserved"}.get(t, t)))
        else:
            for k, v in re.findall(r"(\w+)=([0-9a-f]{16})", body):
                out[k] = int(v, 16)
    return out


def run_probe(h, probe, mem, name):
    initrd = os.path.join(h.tmpdir, name + ".initrd")
    data = random.Random(7).randbytes(100003)
    with open(initrd, "wb") as f:
        f.write(data)
    cmdline = "kvmove bzimage probe: console=ttyS0 a=b"
    vm = h.vmm(name=name, mem=mem, cpus=2, kernel=probe, append=cmdline,
               extra=["--initrd", initrd])
    rc = vm.wait_exit(timeout=120)
    f = probe_fields(vm)
    h.log("%s: exit %d, probe says %r" % (name, rc, f))
    check(rc == 0x21, "the probe did not finish (exit %d); console: %r"
          % (rc, vm.console.tail(20)))
    check(f.get("cs") == 0x10 and f.get("ds") == 0x18 and f.get("ss") == 0x18,
          "segments are not __BOOT_CS/__BOOT_DS: %r" % f)
    check(f.get("if") == 0, "interrupts are enabled at entry")
    check(f["cr0"] & 0x80000001 == 0x80000001 and f["cr4"] & 0x20 and f["efer"] & 0x500 == 0x500,
          "not in 64-bit mode with paging: cr0 %x cr4 %x efer %x"
          % (f["cr0"], f["cr4"], f["efer"]))
    check(f.get("rip") == 0x100200, "entered at 0x%x, not load address + 0x200"
          % f.get("rip", 0))
    check(f.get("loader") == 0xff, "type_of_loader %r" % f.get("loader"))
    check(f.get("version") == 0x020f, "the header was not copied into the zero page")
    check(f.get("cmdline") == cmdline, "command line %r, expected %r"
          % (f.get("cmdline"), cmdline))
    check(f.get("size") == len(data) and f.get("sum") == sum(data) & 0xffffffff,
          "initrd: size %r sum %r, expected %d and %d"
          % (f.get("size"), f.get("sum"), len(data), sum(data) & 0xffffffff))
    check(f.get("ramdisk", 0) % 4096 == 0 and f.get("ramdisk", 0) >= 0x200000,
          "initrd placed at 0x%x" % f.get("ramdisk", 0))
    want = kvlinux.expected_e820(mem_bytes(mem))
    check(f["e820"] == want, "e820 %s, expected the VM's layout %s"
          % (kvlinux._fmt(f["e820"]), kvlinux._fmt(want)))
    check(f.get("mp") == "_MP_", "no MP floating pointer at 0xf0000: %r" % f.get("mp"))


def mem_bytes(mem):
    units = {"M": 20, "G": 30}
    return int(mem[:-1]) << units[mem[-1]]


def refused(h, path, name, want):
    vm = h.vmm(name=name, mem="256M", kernel=path, control=False)
    rc = vm.wait_exit(timeout=60)
    err = vm.stderr()
    h.log("%s: exit %d: %s" % (name, rc, err.strip()))
    check(rc == 1, "%s: kvmove exited %d, expected 1" % (name, rc))
    check(re.search(want, err), "%s: message %r does not match %r" % (name, err, want))


def test(h):
    probe = build_probe(h)
    run_probe(h, probe, "1G", "probe-1g")
    run_probe(h, probe, "5G", "probe-5g")     # RAM above the 4 GiB hole too

    with open(probe, "rb") as f:
        image = f.read()
    for name, data, want in (
            ("truncated", image[:0x250], r"bzImage"),
            ("no-64bit", image[:0x236] + b"\0\0" + image[0x238:], r"64-bit entry"),
            ("old-protocol", image[:0x206] + b"\x0b\x02" + image[0x208:],
             r"boot protocol 2\.11 is too old"),
            ("huge-setup", image[:0x1f1] + b"\xff" + image[0x1f2:], r"setup sectors")):
        path = os.path.join(h.tmpdir, name + ".bzImage")
        with open(path, "wb") as f:
            f.write(data)
        refused(h, path, name, want)

    # Debian's kernel, through its own decompressor.
    bz = kvlinux.bzimage()
    vm = h.vmm(name="debian", mem="1G", cpus=2, kernel=bz, append=kvlinux.CMDLINE)
    vm.console.wait_for(r"KASLR disabled: 'nokaslr' on cmdline", timeout=120,
                        what="the decompressor reading our command line")
    h.log("Debian's bzImage: the decompressor runs and read the command line")
    pvm = kvlinux.pvm_host()
    t0 = kvtest.now()
    try:
        vm.console.wait_for(r"Linux version \d", timeout=DEBIAN_BANNER_BUDGET if pvm else 120,
                            what="the kernel banner after decompression")
        h.log("Debian's bzImage: kernel banner after %.0f s" % (kvtest.now() - t0))
        kvlinux.check_e820([kvlinux.parse_line(t)[1] for _, t in vm.console.snapshot()],
                           1 << 30)
    except kvtest.TestFailure as e:
        if not pvm:
            raise
        h.log("PVM host: no banner within %d s (the xz decompressor runs in KVM's "
              "instruction emulator here): %s" % (DEBIAN_BANNER_BUDGET, e))
    vm.kill()


kvtest.main(test)
