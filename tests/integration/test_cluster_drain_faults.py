#!/usr/bin/env python3
"""Drains when things go wrong (two namespace hosts, a real etcd, real
agents, verifying guests; the source VMM's bandwidth capped with QMP
migrate-set-parameters so that each live migration lasts a few seconds).

  1. --quick-fallback: q1's live migrations keep failing (the test kills
     the destination's incoming VMM each time one runs); after two failed
     live tries the drain moves q1 by quick migration (through the shared
     directory), the guest verifies on h2, the drain ends drained, and the
     drain's records show the two failed live tries and the quick one
  2. the draining node's agent killed in the middle of a drain migration
     and started again: the node is still in maintenance (it is in etcd),
     the drain goes on and ends drained, the VM verified on h2
"""
import os
import signal
import time

import kvcluster
import kvtest
from kvtest import check, now, scaled


def cap_bandwidth(c, node, vm, bps):
    with kvtest.QMP(os.path.join(c.agents[node].run_dir, vm + ".sock")) as q:
        q.cmd("migrate-set-parameters", {"max-bandwidth": bps})


def drain_recs(c, drain_id):
    return sorted((v for v in c.migrations().values()
                   if isinstance(v, dict) and v.get("drain") == drain_id),
                  key=lambda r: r.get("requested", 0))


def incoming_pid(c, node, vm):
    run = c.agents[node].run_dir
    try:
        role = open(os.path.join(run, vm + ".role")).read()
        pid = int(open(os.path.join(run, vm + ".pid")).read())
    except (OSError, ValueError):
        return None
    return pid if role.startswith("incoming") and os.path.exists("/proc/%d" % pid) else None


def test(h):
    c = kvcluster.Cluster(h, hosts=2, mig_nets=1, etcd_members=1)
    c.up()
    for vm in ("q1", "r1"):
        c.vm_create(vm)

    # 1. --quick-fallback
    c.cli("vm", "start", "q1", "--on", "h1")
    c.wait_state("q1", "running", "h1")
    c.wait_verified("q1", "h1")
    cap_bandwidth(c, "h1", "q1", 16 << 20)
    r = c.cli("node", "maintenance", "h1", "on", "--quick-fallback")
    drain_id = r.json["drain"]["id"]
    killed = set()
    deadline = now() + scaled(240)
    while True:
        d = c.get_json("/kvmove/drains/h1") or {}
        if d.get("state") not in (None, "draining"):
            break
        check(now() < deadline, "the drain did not end: %r\n%s" % (d, c.diagnostics()))
        for rec in drain_recs(c, drain_id):
            if rec.get("state") == "running" and not rec.get("quick") and \
                    rec["id"] not in killed:
                pid = incoming_pid(c, "h2", "q1")
                if pid and (rec.get("progress") or {}).get("transferred", 0) > 0:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(rec["id"])
                    h.log("killed h2's incoming VMM (pid %d) during %s" % (pid, rec["id"]))
        time.sleep(0.05)
    recs = drain_recs(c, drain_id)
    h.log("drain %s: %s; records %s" % (drain_id, d.get("state"),
          [(x["id"], x.get("quick"), x.get("state")) for x in recs]))
    check(d.get("state") == "drained", "drain with --quick-fallback: %r" % d)
    live_failed = [x for x in recs if not x.get("quick") and x.get("state") == "failed"]
    quick_done = [x for x in recs if x.get("quick") and x.get("state") == "completed"]
    check(len(live_failed) >= 2 and len(quick_done) == 1,
          "expected two failed live tries and one quick move: %r" % recs)
    c.wait_state("q1", "running", "h2")
    c.wait_verified("q1", "h2")
    c.cli("node", "maintenance", "h1", "off")

    # 2. the draining agent restarted mid-drain
    c.cli("vm", "start", "r1", "--on", "h1")
    c.wait_state("r1", "running", "h1")
    c.wait_verified("r1", "h1")
    cap_bandwidth(c, "h1", "r1", 16 << 20)
    r = c.cli("node", "maintenance", "h1", "on")
    drain_id = r.json["drain"]["id"]
    c.wait("the drain's migration of r1 to transfer", lambda: [
        x for x in drain_recs(c, drain_id) if x.get("state") == "running"
        and (x.get("progress") or {}).get("transferred", 0) > 0], interval=0.05)
    c.agents["h1"].kill()
    time.sleep(1)
    c.agents["h1"].start()
    c.wait_nodes(2)
    node = c.get_json("/kvmove/nodes/h1") or {}
    check(node.get("maintenance") is True, "h1 after its agent's restart: %r" % node)
    d = c.wait("the drain to end", lambda: (c.get_json("/kvmove/drains/h1") or {}).get(
        "state") not in (None, "draining") and c.get_json("/kvmove/drains/h1"),
        timeout=240)
    check(d.get("state") == "drained", "drain across an agent restart: %r" % d)
    c.wait_state("r1", "running", "h2")
    c.wait_verified("r1", "h2")
    r = c.cli("node", "show", "h1", js=False)
    check("drained" in r.stdout, "node show h1: %s" % r.stdout)
    h.log("drain across an agent restart: %s" % d)


if __name__ == "__main__":
    kvtest.main(test)
