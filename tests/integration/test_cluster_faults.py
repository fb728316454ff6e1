#!/usr/bin/env python3
"""The cluster when parts die (three etcd members, three namespace hosts,
verifying guests):

  1. agent SIGKILL while idle: its VM keeps running (the guest verifies);
     a new agent adopts the VMM (no second one starts) and a migration of
     the VM by name then works
  2. agent SIGKILL during a migration (the source's): the VMMs finish the
     migration on their own; the restarted agent picks the record up and
     completes it; the VM runs on the destination, verified
  3. one etcd member killed: a migration completes; the member comes back
  4. quorum lost (two of three members killed): `vm migrate` and `vm start`
     refuse with exit 5 and say why; the running VMs keep running (their
     guests verify); quorum regained: a migration completes
  5. partition at GO: the source is cut off (management and both migration
     links down) right at READY -> GO (pause-before-switchover, then
     migrate-continue).  It cannot hand the VM over in etcd, so it never
     sends GO and resumes; the destination never runs the guest (no
     heartbeat on its console, no second owner, the disk lock untouched);
     once the links are back, the cluster ends the migration as failed and
     removes the waiting destination VMM: exactly one copy ran throughout.
  6. the destination cut off from etcd right at READY -> GO (its management
     link down; the migration link stays): the source hands over and sends
     GO, the destination cannot commit.  Whatever the timing, exactly one
     copy runs at the end: the owner key names the node whose guest runs
     and verifies, and the other node's VMM is gone.
"""
import os
import signal
import subprocess
import time

import kvcluster
import kvtest
from kvtest import check, now, scaled


def wait_until(what, fn, timeout=60, interval=0.2):
    deadline = now() + scaled(timeout)
    while True:
        v = fn()
        if v:
            return v
        check(now() < deadline, "timed out waiting for " + what)
        time.sleep(interval)


def link(c, k, state, *devs):
    for d in devs:
        subprocess.run(["ip", "netns", "exec", c.ns(k), "ip", "link", "set", d, state],
                       check=True)


def vmm_qmp(c, node, vm):
    return kvtest.QMP(os.path.join(c.agents[node].run_dir, vm + ".sock"))


def test(h):
    c = kvcluster.Cluster(h, hosts=3, mig_nets=2)
    c.up()
    ep0 = c.etcd.endpoints()

    disk = os.path.join(c.shared, "web1.img")
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    c.vm_create("web1", disk=disk)
    c.vm_create("big", mem="512M", wss="384M", rate=64)
    c.cli("vm", "start", "web1", "--on", "h1")
    c.cli("vm", "start", "big", "--on", "h1")
    c.wait_state("web1", "running", "h1")
    c.wait_state("big", "running", "h1")
    c.wait_verified("web1", "h1")

    # 1. agent killed while idle
    pids = sorted(c.agents["h1"].vmm_pids())
    c.agents["h1"].kill()
    c.wait_verified("web1", "h1")
    for p in pids:
        check(os.path.exists("/proc/%d" % p), "VMM %d died with its agent" % p)
    c.agents["h1"].start()
    wait_until("h1 to adopt its VMMs", lambda: "adopted" in c.agents["h1"].log())
    time.sleep(2)
    check(sorted(c.agents["h1"].vmm_pids()) == pids,
          "VMMs after the agent's restart %s, before %s" % (c.agents["h1"].vmm_pids(), pids))
    rec = c.migrate("web1", "--to", "h2")
    check(rec.get("state") == "completed", "web1 after the agent restart: %r" % rec)
    c.wait_state("web1", "running", "h2")
    c.wait_verified("web1", "h2")

    # 2. the source agent killed during a migration
    mid = c.cli("vm", "migrate", "big", "--to", "h3", "--no-wait").json["id"]
    key = "/kvmove/migrations/" + mid
    wait_until("the migration of big to run",
               lambda: (c.get_json(key) or {}).get("state") == "running"
               and (c.get_json(key) or {}).get("network"), timeout=60, interval=0.05)
    c.agents["h1"].kill()
    h.log("killed h1's agent during %s: %s" % (mid, c.get_json(key)))
    time.sleep(1)
    c.agents["h1"].start()
    rec = wait_until("the migration of big to end",
                     lambda: (c.get_json(key) or {}).get("state") in
                     ("completed", "failed") and c.get_json(key), timeout=300)
    h.log("after the agent restart: %s" % rec)
    check(rec["state"] == "completed", "big: %r" % rec)
    c.wait_state("big", "running", "h3")
    c.wait_verified("big", "h3")
    check(c.owner("big") == "h3", "owner of big: %r" % c.owner("big"))

    # 3. one etcd member down
    c.etcd.kill(0)
    rec = c.migrate("web1", "--to", "h1")
    check(rec.get("state") == "completed", "web1 with a member down: %r" % rec)
    c.wait_verified("web1", "h1")
    c.etcd.restart(0)

    # 4. quorum lost, then regained
    c.etcd.kill(1)
    c.etcd.kill(2)
    r = c.cli("vm", "migrate", "web1", "--to", "h2", expect=5, timeout=120)
    h.log("migrate without quorum: %s" % (r.stderr.strip()))
    r = c.cli("vm", "start", "big", expect=5, timeout=120)
    c.wait_verified("web1", "h1")
    c.wait_verified("big", "h3")
    c.etcd.restart(1)
    c.etcd.restart(2)
    c.etcd.wait_healthy()
    rec = c.migrate("web1", "--to", "h2", timeout=300)
    check(rec.get("state") == "completed", "web1 after quorum came back: %r" % rec)
    c.wait_verified("web1", "h2")
    h.log("quorum regained: web1 on h2")

    # 5. partition at GO: the source (h2) cut off at READY -> GO
    with vmm_qmp(c, "h2", "web1") as q:
        q.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "pause-before-switchover", "state": True}]})
    mid = c.cli("vm", "migrate", "web1", "--to", "h3", "--no-wait").json["id"]
    key = "/kvmove/migrations/" + mid

    def at_go():
        with vmm_qmp(c, "h2", "web1") as q:
            return q.cmd("query-migrate").get("status") == "pre-switchover"
    wait_until("the source at pre-switchover", at_go, timeout=120)
    dst_console = c.console("web1", "h3")
    link(c, 2, "down", "mgmt0", "mig0", "mig1")
    h.log("h2 cut off at READY -> GO")
    with vmm_qmp(c, "h2", "web1") as q:
        q.cmd("migrate-continue", {"state": "pre-switchover"})

        def settled():
            st = q.cmd("query-migrate").get("status")
            return st in ("failed", "completed", "cancelled") and st
        st = wait_until("the source to decide", settled, timeout=120)
        check(st == "failed", "the cut-off source: %s" % st)
        check(q.cmd("query-status").get("status") == "running",
              "the cut-off source did not resume its VM")
    c.wait_verified("web1", "h2")
    check(not kvtest.heartbeats(dst_console), "the destination ran the guest")
    check(c.owner("web1") == "h2", "owner after the partition: %r" % c.owner("web1"))
    link(c, 2, "up", "mgmt0", "mig0", "mig1")
    rec = wait_until("the cluster to end the migration",
                     lambda: (c.get_json(key) or {}).get("state") in ("failed", "completed")
                     and c.get_json(key), timeout=120)
    check(rec["state"] == "failed", "after the partition: %r" % rec)
    wait_until("h3 to drop its waiting VMM",
               lambda: not os.path.exists(os.path.join(c.agents["h3"].run_dir, "web1.pid")),
               timeout=60)
    check(not kvtest.heartbeats(dst_console), "the destination ran the guest after all")
    c.wait_verified("web1", "h2")
    check(c.owner("web1") == "h2", "owner at the end: %r" % c.owner("web1"))
    h.log("partition at GO: %s" % rec.get("reason"))

    # 6. the destination cut off from etcd at GO
    with vmm_qmp(c, "h2", "web1") as q:
        q.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "pause-before-switchover", "state": True}]})
    mid = c.cli("vm", "migrate", "web1", "--to", "h3", "--no-wait").json["id"]
    key = "/kvmove/migrations/" + mid
    wait_until("the source at pre-switchover", at_go, timeout=120)
    old = c.consoles.pop(("web1", "h3"), None)
    if old:
        old.close()
    link(c, 3, "down", "mgmt0")
    h.log("h3 cut off from etcd at READY -> GO")
    with vmm_qmp(c, "h2", "web1") as q:
        q.cmd("migrate-continue", {"state": "pre-switchover"})
    time.sleep(5)
    with vmm_qmp(c, "h2", "web1") as q:
        src_state = q.cmd("query-status").get("status")
    dst_console = c.console("web1", "h3")
    dst_ran = bool(kvtest.heartbeats(dst_console))
    h.log("during the cut: source %s, destination ran the guest: %s, owner %s"
          % (src_state, dst_ran, c.owner("web1")))
    check(not (src_state == "running" and dst_ran), "both copies ran during the cut")
    link(c, 3, "up", "mgmt0")
    rec = wait_until("the cluster to end the migration",
                     lambda: (c.get_json(key) or {}).get("state") in ("failed", "completed")
                     and c.get_json(key), timeout=180)
    owner = c.owner("web1")
    other = "h2" if owner == "h3" else "h3"
    h.log("after the cut: %s, owner %s: %s" % (rec["state"], owner, rec.get("reason")))
    check(owner in ("h2", "h3"), "owner after the cut: %r" % owner)
    check((rec["state"] == "completed") == (owner == "h3"),
          "record %s but owner %s" % (rec["state"], owner))
    wait_until("%s to drop its VMM of web1" % other,
               lambda: not os.path.exists(os.path.join(c.agents[other].run_dir, "web1.pid")),
               timeout=120)
    if owner == "h2":
        check(not kvtest.heartbeats(dst_console), "the destination ran the guest")
    c.wait_state("web1", "running", owner)
    c.wait_verified("web1", owner)


kvtest.main(test)
