#!/usr/bin/env python3
"""The load balancer (three namespace hosts offering 2 CPUs each, a real
etcd, real agents, verifying guests).

Every test guest spins on its vCPU (it cannot halt at CPL 3 here), so a VM's
CPU load is what the host scheduler gives its vCPU: a node with two VMs is
the hot one.

  1. recommend: a and b on h1, h2 and h3 empty.  The balancer (one agent,
     elected) writes an open tip moving one VM off h1, with h1's load before
     and after; nothing moves by itself.  `cluster tips apply ID` queues the
     migration; the VM runs on the tip's target and verifies; the tip gets
     its measured loads after.
  2. automatic: c3 joins b on h1.  The balancer moves one of them to the
     idle node by itself (an applied tip, mode automatic, its migration
     completed).
  3. No ping-pong: over a minute of sampling after that, no tip and no
     migration more.  Every guest still verifies where it ended.
"""
import time

import kvcluster
import kvtest
from kvtest import check, now


def tips(c):
    return sorted(c.prefix_json("/kvmove/tips/").values(), key=lambda t: t.get("id", ""))


def loads(c):
    return {k.rsplit("/", 1)[1]: round(v.get("cpu", -1))
            for k, v in c.prefix_json("/kvmove/load/").items()}


def test(h):
    c = kvcluster.Cluster(h, hosts=3, mig_nets=1)
    c.up(start_agents=False)
    for a in c.agents.values():
        a.extra = ["--cpus", "2"]	# after the harness's --cpus 16: this one counts
        a.start()
    c.wait_nodes(3)
    for vm in ("a", "b", "c3"):
        c.vm_create(vm)
    r = c.cli("cluster", "balancer", "recommend", "--samples", "2")
    check(r.json and r.json.get("mode") == "recommend", "balancer: %r" % r.json)
    for vm in ("a", "b"):
        c.cli("vm", "start", vm, "--on", "h1")
        c.wait_state(vm, "running", "h1")
    c.wait("an agent to run the balancer", lambda: c.get("/kvmove/balancer"))
    h.log("balancer run by %s" % c.get("/kvmove/balancer"))

    # 1. recommend: an open tip, nothing moves by itself
    tip = c.wait("an open tip", lambda: next(
        (t for t in tips(c) if t.get("state") == "open"), None))
    h.log("tip %s: %s (loads %s)" % (tip["id"], tip["reason"], loads(c)))
    check(tip["from"] == "h1" and tip["vm"] in ("a", "b") and tip["to"] in ("h2", "h3"),
          "tip: %r" % tip)
    check(tip["after"]["from"] < tip["before"]["from"] and
          tip["after"]["to"] < tip["before"]["from"], "tip loads: %r" % tip)
    r = c.cli("cluster", "tips")
    check(r.json and [t["id"] for t in r.json] == [tip["id"]], "cluster tips: %r" % r.json)
    time.sleep(6)
    check(not c.migrations(), "recommend mode moved something: %r" % c.migrations())
    check(c.owner(tip["vm"]) == "h1", "%s moved by itself" % tip["vm"])
    r = c.cli("cluster", "tips", "apply", tip["id"])
    mid = r.json["id"]
    check(r.json.get("tip") == tip["id"] and r.json.get("requested-to") == tip["to"],
          "apply: %r" % r.json)
    rec = c.wait("the tip's migration", lambda: (c.get_json("/kvmove/migrations/" + mid)
                     or {}).get("state") in ("completed", "failed")
                     and c.get_json("/kvmove/migrations/" + mid), timeout=180)
    check(rec["state"] == "completed", "the tip's migration: %r" % rec)
    c.wait_state(tip["vm"], "running", tip["to"])
    c.wait_verified(tip["vm"], tip["to"])
    r = c.cli("cluster", "tips", "apply", tip["id"], expect=3)
    t1 = c.wait("the tip's measured loads", lambda: (c.get_json(
        "/kvmove/tips/" + tip["id"]) or {}).get("measured") and c.get_json(
        "/kvmove/tips/" + tip["id"]))
    h.log("tip %s applied: before %s, predicted %s, measured %s"
          % (tip["id"], t1["before"], t1["after"], t1["measured"]))
    moved_a = tip["vm"]
    stay = "b" if moved_a == "a" else "a"

    # 2. automatic: c3 joins the VM left on h1
    c.cli("cluster", "balancer", "automatic")
    c.cli("vm", "start", "c3", "--on", "h1")
    c.wait_state("c3", "running", "h1")
    auto = c.wait("an automatic tip applied", lambda: next(
        (t for t in tips(c) if t.get("mode") == "automatic" and t.get("state") == "applied"),
        None), timeout=120)
    h.log("automatic tip %s: %s" % (auto["id"], auto["reason"]))
    check(auto["from"] == "h1" and auto["vm"] in (stay, "c3"), "automatic tip: %r" % auto)
    rec = c.wait("the automatic migration", lambda: (c.get_json(
        "/kvmove/migrations/" + auto["migration"]) or {}).get("state") in
        ("completed", "failed") and c.get_json("/kvmove/migrations/" + auto["migration"]),
        timeout=180)
    check(rec["state"] == "completed", "the automatic migration: %r" % rec)
    c.wait_state(auto["vm"], "running", auto["to"])
    placed = {vm: c.owner(vm) for vm in ("a", "b", "c3")}
    h.log("after the automatic move: %s, loads %s" % (placed, loads(c)))

    # 3. no ping-pong over a minute of sampling
    n_tips, n_migs = len(tips(c)), len(c.migrations())
    t_end = now() + 60
    while now() < t_end:
        time.sleep(5)
        check(len(c.migrations()) == n_migs, "a migration after the balanced state: %r"
              % [m for m in c.migrations().values()][-1])
        h.log("loads %s" % loads(c))
    new = tips(c)[n_tips:]
    check(not [t for t in new if t.get("state") in ("open", "applied")],
          "tips after the balanced state: %r" % new)
    check({vm: c.owner(vm) for vm in ("a", "b", "c3")} == placed, "VMs moved: %r" % placed)
    for vm, node in placed.items():
        c.wait_verified(vm, node)
    r = c.cli("cluster", "tips", "--all", js=False)
    h.log("cluster tips --all:\n" + r.stdout)


if __name__ == "__main__":
    kvtest.main(test)
