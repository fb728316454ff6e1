#!/usr/bin/env python3
"""Pings lost across live migrations of a VM with a disk and a NIC: one VM
ping-pongs between two namespace hosts (scripts/kvmove-cluster.sh: a
dedicated migration network, the VM network on a bridge, the disk on
shared storage) while a client pings it every 10 ms.  Per migration: the
pings lost around the switchover (icmp_seq gaps), total time, downtime and
where the downtime went (x-switchover); at the end the distribution.

    python3 bench/pingloss.py --build build [--migrations 10] [--mem 512] [--rate 32]

Results: bench/results/pingloss-<time>/report.md and runs.csv.
"""
import argparse
import collections
import csv
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmm  # noqa: E402
from run import wait_verified  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "kvmove-cluster.sh")
MAC = "52:54:00:4b:56:01"
GUEST_IP = "10.0.0.10"
IP = {1: "10.20.0.1", 2: "10.20.0.2"}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise vmm.BenchError("%s: %s" % (" ".join(argv), r.stderr.strip() or r.stdout.strip()))
    return r.stdout


def lost_pings(out):
    """(lost, sent): icmp_seq numbers missing between the first and the
    last answered (the ones in flight when the pinger stopped are not lost)."""
    seqs = sorted({int(x) for x in re.findall(r"icmp_seq=(\d+)", out)})
    m = re.search(r"(\d+) packets transmitted", out)
    if not seqs or not m:
        raise vmm.BenchError("no ping answers: %s" % out[-300:])
    have = set(seqs)
    return sum(1 for s in range(seqs[0], seqs[-1] + 1) if s not in have), int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--migrations", type=int, default=10)
    ap.add_argument("--mem", type=int, default=512, help="guest MiB (half is the working set)")
    ap.add_argument("--rate", type=int, default=32, help="guest dirty rate, MiB/s")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    kv = os.path.join(build, "kvmove")
    guest = os.path.join(build, "guest", "testguest.elf")
    work = tempfile.mkdtemp(prefix="kvping-")
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   "pingloss-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    prefix = "kp%d" % (os.getpid() % 100000)
    rows, vms, n = [], [], [0]

    def new_vm(netns):
        n[0] += 1
        vm = vmm.Kvmove(work, "v%d" % n[0], kv, netns=netns)
        vms.append(vm)
        return vm

    try:
        sh("bash", CLUSTER, "up", "-p", prefix, "-n", "2")
        disk = "/tmp/%s-cluster/shared/web1.img" % prefix
        with open(disk, "wb") as f:
            f.truncate(64 << 20)
        for host in ("h1", "h2"):
            sh("bash", CLUSTER, "tap", "-p", prefix, host, "vmtap0")
        ns = {1: prefix + "-h1", 2: prefix + "-h2"}
        client = prefix + "-client"
        at = 1
        src = new_vm(ns[at])
        src.boot("%dM" % args.mem, guest, "wss=%dM rate=%d hb=2000 seed=3 ip=%s diskrate=200 "
                 "verify_every=250" % (args.mem // 2, args.rate, GUEST_IP),
                 extra=["--disk", disk, "--net", "tap=vmtap0,mac=" + MAC])
        src.wait_ready(300)
        src.console.wait_for(r"^DISK OK ", 120, alive=src.proc.alive, what="DISK OK")
        for k in range(args.migrations + 1):
            to = 3 - at
            dst = new_vm(ns[to])
            dst.incoming(IP[to], vmm.free_port(),
                         extra=["--allow-disk", disk, "--allow-tap", "vmtap0"])
            pinger = subprocess.Popen(["ip", "netns", "exec", client, "ping", "-i", "0.01",
                                       "-W", "1", GUEST_IP], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
            time.sleep(1.0)
            status, st = src.migrate(dst.uri, {}, 600)
            time.sleep(1.0)
            pinger.send_signal(signal.SIGINT)
            pout = pinger.communicate(timeout=10)[0]
            if status != "completed":
                raise vmm.BenchError("migration %d: %s" % (k, st.get("error-desc")))
            wait_verified(dst, 0, 300)
            lost, sent = lost_pings(pout)
            sw = st.get("x-switchover", {})
            row = {"migration": k, "from": "h%d" % at, "to": "h%d" % to, "lost": lost,
                   "sent": sent, "total_ms": st.get("total-time"),
                   "downtime_ms": st.get("downtime"),
                   "last_pages_ms": round(sw.get("last-pages", 0) - sw.get("paused", 0), 2),
                   "ready_ms": round(sw.get("ready", 0), 2),
                   "resumed_ms": round(sw.get("resumed", 0), 2)}
            log("%s %d h%d -> h%d: %d of %d pings lost, total %s ms, downtime %s ms (ready "
                "%.1f, resumed %.1f ms after the pause)" % (
                    "warm-up" if k == 0 else "migration", k, at, to, lost, sent,
                    row["total_ms"], row["downtime_ms"], row["ready_ms"], row["resumed_ms"]))
            if k:
                rows.append(row)
            src.stop()
            vms.remove(src)
            src, at = dst, to
        src.console.wait_for(r"^DISK OK ", 120, start=len(src.console.snapshot()),
                             alive=src.proc.alive, what="DISK OK after the last migration")
        bad = [line for _, line in src.console.snapshot()
               if re.match(r"^(DISK (FAIL|BAD|STALL)|VERIFY (FAIL|BAD))", line)]
        if bad:
            raise vmm.BenchError("the guest reports %s" % bad[:3])
    finally:
        for vm in vms:
            vm.close()
        subprocess.run(["bash", CLUSTER, "down", "-p", prefix], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    dist = collections.Counter(r["lost"] for r in rows)
    downs = [r["downtime_ms"] for r in rows]
    L = ["# Pings lost across live migrations (disk + NIC, namespace hosts)", "",
         "%d migrations of one %d MiB guest (working set %d MiB, dirty rate %d MiB/s, disk "
         "writes 200/s) ping-ponging between two namespace hosts over the dedicated "
         "migration network; a client on the VM network pings every 10 ms. %d CPUs here."
         % (len(rows), args.mem, args.mem // 2, args.rate, os.cpu_count()), "",
         "| pings lost | migrations |", "|---:|---:|"]
    L += ["| %d | %d |" % (k, dist[k]) for k in sorted(dist)]
    L += ["", "Downtime: median %g ms (min %g, max %g). Per migration:" % (
        statistics.median(downs), min(downs), max(downs)), "",
        "| # | from → to | lost | total ms | downtime ms | last pages ms | ready ms | "
        "resumed ms |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    L += ["| %d | %s → %s | %d | %s | %s | %s | %s | %s |" % (
        r["migration"], r["from"], r["to"], r["lost"], r["total_ms"], r["downtime_ms"],
        r["last_pages_ms"], r["ready_ms"], r["resumed_ms"]) for r in rows]
    text = "\n".join(L) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
