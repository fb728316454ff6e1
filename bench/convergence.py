#!/usr/bin/env python3
"""Convergence side by side: what each VMM does when the guest dirties
memory faster than the link carries it.

  throttle   kvmove's vCPU throttle at 0/20/50/80/99 % (x-set-throttle) on a
             CPU-bound guest: the write rate the guest achieves at each step
  policies   two points.  capped: one guest, one capped link (a third of
             the guest's own dirty rate, sampled by kvmove --check-only; the
             same cap for QEMU).  unshaped: the guest writing as fast as it
             can (rate=1000000), no cap on either VMM.  At each: kvmove
             auto-converge, post-copy, hybrid (--postcopy-after 3), auto;
             QEMU auto-converge and postcopy-ram (migrate-start-postcopy
             after the first pass).  Total time, VMM downtime, guest-felt
             downtime (heartbeat gap), the guest's write rate during the
             migration against before, verified completion.  kvmove's runs
             also give predicted vs measured total time and downtime.

Writes results.csv and report.md in --out.  Python 3 stdlib only.

    python3 bench/convergence.py --build build [--out DIR] [--reps N]
        [--unshaped-reps N]
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmm  # noqa: E402
from run import heartbeat_gap, rate_between, settle, verify_points, wait_verified  # noqa: E402

MIB = 1 << 20
MEM = "512M"
POLICY_GUEST = "wss=64M rate=256 hb=1000 seed=1 verify_every=500"
THROTTLE_GUEST = "wss=64M rate=1000000 hb=10000 seed=1 verify_every=500"
UNSHAPED_GUEST = "wss=64M rate=1000000 hb=1000 seed=1 verify_every=500"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Run:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.kvmove = os.path.join(self.build, "kvmove")
        self.guest = os.path.join(self.build, "guest", "testguest.elf")
        self.work = tempfile.mkdtemp(prefix="kvconv-")
        self.vms = []
        self.n = 0

    def new(self, cls, *a):
        self.n += 1
        vm = cls(self.work, "vm%d" % self.n, *a)
        self.vms.append(vm)
        return vm

    def done(self, vm):
        if vm in self.vms:
            vm.stop()
            self.vms.remove(vm)

    def cleanup(self):
        for vm in list(self.vms):
            vm.close()
        shutil.rmtree(self.work, ignore_errors=True)

    # ---- the throttle steps ----

    def throttle(self):
        rows = []
        vm = self.new(vmm.Kvmove, self.kvmove)
        vm.boot(MEM, self.guest, THROTTLE_GUEST)
        vm.wait_ready(120)
        settle(vm)
        base = None
        for pct in (0, 20, 50, 80, 99):
            vm.cmd("x-set-throttle", {"percent": pct})
            settle(vm)
            start, t0 = len(vm.console), vmm.now()
            time.sleep(8 if pct == 99 else 4)
            rate = rate_between(verify_points(vm.console, start))
            base = base or rate
            rows.append({"percent": pct, "mib_s": rate,
                         "of_unthrottled": rate / base if rate and base else None,
                         "ideal": (100 - pct) / 100})
            log("throttle %2d%%: %.1f MiB/s written (%.3f of unthrottled)"
                % (pct, rate or 0, (rate or 0) / base if base else 0))
        self.done(vm)
        return rows

    # ---- the policies ----

    def boot(self, kind, cmdline=POLICY_GUEST):
        if kind == "kvmove":
            vm = self.new(vmm.Kvmove, self.kvmove)
        else:
            vm = self.new(vmm.Qemu)
        vm.boot(MEM, self.guest, cmdline)
        vm.wait_ready(180)
        settle(vm)
        return vm

    def link(self):
        """A cap a third of the guest's dirty rate, from kvmove's sample."""
        vm = self.boot("kvmove")
        dst = self.new(vmm.Kvmove, self.kvmove)
        port = vmm.free_port()
        dst.incoming("127.0.0.1", port)
        status, st = vm.migrate(dst.uri, {"check-only": True}, 60)
        self.done(dst)
        self.done(vm)
        p = st.get("x-prediction") or {}
        rate = p.get("dirty-rate", 0) / MIB
        if status != "completed" or rate <= 0:
            raise vmm.BenchError("no dirty-rate sample: %s %r" % (status, st))
        log("the guest dirties %.1f MiB/s (sampled); the link: %d MiB/s" % (rate, rate / 3))
        return max(1, int(rate / 3)), rate

    def one(self, point, config, bw_mib):
        """One migration; bw_mib None: no cap on either VMM."""
        kind = "qemu" if config.startswith("qemu") else "kvmove"
        src = self.boot(kind, POLICY_GUEST if bw_mib else UNSHAPED_GUEST)
        anchor = settle(src)
        before = rate_between(verify_points(src.console, anchor))
        mark = len(src.console)
        port = vmm.free_port()
        row = {"point": point, "config": config, "bandwidth_mib": bw_mib}
        t0 = vmm.now()
        try:
            if kind == "kvmove":
                dst = self.new(vmm.Kvmove, self.kvmove)
                dst.incoming("127.0.0.1", port)
                params = {"downtime-ms": 100, "max-rounds": 30}
                if bw_mib:
                    params["bandwidth"] = bw_mib
                # (kvmove's cap holds in post-copy too)
                params.update({"kvmove-autoconverge": {"policy": "auto-converge"},
                               "kvmove-postcopy": {"policy": "postcopy"},
                               "kvmove-hybrid": {"postcopy-after": 3},
                               "kvmove-auto": {"policy": "auto"}}[config])
                status, st = src.migrate(dst.uri, params, 600)
            else:
                caps = {"auto-converge": config == "qemu-autoconverge",
                        "postcopy-ram": config == "qemu-postcopy"}
                # the same cap in post-copy (QEMU's default there: none);
                # unshaped: far above loopback (QEMU's default is 128 MiB/s)
                cap = bw_mib * MIB if bw_mib else 1 << 40
                params = {"max-bandwidth": cap, "downtime-limit": 100,
                          "max-postcopy-bandwidth": bw_mib * MIB if bw_mib else 0}
                dst = self.new(vmm.Qemu)
                dst.incoming(src, "127.0.0.1", port, caps, params)
                status, st = self.qemu_migrate(src, dst, caps, params)
        except (vmm.BenchError, vmm.QMPError, OSError) as e:
            row.update(status="error", error=str(e)[:200])
            self.done(src)
            return row
        wall = vmm.now() - t0
        during = rate_between(verify_points(src.console, mark))
        row.update(status=status, total_ms=st.get("total-time"), downtime_ms=st.get("downtime"),
                   rounds=st.get("ram", {}).get("dirty-sync-count"),
                   throttle=st.get("cpu-throttle-percentage", 0),
                   postcopy_requests=st.get("ram", {}).get("postcopy-requests"),
                   rate_before=round(before, 1) if before else None,
                   rate_during=round(during, 1) if during else None, wall_s=round(wall, 1),
                   policy=st.get("x-policy", ""))
        pc = st.get("x-postcopy-destination") or {}
        row["fault_p50_us"] = pc.get("fault-latency-p50-us")
        row["fault_p99_us"] = pc.get("fault-latency-p99-us")
        pred = (st.get("x-prediction") or {}).get("policies", {}).get(st.get("x-policy"))
        if pred and pred.get("converges"):
            row["pred_total_ms"] = pred.get("total-time")
            row["pred_downtime_ms"] = pred.get("downtime")
            row["pred_rounds"] = pred.get("rounds")
        if status == "completed":
            try:
                wait_verified(dst, 0, 240)
                row["verified"] = "yes"
            except vmm.BenchError as e:
                row["verified"] = "FAIL: %s" % str(e)[:100]
            # after the destination has run a while: a migration shorter
            # than a heartbeat has none from there when migrate returns
            gap, _, _ = heartbeat_gap(src.console, mark, dst.console)
            row["felt_ms"] = round(gap, 1) if gap is not None else None
        self.done(src)
        self.done(dst)
        log("%-8s %-18s %s total %s ms, downtime %s ms, felt %s ms, guest %s -> %s MiB/s, %s"
            % (point, config, status, row.get("total_ms"), row.get("downtime_ms"), row.get("felt_ms"),
               row.get("rate_before"), row.get("rate_during"), row.get("verified")))
        return row

    def qemu_migrate(self, src, dst, caps, params):
        vmm.set_caps(src, caps)
        src.cmd("migrate-set-parameters", params)
        src.cmd("migrate", {"uri": dst.uri})
        started_pc = False
        deadline = vmm.now() + 600
        while True:
            st = src.cmd("query-migrate")
            s = st.get("status")
            if s in ("completed", "failed", "cancelled"):
                return s, st
            # after the first pass, as kvmove's postcopy: QEMU counts the
            # bitmap sync before the first pass as sync 1
            if caps.get("postcopy-ram") and not started_pc and \
                    st.get("ram", {}).get("dirty-sync-count", 0) >= 2 and s == "active":
                src.cmd("migrate-start-postcopy")
                started_pc = True
            if vmm.now() > deadline or st.get("ram", {}).get("dirty-sync-count", 0) > 30:
                src.cmd("migrate_cancel")
                time.sleep(2)
                st = src.cmd("query-migrate")
                st["error-desc"] = "not converged in 30 rounds"
                return "not converged", st
            time.sleep(0.05)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def policy_table(title, rows):
    L = ["", title, "",
         "Medians over the repetitions. Guest rate: what the guest wrote (MiB/s) during the "
         "migration, against before it.", "",
         "| config | converged | total ms | downtime ms | felt ms | rounds | throttle | "
         "guest MiB/s during / before | post-copy p50/p99 fault us | verified |",
         "|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    configs = []
    for r in rows:
        if r["config"] not in configs:
            configs.append(r["config"])
    for c in configs:
        rs = [r for r in rows if r["config"] == c]
        ok = [r for r in rs if r.get("status") == "completed"]
        def m(key, among):
            v = med([r.get(key) for r in among])
            return "-" if v is None else ("%g" % v if isinstance(v, float) else str(v))
        L.append("| %s | %d/%d | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |" % (
            c, len(ok), len(rs), m("total_ms", ok), m("downtime_ms", ok), m("felt_ms", ok),
            m("rounds", ok), m("throttle", ok), m("rate_during", rs), m("rate_before", rs),
            m("fault_p50_us", ok), m("fault_p99_us", ok),
            ", ".join(sorted({str(r.get("verified", "-")) for r in rs}))))
    return L


def report(out, throttle_rows, rows, link, dirty):
    L = ["# Convergence: kvmove and QEMU when the guest out-dirties the link", "",
         "Host: nested PVM KVM (`kvm_pvm`), 2 cores; every figure from one run of "
         "`bench/convergence.py`. Timings are noisy here: compare side by side.", "",
         "## The vCPU throttle (kvmove, x-set-throttle, CPU-bound guest)", "",
         "| throttle | written MiB/s | of unthrottled | ideal |", "|---:|---:|---:|---:|"]
    for r in throttle_rows:
        L.append("| %d %% | %.1f | %.3f | %.2f |" % (r["percent"], r["mib_s"] or 0,
                                                 r["of_unthrottled"] or 0, r["ideal"]))
    titles = {
        "capped": "## Policies on a capped link (guest dirties %.1f MiB/s under dirty logging; "
                  "link capped at %d MiB/s for both VMMs; 512 MiB guest, 64 MiB working set)"
                  % (dirty, link),
        "unshaped": "## Policies, unshaped (the guest asked to write without limit; no bandwidth "
                    "cap on either VMM; 512 MiB guest, 64 MiB working set)"}
    for point in ("capped", "unshaped"):
        prow = [r for r in rows if r.get("point") == point]
        if prow:
            L += policy_table(titles[point], prow)
    errs_t = [abs(r["pred_total_ms"] - r["total_ms"]) / r["total_ms"] for r in rows
              if r.get("pred_total_ms") and r.get("total_ms")]
    errs_d = [abs(r["pred_downtime_ms"] - r["downtime_ms"]) for r in rows
              if r.get("pred_downtime_ms") is not None and r.get("downtime_ms")]
    L += ["", "## Prediction against measurement (kvmove runs)", "",
          "Total time: relative error median %s, worst %s over %d runs. Downtime: absolute "
          "error median %s ms, worst %s ms." % (
              "%.0f %%" % (100 * statistics.median(errs_t)) if errs_t else "-",
              "%.0f %%" % (100 * max(errs_t)) if errs_t else "-", len(errs_t),
              "%.0f" % statistics.median(errs_d) if errs_d else "-",
              "%.0f" % max(errs_d) if errs_d else "-"), ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default=None)
    ap.add_argument("--reps", type=int, default=2, help="repetitions on the capped link")
    ap.add_argument("--unshaped-reps", type=int, default=1,
                    help="repetitions unshaped (0: skip that point)")
    ap.add_argument("--configs", default="kvmove-autoconverge,kvmove-postcopy,kvmove-hybrid,"
                    "kvmove-auto,qemu-autoconverge,qemu-postcopy")
    args = ap.parse_args()
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "convergence-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    r = Run(args)
    try:
        throttle_rows = r.throttle()
        link, dirty = r.link()
        rows = []
        configs = args.configs.split(",")
        for rep in range(args.reps):
            for c in configs:      # interleaved: each config sees the same host
                rows.append(r.one("capped", c, link))
        for rep in range(args.unshaped_reps):
            for c in configs:
                rows.append(r.one("unshaped", c, None))
        keys = sorted({k for row in rows for k in row})
        with open(os.path.join(out, "results.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        with open(os.path.join(out, "throttle.json"), "w") as f:
            json.dump(throttle_rows, f, indent=1)
        print(report(out, throttle_rows, rows, link, dirty))
        log("results in %s" % out)
    finally:
        r.cleanup()


if __name__ == "__main__":
    main()
