#!/usr/bin/env python3
"""The same named CPU level under kvmove and under QEMU gives the guest the
same feature bits: the test guest's own report (cpuid=1), decoded with
kvmove's feature table, diffed between the two.

QEMU 7.2 has no x86-64-v2-style names, so the level is spelled for it as
qemu64 with the level's flags added and qemu64's others removed.  The
level is the richest named model this host runs (kvmove cpu-models).  On
PVM hosts only the bits KVM decides are compared (docs/CPU-MODELS.md; the
rest comes from the hardware for both VMMs alike) and the full diff is
printed.  Skipped if QEMU is not installed (as test_qemu_boot)."""
import os
import shutil
import subprocess

import kvtest
from kvtest import check
from kvcpu import controlled, cpu_models, decode, guest_leaves, PVM, RX_CPUID

# kvmove (Linux) spelling -> QEMU's, where they differ
QEMU_NAME = {"sse4_1": "sse4.1", "sse4_2": "sse4.2", "tsc_deadline_timer": "tsc-deadline",
             "sha_ni": "sha-ni", "arch_capabilities": "arch-capabilities"}
# what QEMU 7.2's qemu64 has beyond the x86-64 baseline
QEMU64_EXTRA = ("pni", "cx16", "lahf_lm", "svm")


def qemu_cpu(features):
    flags = ["+" + QEMU_NAME.get(f, f) for f in sorted(features)]
    flags += ["-" + f for f in QEMU64_EXTRA if f not in features]
    return ",".join(["qemu64"] + flags)


class QemuGuest:
    """The test guest under QEMU, for its CPUID report."""

    def __init__(self, h, qemu, cpu, append):
        self.serial = os.path.join(h.tmpdir, "qemu-serial.log")
        self.errlog = os.path.join(h.tmpdir, "qemu.stderr")
        open(self.serial, "wb").close()
        self.argv = [qemu, "-accel", "kvm", "-cpu", cpu, "-m", "256M", "-nographic",
                     "-no-reboot", "-kernel", h.guest, "-append", append,
                     "-serial", "file:" + self.serial, "-display", "none", "-monitor", "none"]
        h.log("QEMU: %s" % " ".join(self.argv))
        with open(self.errlog, "wb") as err:
            self.proc = h.popen(self.argv, stdin=subprocess.DEVNULL, stdout=err,
                                stderr=subprocess.STDOUT)
        self.console = kvtest.Console(self.serial)
        self.console.alive = self.dead

    def dead(self):
        rc = self.proc.poll()
        if rc is None:
            return None
        with open(self.errlog, "rb") as f:
            return "QEMU exited with status %d: %s" % (rc, f.read().decode(errors="replace"))

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.console.close()


def test(h):
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise kvtest.Skip("qemu-system-x86_64 is not installed")
    info = cpu_models(h)
    models = {m["name"]: m for m in info["models"]}
    name = info["best"]
    check(name, "this host runs no named model: %r" % models)
    model = set(models[name]["features"])
    app = kvtest.guest_cmdline(wss="8M", rate=1, hb=1000, cpuid=1)

    kv = h.vmm(name="kv", mem="256M", append=app, extra=["--cpu", name])
    seen_kv = decode(guest_leaves(kv), info["table"])
    kv.wait_verified()

    q = QemuGuest(h, qemu, qemu_cpu(model), app)
    try:
        # QEMU's firmware alone takes ~20 s on this host
        q.console.wait_for(r"^CPUID done$", timeout=120, fail_on=kvtest.RX_BAD,
                           what="the guest's CPUID report under QEMU")
        with open(q.errlog, "rb") as f:
            warnings = f.read().decode(errors="replace").strip()
        leaves = {}
        for _, _, m in q.console.find(RX_CPUID):
            leaves[(int(m.group(1), 16), int(m.group(2)))] = dict(
                zip(("eax", "ebx", "ecx", "edx"), (int(m.group(i), 16) for i in range(3, 7))))
        seen_q = decode(leaves, info["table"])
    except kvtest.TestFailure:
        print("---- QEMU serial tail:")
        print("\n".join("  " + l for l in q.console.tail(40)))
        raise
    finally:
        q.stop()

    ctl = controlled(info)
    only_kv, only_q = (seen_kv - seen_q), (seen_q - seen_kv)
    h.log("%s: %d features under kvmove, %d under QEMU; only kvmove: %s; only QEMU: %s%s"
          % (name, len(seen_kv), len(seen_q), " ".join(sorted(only_kv)) or "-",
             " ".join(sorted(only_q)) or "-",
             "; QEMU said: " + warnings if warnings else ""))
    check(seen_kv & ctl == seen_q & ctl,
          "%s differs between kvmove and QEMU in the bits KVM decides: only kvmove %s, "
          "only QEMU %s" % (name, sorted((seen_kv - seen_q) & ctl),
                            sorted((seen_q - seen_kv) & ctl)))
    check(seen_kv & ctl == model & ctl, "kvmove's guest does not see exactly %s" % name)
    if PVM:
        h.log("PVM host: compared %d features KVM decides (%s)"
              % (len(ctl), " ".join(sorted(ctl))))


kvtest.main(test)
