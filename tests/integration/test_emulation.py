#!/usr/bin/env python3
"""kvmove and KVM's instruction emulator, end to end, with the test guest's
emutest= option (guest/emutest.c: instructions at CPL 0 before its work).

On a PVM host (CPL-0 code runs in KVM's emulator, which refuses INT3, FWAIT
and POPCNT; docs/linux-guests.md):
  emutest=1   kvmove delivers #BP for the INT3 (the guest's handler sees
              the RIP just past it, as on hardware) and completes the FWAIT;
              the guest goes on to READY and verifies its memory, and
              x-query-emulation counts {"int3": 1, "fwait": 1, "failures": 0}.
  emutest=2   then POPCNT: kvmove stops the VM instead of hanging, exits 1,
              and its report names the instruction, RIP, CPL, mode, bytes
              and the advice (clearcpuid=popcnt); the guest printed nothing
              after the refused instruction.
On VMX/SVM hosts the CPU executes all three: the guest prints
"EMUTEST popcnt ran 8", runs on, and the counters stay 0.
"""
import re

import kvlinux
import kvtest
from kvtest import check

APPEND = kvtest.guest_cmdline(wss="16M", rate=0, hb=10000, verify_every=200)


def test(h):
    pvm = kvlinux.pvm_host()
    h.log("host: %s" % ("PVM (CPL 0 in KVM's emulator)" if pvm else "VMX/SVM"))

    # INT3 and FWAIT: finished by kvmove (PVM) or by the CPU; the guest runs on.
    vm = h.vmm(name="emu1", mem="256M", append=APPEND + " emutest=1")
    _, _, m = vm.console.wait_for(r"^EMUTEST int3 (\S+)", timeout=30,
                                  what="the INT3 result")
    check(m.group(1) == "ok", "the guest's #BP handler: %s" % vm.console.tail(1))
    vm.console.wait_for(r"^EMUTEST fwait ok", timeout=30, what="the FWAIT result")
    vm.wait_ready()
    vm.wait_verified()
    emu = vm.cmd("x-query-emulation")
    h.log("emutest=1: x-query-emulation %r" % emu)
    want = {"int3": 1, "fwait": 1, "failures": 0} if pvm else \
        {"int3": 0, "fwait": 0, "failures": 0}
    check(emu == want, "x-query-emulation %r, expected %r" % (emu, want))
    vm.cmd("quit")
    check(vm.wait_exit() == 0, "quit: the VMM did not exit 0")

    # POPCNT: refused by KVM's emulator on PVM hosts.
    vm = h.vmm(name="emu2", mem="256M", append=APPEND + " emutest=2")
    vm.console.wait_for(r"^EMUTEST fwait ok", timeout=30, what="the FWAIT result")
    if not pvm:
        vm.console.wait_for(r"^EMUTEST popcnt ran 8$", timeout=30, what="POPCNT's result")
        vm.wait_ready()
        h.log("VMX/SVM: the CPU executed INT3, FWAIT and POPCNT itself")
        vm.cmd("quit")
        return
    rc = vm.wait_exit(timeout=30)
    err = vm.stderr()
    h.log("emutest=2: kvmove exited %d: %s" % (rc, err.strip()))
    check(rc == 1, "kvmove exited %d after the refused instruction, expected 1" % rc)
    check(re.search(r"KVM could not emulate the instruction at rip 0x[0-9a-f]+ \(cpl 0, "
                    r"64-bit mode\): bytes \[f3 (4[0-9a-f] )?0f b8 [0-9a-f ]+\] = popcnt "
                    r"\(boot with clearcpuid=popcnt\)", err),
          "the report does not name POPCNT with RIP, CPL, mode, bytes and advice: %r" % err)
    check(not vm.console.find(r"^EMUTEST popcnt"),
          "the guest printed past the refused instruction: %s" % vm.console.tail(2))
    check(not vm.console.find(r"^READY"), "the guest went on after the refused instruction")


kvtest.main(test)
