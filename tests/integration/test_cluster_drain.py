#!/usr/bin/env python3
"""Maintenance with a drain (kvmove node maintenance NODE on|off): three
namespace hosts, a real etcd, real agents, verifying guests.  h1 runs four
VMs: d1, d2, d3, and pinned1, whose disk lies in a directory only h1's agent
may open (so no other node reaches it).

  1. cancel half-way: `maintenance h1 on` without --wait; as soon as the
     first drain migration runs, `maintenance h1 off`: that one finishes,
     the queued ones are dropped (state cancelled), the drain record says
     cancelled, and for 5 s afterwards nothing more moves off h1
  2. `maintenance h1 on --wait`: every VM that can move moves (verified on
     its new node), pinned1 stays on h1, still verifying, listed with its
     reason; the drain ends drain-incomplete (exit 1) and `node show h1`
     says so
  3. all along, the cluster's own timeline of slot keys (etcd's history of
     /kvmove/slots/) never shows more migrations at once on a node than its
     limit (1)
  4. `maintenance h1 off`: h1 takes VMs again (late1 starts there); with
     pinned1 stopped, `maintenance h1 on --wait` ends drained (exit 0),
     late1 verified on its new node, and `node show h1` says drained

The drain time is logged next to the sum of the drain's migration times."""
import os
import time

import etcdlib
import kvcluster
import kvtest
from kvtest import check, now, scaled

VMS = ("d1", "d2", "d3")


def drain_migrations(c, drain_id):
    return {k: v for k, v in c.migrations().items()
            if isinstance(v, dict) and v.get("drain") == drain_id}


def wait_for(what, fn, timeout=120, c=None):
    deadline = now() + scaled(timeout)
    while True:
        v = fn()
        if v:
            return v
        check(now() < deadline, "%s: not within %d s%s" % (
            what, timeout, "\n" + c.diagnostics() if c else ""))
        time.sleep(0.1)


def test(h):
    c = kvcluster.Cluster(h, hosts=3, mig_nets=1, etcd_members=1)
    c.up(start_agents=False)
    h1only = os.path.join(h.tmpdir, "h1-storage")
    os.makedirs(h1only)
    c.agents["h1"].allow = [c.shared, h1only]
    for a in c.agents.values():
        a.start()
    c.wait_nodes(3)
    start_rev = int(etcdlib.revision(c.etcd.endpoints()))

    disk = os.path.join(h1only, "pinned1.img")
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    for vm in VMS:
        c.vm_create(vm)
    c.vm_create("pinned1", disk=disk)
    for vm in VMS + ("pinned1",):
        c.cli("vm", "start", vm, "--on", "h1")
    for vm in VMS + ("pinned1",):
        c.wait_state(vm, "running", "h1")
        c.wait_verified(vm, "h1")

    # 1. cancel half-way
    r = c.cli("node", "maintenance", "h1", "on")
    drain_id = r.json["drain"]["id"]
    wait_for("a drain migration running", lambda: [
        v for v in drain_migrations(c, drain_id).values()
        if v.get("state") in ("running", "completed")], c=c)
    c.cli("node", "maintenance", "h1", "off")
    # what had started by then may finish; nothing else may ever run
    started = {v["vm"] for v in drain_migrations(c, drain_id).values()
               if v.get("state") in ("running", "completed")}
    wait_for("the running drain migrations to end", lambda: all(
        v.get("state") in ("completed", "failed", "cancelled")
        for v in drain_migrations(c, drain_id).values()), c=c)
    d = c.get_json("/kvmove/drains/h1")
    check(d.get("state") == "cancelled", "drain after off: %r" % d)
    time.sleep(5)
    recs = drain_migrations(c, drain_id)
    states = sorted((v["vm"], v["state"]) for v in recs.values())
    h.log("1. cancelled with %s under way: %s" % (sorted(started), states))
    late = [v["vm"] for v in recs.values() if v["state"] != "cancelled"
            and v["vm"] not in started]
    check(not late, "drain migrations ran after the cancel: %s (%s)" % (late, states))
    check([v for v in recs.values() if v["state"] == "cancelled"],
          "nothing was left to cancel: %s" % states)
    stayed = [vm for vm in VMS if vm not in started]
    check(stayed, "every VM had moved before the cancel: %s" % states)
    for vm in stayed:
        check(c.owner(vm) == "h1", "%s moved after the drain was cancelled (owner %s)"
              % (vm, c.owner(vm)))
    check(not [v for v in c.migrations().values()
               if v.get("state") in ("queued", "running")],
          "a migration is queued or running 5 s after the cancel: %s" % c.migrations())
    for vm in started:
        check(c.owner(vm) in ("h2", "h3"), "%s is on %r after its drain migration"
              % (vm, c.owner(vm)))

    # 2. drain with --wait: all that can move moves; pinned1 stays
    t0 = now()
    r = c.cli("node", "maintenance", "h1", "on", "--wait", expect=1, timeout=600)
    t_drain = now() - t0
    d = r.json
    check(d.get("state") == "drain-incomplete", "drain result: %r" % d)
    check(list(d.get("stuck", {})) == ["pinned1"], "stuck VMs: %r" % d.get("stuck"))
    check(d.get("moved") == len(stayed) and d.get("remaining") == 1,
          "the drain ended with moved %r, remaining %r (expected %d, 1)"
          % (d.get("moved"), d.get("remaining"), len(stayed)))
    live = [v for v in drain_migrations(c, d["id"]).values()
            if v["state"] in ("queued", "running")]
    check(not live, "the drain said it ended while migrations ran: %s" % live)
    why = d["stuck"]["pinned1"]
    check("storage" in why or "disk" in why or "reach" in why,
          "pinned1's reason does not say why: %r" % why)
    for vm in stayed:
        node = c.owner(vm)
        check(node in ("h2", "h3"), "%s is on %r after the drain" % (vm, node))
        c.wait_state(vm, "running", node)
        c.wait_verified(vm, node)
    check(c.owner("pinned1") == "h1", "pinned1 left h1")
    c.wait_verified("pinned1", "h1")
    show = c.cli("node", "show", "h1", js=False).stdout
    check("drain-incomplete" in show and "pinned1 stays" in show,
          "node show h1 does not tell the drain: %s" % show)
    recs = [v for v in drain_migrations(c, d["id"]).values() if v["state"] == "completed"]
    sum_s = sum(v.get("stats", {}).get("total-time-ms", 0) for v in recs) / 1e3
    h.log("2. drained %d VMs in %.1f s (sum of their migration times %.1f s); pinned1: %s"
          % (len(recs), t_drain, sum_s, why))
    h.log("node show h1:\n%s" % show)

    # 3. never more than the limit at once on any node
    hist = etcdlib.history(c.etcd.endpoints(), "/kvmove/slots/", start_rev)
    held, worst = {}, {}
    for rev, kind, key, value in hist:
        node = key.split("/")[3]
        if kind == "PUT":
            held.setdefault(node, {})[key] = value
        else:
            held.get(node, {}).pop(key, None)
        worst[node] = max(worst.get(node, 0), len(held.get(node, {})))
    h.log("3. slot timeline: %d events, most held at once per node: %s" % (len(hist), worst))
    check(worst and max(worst.values()) == 1, "more than one slot held at once: %s" % worst)

    # 4. out of maintenance: h1 takes VMs again; with pinned1 stopped, a
    # drain ends "drained"
    c.cli("node", "maintenance", "h1", "off")
    c.vm_create("late1")
    c.cli("vm", "start", "late1", "--on", "h1")
    c.wait_state("late1", "running", "h1")
    c.cli("vm", "stop", "pinned1")
    r = c.cli("node", "maintenance", "h1", "on", "--wait", timeout=600)
    d = r.json
    check(d.get("state") == "drained" and d.get("moved") == 1 and not d.get("stuck"),
          "the last drain: %r" % d)
    node = c.owner("late1")
    check(node in ("h2", "h3"), "late1 is on %r after the drain" % node)
    c.wait_verified("late1", node)
    show = c.cli("node", "show", "h1", js=False).stdout
    check("drained (1 moved)" in show, "node show h1 after the drain: %s" % show)
    h.log("4. maintenance off: late1 ran on h1; pinned1 stopped; the drain ended drained, "
          "late1 verified on %s" % node)


kvtest.main(test)
