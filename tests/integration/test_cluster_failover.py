#!/usr/bin/env python3
"""Failover: a dead node's VMs boot on the others, never twice (three
namespace hosts, a real etcd of three members, real agents, verifying
guests with disks on shared storage).

  web1 (restart on-failure, priority high, a disk), db1 (restart always, a
  disk) and scratch (restart never, no disk) run on h1.

  1. The whole node dies: SIGKILL its agent and its VMMs.  While a stray
     process holds a lock on db1's disk, db1 is reported "fencing" and not
     started; web1 boots on another node at once (lease TTL + boot).  The
     lock gone, db1 boots too.  Both guests verify their memory and their
     disk (DISK OK on a disk the dead node's guest formatted).  scratch
     (restart never) is reported node-down and stays where it was.
  2. h1's agent comes back: it runs neither web1 nor db1.
  3. The node running web1 is cut off (its links down; its agent alive):
     its VMMs fence themselves (exit status 8) before its lease expires;
     web1 boots elsewhere and verifies; once the links are back, that node
     never runs web1 again.
  4. Only the agent of db1's node dies, its VMMs alive: db1's VMM fences
     itself (nobody renews the lease) and db1 boots elsewhere.
  5. The node running web1 dies in the middle of a hand-over: its VMM had
     let the owner key go (free:TOKEN) before GO.  web1 boots elsewhere;
     the cut migration's record ends failed.  scratch (restart never), cut
     the same way, gets its owner key back to that node and is node-down.
  Throughout, a sampler reads the disk locks of every VMM process every
  20 ms (/proc/PID/fdinfo): at no instant do two VMMs hold the same disk.

The times from node death (and from the cut) to the VMs running elsewhere
are printed for the record, not asserted.
"""
import fcntl
import json
import os
import subprocess
import threading
import time

import etcdlib
import kvcluster
import kvtest
from kvtest import check, now


def link(c, k, state, *devs):
    for d in devs:
        subprocess.run(["ip", "netns", "exec", c.ns(k), "ip", "link", "set", d, state],
                       check=True)


class LockSampler:
    """Which VMM processes hold a lock on each disk, every 20 ms."""

    def __init__(self, kvmove, disks):
        self.kvmove = os.path.realpath(kvmove)
        self.inodes = {}
        for d in disks:
            st = os.stat(d)
            self.inodes[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = d
        self.max_holders = {d: 0 for d in disks}
        self.worst = {}
        self.samples = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def vmm_pids(self):
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[1] == b"run" and os.path.basename(
                    argv[0].decode(errors="replace")) == "kvmove":
                out.append(int(p))
        return out

    def holders(self):
        held = {d: set() for d in self.inodes.values()}
        for pid in self.vmm_pids():
            try:
                fds = os.listdir("/proc/%d/fdinfo" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                        lines = f.read().splitlines()
                except OSError:
                    continue
                for ln in lines:
                    # lock:	1: OFDLCK  ADVISORY  WRITE -1 00:2d:1234 0 EOF
                    if not ln.startswith("lock:"):
                        continue
                    parts = ln.split()
                    for tok in parts:
                        if tok.count(":") == 2:
                            try:
                                ma, mi, ino = tok.split(":")
                                key = (int(ma, 16), int(mi, 16), int(ino))
                            except ValueError:
                                continue
                            if key in self.inodes:
                                held[self.inodes[key]].add(pid)
        return held

    def run(self):
        while not self.stop.is_set():
            for d, pids in self.holders().items():
                if len(pids) > self.max_holders[d]:
                    self.max_holders[d] = len(pids)
                    self.worst[d] = sorted(pids)
            self.samples += 1
            time.sleep(0.02)

    def start(self):
        self.t.start()
        return self

    def finish(self):
        self.stop.set()
        self.t.join(timeout=10)


def status(c, vm):
    return c.get_json("/kvmove/vms/%s/status" % vm) or {}


def running_elsewhere(c, vm, not_on):
    st = status(c, vm)
    return (st.get("state") == "running" and st.get("node") != not_on
            and c.owner(vm) == st.get("node") and st)


def fresh_console(c, vm, node):
    old = c.consoles.pop((vm, node), None)
    if old:
        old.close()
    return c.console(vm, node)


def check_disk_ok(c, vm, node):
    con = c.console(vm, node)
    _, _, m = con.wait_for(r"^DISK FORMAT .*previous=(\S+)", timeout=120,
                           what="DISK FORMAT from %s on %s" % (vm, node))
    check(m.group(1) in ("formatted", "partly-formatted"),
          "%s on %s found no disk of the dead node's guest: previous=%s"
          % (vm, node, m.group(1)))
    con.wait_for(r"^DISK OK ", timeout=120, what="DISK OK from %s on %s" % (vm, node))
    check(not con.find(r"^DISK (FAIL|BAD)"), "%s on %s: disk errors" % (vm, node))


def vmm_alive_for(c, node, vm):
    pidf = os.path.join(c.agents[node].run_dir, vm + ".pid")
    try:
        with open(pidf) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists("/proc/%d" % pid) else None


def wait_fenced(h, c, node, vm, pid):
    """vm's VMM (pid) on node ends, and its log says it fenced."""
    c.wait("%s's VMM on %s to fence itself" % (vm, node),
           lambda: not os.path.exists("/proc/%d" % pid), timeout=60)
    log = open(os.path.join(c.agents[node].run_dir, vm + ".log"), errors="replace").read()
    fenced = [ln for ln in log.splitlines() if "FENCED" in ln]
    check(fenced, "%s's VMM on %s ended without saying it fenced: %s" % (vm, node, log[-500:]))
    h.log("%s's VMM: %s" % (vm, fenced[-1]))


def test(h):
    c = kvcluster.Cluster(h, hosts=3, mig_nets=1)
    c.up()
    ttl = c.lease_ttl
    disks = {}
    for vm in ("web1", "db1"):
        disks[vm] = os.path.join(c.shared, vm + ".img")
        with open(disks[vm], "wb") as f:
            f.truncate(16 << 20)
    c.vm_create("web1", disk=disks["web1"], extra=("--restart", "on-failure",
                                                   "--priority", "high"))
    c.vm_create("db1", disk=disks["db1"], extra=("--restart", "always"))
    c.vm_create("scratch")
    spec = c.get_json("/kvmove/vms/web1/spec")
    check(spec.get("priority") == "high" and spec.get("restart") == "on-failure",
          "web1's definition: %r" % spec)
    # web1 arrives on h1 by a live migration: an incoming VMM (sandboxed)
    # fences too, with the destination's lease
    c.cli("vm", "start", "web1", "--on", "h2")
    c.wait_state("web1", "running", "h2")
    rec = c.migrate("web1", "--to", "h1")
    check(rec.get("state") == "completed", "web1 to h1: %r" % rec)
    for vm in ("db1", "scratch"):
        c.cli("vm", "start", vm, "--on", "h1")
    for vm in ("web1", "db1", "scratch"):
        c.wait_state(vm, "running", "h1")
    for vm in ("web1", "db1"):
        c.wait_verified(vm, "h1")
        c.console(vm, "h1").wait_for(r"^DISK OK ", timeout=120, what="DISK OK on h1")
    # the HA VMs' VMMs watch h1's lease; scratch's does not
    lease = open(os.path.join(c.agents["h1"].run_dir, "agent.lease")).read().strip()
    for vm, fenced in (("web1", True), ("db1", True), ("scratch", False)):
        pid = vmm_alive_for(c, "h1", vm)
        argv = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
        has = b"--fence-lease" in argv
        check(has == fenced, "%s's VMM: --fence-lease %s" % (vm, "missing" if fenced
                                                             else "given"))
        if fenced:
            check(argv[argv.index(b"--fence-lease") + 1].decode() == lease,
                  "%s's VMM watches lease %r, h1 holds %s" % (vm, argv, lease))

    sampler = LockSampler(h.kvmove, list(disks.values())).start()
    try:
        # 1. the whole node dies
        vmms = c.agents["h1"].kill_node()
        t_dead = now()
        # a stray lock on db1's disk: db1 must wait, "fencing"
        stray = open(disks["db1"], "r+b")
        c.wait("h1's VMMs to be gone", lambda: not any(
            os.path.exists("/proc/%d" % p) for p in vmms), timeout=10)
        fcntl.lockf(stray, fcntl.LOCK_EX | fcntl.LOCK_NB, 4096, 0)
        h.log("h1 killed (agent and %d VMMs); a stray lock holds db1's disk" % len(vmms))

        st = c.wait("web1 to run elsewhere", lambda: running_elsewhere(c, "web1", "h1"),
                        timeout=120)
        t_web1 = now() - t_dead
        web1_node = st["node"]
        check("failed over from h1" in (st.get("reason") or ""), "web1's status: %r" % st)
        st = c.wait("db1 to be fencing",
                        lambda: status(c, "db1").get("state") == "fencing" and status(c, "db1"),
                        timeout=60)
        check("still locked" in st.get("reason", ""), "db1 fencing: %r" % st)
        check(c.owner("db1") == "h1", "db1 was taken while its disk was locked: owner %r"
              % c.owner("db1"))
        h.log("db1: %s" % st["reason"])
        time.sleep(2)
        check(status(c, "db1").get("state") == "fencing" and c.owner("db1") == "h1",
              "db1 while the lock is held: %r, owner %r" % (status(c, "db1"), c.owner("db1")))
        fcntl.lockf(stray, fcntl.LOCK_UN, 4096, 0)
        stray.close()
        t_unlock = now()
        st = c.wait("db1 to run elsewhere", lambda: running_elsewhere(c, "db1", "h1"),
                        timeout=120)
        t_db1 = now() - t_unlock
        db1_node = st["node"]
        for vm, node in (("web1", web1_node), ("db1", db1_node)):
            fresh_console(c, vm, node)
            c.wait_verified(vm, node)
            check_disk_ok(c, vm, node)
        st = c.wait("scratch to be reported node-down",
                        lambda: status(c, "scratch").get("state") == "node-down"
                        and status(c, "scratch"), timeout=60)
        check("never" in st.get("reason", ""), "scratch: %r" % st)
        check(c.owner("scratch") == "h1", "scratch's owner: %r" % c.owner("scratch"))
        h.log("node death -> web1 running on %s: %.1f s (lease TTL %d s); db1 on %s "
              "%.1f s after the stray lock went" % (web1_node, t_web1, ttl, db1_node, t_db1))
        print("FAILOVER node-death-to-running web1 %.2f s, lease TTL %d s" % (t_web1, ttl))

        # 2. h1 comes back: neither web1 nor db1 runs there again
        c.agents["h1"].start()
        c.wait_nodes(3)
        c.wait("h1 to boot scratch again", lambda: status(c, "scratch").get("state")
                   == "running" and status(c, "scratch").get("node") == "h1", timeout=60)
        time.sleep(3)
        for vm in ("web1", "db1"):
            check(not vmm_alive_for(c, "h1", vm), "h1 runs %s again after coming back" % vm)
        check(c.owner("web1") == web1_node and c.owner("db1") == db1_node,
              "owners after h1 came back: %s %s" % (c.owner("web1"), c.owner("db1")))

        # 3. the node running web1 is cut off, its agent alive
        k = int(web1_node[1:])
        old_pid = vmm_alive_for(c, web1_node, "web1")
        check(old_pid, "no VMM of web1 on %s" % web1_node)
        link(c, k, "down", "mgmt0", "mig0")
        t_cut = now()
        h.log("%s cut off (mgmt0, mig0 down)" % web1_node)
        wait_fenced(h, c, web1_node, "web1", old_pid)
        t_fenced = now() - t_cut
        st = c.wait("web1 to run elsewhere after the cut",
                        lambda: running_elsewhere(c, "web1", web1_node), timeout=120)
        t_web1_cut = now() - t_cut
        new_node = st["node"]
        fresh_console(c, "web1", new_node)
        c.wait_verified("web1", new_node)
        check_disk_ok(c, "web1", new_node)
        h.log("cut -> web1's VMM fenced after %.1f s, web1 running on %s after %.1f s"
              % (t_fenced, new_node, t_web1_cut))
        print("FAILOVER cut-to-fenced %.2f s, cut-to-running %.2f s, lease TTL %d s"
              % (t_fenced, t_web1_cut, ttl))
        link(c, k, "up", "mgmt0", "mig0")
        c.wait("%s to register again" % web1_node,
                   lambda: c.get("/kvmove/nodes/" + web1_node), timeout=60)
        time.sleep(3)
        check(not vmm_alive_for(c, web1_node, "web1"),
              "%s runs web1 again after coming back" % web1_node)
        check(c.owner("web1") == new_node, "web1's owner: %r" % c.owner("web1"))
        c.wait_verified("web1", new_node)

        # 4. only the agent dies (its VMMs alive): db1's VMM fences itself
        #    once it cannot confirm the lease, and db1 boots elsewhere
        node = status(c, "db1")["node"]
        old_pid = vmm_alive_for(c, node, "db1")
        check(old_pid, "no VMM of db1 on %s" % node)
        c.agents[node].kill()
        t_kill = now()
        wait_fenced(h, c, node, "db1", old_pid)
        t_fenced = now() - t_kill
        st = c.wait("db1 to run elsewhere after its agent died",
                        lambda: running_elsewhere(c, "db1", node), timeout=120)
        fresh_console(c, "db1", st["node"])
        c.wait_verified("db1", st["node"])
        check_disk_ok(c, "db1", st["node"])
        h.log("%s's agent killed -> db1's VMM fenced after %.1f s, db1 running on %s"
              % (node, t_fenced, st["node"]))
        c.agents[node].start()

        # 5. the source dies in the middle of a hand-over: its VMM had let
        #    the owner key go ("free:TOKEN") and died before GO, so no
        #    destination can take it; the cluster boots web1 elsewhere and
        #    ends the cut migration's record
        node = status(c, "web1")["node"]
        if status(c, "scratch").get("node") != node:
            rec = c.migrate("scratch", "--to", node)
            check(rec.get("state") == "completed", "scratch to %s: %r" % (node, rec))
            c.wait_state("scratch", "running", node)
        c.agents[node].kill_node()
        other = next(n for n in sorted(c.agents) if n != node)
        mid = "m20261205000000-handov"
        ep = c.etcd.endpoints()
        etcdlib.put(ep, "/kvmove/migrations/" + mid, json.dumps(
            {"id": mid, "vm": "web1", "from": node, "to": other, "state": "running",
             "requested": time.time()}))
        etcdlib.put(ep, "/kvmove/vms/web1/owner", "free:0123456789abcdef")
        # scratch (restart never) cut the same way: it goes back to waiting
        etcdlib.put(ep, "/kvmove/vms/scratch/owner", "free:fedcba9876543210")
        t_cut = now()
        st = c.wait("web1 to run elsewhere after its hand-over was cut",
                    lambda: running_elsewhere(c, "web1", node), timeout=120)
        t_web1 = now() - t_cut
        check("failed over from %s" % node in (st.get("reason") or ""), "web1: %r" % st)
        rec = c.get_json("/kvmove/migrations/" + mid)
        check(rec["state"] == "failed" and "died" in rec.get("reason", ""),
              "the cut migration's record: %r" % rec)
        fresh_console(c, "web1", st["node"])
        c.wait_verified("web1", st["node"])
        check_disk_ok(c, "web1", st["node"])
        h.log("%s died with web1's owner key free:... -> web1 running on %s after %.1f s; "
              "record: %s" % (node, st["node"], t_web1, rec["reason"]))
        c.wait("scratch's owner key back to %s" % node, lambda: c.owner("scratch") == node,
               timeout=60)
        c.wait("scratch to be node-down", lambda: status(c, "scratch").get("state") ==
               "node-down", timeout=60)
        c.agents[node].start()
    finally:
        sampler.finish()
    h.log("lock sampler: %d samples, most holders at once: %s"
          % (sampler.samples, sampler.max_holders))
    check(sampler.samples > 100, "the lock sampler hardly ran: %d" % sampler.samples)
    for d, n in sampler.max_holders.items():
        check(n <= 1, "%s was locked by %d VMMs at once: %s" % (d, n, sampler.worst.get(d)))
        check(n == 1, "the sampler never saw a VMM hold %s (is it reading the locks?)" % d)


if __name__ == "__main__":
    kvtest.main(test)
