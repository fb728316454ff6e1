#!/usr/bin/env python3
"""Two vCPUs: the guest sees both (CPUS 2) and each verifies its memory."""
import kvtest
from kvtest import check


def test(h):
    vm = h.vmm(name="smp", mem="1G", cpus=2,
               append=kvtest.guest_cmdline(wss="128M", rate=32, hb=1000, cpus=2))
    vm.wait_ready()
    vm.console.wait_for(r"^CPUS 2$", timeout=120, fail_on=kvtest.RX_BAD, what="CPUS 2")
    for cpu in (0, 1):
        vm.console.wait_for(r"^VERIFY OK \d+ cpu=%d\b" % cpu, timeout=120,
                            fail_on=kvtest.RX_BAD, what="VERIFY OK from cpu=%d" % cpu)
    vm.console.wait_for(kvtest.RX_HB, timeout=60, fail_on=kvtest.RX_BAD)
    info = vm.cmd("query-vm")
    check(info.get("cpus") == 2, "query-vm says cpus=%r" % info.get("cpus"))
    kvtest.check_no_errors(vm.console)
    vm.check_alive()


kvtest.main(test)
