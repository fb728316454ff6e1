#!/usr/bin/env python3
"""kvmove vs QEMU: live migration of the same test guest, measured in the
same run on the same machine.  `make bench` runs the full configuration,
`make bench-smoke` a tiny one (used by a test).

    bench/run.py [--build DIR] [--smoke] [--out DIR] [--no-docs] [--keep]
                 [--sizes 1,4,8] [--rates 0,32,128,512] [--reps 1:3,4:2,8:1]
                 [--no-link] [--no-qemu] [--wait-quiet SEC]

Writes OUT/results.csv, OUT/report.md and OUT/*.png (default OUT:
bench/results/<timestamp>/); a full run also copies the report to
docs/benchmarks.md and its plots to docs/benchmarks/.  Exit status: 0 when
every run gave a verified data point or a clean "did not converge"; 1 when
a guest verifier failed, a VMM crashed or a run could not be measured.

Python 3 standard library only, plus cc (bench/physical.c) and gnuplot.
"""

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmm                                          # noqa: E402
from vmm import BenchError, QMPError, now          # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GIB = 1 << 30
MIB = 1 << 20
HB_US = 2000
VERIFY_MS = 250
MAX_ROUNDS = 30
QEMU_UNLIMITED = 1 << 40          # "max-bandwidth" for "unlimited" (1 TiB/s)

# The configurations compared.  kvmove: its defaults, and QEMU's downtime
# target; QEMU: its defaults (read from the VMM and reported), bandwidth
# unlimited, and that plus multifd with 2 channels.
CONFIGS = [
    ("kvmove-default", "kvmove"),
    ("qemu-default", "qemu"),
    ("kvmove-300ms", "kvmove"),
    ("kvmove-2ch", "kvmove"),
    ("kvmove-4ch", "kvmove"),
    ("qemu-tuned", "qemu"),
    ("qemu-multifd", "qemu"),
]
CHANNELS = {"kvmove-2ch": 2, "kvmove-4ch": 4}   # --channels; the rest: the default
CONFIG_NOTES = {}                 # filled in once QEMU's defaults are known

FIELDS = ["section", "vmm", "config", "mem_gib", "wss_mib", "rate_set", "rep", "hop", "link",
          "mode", "status", "converged", "verified", "error", "total_ms", "downtime_ms",
          "hb_gap_ms", "guest_gap_ms", "hb_seq_ok", "transferred", "normal_bytes",
          "zero_pages", "rounds", "throttle", "rate_before", "rate_mig", "src_cpu_s",
          "dst_cpu_s", "src_rss_mib", "dst_rss_mib", "limit_ms", "phys_ratio", "wall_s",
          "pred_total_ms", "pred_downtime_ms", "pred_rounds", "time"]


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def wss_for(mem_mib):
    return mem_mib * 3 // 4                      # ~75 % of RAM


def size_str(mib):
    return "%dG" % (mib // 1024) if mib % 1024 == 0 else "%dM" % mib


def guest_append(wss_mib, rate):
    return "wss=%s rate=%d hb=%d seed=1 verify_every=%d" % (size_str(wss_mib), rate, HB_US,
                                                          VERIFY_MS)


# --------------------------------------------------------------------------
# Measurements from a guest's console
# --------------------------------------------------------------------------

def verify_points(console, start=0, end_t=None):
    """[(t, writes, passes)] of cpu 0's VERIFY OK lines."""
    out = []
    for t, text in console.snapshot(start):
        m = vmm.RX_VERIFY_OK.match(text)
        if m and m.group(2) == "0" and (end_t is None or t <= end_t):
            out.append((t, int(m.group(4)), int(m.group(1))))
    return out


def rate_between(points):
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) * 4096 / MIB / (points[-1][0] - points[0][0])


def heartbeat_gap(src_console, src_start, dst_console):
    """Guest-observed downtime: host arrival time of the last heartbeat the
    source printed to the first the destination printed (a line the
    switchover cut in two is completed on the destination).  Returns
    (gap_ms, guest_gap_ms, seq_ok)."""
    src = src_console.snapshot(src_start)
    dst = dst_console.snapshot()
    if src_console.partial and dst:
        t, text = dst[0]
        dst[0] = (t, src_console.partial.decode("utf-8", "replace") + text)
    last = first = None
    for t, text in src:
        m = vmm.RX_HB.match(text)
        if m:
            last = (t, int(m.group(1)), int(m.group(2)))
    for t, text in dst:
        m = vmm.RX_HB.match(text)
        if m:
            first = (t, int(m.group(1)), int(m.group(2)))
            break
    if not last or not first:
        return None, None, False
    return ((first[0] - last[0]) * 1000, (first[2] - last[2]) / 1000,
            first[1] == last[1] + 1)


def wait_verified(vm, start, timeout):
    """A whole verifier pass began after console line `start`: a VERIFY OK
    line, then one at least two passes later.  Raises on VERIFY FAIL/BAD."""
    i, _, m = vm.console.wait_for(vmm.RX_VERIFY_OK, timeout, start=start,
                                  alive=vm.proc.alive, what="VERIFY OK")
    first = int(m.group(1))
    while True:
        i, _, m = vm.console.wait_for(vmm.RX_VERIFY_OK, timeout, start=i + 1,
                                      alive=vm.proc.alive, what="a later VERIFY OK")
        if int(m.group(1)) >= first + 2:
            return i


def settle(vm, timeout=60):
    """Two fresh VERIFY OK lines (the guest runs, in steady state); returns
    the console index of the first (the anchor for the dirty rate)."""
    n = len(vm.console)
    i, _, _ = vm.console.wait_for(vmm.RX_VERIFY_OK, timeout, start=n, alive=vm.proc.alive,
                                  what="VERIFY OK")
    vm.console.wait_for(vmm.RX_VERIFY_OK, timeout, start=i + 1, alive=vm.proc.alive,
                        what="VERIFY OK")
    return i


# --------------------------------------------------------------------------
# The bench: owns every process, namespace and file it makes
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.kvmove = os.path.join(self.build, "kvmove")
        self.guest = os.path.join(self.build, "guest", "testguest.elf")
        for p in (self.kvmove, self.guest):
            if not os.path.exists(p):
                raise SystemExit("bench: %s does not exist (build first: make)" % p)
        self.qemu = None if args.no_qemu else shutil.which("qemu-system-x86_64")
        self.work = tempfile.mkdtemp(prefix="kvmove-bench-")
        self.vms = []
        self.cluster = None
        self.rows = []
        self.failures = []
        self.n = 0
        self.phys = {}
        self.qemu_defaults = {}
        self.host = {}

    # ---- bookkeeping ----

    def new_vm(self, cls, *a, **kw):
        self.n += 1
        vm = cls(self.work, "%s-%d" % (cls.kind, self.n), *a, **kw)
        self.vms.append(vm)
        return vm

    def drop(self, vm, quit=False):
        if vm is None:
            return
        if quit:
            vm.stop()
        else:
            vm.close()
        if vm in self.vms:
            self.vms.remove(vm)
        shutil.rmtree(vm.dir, ignore_errors=True)

    def keep_evidence(self, tag, *vms):
        """Copy the consoles and VMM logs of a failed run into the results."""
        d = os.path.join(self.args.out, "failures", tag)
        os.makedirs(d, exist_ok=True)
        for vm in vms:
            if vm is None:
                continue
            for f in ("console.log", "vmm.log"):
                p = os.path.join(vm.dir, f)
                if os.path.exists(p):
                    shutil.copy(p, os.path.join(d, "%s.%s" % (vm.name, f)))

    def cleanup(self):
        for vm in list(self.vms):
            try:
                vm.close()
            except Exception as e:                      # keep cleaning
                log("cleanup %s: %s" % (vm.name, e))
        self.vms = []
        if self.cluster:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "kvmove-cluster.sh"), "down",
                            "-p", self.cluster], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.cluster = None
        if self.args.keep:
            log("keeping %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def record(self, row):
        row.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.rows.append(row)
        with open(os.path.join(self.args.out, "results.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            w.writeheader()
            for r in self.rows:
                w.writerow(r)
        log("  %s %s %s rate=%s %s: %s total %s ms, downtime %s ms, felt %s ms, %s MiB, "
            "rounds %s, rate %s MiB/s%s"
            % (row.get("section"), row.get("vmm"), row.get("config"), row.get("rate_set"),
               size_str(row.get("mem_gib", 0) * 1024) if row.get("mem_gib") else "",
               row.get("status"), row.get("total_ms"), row.get("downtime_ms"),
               fmt(row.get("hb_gap_ms")), fmt((row.get("transferred") or 0) / MIB),
               row.get("rounds"), fmt(row.get("rate_mig")),
               (" ERROR " + row["error"]) if row.get("error") else ""))

    # ---- physical reference ----

    def physical(self):
        exe = os.path.join(self.work, "physical")
        subprocess.run(["cc", "-std=c11", "-O2", "-o", exe, os.path.join(HERE, "physical.c")],
                       check=True)
        self.physical_exe = exe
        mib_tcp = 512 if self.args.smoke else 4096
        vals = {}
        for _ in range(1 if self.args.smoke else 3):
            for mode, arg in (("memcpy", "256"), ("touch", "512"), ("tcp", str(mib_tcp))):
                out = subprocess.run([exe, mode, arg], check=True, capture_output=True,
                                     text=True).stdout
                for line in out.split():
                    k, _, v = line.partition("=")
                    vals.setdefault(k, []).append(float(v))
        self.phys = {k: max(v) for k, v in vals.items()}     # best of the tries
        log("physical: loopback TCP %.0f MiB/s, memcpy %.0f MiB/s, first-touch copy into "
            "memfd %.0f MiB/s, into anonymous THP memory %.0f MiB/s"
            % (self.phys["tcp_mibps"], self.phys["memcpy_mibps"],
               self.phys["memfd_first_touch_mibps"], self.phys["anon_thp_first_touch_mibps"]))

    def limit_ms(self, normal_bytes, mibps=None):
        mibps = mibps or self.phys.get("tcp_mibps")
        if not mibps or normal_bytes is None:
            return None
        return normal_bytes / MIB / mibps * 1000

    # ---- one migration ----

    def qemu_params(self, config):
        d = self.qemu_defaults
        if config == "qemu-default":
            return [], {"max-bandwidth": d["max-bandwidth"], "downtime-limit": d["downtime-limit"]}
        p = {"max-bandwidth": QEMU_UNLIMITED, "downtime-limit": d["downtime-limit"]}
        if config == "qemu-multifd":
            return ["multifd"], dict(p, **{"multifd-channels": 2})
        return [], p

    def timeout_for(self, wss_mib, config, link_mibps=None):
        bw = 128.0 if config == "qemu-default" else 300.0
        if link_mibps:
            bw = min(bw, link_mibps)
        return 30 + 3 * wss_mib / bw

    def migrate(self, src, config, info, host="127.0.0.1", dst_netns=None, via=None,
                link_mibps=None):
        """Migrate src's guest to a new destination VMM; returns (row,
        new VM running the guest).  On failure the guest stays on src
        (the row says why) unless the VMM died."""
        wss = info["wss_mib"]
        port = vmm.free_port()
        row = dict(info, vmm=src.kind, config=config, hop=getattr(src, "hops", 0))
        dst = None
        try:
            anchor = settle(src)
            mark = len(src.console)
            if src.kind == "kvmove":
                dst = self.new_vm(vmm.Kvmove, self.kvmove, netns=dst_netns)
                dst.incoming(host, port, via=via)
            else:
                caps, params = self.qemu_params(config)
                dst = self.new_vm(vmm.Qemu, self.qemu, netns=dst_netns)
                dst.incoming(src, host, port, {"multifd": bool(caps)},
                             {k: v for k, v in params.items() if k == "multifd-channels"})
            c_src, c_dst = src.proc.cpu_s(), dst.proc.cpu_s()
            t0 = now()
            timeout = self.timeout_for(wss, config, link_mibps)
            if src.kind == "kvmove":
                params = {"downtime-ms": 100 if config == "kvmove-default" else 300}
                # the channel count: named, or the default (2 on a 2-CPU host)
                if config in CHANNELS:
                    params["channels"] = CHANNELS[config]
                if via:
                    params["via"] = via
                status, st = src.migrate(dst.uri, params, timeout)
            else:
                caps, params = self.qemu_params(config)
                status, st = src.migrate(dst.uri, {"multifd": bool(caps)}, params, timeout,
                                         MAX_ROUNDS)
            wall = now() - t0
        except (BenchError, QMPError, OSError) as e:
            row.update(status="error", converged="", verified="", error=str(e)[:300])
            self.failures.append("%s %s: %s" % (config, info, e))
            self.keep_evidence("run%d" % len(self.rows), src, dst)
            self.drop(dst)
            self.record(row)
            return row, (src if src.proc.alive() else None)
        ram = st.get("ram", {})
        row.update(status=status, converged="yes" if status == "completed" else "no",
                   error=st.get("error-desc", "")[:300], total_ms=st.get("total-time"),
                   downtime_ms=st.get("downtime"), transferred=ram.get("transferred"),
                   normal_bytes=ram.get("normal-bytes"), zero_pages=ram.get("duplicate"),
                   rounds=ram.get("dirty-sync-count"),
                   throttle=st.get("cpu-throttle-percentage", 0), wall_s=round(wall, 3))
        # kvmove predicts every migration from its first pass (x-prediction):
        # the report compares that with what happened
        pred = (st.get("x-prediction") or {}).get("policies", {}).get(st.get("x-policy"))
        if pred and pred.get("converges"):
            row.update(pred_total_ms=pred.get("total-time"),
                       pred_downtime_ms=pred.get("downtime"), pred_rounds=pred.get("rounds"))
        if status != "completed":
            # the guest keeps running on the source: its verifier must agree
            self.drop(dst)
            try:
                wait_verified(src, len(src.console), 120)
                row["verified"] = "source"
            except BenchError as e:
                row.update(verified="FAIL", error=str(e)[:300])
                self.failures.append("%s %s: after a failed migration: %s" % (config, info, e))
                self.keep_evidence("run%d" % len(self.rows), src)
            self.record(row)
            return row, src
        # completed: the source is done; both wait in postmigrate for a quit
        # (CPU and RSS are read before it, like QEMU's)
        row["src_cpu_s"] = round(src.proc.cpu_s() - c_src, 3)
        row["dst_cpu_s"] = round(dst.proc.cpu_s() - c_dst, 3)
        row["src_rss_mib"] = round(src.proc.hwm_mib() or 0)
        row["dst_rss_mib"] = round(dst.proc.hwm_mib() or 0)
        try:
            i = wait_verified(dst, 0, 120 + wss / 256)
            row["verified"] = "yes"
        except BenchError as e:
            row.update(verified="FAIL", error=str(e)[:300])
            self.failures.append("%s %s: %s" % (config, info, e))
            self.keep_evidence("run%d" % len(self.rows), src, dst)
        time.sleep(0.05)
        src.console.close()                  # reads the last bytes (a cut line)
        gap, ggap, seq_ok = heartbeat_gap(src.console, mark, dst.console)
        if gap is not None and gap < 0:
            # a source line arrived after the destination's first: the
            # arrival times cannot be trusted for this run
            row["error"] = "negative heartbeat gap (%.0f ms): not counted" % gap
            self.keep_evidence("negative-gap-run%d" % len(self.rows), src, dst)
            gap = None
        row["hb_gap_ms"] = round(gap, 2) if gap is not None else None
        row["guest_gap_ms"] = round(ggap, 2) if ggap is not None else None
        row["hb_seq_ok"] = "yes" if seq_ok else "no"
        if not seq_ok and row["verified"] == "yes":
            row.update(verified="FAIL", error="heartbeat sequence broken across the switchover")
            self.failures.append("%s %s: heartbeat sequence broken" % (config, info))
            self.keep_evidence("run%d" % len(self.rows), src, dst)
        if gap is not None and row.get("downtime_ms") is not None and \
                gap > 3 * row["downtime_ms"] + 100:
            # the guest felt far more than the VMM reports: keep the consoles
            self.keep_evidence("outlier-run%d" % len(self.rows), src, dst)
        pts = verify_points(src.console, anchor)
        row["rate_before"] = rate_between(pts[:2])
        row["rate_mig"] = rate_between([p for p in pts if p[0] >= pts[0][0]]) \
            if len(pts) > 2 else row["rate_before"]
        for k in ("rate_before", "rate_mig"):
            if row[k] is not None:
                row[k] = round(row[k], 1)
        lim = self.limit_ms(row["normal_bytes"], link_mibps)
        row["limit_ms"] = round(lim, 1) if lim else None
        if lim and row["total_ms"]:
            row["phys_ratio"] = round(row["total_ms"] / lim, 2)
        self.record(row)
        dst.hops = getattr(src, "hops", 0) + 1
        self.drop(src, quit=True)
        return row, dst

    # ---- the matrix: sizes x rates x configs x reps ----

    def boot(self, kind, mem_mib, rate, netns=None):
        append = guest_append(wss_for(mem_mib), rate)
        if kind == "kvmove":
            vm = self.new_vm(vmm.Kvmove, self.kvmove, netns=netns)
        else:
            vm = self.new_vm(vmm.Qemu, self.qemu, netns=netns)
        vm.boot(size_str(mem_mib), self.guest, append)
        return vm

    def read_qemu_defaults(self, vm):
        p = vm.cmd("query-migrate-parameters")
        caps = {c["capability"]: c["state"] for c in vm.cmd("query-migrate-capabilities")}
        self.qemu_defaults = {"max-bandwidth": p["max-bandwidth"],
                              "downtime-limit": p["downtime-limit"],
                              "multifd-channels": p.get("multifd-channels"),
                              "auto-converge": caps.get("auto-converge"),
                              "multifd": caps.get("multifd")}
        log("QEMU defaults: %s" % self.qemu_defaults)

    def cell(self, mem_mib, rate, reps, skip):
        """All configurations for one (size, rate), interleaved kvmove / QEMU,
        each guest booted once and migrated from destination to destination."""
        kinds = ["kvmove"] + (["qemu"] if self.qemu else [])
        wss = wss_for(mem_mib)
        info = dict(section="matrix", mem_gib=mem_mib / 1024, wss_mib=wss, rate_set=rate,
                    link="loopback", mode="live")
        need = 3 * wss * MIB + 2 * GIB         # two guests + one destination
        avail = mem_available()
        together = need < avail
        configs = [c for c in CONFIGS if c[1] in kinds and c[0] not in skip]
        order = [(rep, c) for rep in range(1, reps + 1) for c in configs]
        if not together:
            log("cell %s rate %d: %.1f GiB available < %.1f GiB: kvmove's runs first, then "
                "QEMU's (not interleaved)" % (size_str(mem_mib), rate, avail / GIB, need / GIB))
            order.sort(key=lambda rc: kinds.index(rc[1][1]))
        vms = {}
        not_converged = set()
        t_cell = now()
        try:
            def ensure(kind):
                if kind in vms and vms[kind] is not None:
                    return vms[kind]
                vm = self.boot(kind, mem_mib, rate)
                if kind == "qemu" and not self.qemu_defaults:
                    self.read_qemu_defaults(vm)
                vm.wait_ready(600 + mem_mib / 10)
                vms[kind] = vm
                return vm

            if together:
                for k in kinds:      # boot both at once (QEMU's firmware is slow)
                    vms[k] = self.boot(k, mem_mib, rate)
                for k in kinds:
                    if k == "qemu" and not self.qemu_defaults:
                        self.read_qemu_defaults(vms[k])
                    vms[k].wait_ready(600 + mem_mib / 10)
            running = set(vms)
            for rep, (config, kind) in order:
                if config in not_converged:
                    continue         # one non-converged try is enough
                if not together:
                    for k in list(vms):
                        if k != kind and vms[k] is not None:
                            self.drop(vms[k], quit=True)
                            vms[k] = None
                vm = ensure(kind)
                for k, other in vms.items():
                    if k != kind and other is not None and k in running:
                        other.pause()
                        running.discard(k)
                if kind not in running:
                    vm.resume()
                    running.add(kind)
                row, vms[kind] = self.migrate(vm, config, dict(info, rep=rep))
                if vms[kind] is None:
                    running.discard(kind)
                if row.get("converged") == "no":
                    not_converged.add(config)
        finally:
            for vm in vms.values():
                self.drop(vm, quit=True)
        log("cell %s rate %d done in %.0f s" % (size_str(mem_mib), rate, now() - t_cell))

    # ---- link-speed table (namespaces, tc tbf) ----

    def cluster_up(self, rate):
        prefix = "kb%d" % (os.getpid() % 100000)
        r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "kvmove-cluster.sh"), "up",
                            "-p", prefix, "-n", "2", "--mig-rate", rate],
                           capture_output=True, text=True)
        self.cluster = prefix        # down even if up failed half-way
        if r.returncode:
            raise BenchError("kvmove-cluster.sh up failed: %s" % r.stderr.strip())
        return prefix

    def set_link(self, prefix, rate):
        for h in ("h1", "h2"):
            subprocess.run(["ip", "netns", "exec", "%s-%s" % (prefix, h), "tc", "qdisc",
                            "replace", "dev", "mig0", "root", "tbf", "rate", rate, "burst",
                            "1mb", "latency", "50ms"], check=True)

    def link_throughput(self, prefix, mib):
        """Single-stream TCP over the shaped migration link, h1 -> h2."""
        port = vmm.free_port()
        recv = subprocess.Popen(["ip", "netns", "exec", prefix + "-h2", self.physical_exe,
                                 "tcp-recv", "10.20.0.2", str(port)],
                                stdout=subprocess.PIPE, text=True)
        try:
            recv.stdout.readline()
            subprocess.run(["ip", "netns", "exec", prefix + "-h1", self.physical_exe,
                            "tcp-send", "10.20.0.2", str(port), str(mib)], check=True,
                           timeout=300)
            out = recv.communicate(timeout=60)[0]
        finally:
            if recv.poll() is None:
                recv.kill()
                recv.wait()
        return float(out.split("tcp_mibps=")[1].split()[0])

    def link_table(self, sizes, links):
        prefix = self.cluster_up(links[0][1])
        shared = "/tmp/%s-cluster/shared" % prefix
        ns = {1: prefix + "-h1", 2: prefix + "-h2"}
        ip = {1: "10.20.0.1", 2: "10.20.0.2"}
        self.link_mibps = {}
        for name, rate, _ in links:
            self.set_link(prefix, rate)
            self.link_mibps[name] = self.link_throughput(
                prefix, 256 if self.args.smoke or "1" == rate[0] and "10" not in rate else 1024)
            log("link %s: single-stream TCP %.0f MiB/s" % (name, self.link_mibps[name]))
        # a fresh guest per (link, size): the live run is always the guest's
        # first migration, then the quick one brings it back
        for name, rate, max_mib in links:
            self.set_link(prefix, rate)
            for mem_mib in sizes:
                if mem_mib > max_mib:
                    continue
                vm = self.boot("kvmove", mem_mib, 0, netns=ns[1])
                at = 1
                try:
                    vm.wait_ready(600 + mem_mib / 10)
                    for mode in ("live", "quick"):
                        to = 3 - at
                        info = dict(section="link", mem_gib=mem_mib / 1024,
                                    wss_mib=wss_for(mem_mib), rate_set=0, rep=1, link=name,
                                    mode=mode)
                        row, new = self.migrate(vm, "kvmove-default", info, host=ip[to],
                                                dst_netns=ns[to],
                                                via=shared if mode == "quick" else None,
                                                link_mibps=self.link_mibps[name])
                        for f in os.listdir(shared):
                            if f.endswith(".kvmstate"):
                                os.unlink(os.path.join(shared, f))
                        if new is None:
                            raise BenchError("the guest was lost in the link table")
                        if new is not vm:
                            at = to
                        vm = new
                finally:
                    self.drop(vm, quit=True)

    # ---- where the time goes: perf on one migration per VMM ----

    def profile(self, mem_mib):
        """One idle-guest migration per VMM with `perf record` on both
        processes; keeps each process's top symbols (self time)."""
        if not shutil.which("perf"):
            self.trimmed.append("profile: perf is not installed")
            return
        self.profiles = {}
        kinds = ["kvmove"] + (["qemu"] if self.qemu else [])
        for kind in kinds:
            config = "kvmove-default" if kind == "kvmove" else "qemu-tuned"
            vm = self.boot(kind, mem_mib, 0)
            perfs = []
            try:
                if kind == "qemu" and not self.qemu_defaults:
                    self.read_qemu_defaults(vm)
                vm.wait_ready(600 + mem_mib / 10)
                settle(vm)
                port = vmm.free_port()
                if kind == "kvmove":
                    dst = self.new_vm(vmm.Kvmove, self.kvmove)
                    dst.incoming("127.0.0.1", port)
                else:
                    dst = self.new_vm(vmm.Qemu, self.qemu)
                    dst.incoming(vm, "127.0.0.1", port, {"multifd": False}, {})
                for side, p in (("src", vm), ("dst", dst)):
                    out = os.path.join(self.work, "perf.%s.%s" % (kind, side))
                    perfs.append((side, out, subprocess.Popen(
                        ["perf", "record", "-q", "-F", "999", "-o", out, "-p", str(p.proc.pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
                time.sleep(0.5)
                if kind == "kvmove":
                    status, st = vm.migrate(dst.uri, {}, 120)
                else:
                    caps, params = self.qemu_params(config)
                    status, st = vm.migrate(dst.uri, {"multifd": False}, params, 120, MAX_ROUNDS)
                for _, _, p in perfs:
                    p.send_signal(signal.SIGINT)
                prof = {"config": config, "status": status, "total_ms": st.get("total-time")}
                for side, out, p in perfs:
                    p.wait(30)
                    r = subprocess.run(["perf", "report", "-i", out, "--no-children", "--sort",
                                        "sym", "--stdio", "-q"], capture_output=True, text=True)
                    top = []
                    for line in r.stdout.splitlines():
                        f = line.split()
                        if len(f) >= 3 and f[0].endswith("%"):
                            top.append((float(f[0][:-1]), " ".join(f[2:])))
                    prof[side] = top[:10]
                self.profiles[kind] = prof
                log("profile %s: %s" % (kind, {k: v[:3] for k, v in prof.items()
                                               if k in ("src", "dst")}))
                self.drop(dst, quit=True)
            except (BenchError, QMPError, OSError, subprocess.SubprocessError) as e:
                self.trimmed.append("profile of %s failed: %s" % (kind, e))
            finally:
                for _, _, p in perfs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                self.drop(vm, quit=True)

    # ---- host description ----

    def describe_host(self):
        h = self.host
        h["kernel"] = platform.release()
        try:
            with open("/proc/cpuinfo") as f:
                h["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        except (OSError, StopIteration):
            h["cpu"] = "?"
        h["cores"] = os.cpu_count()
        h["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1)
        mods = set(os.listdir("/sys/module"))
        h["kvm"] = ("PVM (kvm_pvm: KVM nested under a PVM host; guest CPL 0 emulated)"
                    if "kvm_pvm" in mods else "VMX (kvm_intel)" if "kvm_intel" in mods
                    else "SVM (kvm_amd)" if "kvm_amd" in mods else "?")
        h["qemu"] = (subprocess.run([self.qemu, "--version"], capture_output=True, text=True)
                     .stdout.splitlines()[0] if self.qemu else "not installed")
        g = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                           capture_output=True, text=True)
        h["kvmove"] = g.stdout.strip() or "?"
        with open("/proc/loadavg") as f:
            h["load_start"] = f.read().split()[0]
        try:
            with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
                h["shmem_thp"] = f.read().split("[")[1].split("]")[0]
            with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
                h["anon_thp"] = f.read().split("[")[1].split("]")[0]
        except (OSError, IndexError):
            h["shmem_thp"] = h["anon_thp"] = "?"


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def fmt(v, nd=0):
    if v is None or v == "":
        return "–"
    if isinstance(v, str):
        return v
    return ("%%.%df" % nd) % v


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def num(r, k):
    v = r.get(k)
    if v in (None, ""):
        return None
    try:
        return float(v)
    except ValueError:
        return None


def stats3(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return min(vals), statistics.median(vals), max(vals)


def s3(t, scale=1.0, nd=0):
    if not t:
        return "–"
    lo, med, hi = (x * scale for x in t)
    if abs(hi - lo) < 10 ** -nd / 2:
        return fmt(med, nd)
    return "%s (%s–%s)" % (fmt(med, nd), fmt(lo, nd), fmt(hi, nd))


def good(rows):
    return [r for r in rows if r.get("status") == "completed" and r.get("verified") == "yes"]


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    if not xs:
        return None
    p = 1.0
    for x in xs:
        p *= x
    return p ** (1.0 / len(xs))


def headline(rows, a, b, key):
    """Geometric mean over (size, rate) cells of median(a) / median(b)."""
    cells = {}
    for r in good(rows):
        if r["section"] != "matrix":
            continue
        cells.setdefault((r["mem_gib"], r["rate_set"]), {}).setdefault(r["config"], []).append(
            num(r, key))
    ratios = []
    for c in cells.values():
        if a in c and b in c:
            ma, mb = stats3(c[a]), stats3(c[b])
            if ma and mb and mb[1] > 0:
                ratios.append(ma[1] / mb[1])
    return geomean(ratios), len(ratios)


def write_plots(bench, rows, out):
    """Data files + gnuplot -> PNGs.  Returns the PNG names made."""
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plots")
        return []
    matrix = [r for r in good(rows) if r["section"] == "matrix"]
    configs = [c for c, _ in CONFIGS if any(r["config"] == c for r in matrix)]
    if not configs:
        return []
    sizes = sorted({float(r["mem_gib"]) for r in matrix})
    rates = sorted({int(r["rate_set"]) for r in matrix})
    plot_mem = 1.0 if 1.0 in sizes else sizes[0]

    def med(cfg, mem, rate, key):
        t = stats3([num(r, key) for r in matrix if r["config"] == cfg and
                    float(r["mem_gib"]) == mem and int(r["rate_set"]) == rate])
        return "%g" % t[1] if t else "?"

    def table(path, xs, fn):
        with open(path, "w") as f:
            f.write("# x " + " ".join(configs) + "\n")
            for x in xs:
                f.write("%g %s\n" % (x, " ".join(fn(c, x) for c in configs)))

    table(os.path.join(out, "downtime.dat"), rates,
          lambda c, x: med(c, plot_mem, x, "hb_gap_ms"))
    table(os.path.join(out, "bytes.dat"), rates,
          lambda c, x: (lambda v: v if v == "?" else "%g" % (float(v) / GIB))(
              med(c, plot_mem, x, "transferred")))
    total_rate = 0 if 0 in rates else rates[0]
    table(os.path.join(out, "total.dat"), sizes,
          lambda c, x: (lambda v: v if v == "?" else "%g" % (float(v) / 1000))(
              med(c, x, total_rate, "total_ms")))
    titles = " ".join(c for c in configs)
    cmd = ["gnuplot", "-e", "outdir='%s'; titles='%s'; memlabel='%s'; totalrate=%d"
           % (out, titles, size_str(int(plot_mem * 1024)), total_rate),
           os.path.join(HERE, "plot.gp")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        log("gnuplot failed: %s" % r.stderr.strip())
        return []
    return [p for p in ("downtime_vs_rate.png", "total_vs_ram.png", "bytes_vs_rate.png")
            if os.path.exists(os.path.join(out, p))]


def write_report(bench, out, pngs, png_prefix, elapsed):
    rows = bench.rows
    h = bench.host
    L = []
    a = L.append
    a("# kvmove vs QEMU: live migration benchmark")
    a("")
    a("Generated by `make bench` (bench/run.py) on %s in %.0f min%s. Every number below "
      "was measured in this one run, on this machine, with the same guest for both VMMs."
      % (time.strftime("%Y-%m-%d %H:%M"), elapsed / 60,
         " (SMOKE configuration: not a result)" if bench.args.smoke else ""))
    a("")
    a("## Machine")
    a("")
    a("| | |")
    a("|---|---|")
    a("| CPU | %s, %s cores, %s GiB RAM |" % (h.get("cpu"), h.get("cores"), h.get("mem_gib")))
    a("| kernel | %s |" % h.get("kernel"))
    a("| KVM | %s |" % h.get("kvm"))
    a("| kvmove | %s (git describe) |" % h.get("kvmove"))
    a("| QEMU | %s |" % h.get("qemu"))
    a("| load average (1 min) at start / end | %s / %s (other users' work shares the "
      "machine) |" % (h.get("load_start"), h.get("load_end", "?")))
    a("| loopback TCP, one stream | %s MiB/s (bench/physical.c, best of tries) |"
      % fmt(bench.phys.get("tcp_mibps")))
    a("| memcpy | %s MiB/s |" % fmt(bench.phys.get("memcpy_mibps")))
    a("| copy into never-touched memory | memfd (kvmove's guest RAM; shmem THP `%s`): %s "
      "MiB/s; anonymous + MADV_HUGEPAGE (QEMU's guest RAM; THP `%s`): %s MiB/s |"
      % (h.get("shmem_thp"), fmt(bench.phys.get("memfd_first_touch_mibps")),
         h.get("anon_thp"), fmt(bench.phys.get("anon_thp_first_touch_mibps"))))
    a("")
    if "PVM" in h.get("kvm", ""):
        a("**This host's KVM is nested PVM.** Guest code at CPL 3 runs natively, but guest "
          "CPL-0 code is emulated at about 1–2 M instructions/s, every port exit costs about "
          "25–40 µs, and every first touch of a guest page (or a write-protect fault while "
          "dirty logging is on) is a costly exit to the host. QEMU's firmware takes ~20 s "
          "before the guest's first instruction. Boot is therefore excluded from every "
          "timing: each migration starts once the guest printed `READY` and two "
          "`VERIFY OK` lines. Absolute numbers are much worse than on VMX/SVM hardware; the "
          "comparison between the VMMs is what this page is for.")
        a("")
    a("## What was run")
    a("")
    d = bench.qemu_defaults
    a("- Guest: `build/guest/testguest.elf`, 1 vCPU, the same command line for both VMMs: "
      "`%s` (wss = 75 %% of RAM, `rate` = the dirty rate set; HB every %d ms, VERIFY every "
      "%d ms)." % (guest_append(768, 0).replace("768M", "<wss>").replace("rate=0", "rate=<R>"),
                   HB_US // 1000, VERIFY_MS))
    a("- kvmove: `kvmove run --mem SIZE --cpus 1 --kernel ... --append ...`, destination "
      "`kvmove run --incoming tcp:...`; driven over its control socket (`migrate`, "
      "`MIGRATION` events).")
    a("- QEMU: `qemu-system-x86_64 -accel kvm -cpu host,-arch-capabilities -m SIZE -smp 1 "
      "-nographic -kernel testguest.elf -append ...`, serial to a file, QMP on a UNIX "
      "socket; destination the same plus `-incoming defer` + `migrate-incoming`.")
    a("- Migration over loopback TCP (127.0.0.1), one migration at a time. Each guest is "
      "booted once per (size, rate) and then migrated from destination to destination; the "
      "runs of the two VMMs alternate (the idle guest is paused: with 2 cores a spinning "
      "idle guest would steal the migration's CPU), unless memory forbids holding both "
      "(then noted in the log: kvmove's runs first).")
    a("")
    a("| configuration | downtime target | bandwidth | other |")
    a("|---|---|---|---|")
    a("| kvmove-default | 100 ms (kvmove's default) | unlimited (default) | policy "
      "auto-converge (default), max-rounds %d |" % MAX_ROUNDS)
    a("| kvmove-300ms | %s ms (= QEMU's downtime-limit) | unlimited | auto-converge |"
      % d.get("downtime-limit", 300))
    a("| qemu-default | %s ms (QEMU default `downtime-limit`) | %s MiB/s (QEMU default "
      "`max-bandwidth`) | auto-converge %s, multifd %s (defaults) |"
      % (d.get("downtime-limit", "?"), fmt((d.get("max-bandwidth") or 0) / MIB),
         "on" if d.get("auto-converge") else "off", "on" if d.get("multifd") else "off"))
    a("| qemu-tuned | %s ms | unlimited (`max-bandwidth` = 1 TiB/s) | |"
      % d.get("downtime-limit", "?"))
    a("| qemu-multifd | %s ms | unlimited | `multifd` on, `multifd-channels` 2 |"
      % d.get("downtime-limit", "?"))
    a("")
    a("QEMU never gives up on its own: a QEMU migration still running after %d dirty-sync "
      "rounds (kvmove's max-rounds) or after its time limit is cancelled and counted as "
      "*not converged*. A configuration that did not converge at a point is not repeated "
      "there." % MAX_ROUNDS)
    a("")
    a("**Metrics.** *total*: the VMM's total-time (migrate command to completion). "
      "*downtime*: the VMM's own figure (kvmove: source pause to the destination's RESUMED; "
      "QEMU: its `downtime`). *felt*: guest-observed downtime, the gap between the host "
      "arrival times (CLOCK_MONOTONIC, console polled every 0.5 ms) of the last heartbeat "
      "line from the source and the first from the destination; it includes up to one "
      "heartbeat period (%d ms). *sent*: bytes on the wire (`ram.transferred`). *rate*: the "
      "dirty rate the guest achieved during the migration (from its `writes=` counters). "
      "*vs limit*: total time ÷ (non-zero bytes sent ÷ loopback TCP throughput). *CPU*: CPU "
      "seconds of source + destination VMM during the migration. *RSS*: peak RSS of source "
      "/ destination. Cells: median (min–max) over the repetitions; *n* = verified "
      "completed runs / runs." % (HB_US // 1000))
    a("")

    # headline
    matrix = [r for r in rows if r["section"] == "matrix"]
    if matrix:
        a("## Headline")
        a("")
        for kv, q in (("kvmove-300ms", "qemu-tuned"), ("kvmove-default", "qemu-default"),
                      ("kvmove-300ms", "qemu-multifd")):
            for key, what in (("total_ms", "total time"), ("hb_gap_ms", "guest-observed downtime"),
                              ("downtime_ms", "VMM-reported downtime")):
                g, n = headline(rows, kv, q, key)
                if g:
                    a("- %s ÷ %s, %s: **%.2f** (geometric mean of per-point medians over %d "
                      "points where both converged)" % (kv, q, what, g, n))
        for key, what in (("total_ms", "total time"), ("hb_gap_ms", "guest-observed downtime")):
            if not kvmove_resends(rows):
                break
            rs = []
            for r0 in good(matrix):
                if r0["config"] != "kvmove-default" or int(r0.get("hop") or 0) != 0:
                    continue
                q = [num(r, key) for r in good(matrix) if r["config"] == "qemu-tuned" and
                     float(r["mem_gib"]) == float(r0["mem_gib"]) and
                     int(r["rate_set"]) == int(r0["rate_set"])]
                if q and num(r0, key) and statistics.median(q) > 0:
                    rs.append(num(r0, key) / statistics.median(q))
            g = geomean(rs)
            if g:
                a("- kvmove-default on a guest's first migration after boot (the only runs the "
                  "re-send problem below cannot touch) ÷ qemu-tuned median, %s: **%.2f** "
                  "(%d points)" % (what, g, len(rs)))
        ph = [num(r, "phys_ratio") for r in good(matrix) if r["config"].startswith("kvmove")]
        pq = [num(r, "phys_ratio") for r in good(matrix) if r["config"] == "qemu-tuned"]
        if ph:
            a("- kvmove total time ÷ physical limit (non-zero bytes at loopback TCP speed): "
              "median **%.2f** (%.2f–%.2f)" % (statistics.median(ph), min(ph), max(ph)))
        if pq:
            a("- qemu-tuned total time ÷ physical limit: median **%.2f** (%.2f–%.2f)"
              % (statistics.median(pq), min(pq), max(pq)))
        a("")
        losses = where_kvmove_loses(rows)
        a("### Where kvmove loses")
        a("")
        if losses:
            a("Points where the median of kvmove's best configuration is more than 10 % "
              "(and 2 ms) worse than the median of QEMU's best (both verified):")
            a("")
            for line in losses:
                a("- " + line)
        else:
            a("Nowhere in this run: at every point kvmove's best median is within 10 % of "
              "QEMU's best, or better, on total time and on guest-observed downtime.")
        a("")
        obs = observations(bench, rows)
        if obs:
            a("### Observations (computed from this run's data)")
            a("")
            for line in obs:
                a("- " + line)
            a("")
        for png, title in (("downtime_vs_rate.png", "Guest-observed downtime vs dirty rate"),
                           ("total_vs_ram.png", "Total time vs RAM"),
                           ("bytes_vs_rate.png", "Bytes sent vs dirty rate")):
            if png in pngs:
                a("![%s](%s%s)" % (title, png_prefix, png))
                a("")

        a("## Results by point")
        a("")
        sizes = sorted({float(r["mem_gib"]) for r in matrix})
        for mem in sizes:
            sub = [r for r in matrix if float(r["mem_gib"]) == mem]
            a("### %s RAM, working set %s" % (size_str(int(mem * 1024)),
                                              size_str(int(sub[0]["wss_mib"]))))
            a("")
            a("| rate set | config | n | converged | total ms | downtime ms | felt ms | "
              "sent MiB | rounds | rate MiB/s | vs limit | CPU s | RSS MiB src/dst |")
            a("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for rate in sorted({int(r["rate_set"]) for r in sub}):
                for cfg, _ in CONFIGS:
                    rs = [r for r in sub if int(r["rate_set"]) == rate and r["config"] == cfg]
                    if not rs:
                        continue
                    g = good(rs)
                    conv = sum(1 for r in rs if r.get("converged") == "yes")
                    notes = sorted({r.get("error", "")[:60] for r in rs
                                    if r.get("converged") != "yes" and r.get("error")})
                    cpu = stats3([(num(r, "src_cpu_s") or 0) + (num(r, "dst_cpu_s") or 0)
                                  for r in g])
                    a("| %d | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                      % (rate, cfg, len(g), len(rs),
                         "%d/%d" % (conv, len(rs)) + (" (%s)" % "; ".join(notes) if notes else ""),
                         s3(stats3([num(r, "total_ms") for r in g])),
                         s3(stats3([num(r, "downtime_ms") for r in g])),
                         s3(stats3([num(r, "hb_gap_ms") for r in g])),
                         s3(stats3([num(r, "transferred") for r in g]), 1.0 / MIB),
                         s3(stats3([num(r, "rounds") for r in g])),
                         s3(stats3([num(r, "rate_mig") for r in rs])),
                         s3(stats3([num(r, "phys_ratio") for r in g]), nd=2),
                         s3(cpu, nd=1),
                         "%s/%s" % (s3(stats3([num(r, "src_rss_mib") for r in g])),
                                    s3(stats3([num(r, "dst_rss_mib") for r in g])))))
            a("")

    profs = getattr(bench, "profiles", None)
    if profs:
        a("## Where the time goes")
        a("")
        a("`perf record -F 999` on both VMM processes during one migration of an idle "
          "guest (rate 0) per VMM; share of each process's samples by symbol (self time). "
          "`pvm_do_event_irqoff` (or `vmx_vcpu_run`, `svm_vcpu_run`) is the guest itself "
          "running in the vCPU thread; `clear_page_*` and `shmem_get_folio*` are the kernel "
          "zeroing and allocating never-touched memory; `_copy_to_iter` / `_copy_from_iter` "
          "are socket copies; `XXH3*` the per-record checksum.")
        a("")
        cols = [(k, side) for k in ("kvmove", "qemu") if k in profs for side in ("src", "dst")]
        a("| | " + " | ".join("%s %s (%s, %s ms)" % (k, "source" if sd == "src" else
                                                     "destination", profs[k]["config"],
                                                     profs[k].get("total_ms"))
                              for k, sd in cols) + " |")
        a("|---|" + "---|" * len(cols))
        for i in range(8):
            cells = []
            for k, sd in cols:
                top = profs[k].get(sd) or []
                cells.append("%.1f %% `%s`" % (top[i][0], top[i][1][:40]) if i < len(top)
                             else "")
            a("| %d | %s |" % (i + 1, " | ".join(cells)))
        a("")

    link = [r for r in rows if r["section"] == "link"]
    if link:
        a("## Link speed: quick vs live migration (kvmove)")
        a("")
        a("Like Hyper-V's Quick Migration table. Two hosts are network namespaces "
          "(`scripts/kvmove-cluster.sh up -n 2 --mig-rate ...`); the migration link is "
          "shaped with tc tbf (changed in place between link speeds); the guest idles "
          "(rate=0) with a working set of 75 %% of RAM; each guest is booted for its row "
          "and its live migration is its first. *Quick* = `migrate` with `via` "
          "(save to the shared directory, restore on the destination): its data does not "
          "cross the shaped link here (the shared directory is local disk), so its times "
          "do not depend on the link. Measured single-stream TCP over the shaped link: %s."
          % ", ".join("%s %.0f MiB/s" % (k, v) for k, v in
                      getattr(bench, "link_mibps", {}).items()))
        a("")
        links = []
        for r in link:
            if r["link"] not in links:
                links.append(r["link"])
        head = "| VM memory | " + " | ".join(
            "%s quick: total / downtime | %s live: total / downtime / felt" % (l, l)
            for l in links) + " |"
        a(head)
        a("|---|" + "---|" * (2 * len(links)))
        for mem in sorted({float(r["mem_gib"]) for r in link}):
            cells = []
            for l in links:
                for mode in ("quick", "live"):
                    rs = [r for r in link if float(r["mem_gib"]) == mem and r["link"] == l
                          and r["mode"] == mode]
                    g = good(rs)
                    if not rs:
                        cells.append("not run")
                    elif not g:
                        cells.append("failed: %s" % (rs[0].get("error") or rs[0]["status"])[:60])
                    else:
                        r = g[0]
                        c = "%.1f s / %s ms" % (num(r, "total_ms") / 1000, fmt(num(r, "downtime_ms")))
                        if mode == "live":
                            c += " / %s ms" % fmt(num(r, "hb_gap_ms"))
                        cells.append(c)
            a("| %s | %s |" % (size_str(int(mem * 1024)), " | ".join(cells)))
        a("")

    bad = [r for r in rows if r.get("status") == "error" or r.get("verified") == "FAIL"]
    a("## Failed runs")
    a("")
    if bad:
        for r in bad:
            a("- %s %s %s rate=%s rep %s: %s" % (r["section"], r["config"],
                                                size_str(int(float(r["mem_gib"]) * 1024)),
                                                r["rate_set"], r.get("rep"), r.get("error")))
    else:
        a("None: every completed migration was verified by the guest on the destination "
          "(a whole verifier pass after the switchover, heartbeat sequence unbroken), and "
          "every run that did not converge left the guest verified on the source.")
    a("")
    if bench.trimmed:
        a("## What this run left out (time budget)")
        a("")
        for t in bench.trimmed:
            a("- " + t)
        a("")
    a("Raw data: `results.csv` (one row per migration). Reproduce: `make bench`.")
    a("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(L))


def kvmove_resends(rows):
    """kvmove sends an idle guest's memory about twice when the guest had
    itself arrived by migration (a bug fixed in c4931fb; guarded here)."""
    m = [r for r in good(rows) if r["section"] == "matrix" and int(r["rate_set"]) == 0 and
         r["vmm"] == "kvmove"]
    first = [num(r, "normal_bytes") / (num(r, "wss_mib") * MIB) for r in m
             if int(r.get("hop") or 0) == 0]
    later = [num(r, "normal_bytes") / (num(r, "wss_mib") * MIB) for r in m
             if int(r.get("hop") or 0) > 0]
    return bool(first and later and
                statistics.median(later) > 1.5 * statistics.median(first))


def observations(bench, rows):
    out = []
    m = [r for r in good(rows) if r["section"] == "matrix" and int(r["rate_set"]) == 0]
    for kind in ("kvmove", "qemu"):
        first = [num(r, "normal_bytes") / (num(r, "wss_mib") * MIB) for r in m
                 if r["vmm"] == kind and int(r.get("hop") or 0) == 0]
        later = [num(r, "normal_bytes") / (num(r, "wss_mib") * MIB) for r in m
                 if r["vmm"] == kind and int(r.get("hop") or 0) > 0]
        if first and later:
            out.append("%s, idle guest (rate 0): data pages sent ÷ working set = %.2f on the "
                       "first migration after boot, %.2f (median) when the guest had itself "
                       "arrived by migration%s."
                       % (kind, statistics.median(first), statistics.median(later),
                          " — it sends its memory about twice: pages the destination "
                          "received are still marked dirty when it migrates on"
                          if statistics.median(later) > 1.5 * statistics.median(first) else ""))
    for cfgs, name in ((("kvmove-default", "kvmove-300ms"), "kvmove"),
                       (("qemu-tuned",), "qemu-tuned"), (("qemu-multifd",), "qemu-multifd")):
        tp = [num(r, "normal_bytes") / MIB / (num(r, "total_ms") / 1000) for r in m
              if r["config"] in cfgs and num(r, "total_ms")]
        if tp:
            out.append("%s, rate 0: effective throughput (data pages ÷ total time) median "
                       "%.0f MiB/s" % (name, statistics.median(tp)))
    pr = [r for r in good(rows) if r["vmm"] == "kvmove" and num(r, "pred_total_ms")
          and num(r, "total_ms")]
    if pr:
        et = sorted(abs(num(r, "pred_total_ms") - num(r, "total_ms")) / num(r, "total_ms")
                    for r in pr)
        ed = sorted(abs(num(r, "pred_downtime_ms") - num(r, "downtime_ms")) for r in pr
                    if num(r, "downtime_ms"))
        out.append("kvmove's prediction (x-prediction, made during the first pass) against "
                   "what happened, over %d runs: total time off by %.0f %% (median), %.0f %% "
                   "at worst; downtime off by %.0f ms (median), %.0f ms at worst"
                   % (len(pr), 100 * statistics.median(et), 100 * et[-1],
                      statistics.median(ed) if ed else 0, ed[-1] if ed else 0))
    p = bench.phys
    if p.get("memfd_first_touch_mibps"):
        out.append("reference: loopback TCP %.0f MiB/s; copying into never-touched memfd "
                   "memory %.0f MiB/s, into never-touched anonymous THP memory %.0f MiB/s "
                   "(a destination does one of these for every page it receives)"
                   % (p.get("tcp_mibps", 0), p["memfd_first_touch_mibps"],
                      p.get("anon_thp_first_touch_mibps", 0)))
    return out


def where_kvmove_loses(rows):
    out = []
    cells = {}
    for r in good(rows):
        if r["section"] == "matrix":
            cells.setdefault((float(r["mem_gib"]), int(r["rate_set"])), []).append(r)
    for (mem, rate), rs in sorted(cells.items()):
        for key, what in (("total_ms", "total time"), ("hb_gap_ms", "guest-observed downtime")):
            best = {}
            for r in rs:
                v = num(r, key)
                if v is None:
                    continue
                best.setdefault(r["config"], []).append(v)
            kv = [(statistics.median(v), c) for c, v in best.items() if c.startswith("kvmove")]
            qm = [(statistics.median(v), c) for c, v in best.items() if c.startswith("qemu")]
            if kv and qm and min(kv)[0] > 1.1 * min(qm)[0] and min(kv)[0] - min(qm)[0] >= 2:
                out.append("%s RAM, rate %d MiB/s, %s: kvmove %.0f ms (%s) vs QEMU %.0f ms (%s)"
                           % (size_str(int(mem * 1024)), rate, what, min(kv)[0], min(kv)[1],
                              min(qm)[0], min(qm)[1]))
        confs = {r["config"] for r in rs}
        for c, _ in CONFIGS:
            if c.startswith("kvmove") and c not in confs and any(
                    x["config"] == c and float(x["mem_gib"]) == mem and
                    int(x["rate_set"]) == rate for x in rows):
                out.append("%s RAM, rate %d MiB/s: %s did not converge (or failed)"
                           % (size_str(int(mem * 1024)), rate, c))
    return out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def publish(b, args, elapsed, update_docs):
    pngs = write_plots(b, b.rows, args.out)
    write_report(b, args.out, pngs, "", elapsed)
    if update_docs:
        docs = os.path.join(ROOT, "docs")
        os.makedirs(os.path.join(docs, "benchmarks"), exist_ok=True)
        for p in pngs:
            shutil.copy(os.path.join(args.out, p), os.path.join(docs, "benchmarks", p))
        shutil.copy(os.path.join(args.out, "results.csv"),
                    os.path.join(docs, "benchmarks", "results.csv"))
        write_report(b, docs, pngs, "benchmarks/", elapsed)
        os.replace(os.path.join(docs, "report.md"), os.path.join(docs, "benchmarks.md"))
        log("docs/benchmarks.md updated")


def report_only(args):
    """Rewrite a finished run's report (after a change to the report code)."""
    class Saved:
        pass
    b = Saved()
    d = os.path.abspath(args.report_from)
    args.out = d
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(d, "results.csv"), newline="") as f:
        b.rows = list(csv.DictReader(f))
    b.host, b.phys, b.qemu_defaults = meta["host"], meta["phys"], meta["qemu_defaults"]
    b.link_mibps, b.trimmed = meta.get("link_mibps", {}), meta.get("trimmed", [])
    b.profiles = meta.get("profiles", {})
    args.smoke = meta.get("smoke", False)
    b.args = args
    publish(b, args, meta.get("elapsed", 0), update_docs=not args.no_docs and not args.smoke)
    return 0


def parse_reps(s):
    out = {}
    for part in s.split(","):
        k, _, v = part.partition(":")
        out[float(k)] = int(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out")
    ap.add_argument("--smoke", action="store_true", help="tiny configuration (a test runs it)")
    ap.add_argument("--sizes", default="1,4,8", help="guest RAM in GiB")
    ap.add_argument("--rates", default="0,32,128,512", help="guest dirty rates, MiB/s")
    ap.add_argument("--reps", default="1:3,4:2,8:1", help="repetitions per RAM size (GiB:n)")
    ap.add_argument("--big-rates", default="0,128",
                    help="rates run at the largest size (time budget)")
    ap.add_argument("--no-link", action="store_true", help="skip the link-speed table")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--configs", help="only these configurations (comma-separated: %s)"
                    % ", ".join(c for c, _ in CONFIGS))
    ap.add_argument("--no-profile", action="store_true",
                    help="skip the perf profile of one migration per VMM")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--profile-into", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--report-from", metavar="DIR",
                    help="only rewrite DIR's report and plots from its results.csv and "
                         "meta.json (and docs/, unless --no-docs)")
    ap.add_argument("--wait-quiet", type=float, default=0,
                    help="wait up to SEC for the 1-minute load to fall below 0.8")
    args = ap.parse_args()
    if args.smoke:
        args.no_docs = True
    if args.report_from:
        return report_only(args)
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        print("bench: cannot open /dev/kvm: %s" % e.strerror, file=sys.stderr)
        return 77 if os.environ.get("KVMOVE_ALLOW_NO_KVM") == "1" else 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if not args.out:
        args.out = os.path.join(HERE, "results", stamp + ("-smoke" if args.smoke else ""))
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if args.wait_quiet:
        deadline = now() + args.wait_quiet
        while now() < deadline:
            with open("/proc/loadavg") as f:
                load = float(f.read().split()[0])
            if load < 0.8:
                break
            log("load %.2f: waiting for a quiet machine" % load)
            time.sleep(30)

    b = Bench(args)
    b.trimmed = []
    if args.profile_into:
        # only the perf profile, added to a finished run's meta.json and report
        try:
            b.profile(4096)
        finally:
            b.cleanup()
        path = os.path.join(args.profile_into, "meta.json")
        with open(path) as f:
            meta = json.load(f)
        meta["profiles"] = getattr(b, "profiles", {})
        meta["trimmed"] = meta.get("trimmed", []) + b.trimmed
        with open(path, "w") as f:
            json.dump(meta, f, indent=1)
        args.report_from = args.profile_into
        return report_only(args)
    t0 = now()
    rc = 0
    try:
        if not b.qemu:
            b.trimmed.append("QEMU: not installed (or --no-qemu): kvmove only")
        b.describe_host()
        log("bench: kvmove %s, %s, KVM %s; results in %s" % (b.host["kvmove"], b.host["qemu"],
                                                            b.host["kvm"], args.out))
        b.physical()
        if args.smoke:
            plan = [(256, 32, 1)]
            links = [("10GbE", "10gbit", 256)]
            link_sizes = [256]
        else:
            sizes = [int(float(x) * 1024) for x in args.sizes.split(",") if x]
            rates = [int(x) for x in args.rates.split(",") if x]
            reps = parse_reps(args.reps)
            big = max(sizes)
            big_rates = [int(x) for x in args.big_rates.split(",") if x]
            plan = []
            for m in sizes:
                rs = [r for r in rates if m != big or len(sizes) == 1 or r in big_rates]
                plan += [(m, r, reps.get(m / 1024, 1)) for r in rs]
                if len(rs) < len(rates):
                    b.trimmed.append("%s RAM: dirty rates %s only" % (size_str(m), rs))
            for m in sizes:
                n = reps.get(m / 1024, 1)
                if n < 3:
                    b.trimmed.append("%s RAM: %d repetition%s instead of 3"
                                     % (size_str(m), n, "s" if n > 1 else ""))
            links = [("10GbE", "10gbit", 8192), ("1GbE", "1gbit", 4096)]
            link_sizes = [512, 1024, 2048, 4096, 8192]
            b.trimmed.append("link table: 8G over 1GbE (live ~1 min + boot)")
            b.trimmed.append("%s RAM: qemu-default not run at dirty rates at or above its "
                             "bandwidth cap (128 MiB/s): one try moves 6 GiB at 128 MiB/s, "
                             "about a minute, and may not converge" % size_str(big))
        for mem_mib, rate, reps in plan:
            skip = set()
            if args.configs:
                want = set(args.configs.split(","))
                unknown = want - {c for c, _ in CONFIGS}
                if unknown:
                    raise SystemExit("unknown configurations: %s" % ", ".join(sorted(unknown)))
                skip = {c for c, _ in CONFIGS if c not in want}
            if not args.smoke:
                if mem_mib == big and len(sizes) > 1 and b.qemu_defaults and \
                        rate * MIB >= b.qemu_defaults.get("max-bandwidth", 1 << 62):
                    skip.add("qemu-default")
            else:
                skip = {"qemu-default", "kvmove-300ms", "qemu-multifd"}
            b.cell(mem_mib, rate, reps, skip)
        if not args.no_profile and not args.smoke:
            b.profile(4096)
        if not args.no_link:
            if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
                b.trimmed.append("link table: needs root, ip and tc")
            else:
                b.link_table(link_sizes, links)
    except KeyboardInterrupt as e:
        log("interrupted (%s): cleaning up" % e)
        rc = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        b.failures.append("bench aborted: %s" % e)
        rc = 1
    finally:
        b.cleanup()
    elapsed = now() - t0
    with open("/proc/loadavg") as f:
        b.host["load_end"] = f.read().split()[0]
    if b.rows:
        with open(os.path.join(args.out, "meta.json"), "w") as f:
            json.dump({"host": b.host, "phys": b.phys, "qemu_defaults": b.qemu_defaults,
                       "link_mibps": getattr(b, "link_mibps", {}), "trimmed": b.trimmed,
                       "profiles": getattr(b, "profiles", {}),
                       "elapsed": elapsed, "smoke": args.smoke}, f, indent=1)
        publish(b, args, elapsed, update_docs=not args.no_docs and rc == 0)
    if b.failures:
        log("FAILURES:\n  " + "\n  ".join(b.failures))
        rc = rc or 1
    if args.smoke and rc == 0:
        # the smoke must have produced real data points from both VMMs
        kinds = {r["vmm"] for r in good(b.rows)}
        want = {"kvmove"} | ({"qemu"} if b.qemu else set())
        if not want <= kinds:
            log("smoke: no verified migration for %s" % (want - kinds))
            rc = 1
    log("done in %.0f s: %s" % (elapsed, os.path.join(args.out, "report.md")))
    return rc


if __name__ == "__main__":
    sys.exit(main())
