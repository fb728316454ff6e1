#!/usr/bin/env python3
"""The cluster on etcd: four namespace hosts, a real etcd of three members on
the management network, one real agent per host, verifying guests.

  1. the four nodes register; `cluster status` sees three healthy members
     and a leader; `node list` lists the four
  2. placement: h2 in maintenance, h3 offers too little RAM, h4 does not
     reach the shared storage: a VM with a disk there starts on h1 without
     --on, and a migration of it without --to is refused (exit 3) naming
     each node's reason; `--to h3` is refused for RAM
  3. maintenance off on h2: `vm migrate db1` (no --to) moves it to h2 over
     the first migration network; memory verified on h2; the source VMM is
     gone; the owner key names h2
  4. migrate by name with --to, there and back (memory verified each time)
  5. the migration limit: three VMs on h1, three migrations requested at
     once run one at a time: the cluster's own timeline of slot keys (etcd's
     history of /kvmove/slots/) never shows two slots held on one node,
     and the queue was visible in `migration list`
  6. the first migration network cut (h2's mig0 down) before the first
     byte: the migration goes over the second one and says so
  7. a quick migration (save/restore through the shared directory) by name
  8. vm stop and delete
"""
import os
import subprocess
import time

import etcdlib
import kvcluster
import kvtest
from kvtest import check, now, scaled


def owner_is(c, vm, node):
    check(c.owner(vm) == node, "owner of %s is %r, expected %s" % (vm, c.owner(vm), node))


def check_moved(c, vm, src, dst, rec):
    check(rec.get("state") == "completed", "migration of %s: %r" % (vm, rec))
    check(rec.get("from") == src and rec.get("to") == dst,
          "migration of %s went %s -> %s, expected %s -> %s"
          % (vm, rec.get("from"), rec.get("to"), src, dst))
    owner_is(c, vm, dst)
    c.wait_state(vm, "running", dst)
    c.wait_verified(vm, dst)
    # the source's VMM is gone
    deadline = now() + scaled(30)
    while os.path.exists(os.path.join(c.agents[src].run_dir, vm + ".pid")):
        check(now() < deadline, "the source VMM of %s on %s is still there" % (vm, src))
        time.sleep(0.2)


def test(h):
    c = kvcluster.Cluster(h, hosts=4, mig_nets=2)
    c.agents_extra = {}
    c.up(start_agents=False)
    h4only = os.path.join(h.tmpdir, "h4-storage")
    os.makedirs(h4only)
    c.agents["h3"].extra += ["--ram", "100M"]
    c.agents["h4"].allow = [h4only]
    for a in c.agents.values():
        a.start()
    c.wait_nodes(4)

    # 1. the cluster as operators see it
    st = c.cli("cluster", "status").json
    h.log("cluster status: %s" % st)
    nodes = c.cli("node", "list").json
    names = sorted(n["name"] for n in (nodes if isinstance(nodes, list) else nodes["nodes"]))
    check(names == ["h1", "h2", "h3", "h4"], "node list: %r" % names)

    # 2. placement rules
    disk = os.path.join(c.shared, "db1.img")
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    c.cli("node", "set", "h2", "--maintenance", "on")
    for vm in ("db1",):
        c.vm_create(vm, disk=disk)
    c.cli("vm", "start", "db1")
    c.wait_state("db1", "running", "h1")
    owner_is(c, "db1", "h1")
    c.wait_verified("db1", "h1")
    r = c.cli("vm", "migrate", "db1", expect=3)
    out = (r.stdout or "") + (r.stderr or "")
    for node, why in (("h2", "maintenance"), ("h3", "RAM"), ("h4", "storage")):
        check(node in out and why in out, "refusal does not give %s's reason (%s): %s"
              % (node, why, out))
    r = c.cli("vm", "migrate", "db1", "--to", "h3", expect=3)
    check("RAM" in r.stdout + r.stderr, "--to h3 refusal: %s" % (r.stdout + r.stderr))
    owner_is(c, "db1", "h1")

    # 3. placement picks h2 once it is out of maintenance
    c.cli("node", "set", "h2", "--maintenance", "off")
    rec = c.migrate("db1")
    check_moved(c, "db1", "h1", "h2", rec)
    check(rec.get("network") == "10.20.0.0/24", "db1 went over %r" % rec.get("network"))

    # 4. by name, with --to, there and back
    c.vm_create("web1")
    c.cli("vm", "start", "web1", "--on", "h1")
    c.wait_state("web1", "running", "h1")
    c.wait_verified("web1", "h1")
    check_moved(c, "web1", "h1", "h2", c.migrate("web1", "--to", "h2"))
    check_moved(c, "web1", "h2", "h1", c.migrate("web1", "--to", "h1"))

    # 5. one migration per node at a time
    for vm in ("q1", "q2"):
        c.vm_create(vm)
        c.cli("vm", "start", vm, "--on", "h1")
    for vm in ("q1", "q2"):
        c.wait_state(vm, "running", "h1")
    start_rev = int(etcdlib.revision(c.etcd.endpoints()))
    ids = []
    for vm in ("web1", "q1", "q2"):
        ids.append(c.cli("vm", "migrate", vm, "--to", "h2", "--no-wait").json["id"])
    listing = c.cli("migration", "list").json
    h.log("migration list right after: %s" % listing)
    deadline = now() + scaled(300)
    while True:
        recs = c.migrations()
        states = [recs.get("/kvmove/migrations/" + i, {}).get("state") for i in ids]
        if all(s in ("completed", "failed", "cancelled") for s in states):
            break
        check(now() < deadline, "migrations did not end: %s" % states)
        time.sleep(0.3)
    check(states == ["completed"] * 3, "the three migrations: %s" % states)
    hist = etcdlib.history(c.etcd.endpoints(), "/kvmove/slots/", start_rev)
    held = {}
    worst = {}
    order = []
    for rev, kind, key, value in hist:
        node = key.split("/")[3]
        if kind == "PUT":
            held.setdefault(node, {})[key] = value
            if value not in order:
                order.append(value)
        else:
            held.get(node, {}).pop(key, None)
        worst[node] = max(worst.get(node, 0), len(held.get(node, {})))
    h.log("slot timeline: %d events, most slots held at once per node: %s; order %s"
          % (len(hist), worst, order))
    check(worst.get("h1") == 1 and worst.get("h2") == 1,
          "more than one migration slot held at once: %s" % worst)
    check(order == ids, "migrations started out of order: %s vs %s" % (order, ids))
    for vm in ("web1", "q1", "q2"):
        owner_is(c, vm, "h2")
        c.wait_verified(vm, "h2")

    # 6. the first migration network fails before the first byte
    subprocess.run(["ip", "netns", "exec", c.ns(3), "ip", "link", "set", "mig0", "down"],
                   check=True)
    c.agents["h3"].extra = [e for e in c.agents["h3"].extra]
    # h3 has too little RAM: lift it (a restart of its agent, idle)
    c.agents["h3"].kill()
    c.agents["h3"].extra = []
    c.agents["h3"].start()
    time.sleep(1)
    rec = c.migrate("q1", "--to", "h3")
    check_moved(c, "q1", "h2", "h3", rec)
    check(rec.get("network") == "10.30.0.0/24",
          "with mig0 down on h3 the migration went over %r: %r" % (rec.get("network"), rec))
    h.log("q1 to h3: attempts %s" % rec.get("attempts"))

    # 7. quick migration through the shared directory
    rec = c.migrate("q2", "--to", "h1", "--quick")
    check_moved(c, "q2", "h2", "h1", rec)
    h.log("quick migration of q2: %s" % rec.get("stats"))

    # 8. stop and delete
    c.cli("vm", "stop", "q2")
    check(c.owner("q2") is None, "q2 still owned by %r after stop" % c.owner("q2"))
    c.cli("vm", "delete", "q2")
    check(c.get("/kvmove/vms/q2/spec") is None, "q2 still defined after delete")
    c.cli("vm", "delete", "web1", expect=3)   # running: refused


kvtest.main(test)
