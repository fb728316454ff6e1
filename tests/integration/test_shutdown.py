#!/usr/bin/env python3
"""kvmove stop: SHUTDOWN event, the VMM exits 0, the socket file is gone,
and afterwards the CLI reports the VMM as unreachable (exit 5)."""
import os

import kvtest
from kvtest import check


def test(h):
    vm = h.vmm(name="shut", mem="1G",
               append=kvtest.guest_cmdline(wss="64M", rate=32, hb=1000))
    vm.wait_ready()
    vm.console.wait_for(kvtest.RX_HB, timeout=60, fail_on=kvtest.RX_BAD)

    with vm.qmp() as q:
        r = vm.cli("stop")
        check(r.returncode == 0, "kvmove stop exited %d: %s" % (r.returncode, r.stderr))
        check(r.stdout.strip() == "shut: stopped", "kvmove stop printed %r" % r.stdout)
        ev = q.wait_event("SHUTDOWN", timeout=30)
        data = ev.get("data", {})
        h.log("SHUTDOWN event: %s" % ev)
        check(data.get("guest") is False, "SHUTDOWN data.guest is %r, expected false"
              % data.get("guest"))
        check(isinstance(data.get("reason"), str), "SHUTDOWN data.reason is %r"
              % data.get("reason"))
        ts = ev.get("timestamp", {})
        check(isinstance(ts.get("seconds"), int) and isinstance(ts.get("microseconds"), int),
              "bad timestamp %r" % ts)
        q.wait_closed(timeout=30)

    rc = vm.wait_exit(timeout=30)
    check(rc == 0, "the VMM exited with status %d, expected 0" % rc)
    check(not os.path.exists(vm.control), "the control socket %s is still there" % vm.control)
    kvtest.check_no_errors(vm.console)

    r = vm.cli("status")
    check(r.returncode == 5, "status after stop exited %d, expected 5" % r.returncode)


kvtest.main(test)
