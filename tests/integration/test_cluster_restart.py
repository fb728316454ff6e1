#!/usr/bin/env python3
"""Restart policies (kvmove vm create --restart never|on-failure|always): one
namespace host, a real etcd, a real agent, verifying guests.

  1. on-failure: its VMM killed with SIGKILL is booted again on the same
     node (a new VMM, the same owner key), the status says why, and the
     new guest verifies all of its memory
  2. never (the default): the same kill leaves it failed, with the
     signal in the reason, and the owner key released
  3. on-failure's budget: killed again and again, it is restarted 3 times
     in the window, then reported failed saying so
  4. always: a guest that shuts itself down (runtime=2: the debug-exit
     port, exit status 0) is booted again; on-failure would not have"""
import os
import signal
import time

import kvcluster
import kvtest
from kvtest import check, now, scaled


def vmm_pid(c, vm):
    st = c.get_json("/kvmove/vms/%s/status" % vm) or {}
    return st.get("pid") if st.get("state") == "running" else None


def wait_status(c, vm, pred, what, timeout=60):
    deadline = now() + scaled(timeout)
    while True:
        st = c.get_json("/kvmove/vms/%s/status" % vm) or {}
        if pred(st):
            return st
        check(now() < deadline, "%s: %s never %s: %r\n%s" % (vm, vm, what, st,
                                                             c.diagnostics()))
        time.sleep(0.1)


def verified_fresh(c, vm):
    """The guest a new VMM booted verifies its memory (its console is new:
    a VMM truncates it when it starts)."""
    time.sleep(1)
    con = kvtest.Console(c.agents["h1"].console(vm))
    try:
        con.wait_for(kvtest.RX_VERIFY_OK, timeout=60, fail_on=kvtest.RX_BAD,
                     what="VERIFY OK from the restarted %s" % vm)
    finally:
        con.close()


def kill_vmm(c, vm):
    pid = vmm_pid(c, vm)
    check(pid, "%s has no running VMM to kill" % vm)
    os.kill(pid, signal.SIGKILL)
    return pid


def test(h):
    c = kvcluster.Cluster(h, hosts=1, mig_nets=1, etcd_members=1)
    c.up()
    append = kvtest.guest_cmdline(wss="16M", rate=8, hb=10000, verify_every=500)
    for vm, pol in (("r1", "on-failure"), ("r2", None)):
        c.cli("vm", "create", vm, "--mem", "128M", "--cpus", "1", "--kernel", h.guest,
              "--append", append, *(["--restart", pol] if pol else []))
        c.cli("vm", "start", vm)
        c.wait_state(vm, "running", "h1")
        c.wait_verified(vm, "h1")

    # 1. on-failure: a crash is booted again
    old = kill_vmm(c, "r1")
    st = wait_status(c, "r1", lambda s: s.get("state") == "running" and s.get("pid") not in
                     (None, 0, old), "restarted")
    check("restarted (1 of 3" in st.get("reason", "") and "signal 9" in st["reason"],
          "r1's status after the restart: %r" % st)
    check(c.owner("r1") == "h1", "r1's owner after the restart: %r" % c.owner("r1"))
    verified_fresh(c, "r1")
    h.log("1. on-failure: %s" % st["reason"][:160])

    # 2. never: reported, released
    kill_vmm(c, "r2")
    st = wait_status(c, "r2", lambda s: s.get("state") == "failed", "failed")
    check("signal 9" in st.get("reason", ""), "r2's reason: %r" % st)
    deadline = now() + scaled(30)
    while c.owner("r2") is not None:
        check(now() < deadline, "r2's owner key was not released: %r" % c.owner("r2"))
        time.sleep(0.2)
    h.log("2. never: %s" % st["reason"][:120])

    # 3. the budget: restarts 2 and 3, then it gives up
    for n in (2, 3):
        old = kill_vmm(c, "r1")
        st = wait_status(c, "r1", lambda s: s.get("state") == "running" and s.get("pid") not in
                         (None, 0, old), "restarted")
        check("restarted (%d of 3" % n in st.get("reason", ""), "restart %d: %r" % (n, st))
        time.sleep(1)
    kill_vmm(c, "r1")
    st = wait_status(c, "r1", lambda s: s.get("state") == "failed", "failed")
    check("not restarted: 3 restarts" in st.get("reason", ""),
          "r1 after its budget: %r" % st)
    h.log("3. the budget: %s" % st["reason"][-80:])

    # 4. always: a clean guest shutdown is booted again
    c.cli("vm", "create", "r3", "--mem", "128M", "--cpus", "1", "--kernel", h.guest,
          "--append", append + " runtime=2", "--restart", "always")
    c.cli("vm", "start", "r3")
    first = wait_status(c, "r3", lambda s: s.get("state") == "running" and s.get("pid"),
                        "running")["pid"]
    st = wait_status(c, "r3", lambda s: s.get("state") == "running" and s.get("pid") not in
                     (None, 0, first), "restarted after its shutdown", timeout=90)
    check("exited with status 0" in st.get("reason", ""), "r3's reason: %r" % st)
    h.log("4. always: %s" % st["reason"][:120])
    c.cli("vm", "stop", "r3")


kvtest.main(test)
