#!/usr/bin/env python3
"""A whole-cluster outage and a staggered return (three namespace hosts, a
real etcd, real agents, verifying guests).

  vm1, vm2, vm3 (restart on-failure) run on h1, h2, h3.  Every agent and
  every VMM is killed at once; once their leases have expired the agents
  come back one by one, 2 s apart.  The first one back must not fail over
  the others' VMs before they had a chance to register (an agent waits one
  lease TTL after its own registration before it fails anything over):
  each VM boots again on its own node, and verifies.  Then h3 alone stays
  down: its VM fails over as usual.
"""
import os
import time

import kvcluster
import kvtest
from kvtest import check, now


def test(h):
    c = kvcluster.Cluster(h, hosts=3, mig_nets=1)
    c.up()
    vms = {"vm1": "h1", "vm2": "h2", "vm3": "h3"}
    for vm, node in vms.items():
        c.vm_create(vm, extra=("--restart", "on-failure"))
        c.cli("vm", "start", vm, "--on", node)
    for vm, node in vms.items():
        c.wait_state(vm, "running", node)
        c.wait_verified(vm, node)

    # everything dies at once
    pids = [p for a in c.agents.values() for p in a.kill_node()]
    c.wait("every node record to expire", lambda: not c.prefix_json("/kvmove/nodes/"),
           timeout=60)
    h.log("all %d agents and %d VMMs killed; every lease expired" % (len(c.agents), len(pids)))

    # back one by one, 2 s apart (less than the lease TTL)
    for node in ("h1", "h2", "h3"):
        for vm in vms:
            c.consoles.pop((vm, node), None)
        for vm in [v for v, n in vms.items() if n == node]:
            try:
                os.unlink(c.agents[node].console(vm))
            except FileNotFoundError:
                pass
        c.agents[node].start()
        time.sleep(2)
    t0 = now()
    def fresh(vm):
        s = c.get_json("/kvmove/vms/%s/status" % vm)
        return (s and s.get("state") == "running" and s.get("pid") not in pids and
                os.path.exists("/proc/%d" % s.get("pid", 0)) and s)
    for vm, node in vms.items():
        st = c.wait("%s to run again" % vm, lambda: fresh(vm), timeout=120)
        check(st["node"] == node, "%s came back on %s, not on its own node %s: the first "
              "agent back took it (%r)" % (vm, st["node"], node, st))
        c.wait_verified(vm, node)
    h.log("staggered return: every VM on its own node, running %.1f s after the last agent "
          "started" % (now() - t0))

    # h3 alone stays down: vm3 fails over (the grace is only after a return)
    c.agents["h3"].kill_node()
    t_dead = now()
    st = c.wait("vm3 to run elsewhere", lambda: (lambda s: s and s.get("state") == "running"
                                                 and s.get("node") != "h3" and s)(
        c.get_json("/kvmove/vms/vm3/status")), timeout=120)
    c.consoles.pop(("vm3", st["node"]), None)
    c.wait_verified("vm3", st["node"])
    h.log("h3 down -> vm3 running on %s after %.1f s" % (st["node"], now() - t_dead))


kvtest.main(test)
