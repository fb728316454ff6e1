#!/usr/bin/env python3
"""Same-host hand-over (kvmove migrate --to unix:PATH), the way to upgrade
kvmove under a running VM: downtime at several RAM sizes, where it goes
(x-switchover), what the guest felt (heartbeat gap), and, for contrast, a
live migration over loopback TCP of the same guest (2 channels, plaintext).

    python3 bench/upgrade.py --build build [--sizes 1024,4096,8192] [--reps 5]

Per size: one guest (3/4 of RAM its working set, dirtying at --rate MiB/s,
verifying its memory), handed from VMM to VMM --reps times, each new VMM
verifying the guest's memory before the next hand-over; then one live
migration.  Results: bench/results/upgrade-<time>/report.md and runs.csv.
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
from run import HB_US, heartbeat_gap, settle, wait_verified  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("paused", "last-pages", "state-sent", "ready", "released", "resumed")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def steps_ms(st):
    """x-switchover's cumulative marks -> each step's own ms."""
    sw, prev, out = st.get("x-switchover") or {}, 0.0, {}
    for k in STEPS:
        if k in sw:
            out[k] = round(sw[k] - prev, 2)
            prev = sw[k]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="1024,4096,8192", help="guest RAM, MiB")
    ap.add_argument("--rate", type=int, default=32, help="guest dirty rate, MiB/s")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-live", action="store_true", help="skip the live migrations")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    kv = os.path.join(build, "kvmove")
    guest = os.path.join(build, "guest", "testguest.elf")
    work = tempfile.mkdtemp(prefix="kvup-")
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   "upgrade-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    rows, vms, n = [], [], [0]

    def new_vm():
        n[0] += 1
        vm = vmm.Kvmove(work, "v%d" % n[0], kv)
        vms.append(vm)
        return vm

    def one(src, dst, kind, size, rep, params):
        mark = len(src.console)
        c0 = src.proc.cpu_s()
        status, st = src.migrate(dst.uri, params, 900)
        if status != "completed":
            raise vmm.BenchError("%s: %s" % (kind, st.get("error-desc")))
        cpu = src.proc.cpu_s() - c0
        wait_verified(dst, 0, 600)
        gap, _, seq_ok = heartbeat_gap(src.console, mark, dst.console)
        row = {"kind": kind, "mem_mib": size, "rep": rep, "total_ms": st.get("total-time"),
               "downtime_ms": st.get("downtime"), "felt_ms": round(gap, 1) if gap else None,
               "hb_seq_ok": seq_ok, "socket_bytes": st.get("ram", {}).get("transferred"),
               "source_cpu_s": round(cpu, 3),
               "dest_load_ms": round(st.get("x-destination-load-ms", 0), 2)}
        row.update({"sw_" + k.replace("-", "_"): v for k, v in steps_ms(st).items()})
        rows.append(row)
        log("%5d MiB %-5s #%d: downtime %s ms (felt %s), total %s ms, %s bytes; steps %s" % (
            size, kind, rep, row["downtime_ms"], row["felt_ms"], row["total_ms"],
            row["socket_bytes"], steps_ms(st)))

    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            src = new_vm()
            src.boot("%dM" % size, guest, "wss=%dM rate=%d hb=%d seed=1 verify_every=250"
                     % (size * 3 // 4, args.rate, HB_US))
            src.wait_ready(900)
            for rep in range(1, args.reps + 1):
                settle(src, 300)
                dst = new_vm()
                dst.incoming_local(os.path.join(work, "h%d.sock" % n[0]))
                one(src, dst, "local", size, rep, {})
                src.stop()
                vms.remove(src)
                src = dst
            if not args.no_live:
                settle(src, 300)
                dst = new_vm()
                dst.incoming("127.0.0.1", vmm.free_port())
                one(src, dst, "live", size, 1, {"channels": 2})
                src.stop()
                vms.remove(src)
                src = dst
            src.stop()
            vms.remove(src)
    finally:
        for vm in vms:
            vm.close()
        shutil.rmtree(work, ignore_errors=True)

    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    def stat(kind, size, key):
        xs = [r[key] for r in rows if r["kind"] == kind and r["mem_mib"] == size
              and r.get(key) is not None]
        return (statistics.median(xs), min(xs), max(xs)) if xs else None

    def fmt(v):
        if not v:
            return "-"
        return ("%d (%d–%d)" if all(isinstance(x, int) for x in v) else "%g (%g–%g)") % v

    sizes = sorted({r["mem_mib"] for r in rows})
    L = ["# Same-host hand-over", "",
         "kvmove migrate --to unix:PATH, guest RAM 3/4 working set dirtying %d MiB/s, "
         "%d hand-overs per size on one guest, each new VMM verifying all of the guest's "
         "memory; median (min–max). Live: one loopback TCP migration of the same guest "
         "(2 channels, plaintext). %d CPUs here." % (args.rate, args.reps, os.cpu_count()),
         "", "| RAM MiB | kind | downtime ms | felt ms (heartbeat gap) | total ms "
         "| bytes over the socket |", "|---:|---|---:|---:|---:|---:|"]
    for size in sizes:
        for kind in ("local", "live"):
            if stat(kind, size, "total_ms"):
                L.append("| %d | %s | %s | %s | %s | %s |" % (
                    size, kind, fmt(stat(kind, size, "downtime_ms")),
                    fmt(stat(kind, size, "felt_ms")), fmt(stat(kind, size, "total_ms")),
                    fmt(stat(kind, size, "socket_bytes"))))
    L += ["", "Where a hand-over's downtime goes (median ms per step, x-switchover):", "",
          "| RAM MiB | " + " | ".join(STEPS) + " | destination load |",
          "|---:|" + "---:|" * (len(STEPS) + 1)]
    for size in sizes:
        cells = [stat("local", size, "sw_" + k.replace("-", "_")) for k in STEPS]
        L.append("| %d | %s | %s |" % (size, " | ".join("%g" % c[0] if c else "-"
                                                           for c in cells),
                                        "%g" % stat("local", size, "dest_load_ms")[0]))
    text = "\n".join(L) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
