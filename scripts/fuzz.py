#!/usr/bin/env python3
"""Run the libFuzzer targets of a KVMOVE_FUZZ build (docs/FUZZING.md).

    scripts/fuzz.py --build build-fuzz --seconds 600        # make fuzz
    scripts/fuzz.py --build build-fuzz --seconds 15 --smoke # make fuzz-smoke
    scripts/fuzz.py --build build-fuzz --seconds 60 fuzz_ram fuzz_stream

One target at a time (the machine is shared; -jobs would double the load),
each on its committed seeds (tests/fuzz/corpus/<target>/, read only), the
inputs that once broke it (tests/fuzz/regressions/<target>/: fixed;
tests/fuzz/crashes/<target>/: reported, tolerated by the target), plus a
working corpus in the build directory that new inputs go to: kept between
runs of `make fuzz`, fresh for every smoke run so a smoke result does not
depend on earlier runs.  Crashes, leaks, timeouts and out-of-memory inputs
land in BUILD/fuzz-artifacts/<target>/, the output in BUILD/fuzz-logs/.
At the end: a table of executions, executions per second and libFuzzer's
final coverage (cov: edges, ft: features) per target.  Exit status 1 if any
target failed.  Standard library only.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "tests", "fuzz", "corpus")
REGRESSIONS = os.path.join(ROOT, "tests", "fuzz", "regressions")
CRASHES = os.path.join(ROOT, "tests", "fuzz", "crashes")
DICTS = os.path.join(ROOT, "tests", "fuzz", "dict")
SYMBOLIZER = "/usr/lib/llvm-14/bin/llvm-symbolizer"

# Longest input per target: room for what the format needs (a RAM record
# with a few data pages, a vCPU's state, the test guest's loadable image),
# no more, so mutations stay fast.
MAX_LEN = {
    "fuzz_stream": 32768,
    "fuzz_ram": 20480,
    "fuzz_devstate": 32768,
    "fuzz_vmstate": 8192,
    "fuzz_config": 16384,
    "fuzz_pc_ranges": 4096,
    "fuzz_control": 4096,
    "fuzz_virtqueue": 20480,
    "fuzz_elf": 81920,
    "fuzz_bzimage": 16384,
    "fuzz_hello": 4096,
    "fuzz_local": 4096,
}
DICT = {"fuzz_config": "json.dict", "fuzz_control": "json.dict", "fuzz_hello": "json.dict",
        "fuzz_local": "json.dict"}

RX_DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")
RX_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")


def targets(build):
    d = os.path.join(build, "fuzz")
    if not os.path.isdir(d):
        sys.exit("fuzz.py: no %s: configure with CC=clang cmake -DKVMOVE_FUZZ=ON" % d)
    return sorted(f for f in os.listdir(d)
                  if f.startswith("fuzz_") and os.access(os.path.join(d, f), os.X_OK))


def run_one(build, name, seconds, smoke):
    work = os.path.join(build, "fuzz-smoke-corpus" if smoke else "fuzz-corpus", name)
    arts = os.path.join(build, "fuzz-artifacts", name)
    logs = os.path.join(build, "fuzz-logs")
    if smoke:
        shutil.rmtree(work, ignore_errors=True)
    for d in (work, arts, logs):
        os.makedirs(d, exist_ok=True)
    cmd = [os.path.join(build, "fuzz", name),
           "-max_total_time=%d" % seconds, "-print_final_stats=1",
           "-timeout=10", "-rss_limit_mb=2048", "-max_len=%d" % MAX_LEN.get(name, 4096),
           "-artifact_prefix=%s/" % arts]
    if name in DICT:
        cmd.append("-dict=%s" % os.path.join(DICTS, DICT[name]))
    cmd.append(work)
    for d in (os.path.join(SEEDS, name), os.path.join(REGRESSIONS, name),
              os.path.join(CRASHES, name)):
        if os.path.isdir(d):
            cmd.append(d)
    env = dict(os.environ)
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if os.path.exists(SYMBOLIZER):
        env.setdefault("ASAN_SYMBOLIZER_PATH", SYMBOLIZER)
        env.setdefault("UBSAN_SYMBOLIZER_PATH", SYMBOLIZER)
    log = os.path.join(logs, name + ".log")
    t0 = time.monotonic()
    with open(log, "w") as f:
        # a hang in the fuzzer itself must not hang make: libFuzzer stops at
        # max_total_time, so twice that plus loading time is plenty
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                timeout=2 * seconds + 120).returncode
        except subprocess.TimeoutExpired:
            rc = "hung"
    took = time.monotonic() - t0
    res = {"name": name, "rc": rc, "took": took, "log": log, "arts": arts}
    with open(log, errors="replace") as f:
        lines = f.read().splitlines()
    for ln in lines:
        m = RX_DONE.match(ln)
        if m:
            res.update(execs=int(m.group(1)), cov=int(m.group(2)), ft=int(m.group(3)),
                       corp=int(m.group(4)))
        m = RX_STAT.match(ln)
        if m:
            res[m.group(1)] = int(m.group(2))
    res["ok"] = rc == 0 and "cov" in res
    if not res["ok"]:
        res["tail"] = lines[-60:]
    return res


def table(results):
    head = ("target", "result", "seconds", "executions", "exec/s", "cov", "ft", "corpus",
            "rss MiB")
    rows = []
    for r in results:
        execs = r.get("number_of_executed_units", r.get("execs", 0))
        rows.append((r["name"], "ok" if r["ok"] else "FAILED (%s)" % r["rc"],
                     "%.0f" % r["took"], str(execs),
                     str(r.get("average_exec_per_sec", "-")), str(r.get("cov", "-")),
                     str(r.get("ft", "-")), str(r.get("corp", "-")),
                     str(r.get("peak_rss_mb", "-"))))
    w = [max(len(x[i]) for x in rows + [head]) for i in range(len(head))]
    out = ["  ".join(h.ljust(w[i]) for i, h in enumerate(head)),
           "  ".join("-" * n for n in w)]
    out += ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-fuzz")
    ap.add_argument("--seconds", type=int, default=600, help="per target")
    ap.add_argument("--smoke", action="store_true",
                    help="a fresh working corpus (seeds only), for make fuzz-smoke")
    ap.add_argument("names", nargs="*", help="targets (default: all)")
    a = ap.parse_args()
    names = a.names or targets(a.build)
    results = []
    for n in names:
        print("fuzz.py: %s for %d s ..." % (n, a.seconds), flush=True)
        r = run_one(a.build, n, a.seconds, a.smoke)
        results.append(r)
        if not r["ok"]:
            print("fuzz.py: %s FAILED (exit %s); last lines of %s:" % (n, r["rc"], r["log"]))
            print("\n".join("    " + x for x in r["tail"]))
            print("fuzz.py: the input is in %s/ (reproduce: %s/fuzz/%s FILE)"
                  % (r["arts"], a.build, n), flush=True)
    print()
    print(table(results))
    failed = [r["name"] for r in results if not r["ok"]]
    if failed:
        print("\nfuzz.py: FAILED: %s" % " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
