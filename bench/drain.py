#!/usr/bin/env python3
"""What a drain costs against moving the same VMs one by one by hand.

Three namespace hosts (scripts/kvmove-cluster.sh), a real etcd, real agents,
N verifying VMs started on h1.  For each of --reps rounds:

  1. by hand: `kvmove vm migrate VM --to h2` for each VM in turn, then
     each back to h1 the same way (the times of the h1 -> h2 moves count)
  2. the drain: `kvmove node maintenance h1 on --wait`, then `off`, and
     each VM back to h1 by hand for the next round

It reports, per round: the drain's wall time (from the command to
"drained"), the sum of the drain's own migrations' total times (the
records' total-time-ms), the wall time of the same moves made one by one
with `vm migrate` (each command start to its record completed), and what
the drain adds per VM.  Every VM is verified (two whole passes of its
memory verifier) on its new node after each phase, so a number never comes
from a broken move.

Writes bench/results/drain.csv and prints a table.  Needs root (namespaces)
and /dev/kvm.  Timings are noisy: compare within one run.

    python3 bench/drain.py --build build [--vms 4] [--mem 256M] [--rate 16] [--reps 3]
"""
import argparse
import csv
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def total_s(rec):
    return rec.get("stats", {}).get("total-time-ms", 0) / 1e3


def by_hand(kvtest, c, vms, to):
    """Each VM to `to`, one after the other: (sum of wall times, sum of
    the records' total times)."""
    wall = tot = 0.0
    for vm in vms:
        t = time.time()
        rec = c.migrate(vm, "--to", to)
        wall += time.time() - t
        if rec.get("state") != "completed":
            raise kvtest.TestFailure("vm migrate %s --to %s: %r" % (vm, to, rec))
        tot += total_s(rec)
    return wall, tot


def run(kvtest, kvcluster, args):
    h = kvtest.Harness("bench_drain")
    rows = []
    try:
        c = kvcluster.Cluster(h, hosts=3, mig_nets=1, etcd_members=1)
        c.up()
        c.wait_nodes(3)
        vms = ["v%d" % i for i in range(1, args.vms + 1)]
        for vm in vms:
            c.vm_create(vm, mem=args.mem, wss=args.wss, rate=args.rate)
            c.cli("vm", "start", vm, "--on", "h1")
        for vm in vms:
            c.wait_state(vm, "running", "h1")
            c.wait_verified(vm, "h1")
        for rnd in range(1, args.reps + 1):
            hand_wall, hand_total = by_hand(kvtest, c, vms, "h2")
            for vm in vms:
                c.wait_verified(vm, "h2")
            by_hand(kvtest, c, vms, "h1")
            for vm in vms:
                c.wait_verified(vm, "h1")

            t = time.time()
            r = c.cli("node", "maintenance", "h1", "on", "--wait", timeout=900)
            drain_wall = time.time() - t
            d = r.json
            if d.get("state") != "drained" or d.get("moved") != len(vms):
                raise kvtest.TestFailure("round %d: the drain ended %r" % (rnd, d))
            recs = [v for v in c.migrations().values() if isinstance(v, dict)
                    and v.get("drain") == d["id"] and v.get("state") == "completed"]
            drain_total = sum(total_s(v) for v in recs)
            where = {vm: c.owner(vm) for vm in vms}
            for vm in vms:
                c.wait_verified(vm, where[vm])
            c.cli("node", "maintenance", "h1", "off")
            by_hand(kvtest, c, [vm for vm in vms if where[vm] != "h1"], "h1")
            for vm in vms:
                c.wait_verified(vm, "h1")
            row = {"round": rnd, "vms": len(vms), "mem": args.mem, "rate": args.rate,
                   "drain_wall_s": round(drain_wall, 2),
                   "drain_migrations_total_s": round(drain_total, 2),
                   "by_hand_wall_s": round(hand_wall, 2),
                   "by_hand_total_s": round(hand_total, 2),
                   "drain_overhead_per_vm_s": round((drain_wall - drain_total) / len(vms), 2),
                   "destinations": " ".join("%s:%s" % (vm, where[vm]) for vm in vms)}
            rows.append(row)
            print("round %d: %s" % (rnd, row), flush=True)
    finally:
        h.cleanup()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--vms", type=int, default=4)
    ap.add_argument("--mem", default="256M")
    ap.add_argument("--wss", default="64M", help="memory each guest writes and verifies")
    ap.add_argument("--rate", type=int, default=16, help="the guest's dirtying rate parameter")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.vms < 1 or args.reps < 1:
        ap.error("--vms and --reps must be at least 1")
    b = os.path.abspath(args.build)
    os.environ.setdefault("KVMOVE_BIN", os.path.join(b, "kvmove"))
    os.environ.setdefault("KVMOVE_GUEST", os.path.join(b, "guest", "testguest.elf"))
    os.environ.setdefault("KVMOVE_BUILD", b)
    import kvcluster
    import kvtest
    rows = run(kvtest, kvcluster, args)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "drain.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = [k for k in rows[0] if k != "destinations"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[k]) for k in cols))
    if len(rows) > 1:
        print("median: drain %.2f s, its migrations %.2f s, by hand %.2f s"
              % (statistics.median(r["drain_wall_s"] for r in rows),
                 statistics.median(r["drain_migrations_total_s"] for r in rows),
                 statistics.median(r["by_hand_wall_s"] for r in rows)))
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
