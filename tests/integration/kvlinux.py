"""kvlinux - helpers for the tests that boot Debian's own Linux kernel.

The kernel comes from the host's linux-image-amd64 (scripts/deps.sh installs
it: in a container that only drops files in /boot and /lib/modules).  Its
uncompressed vmlinux (PVH entry) and the initramfs are built once into
$KVMOVE_BUILD/linux/ by guest/linux/extract-vmlinux.sh and mkinitramfs.sh.

Console lines are parsed into (host_t, guest_t, text): host_t is when the
harness saw the line (CLOCK_MONOTONIC), guest_t the kernel's printk time
stamp (None for lines without one), text the message without the stamp.

Python 3 standard library only.
"""

import fcntl
import glob
import os
import re
import shutil
import subprocess

import kvtest
from kvtest import TestFailure, check, now

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.normpath(os.path.join(HERE, "..", "..", "guest", "linux"))

# The command line that gets furthest on a PVM host (docs/linux-guests.md):
# noxsave and clearcpuid keep the kernel off instructions KVM's emulator
# refuses there (xsave/xrstor(s), cmpxchg16b, clac/stac, popcnt, and the
# SSSE3 blake2s that random.c runs under kernel_fpu_begin()); preempt=full
# lets stop_machine() in while an emulated kworker hogs the other vCPU;
# nowatchdog spares the console soft-lockup reports.  Harmless on VMX/SVM.
PVM_SAFE = "noxsave clearcpuid=cx16,smap,popcnt,ssse3 preempt=full nowatchdog"
CMDLINE = "console=ttyS0 earlyprintk=serial nokaslr " + PVM_SAFE

RX_STAMP = re.compile(r"^\[\s*(\d+)\.(\d{6})\] ?(.*)$")

# Kernel messages in the order a 6.1 x86-64 boot prints them; "how far a
# boot got" is the index of the last one seen.  Only messages that do not
# depend on firmware, ACPI or devices, so that kvmove and QEMU (SeaBIOS,
# ACPI) pass the same ones.
MILESTONES = [
    ("banner", r"Linux version \d"),
    ("e820", r"BIOS-provided physical RAM map"),
    ("hypervisor", r"Hypervisor detected: KVM"),
    ("zones", r"^Zone ranges:"),
    ("percpu", r"Booting paravirtualized kernel"),
    ("cmdline", r"^Kernel command line:"),
    ("memory", r"^Memory: \d+K/\d+K available"),
    ("irqs", r"^NR_IRQS:"),
    ("console", r"printk: console \[ttyS0\] enabled"),
    ("lpj", r"Calibrating delay loop"),
    ("fpu", r"^x86/fpu: "),
    ("alternatives", r"Freeing SMP alternatives memory|smpboot: CPU0: "),
    ("smp", r"^smp: Bringing up secondary CPUs"),
    ("devtmpfs", r"^devtmpfs: initialized"),
    ("cpuidle", r"^cpuidle: using governor"),
    ("pci", r"^PCI: |^pci 0000:00:"),
    ("clocksource", r"^clocksource: Switched to clocksource"),
    ("initramfs", r"Trying to unpack rootfs|Unpacking initramfs"),
    ("freeing", r"^Freeing unused kernel image"),
    ("init", r"^Run /init as init process"),
    ("userspace", r"^KVINIT start"),
]


def parse_line(text):
    """(guest_t or None, message) for one console line."""
    m = RX_STAMP.match(text)
    if not m:
        return None, text
    return int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3)


def parse_console(console, start=0):
    """[(host_t, guest_t, text)] for the console's lines from start."""
    return [(t,) + parse_line(text) for t, text in console.snapshot(start)]


def milestones(texts):
    """[(index in MILESTONES, name, line index)] of the milestones the
    messages (stamps removed) reach, in milestone order."""
    out = []
    for mi, (name, rx) in enumerate(MILESTONES):
        r = re.compile(rx)
        for li, text in enumerate(texts):
            if r.search(text):
                out.append((mi, name, li))
                break
    return out


def furthest(texts):
    """(index, name) of the furthest milestone reached; (-1, "none")."""
    ms = milestones(texts)
    if not ms:
        return -1, "none"
    return max(ms)[0], max(ms)[1]


def pvm_host():
    """True on a PVM host: KVM without hardware virtualisation, where a
    stock kernel's CPL-0 code runs in KVM's instruction emulator."""
    if os.path.isdir("/sys/module/kvm_pvm"):
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return not re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M)


def hw_virt_host():
    """VMX or SVM in the CPU flags, and KVM is not PVM."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return (bool(re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M))
            and not os.path.isdir("/sys/module/kvm_pvm"))


def bzimage():
    """The newest /boot/vmlinuz-* (Debian's kernel)."""
    found = sorted(glob.glob("/boot/vmlinuz-*"), key=_version_key)
    if not found:
        raise TestFailure("no /boot/vmlinuz-*: install Debian's kernel "
                          "(scripts/deps.sh installs linux-image-amd64)")
    return found[-1]


def _version_key(path):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", path)]


def kernel_version(path):
    return os.path.basename(path)[len("vmlinuz-"):]


def _cache_dir():
    d = os.path.join(kvtest.env_path("KVMOVE_BUILD"), "linux")
    os.makedirs(d, exist_ok=True)
    return d


def _build_cached(h, out, deps, argv, timeout):
    """Run argv (which writes out) unless out is newer than every dep;
    serialised with a lock file so parallel tests build it once."""
    with open(out + ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.path.exists(out) and all(os.path.getmtime(out) >= os.path.getmtime(d)
                                       for d in deps):
            return out
        r = h.run(argv, timeout=timeout)
        check(r.returncode == 0 and os.path.exists(out),
              "%s failed (exit %d): %s" % (os.path.basename(argv[0]), r.returncode,
                                          r.stderr.strip()[-800:]))
    return out


def vmlinux(h):
    """The uncompressed vmlinux (PVH entry) of Debian's kernel."""
    bz = bzimage()
    out = os.path.join(_cache_dir(), "vmlinux-" + kernel_version(bz))
    script = os.path.join(SCRIPTS, "extract-vmlinux.sh")
    return _build_cached(h, out, [bz, script], [script, bz, out], timeout=300)


def initramfs(h):
    """busybox + virtio modules + kvload for Debian's kernel."""
    bz = bzimage()
    ver = kernel_version(bz)
    out = os.path.join(_cache_dir(), "initramfs-%s.cpio" % ver)
    script = os.path.join(SCRIPTS, "mkinitramfs.sh")
    return _build_cached(h, out, [bz, script, os.path.join(SCRIPTS, "kvload.c")],
                         [script, out, ver], timeout=300)


# ---- the VM's memory layout as kvmove builds it (core/mem.h, boot/pvh.c) ----

MEM_HOLE_START = 0xC0000000
MEM_4G = 1 << 32


def expected_e820(mem_bytes):
    """kvmove's e820 map for a RAM size: [(start, end_inclusive, type)]."""
    low = min(mem_bytes, MEM_HOLE_START)
    out = [(0, 0x9fbff, "usable"), (0x9fc00, 0x9ffff, "reserved"),
           (0xf0000, 0xfffff, "reserved"), (0x100000, low - 1, "usable")]
    if mem_bytes > MEM_HOLE_START:
        out.append((MEM_4G, MEM_4G + mem_bytes - low - 1, "usable"))
    return out


RX_E820 = re.compile(r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (\w+)")


def console_e820(texts):
    """The e820 map the kernel printed: [(start, end_inclusive, type)]."""
    return [(int(m.group(1), 16), int(m.group(2), 16), m.group(3))
            for m in map(RX_E820.search, texts) if m]


def check_e820(texts, mem_bytes):
    """The kernel's map is kvmove's: the same usable ranges, and every
    reserved range of ours reserved (a PVH-booted kernel also reserves the
    ISA hole 0xa0000-0xfffff itself, merging it with ours)."""
    got = console_e820(texts)
    want = expected_e820(mem_bytes)
    check(got, "the kernel printed no BIOS-e820 lines")
    usable = lambda m: [(s, e) for s, e, t in m if t == "usable"]
    check(usable(got) == usable(want), "usable RAM in the kernel's e820 %s is not the "
          "VM's %s" % (_fmt(got), _fmt(want)))
    for s, e, t in want:
        if t != "reserved":
            continue
        check(any(gs <= s and e <= ge and gt == "reserved" for gs, ge, gt in got),
              "0x%x-0x%x is not reserved in the kernel's e820 %s" % (s, e, _fmt(got)))
    return got


def _fmt(m):
    return ", ".join("%x-%x %s" % r for r in m)


# ---- QEMU, the yardstick ----

def qemu_boot(h, kernel, append, mem="1G", cpus=2, initrd=None, name="qemu"):
    """Start QEMU booting kernel; returns (Popen, Console).  Skip (the
    yardstick only) is the caller's choice when QEMU is missing."""
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        return None, None
    d = os.path.join(h.tmpdir, name)
    os.makedirs(d, exist_ok=True)
    serial = os.path.join(d, "console.log")
    errlog = os.path.join(d, "qemu.stderr")
    open(serial, "wb").close()
    argv = [qemu, "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", mem,
            "-smp", str(cpus), "-nographic", "-no-reboot", "-kernel", kernel,
            "-append", append, "-serial", "file:" + serial, "-display", "none",
            "-monitor", "none"]
    if initrd:
        argv += ["-initrd", initrd]
    err = open(errlog, "wb")
    p = h.popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    err.close()
    console = kvtest.Console(serial)

    def dead():
        """Why QEMU's guest stopped, or None: QEMU exited, or KVM gave up on
        an instruction (QEMU then keeps running with the VM paused)."""
        with open(errlog, "rb") as f:
            err = f.read().decode(errors="replace")
        rc = p.poll()
        if rc is not None:
            return "QEMU exited with status %d: %s" % (rc, err[-500:])
        if "KVM internal error" in err or "emulation failure" in err:
            return "QEMU stopped the VM: %s" % err.strip()[:300]
        return None
    console.alive = dead
    p.errlog = errlog
    return p, console


def run_until(console, alive, deadline, stop_rx=None):
    """Follow a boot until the producer dies, stop_rx matches a line, or
    the (absolute, now()) deadline passes.  Returns why it stopped:
    "ended", "matched" or "deadline"."""
    rx = re.compile(stop_rx) if stop_rx else None
    i = 0
    while True:
        lines = console.snapshot(i)
        for _, text in lines:
            if rx and rx.search(text):
                return "matched"
        i += len(lines)
        if alive():
            return "ended"
        if now() >= deadline:
            return "deadline"
        with console._cond:
            console._cond.wait(0.2)
