#!/usr/bin/env python3
"""Sixteen nodes (the size of a Hyper-V failover cluster), three etcd
members, a small verifying VM on a few of them:

  1. all sixteen register and `node list` shows them up
  2. a VM moves between two nodes at the ends of the cluster (h1 -> h16),
     then without --to (placement chooses among fifteen), then to a node
     in the middle; memory verified after every move
  3. the other VMs never moved (their owners are unchanged)

Timings (registration, request to first byte per cluster size, etcd load)
are bench/cluster_scale.py's business, not this test's."""
import kvcluster
import kvtest
from kvtest import check


def test(h):
    c = kvcluster.Cluster(h, hosts=16, mig_nets=1)
    c.up()
    nodes = c.cli("node", "list").json
    nodes = nodes if isinstance(nodes, list) else nodes.get("nodes", [])
    up = sorted(n["name"] for n in nodes if n.get("state") == "up")
    check(len(up) == 16, "node list: %d up: %s" % (len(up), up))

    for vm, node in (("s1", "h1"), ("s2", "h7"), ("s3", "h12")):
        c.vm_create(vm, mem="96M", wss="8M", rate=4)
        c.cli("vm", "start", vm, "--on", node)
    for vm, node in (("s1", "h1"), ("s2", "h7"), ("s3", "h12")):
        c.wait_state(vm, "running", node)
    c.wait_verified("s1", "h1")

    rec = c.migrate("s1", "--to", "h16")
    check(rec.get("state") == "completed" and c.owner("s1") == "h16", "s1 to h16: %r" % rec)
    c.wait_verified("s1", "h16")

    rec = c.migrate("s1")
    dst = rec.get("to")
    check(rec.get("state") == "completed" and dst not in (None, "h16") and
          c.owner("s1") == dst, "s1 placed: %r" % rec)
    c.wait_verified("s1", dst)
    h.log("placement chose %s for s1" % dst)

    target = "h9" if dst != "h9" else "h10"
    rec = c.migrate("s1", "--to", target)
    check(rec.get("state") == "completed" and c.owner("s1") == target, "s1 to %s: %r"
          % (target, rec))
    c.wait_verified("s1", target)

    check(c.owner("s2") == "h7" and c.owner("s3") == "h12",
          "the other VMs moved: s2 %r s3 %r" % (c.owner("s2"), c.owner("s3")))
    c.wait_verified("s2", "h7")


kvtest.main(test)
