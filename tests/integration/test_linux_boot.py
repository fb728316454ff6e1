#!/usr/bin/env python3
"""Debian's own kernel boots on kvmove (PVH entry of its vmlinux, 2 vCPUs,
1 GiB, the initramfs of guest/linux/) and gets at least as far as under QEMU
with the same kernel, initramfs and command line.

Both VMMs boot side by side for at most BOOT_BUDGET seconds (or until they
stop: a kernel that ends, or KVM giving up on an instruction).  How far each
got is the furthest of kvlinux.MILESTONES it printed; the test logs both,
with times and last lines, and checks:
  - the kernel banner, the e820 map that is the VM's layout, the MP table
    with both CPUs and the IOAPIC;
  - kvmove's furthest milestone >= QEMU's;
  - if kvmove stopped on its own, its report says why (for an emulation
    failure: RIP, CPL, the instruction bytes), and x-query-emulation counted
    what kvmove finished itself (PVM hosts).
On a PVM host (docs/linux-guests.md) a boot is minutes of emulated CPL-0
code, so "how far" is what the budget allows; on VMX/SVM it is userspace
(KVINIT ready, kvload heartbeats).
"""
import re

import kvlinux
import kvtest
from kvtest import check, now, scaled

BOOT_BUDGET = 420       # s of wall time for both boots, side by side
MEM = "1G"


def describe(h, name, lines, t0, why):
    """Log how far a boot got; returns its furthest milestone index."""
    texts = [text for _, _, text in lines]
    ms = kvlinux.milestones(texts)
    idx, label = kvlinux.furthest(texts)
    last = next((l for l in reversed(lines) if l[2].strip()), None)
    h.log("%s: %s; furthest milestone %d (%s); %d lines" % (name, why, idx, label,
                                                                 len(lines)))
    for mi, mname, li in ms:
        host_t, guest_t, _ = lines[li]
        h.log("  %-13s host %6.1f s  guest %s" % (mname, host_t - t0,
                                                        "%.1f s" % guest_t if guest_t is not None
                                                        else "-"))
    if last:
        h.log("  last line (host %.1f s): %s" % (last[0] - t0, last[2]))
    return idx


def test(h):
    vmlinux = kvlinux.vmlinux(h)
    initrd = kvlinux.initramfs(h)
    append = kvlinux.CMDLINE + " kvload.disk=none"
    pvm = kvlinux.pvm_host()
    h.log("host: %s" % ("PVM (kernel code runs in KVM's emulator)" if pvm else "VMX/SVM"))

    t0 = now()
    vm = h.vmm(name="kvmove", mem=MEM, cpus=2, kernel=vmlinux, append=append,
               extra=["--initrd", initrd])
    qemu, qcon = kvlinux.qemu_boot(h, vmlinux, append, mem=MEM, cpus=2, initrd=initrd)
    deadline = t0 + scaled(BOOT_BUDGET)
    stop_rx = r"^KVLOAD HB 20 "        # userspace running: far enough anywhere
    boots = {"kvmove": vm.console}
    if qemu:
        boots["QEMU"] = qcon
    ended = {}                          # name -> (why, host time)
    emu, next_sample = None, 0
    while len(ended) < len(boots):
        for name, con in boots.items():
            if name in ended:
                continue
            why = kvlinux.run_until(con, con.alive, min(deadline, now() + 0.5), stop_rx)
            if why != "deadline" or now() >= deadline:
                ended[name] = (why, now())
        if "kvmove" not in ended and now() >= next_sample:
            next_sample = now() + 5
            try:
                emu = vm.cmd("x-query-emulation")
            except (kvtest.TestFailure, kvtest.QMPError, OSError):
                pass
    why_kv, t_kv = ended["kvmove"]
    why_q, t_q = ended.get("QEMU", (None, None))

    kv_lines = kvlinux.parse_console(vm.console)
    kv_texts = [t for _, _, t in kv_lines]
    kv_idx = describe(h, "kvmove", kv_lines, t0, "%s after %.0f s" % (why_kv, t_kv - t0))
    h.log("kvmove x-query-emulation (last sample): %r" % emu)
    kv_err = vm.stderr().strip()
    if kv_err:
        h.log("kvmove stderr: %s" % kv_err)

    # What kvmove must show, however far it got.
    check(any(re.search(r"Linux version \d", t) for t in kv_texts),
          "no kernel banner on kvmove's console")
    kvlinux.check_e820(kv_texts, 1 << 30)
    for rx, what in ((r"found SMP MP-table at \[mem 0x000f0000", "the MP floating pointer"),
                     (r"Intel MultiProcessor Specification v1\.4", "the MP table"),
                     (r"nr_cpu_ids=2\b|Allowing 2 CPUs", "2 CPUs from the MP table"),
                     (r"IOAPIC\[0\]: apic_id 2, .*address 0xfec00000, GSI 0-23",
                      "the IOAPIC from the MP table")):
        if kv_idx >= 3 or rx.startswith("found"):
            check(any(re.search(rx, t) for t in kv_texts), "kvmove's console does not "
                  "show %s (/%s/)" % (what, rx))
    if why_kv == "ended":
        rc = vm.proc.poll()
        check(rc is not None, "the VMM ended but has no exit status")
        if "emulate" in kv_err:
            check(re.search(r"KVM could not emulate the instruction at rip 0x[0-9a-f]+ "
                            r"\(cpl \d, [^)]*\): bytes \[[0-9a-f ]+\]", kv_err),
                  "the emulation failure report lacks RIP, CPL or bytes: %r" % kv_err)
    if pvm and emu:
        h.log("kvmove finished %d int3 and %d fwait for KVM's emulator"
              % (emu.get("int3", 0), emu.get("fwait", 0)))

    if not qemu:
        raise kvtest.Skip("qemu-system-x86_64 is not installed: kvmove reached milestone "
                          "%d, nothing to compare with" % kv_idx)
    q_lines = kvlinux.parse_console(qcon)
    q_idx = describe(h, "QEMU", q_lines, t0, "%s after %.0f s" % (why_q, t_q - t0))
    if why_q == "ended":
        with open(qemu.errlog, errors="replace") as f:
            h.log("QEMU stderr: %s" % f.read().strip()[-600:])
    check(kv_idx >= q_idx, "kvmove got to milestone %d (%s), QEMU to %d (%s)"
          % (kv_idx, kvlinux.MILESTONES[kv_idx][0] if kv_idx >= 0 else "none",
             q_idx, kvlinux.MILESTONES[q_idx][0] if q_idx >= 0 else "none"))
    h.log("RESULT kvmove milestone %d (%s) >= QEMU milestone %d (%s)"
          % (kv_idx, kvlinux.MILESTONES[kv_idx][0], q_idx,
             kvlinux.MILESTONES[q_idx][0] if q_idx >= 0 else "none"))
    if qemu.poll() is None:
        qemu.kill()
        qemu.wait()
    qcon.close()


kvtest.main(test)
