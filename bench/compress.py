#!/usr/bin/env python3
"""Compression on shaped links (kvmove migrate --compress), side by side in
one run.  Two hosts are network namespaces (scripts/kvmove-cluster.sh), the
migration link is shaped with tc tbf (1 GbE, 10 GbE), and loopback is the
third link (no namespaces).  For each link and each guest compressibility
(the test guest's compress=PCT: 0 = no page compresses, 75 = three quarters
of every page is a run) one guest ping-pongs between the hosts with the
modes interleaved (off, auto, ...), so each pair of runs sees the same
guest and the same moment.  Per run: total time, downtime, bytes on the
wire, what auto chose, and the CPU seconds of both VMMs per GiB of RAM.

    python3 bench/compress.py --build build [--mem 1024] [--links 1gbit,10gbit,loopback]
                              [--compress 0,75] [--modes off,auto] [--reps 3] [--rate 0]

Results: bench/results/compress-<time>/report.md and runs.csv.
"""
import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmm  # noqa: E402
from run import settle, wait_verified  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30
IP = {1: "10.20.0.1", 2: "10.20.0.2"}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def cluster(verb, prefix, *extra):
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "kvmove-cluster.sh"), verb,
                        "-p", prefix] + list(extra), capture_output=True, text=True)
    if r.returncode and verb == "up":
        raise vmm.BenchError("kvmove-cluster.sh up: %s" % r.stderr.strip())


def shape(prefix, rate):
    for h in ("h1", "h2"):
        subprocess.run(["ip", "netns", "exec", "%s-%s" % (prefix, h), "tc", "qdisc", "replace",
                        "dev", "mig0", "root", "tbf", "rate", rate, "burst", "1mb",
                        "latency", "50ms"], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--mem", type=int, default=1024, help="guest MiB (3/4 working set)")
    ap.add_argument("--links", default="1gbit,10gbit,loopback")
    ap.add_argument("--compress", default="0,75", help="guest compress= values")
    ap.add_argument("--modes", default="off,auto")
    ap.add_argument("--rate", type=int, default=0, help="guest dirty rate, MiB/s")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    kv = os.path.join(build, "kvmove")
    guest = os.path.join(build, "guest", "testguest.elf")
    work = tempfile.mkdtemp(prefix="kvz-")
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   "compress-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    modes = args.modes.split(",")
    prefix = "kz%d" % (os.getpid() % 100000)
    links = args.links.split(",")
    rows, vms, n = [], [], [0]
    up = False

    def new_vm(netns):
        n[0] += 1
        vm = vmm.Kvmove(work, "v%d" % n[0], kv, netns=netns)
        vms.append(vm)
        return vm

    try:
        if any(l != "loopback" for l in links):
            cluster("up", prefix, "-n", "2", "--mig-rate", "10gbit")
            up = True
        for link in links:
            ns = {1: None, 2: None} if link == "loopback" else \
                {1: prefix + "-h1", 2: prefix + "-h2"}
            ip = {1: "127.0.0.1", 2: "127.0.0.1"} if link == "loopback" else IP
            if link != "loopback":
                shape(prefix, link)
            for pct in [int(p) for p in args.compress.split(",")]:
                at = 1
                src = new_vm(ns[at])
                src.boot("%dM" % args.mem, guest, "wss=%dM rate=%d hb=2000 seed=1 "
                         "verify_every=250 compress=%d" % (args.mem * 3 // 4, args.rate, pct))
                src.wait_ready(300)
                settle(src)
                for rep in range(args.reps + 1):
                    for mode in modes:
                        if rep == 0 and mode != modes[0]:
                            continue    # one warm-up: a VM's first migration is slower here
                        to = 3 - at
                        dst = new_vm(ns[to])
                        dst.incoming(ip[to], vmm.free_port())
                        settle(src)
                        c0 = src.proc.cpu_s()
                        status, st = src.migrate(dst.uri, {"compress": mode, "downtime-ms": 300},
                                                 1800)
                        cpu = src.proc.cpu_s() - c0 + dst.proc.cpu_s()
                        if status != "completed":
                            raise vmm.BenchError("%s %s compress=%d: %s" % (
                                link, mode, pct, st.get("error-desc")))
                        wait_verified(dst, 0, 300)
                        c = st.get("compression", {})
                        row = {"link": link, "compress": pct, "mode": mode, "rep": rep,
                               "total_ms": st.get("total-time"),
                               "downtime_ms": st.get("downtime"),
                               "wire_mib": round(st["ram"]["transferred"] / (1 << 20), 1),
                               "lz4": c.get("x-lz4-pages", 0), "zstd": c.get("x-zstd-pages", 0),
                               "raw": c.get("x-raw-pages", 0),
                               "compress_ms": c.get("x-compress-ms", 0),
                               "cpu_s_per_gib": round(cpu / (args.mem / 1024), 2)}
                        log("%-8s compress=%-3d %-4s %s: total %s ms, downtime %s ms, %s MiB, "
                            "lz4 %s zstd %s raw %s, CPU %s s/GiB" % (
                                link, pct, mode, "warm-up" if rep == 0 else "rep %d" % rep,
                                row["total_ms"], row["downtime_ms"], row["wire_mib"],
                                row["lz4"], row["zstd"], row["raw"], row["cpu_s_per_gib"]))
                        if rep:
                            rows.append(row)
                        src.stop()
                        vms.remove(src)
                        src, at = dst, to
                src.stop()
                vms.remove(src)
    finally:
        for vm in vms:
            vm.close()
        if up:
            cluster("down", prefix)
        shutil.rmtree(work, ignore_errors=True)

    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["link"])
        w.writeheader()
        w.writerows(rows)

    def med(link, pct, mode, key):
        xs = [r[key] for r in rows if r["link"] == link and r["compress"] == pct
              and r["mode"] == mode and r[key] is not None]
        return (statistics.median(xs), min(xs), max(xs)) if xs else None

    def fmt(v):
        return "%g (%g–%g)" % v if v else "-"

    L = ["# Compression on shaped links", "",
         "kvmove, %d MiB guest (%d MiB working set, dirty rate %d MiB/s), %d runs per point "
         "after a warm-up, modes interleaved on one guest ping-ponging between two "
         "namespace hosts (loopback: on the host); median (min–max). Links shaped with "
         "tc tbf. %d CPUs here." % (args.mem, args.mem * 3 // 4, args.rate, args.reps,
                                    os.cpu_count()),
         "", "| link | guest compress= | mode | total ms | downtime ms | MiB on the wire | "
         "pages lz4 / zstd / raw (median) | CPU s per GiB | total ÷ off |",
         "|---|---:|---|---:|---:|---:|---|---:|---:|"]
    for link in links:
        for pct in sorted({r["compress"] for r in rows}):
            base = med(link, pct, modes[0], "total_ms")
            for mode in modes:
                t = med(link, pct, mode, "total_ms")
                pages = [med(link, pct, mode, k) for k in ("lz4", "zstd", "raw")]
                L.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                    link, pct, mode, fmt(t), fmt(med(link, pct, mode, "downtime_ms")),
                    fmt(med(link, pct, mode, "wire_mib")),
                    " / ".join("%d" % p[0] if p else "-" for p in pages),
                    fmt(med(link, pct, mode, "cpu_s_per_gib")),
                    "%.2f" % (t[0] / base[0]) if t and base else "-"))
    text = "\n".join(L) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
