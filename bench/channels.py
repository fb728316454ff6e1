#!/usr/bin/env python3
"""RAM over 1, 2 and 4 channels (kvmove migrate --channels N), side by side
in one run: one guest, migrated from VMM to VMM (ping-pong) with the channel
counts interleaved, at a few dirty rates.  Per run: total time, downtime,
guest-felt downtime is not measured here (bench/run.py does), and the CPU
seconds both VMMs spent per GiB moved.  Plaintext (--insecure) by default,
as QEMU migrates; --tls x509 for certificates.

    python3 bench/channels.py --build build [--mem 2048] [--rates 0,128] [--reps 3]

Results: bench/results/channels-<time>/report.md (and the runs as CSV).
"""
import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmm  # noqa: E402
from run import settle, wait_verified  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--mem", type=int, default=2048, help="guest MiB (3/4 working set)")
    ap.add_argument("--rates", default="0,128", help="guest dirty rates, MiB/s")
    ap.add_argument("--channels", default="1,2,4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    kv = os.path.join(build, "kvmove")
    guest = os.path.join(build, "guest", "testguest.elf")
    work = tempfile.mkdtemp(prefix="kvch-")
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   "channels-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    chans = [int(c) for c in args.channels.split(",")]
    rows, vms, n = [], [], [0]

    def new_vm():
        n[0] += 1
        vm = vmm.Kvmove(work, "v%d" % n[0], kv)
        vms.append(vm)
        return vm

    try:
        for rate in [int(r) for r in args.rates.split(",")]:
            src = new_vm()
            src.boot("%dM" % args.mem, guest, "wss=%dM rate=%d hb=2000 seed=1 verify_every=250"
                     % (args.mem * 3 // 4, rate))
            src.wait_ready(300)
            # not counted: a VM's first migration after boot is slower on
            # this kind of host (its first dirty-log start), whatever the count
            settle(src)
            dst = new_vm()
            dst.incoming("127.0.0.1", vmm.free_port())
            status, st = src.migrate(dst.uri, {}, 600)
            if status != "completed":
                raise vmm.BenchError("warm-up migration: %s" % st.get("error-desc"))
            log("warm-up migration: total %s ms (not counted)" % st.get("total-time"))
            src.stop()
            vms.remove(src)
            src = dst
            for rep in range(args.reps):
                for ch in chans:
                    settle(src)
                    dst = new_vm()
                    dst.incoming("127.0.0.1", vmm.free_port())
                    c0 = src.proc.cpu_s()
                    status, st = src.migrate(dst.uri, {"channels": ch, "downtime-ms": 300}, 600)
                    cpu = src.proc.cpu_s() - c0 + dst.proc.cpu_s()
                    ok = status == "completed"
                    if ok:
                        wait_verified(dst, 0, 300)
                    moved = st.get("ram", {}).get("transferred", 0)
                    row = {"rate": rate, "channels": ch, "rep": rep + 1, "status": status,
                           "total_ms": st.get("total-time"), "downtime_ms": st.get("downtime"),
                           "mib": round(moved / (1 << 20)),
                           "cpu_s_per_gib": round(cpu / (moved / GIB), 2) if moved else None}
                    rows.append(row)
                    log("rate %3d, %d channel(s): %s total %s ms, downtime %s ms, %s MiB, "
                        "%s CPU s/GiB" % (rate, ch, status, row["total_ms"], row["downtime_ms"],
                                          row["mib"], row["cpu_s_per_gib"]))
                    if not ok:
                        dst.close()
                        vms.remove(dst)
                        continue
                    src.stop()
                    vms.remove(src)
                    src = dst
            src.stop()
            vms.remove(src)
    finally:
        for vm in vms:
            vm.close()
        shutil.rmtree(work, ignore_errors=True)

    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["rate"])
        w.writeheader()
        w.writerows(rows)

    def med(rate, ch, key):
        xs = [r[key] for r in rows if r["rate"] == rate and r["channels"] == ch
              and r["status"] == "completed" and r[key] is not None]
        return (statistics.median(xs), min(xs), max(xs)) if xs else None

    def fmt(v):
        return "%g (%g–%g)" % v if v else "-"

    L = ["# Channels", "",
         "kvmove, %d MiB guest (%d MiB working set), loopback, plaintext, %d runs per "
         "point, channel counts interleaved on one guest; median (min–max). %d CPUs here." % (
             args.mem, args.mem * 3 // 4, args.reps, os.cpu_count()),
         "", "| dirty MiB/s | channels | total ms | downtime ms | CPU s per GiB (both VMMs) "
         "| total ÷ 1 channel |", "|---:|---:|---:|---:|---:|---:|"]
    for rate in sorted({r["rate"] for r in rows}):
        base = med(rate, chans[0], "total_ms")
        for ch in chans:
            t = med(rate, ch, "total_ms")
            L.append("| %d | %d | %s | %s | %s | %s |" % (
                rate, ch, fmt(t), fmt(med(rate, ch, "downtime_ms")),
                fmt(med(rate, ch, "cpu_s_per_gib")),
                "%.2f" % (t[0] / base[0]) if t and base else "-"))
    text = "\n".join(L) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
