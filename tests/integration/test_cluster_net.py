#!/usr/bin/env python3
"""A cluster VM with a NIC: `vm create --net bridge=br0` on two namespace hosts
whose br0 uplinks to a shared VM network with a client on it.

  1. the agent makes the NIC's TAP (named after the VM, the same on every
     node), attaches it to br0 and starts the VM on h1: the guest answers
     the client's pings
  2. `vm migrate --to h2`: the destination agent made the same TAP on h2
     before the VM arrived (and let the incoming VMM open only that one);
     the guest answers pings from h2, its memory verified; h1's TAP is gone
  3. a VM whose bridge does not exist on a node is never placed there (the
     reach key says which bridge is missing)
  4. CPU features: h2's agent publishes one feature less (--x-hide-feature,
     one its KVM offers).  A VM booted on h1 is refused on h2 with that
     feature named; a VM booted on h2 moves to h1 (a superset) and keeps
     h2's feature set there (it is what its guest was given), so it can move
     back to h2.
"""
import subprocess
import time

import kvcluster
import kvtest
from kvtest import check, now, scaled

GUEST_IP = "10.0.0.10"


def ping(c, count=3):
    r = subprocess.run(["ip", "netns", "exec", c.prefix + "-client", "ping", "-c", str(count),
                        "-W", "1", GUEST_IP], capture_output=True, text=True)
    return r.returncode == 0


def wait_ping(c, what, timeout=30):
    deadline = now() + scaled(timeout)
    while not ping(c, 1):
        check(now() < deadline, "the guest does not answer pings %s" % what)
        time.sleep(0.2)


def tap_on(c, k):
    r = subprocess.run(["ip", "netns", "exec", c.ns(k), "ip", "-o", "link", "show"],
                       capture_output=True, text=True)
    return [l.split(":")[1].strip().split("@")[0] for l in r.stdout.splitlines()
            if ": kv" in l and "master br0" in l]


def test(h):
    c = kvcluster.Cluster(h, hosts=2, mig_nets=1)
    c.up()
    c.vm_create("net1", ip=GUEST_IP, extra=["--net", "bridge=br0"])
    c.cli("vm", "start", "net1", "--on", "h1")
    c.wait_state("net1", "running", "h1")
    con = c.console("net1", "h1")
    con.wait_for(r"^NET \S+ ip=%s" % GUEST_IP, timeout=60, fail_on=kvtest.RX_BAD)
    taps = tap_on(c, 1)
    check(len(taps) == 1, "TAPs on h1's br0: %s" % taps)
    wait_ping(c, "on h1")
    c.wait_verified("net1", "h1")

    rec = c.migrate("net1", "--to", "h2")
    check(rec.get("state") == "completed" and c.owner("net1") == "h2", "net1: %r" % rec)
    c.wait_state("net1", "running", "h2")
    check(tap_on(c, 2) == taps, "TAPs on h2's br0: %s (h1 had %s)" % (tap_on(c, 2), taps))
    wait_ping(c, "on h2")
    c.wait_verified("net1", "h2")
    deadline = now() + scaled(30)
    while tap_on(c, 1):
        check(now() < deadline, "h1 kept the TAP: %s" % tap_on(c, 1))
        time.sleep(0.2)
    h.log("net1 answered pings on h1 and h2 through TAP %s" % taps[0])

    # 3. a bridge that does not exist anywhere: no node reaches it
    c.vm_create("net2", extra=["--net", "bridge=nosuchbr"])
    r = c.cli("vm", "start", "net2", expect=3, timeout=120)
    out = r.stdout + r.stderr
    check("nosuchbr" in out, "the refusal does not name the missing bridge: %s" % out)

    # 4. CPU features
    # a feature h2's node record has (what its KVM offers guests), and no
    # test guest needs (not in the x86-64 baseline)
    feat = kvcluster.spare_feature(c, "h2")
    c.agents["h2"].kill()
    c.agents["h2"].extra += ["--x-hide-feature", feat]
    c.agents["h2"].start()
    deadline = now() + scaled(30)
    while feat in (c.get_json("/kvmove/nodes/h2") or {}).get("cpu-features", [feat]):
        check(now() < deadline, "h2 still publishes %s" % feat)
        time.sleep(0.2)
    c.vm_create("cpu1")
    c.cli("vm", "start", "cpu1", "--on", "h1")
    c.wait_state("cpu1", "running", "h1")
    r = c.cli("vm", "migrate", "cpu1", "--to", "h2", expect=3)
    check(feat in r.stdout + r.stderr, "the refusal does not name %s: %s"
          % (feat, r.stdout + r.stderr))
    c.vm_create("cpu2")
    c.cli("vm", "start", "cpu2", "--on", "h2")
    st = c.wait_state("cpu2", "running", "h2")
    check(feat not in st["cpu-features"], "cpu2 booted on h2 with %s" % feat)
    rec = c.migrate("cpu2", "--to", "h1")
    check(rec.get("state") == "completed", "cpu2 to h1: %r" % rec)
    st = c.wait_state("cpu2", "running", "h1")
    check(feat not in st["cpu-features"], "cpu2 on h1 claims %s: its CPU came from h2" % feat)
    rec = c.migrate("cpu2", "--to", "h2")
    check(rec.get("state") == "completed", "cpu2 back to h2: %r" % rec)
    c.wait_verified("cpu2", "h2")
    c.wait_verified("net1", "h2")
    h.log("CPU features: %s hidden on h2; cpu1 refused there, cpu2 moved h2 -> h1 -> h2" % feat)


kvtest.main(test)
