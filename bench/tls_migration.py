#!/usr/bin/env python3
"""What TLS costs a migration: the same idle guest migrated in plaintext
(--insecure), with a PSK and with x509 certificates, interleaved, over
loopback and over a migration link shaped to 10 Gbit/s between two
namespace hosts (scripts/kvmove-cluster.sh).  Reports total time and
downtime per mode and the ratio TLS / plaintext (median of the runs).

    python3 bench/tls_migration.py --build build [--reps 3] [--mem 1024]

One channel (--channels 1), so that the figures show TLS alone.  Kernel TLS
offload is not available on the development host (no "tls" in
/proc/sys/net/ipv4/tcp_available_ulp); the report says which it was.
"""
import argparse
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
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import kvtest  # noqa: E402  (make_pki: certtool, as the tests make them)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def ktls():
    try:
        return "tls" in open("/proc/sys/net/ipv4/tcp_available_ulp").read().split()
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mem", type=int, default=1024, help="guest MiB (3/4 working set)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    kv = os.path.join(build, "kvmove")
    guest = os.path.join(build, "guest", "testguest.elf")
    work = tempfile.mkdtemp(prefix="kvtls-")
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   "tls-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    psk = os.path.join(work, "keys.psk")
    subprocess.run([kv, "keygen", "--identity", "bench", psk], check=True,
                   capture_output=True)
    pki = kvtest.make_pki(os.path.join(work, "pki"), "bench")
    modes = {"plaintext": None, "psk": ["--tls-psk", psk], "x509": ["--tls-creds", pki]}
    append = "wss=%dM rate=0 hb=2000 seed=1 verify_every=250" % (args.mem * 3 // 4)
    prefix = "kvtls%d" % (os.getpid() % 1000)
    rows, vms, n = [], [], [0]

    def one(link, mode, src_ns=None, dst_ns=None, dst_ip="127.0.0.1"):
        n[0] += 1
        src = vmm.Kvmove(work, "s%d" % n[0], kv, netns=src_ns, tls=modes[mode])
        dst = vmm.Kvmove(work, "d%d" % n[0], kv, netns=dst_ns, tls=modes[mode])
        vms.extend([src, dst])
        src.boot("%dM" % args.mem, guest, append)
        src.wait_ready(300)
        settle(src)
        dst.incoming(dst_ip, vmm.free_port())
        status, st = src.migrate(dst.uri, {"channels": 1}, 600)
        ok = status == "completed"
        if ok:
            wait_verified(dst, 0, 300)
        rows.append({"link": link, "mode": mode, "status": status,
                     "total_ms": st.get("total-time"), "downtime_ms": st.get("downtime")})
        log("%-9s %-9s %s total %s ms, downtime %s ms" % (link, mode, status,
                                                         st.get("total-time"), st.get("downtime")))
        for vm in (src, dst):
            vm.stop()
            vms.remove(vm)

    try:
        for rep in range(args.reps):
            for mode in modes:
                one("loopback", mode)
        r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "kvmove-cluster.sh"), "up",
                            "-p", prefix, "-n", "2", "--mig-rate", "10gbit"],
                           capture_output=True, text=True)
        if r.returncode:
            raise vmm.BenchError("kvmove-cluster.sh up: %s" % r.stderr)
        for rep in range(args.reps):
            for mode in modes:
                one("10GbE", mode, prefix + "-h1", prefix + "-h2", "10.20.0.2")
    finally:
        for vm in vms:
            vm.close()
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "kvmove-cluster.sh"), "down",
                        "-p", prefix], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    def med(link, mode, key):
        xs = [r[key] for r in rows if r["link"] == link and r["mode"] == mode
              and r["status"] == "completed" and r[key] is not None]
        return statistics.median(xs) if xs else None

    L = ["# TLS and migration time", "",
         "kvmove, one channel, %d MiB guest (%d MiB idle working set), %d runs per mode, "
         "interleaved; medians. Kernel TLS offload here: %s." % (
             args.mem, args.mem * 3 // 4, args.reps, "available" if ktls() else "not available"),
         "", "| link | mode | total ms | downtime ms | total ÷ plaintext |",
         "|---|---|---:|---:|---:|"]
    for link in ("loopback", "10GbE"):
        base = med(link, "plaintext", "total_ms")
        for mode in modes:
            t = med(link, mode, "total_ms")
            L.append("| %s | %s | %s | %s | %s |" % (
                link, mode, t, med(link, mode, "downtime_ms"),
                "%.2f" % (t / base) if t and base else "-"))
    text = "\n".join(L) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
