#!/usr/bin/env python3
"""How the cluster's control plane scales with its size.

For each cluster size N (default 4, 16, 64): two namespace hosts that run a
small verifying VM and migrate it (h1, h2 of scripts/kvmove-cluster.sh), and
N - 2 more agents that only register (each its own node name and run
directory, in this namespace, no migration network: no VMs needed), all on
one real etcd of three members.  It reports:

  - registration: from starting the agents to N node keys in etcd
  - etcd load with the cluster idle for --idle seconds: requests per second
    (ranges summed over the members, puts/txns/deletes/lease renewals as one
    member applied them) and the etcd processes' CPU use
  - request to first byte: from the start of `kvmove vm migrate web1 --to hX`
    to the moment the source VMM was told to migrate (the record's
    "issued"), plus that VMM's setup time (handshake) = the first byte of
    guest memory on the wire; --reps migrations per size, h1 <-> h2

Writes bench/results/cluster_scale.csv and prints a table.  Needs root
(namespaces) and /dev/kvm.  Timings are noisy: compare sizes within one run.

    python3 bench/cluster_scale.py --build build [--sizes 4,16,64] [--reps 3]
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def metrics(url):
    out = {}
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, val = line.rsplit(" ", 1)
            try:
                out[name] = float(val)
            except ValueError:
                pass
    return out


def load(urls):
    """Counters summed the way the table reads them."""
    ms = [metrics(u) for u in urls]
    first = ms[0]
    return {
        "range": sum(m.get("etcd_mvcc_range_total", 0) for m in ms),
        "put": first.get("etcd_mvcc_put_total", 0),
        "txn": first.get("etcd_mvcc_txn_total", 0),
        "delete": first.get("etcd_mvcc_delete_total", 0),
        # only the leader renews leases: the sum is the cluster's
        "renew": sum(m.get("etcd_debugging_lease_renewed_total", 0) for m in ms),
        "cpu": sum(m.get("process_cpu_seconds_total", 0) for m in ms),
    }


def one_size(kvtest, kvcluster, n, reps, idle):
    h = kvtest.Harness("cluster_scale_%d" % n)
    try:
        c = kvcluster.Cluster(h, hosts=2, mig_nets=1)
        c.up(start_agents=False)
        extra = []
        for k in range(3, n + 1):
            a = kvcluster.Agent(c, k)
            a.name = "d%d" % k
            a.argv = (lambda a=a: [h.kvmove, "agent", "--name", a.name, "--etcd", c.endpoints,
                                   "--run-dir", a.run_dir, "--lease-ttl", str(c.lease_ttl),
                                   "--insecure"])
            extra.append(a)
        t0 = time.time()
        for a in list(c.agents.values()) + extra:
            a.start()
        c.agents.update({a.name: a for a in extra})
        c.wait_nodes(n, timeout=300)
        t_reg = time.time() - t0
        urls = c.etcd.endpoints().split(",")
        time.sleep(3)   # let the start-up burst settle
        before, tb = load(urls), time.time()
        time.sleep(idle)
        after, ta = load(urls), time.time()
        rate = {k: (after[k] - before[k]) / (ta - tb) for k in before}

        c.vm_create("web1", mem="128M", wss="16M", rate=4)
        c.cli("vm", "start", "web1", "--on", "h1")
        c.wait_state("web1", "running", "h1")
        c.wait_verified("web1", "h1")
        firsts, issued, starts = [], [], []
        for i in range(reps):
            to = "h2" if i % 2 == 0 else "h1"
            t = time.time()
            rec = c.migrate("web1", "--to", to)
            if rec.get("state") != "completed":
                raise kvtest.TestFailure("migration %d: %r" % (i, rec))
            iss = rec["issued"] - t
            issued.append(iss * 1000)
            starts.append((rec["started"] - t) * 1000)
            firsts.append(iss * 1000 + rec["stats"]["setup-time-ms"])
            c.wait_verified("web1", to)
        return {"nodes": n, "register_s": round(t_reg, 2),
                "etcd_req_per_s": round(rate["range"] + rate["put"] + rate["txn"] +
                                        rate["delete"] + rate["renew"], 1),
                "range_per_s": round(rate["range"], 1), "put_per_s": round(rate["put"], 2),
                "renew_per_s": round(rate["renew"], 2),
                "etcd_cpu_pct": round(rate["cpu"] * 100, 1),
                "to_slots_ms_median": round(statistics.median(starts), 1),
                "to_issue_ms_median": round(statistics.median(issued), 1),
                "to_first_byte_ms_median": round(statistics.median(firsts), 1),
                "to_first_byte_ms_all": " ".join("%.0f" % f for f in firsts),
                "to_slots_ms_all": " ".join("%.0f" % f for f in starts)}
    finally:
        h.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--sizes", default="4,16,64")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    b = os.path.abspath(args.build)
    os.environ.setdefault("KVMOVE_BIN", os.path.join(b, "kvmove"))
    os.environ.setdefault("KVMOVE_GUEST", os.path.join(b, "guest", "testguest.elf"))
    os.environ.setdefault("KVMOVE_BUILD", b)
    import kvcluster
    import kvtest
    rows = [one_size(kvtest, kvcluster, int(n), args.reps, args.idle)
            for n in args.sizes.split(",")]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "cluster_scale.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[k]) for k in cols))
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
