#!/usr/bin/env python3
"""QMP conformance with QEMU: one client script drives a kvmove pair and a
QEMU 7.2 pair (same test guest) through what a migration manager does:
greeting, negotiation, identity and routine queries, capabilities and
parameters, a destination started with "-incoming defer" and given
migrate-incoming, migrate, query-migrate polled every 10 ms from the
instant migrate returns, events on both sides, postmigrate on the source,
migrate_cancel with nothing to cancel, quit.

Every answer and event is reduced to its shape (member names and JSON
types, recursively) and the two VMMs' shapes are diffed; the only
differences allowed are those listed in docs/CONTROL.md's block "Known
differences" (the test reads it from there).  Also, for kvmove alone:
query-migrate never answers "none" (nor {}) once migrate returned, and
"remaining" goes down during the first pass."""
import os
import re
import subprocess
import time

import kvtest
from kvtest import check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST = kvtest.guest_cmdline(wss="128M", rate=16, hb=1000)
MEM = "512M"


def shape(v):
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "str"
    return "null"


def diff(a, b, path, out):
    """Differences between kvmove's shape a and QEMU's b: (path, what)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = "%s.%s" % (path, k)
            if k not in b:
                out.append((p, "kvmove-only"))
            elif k not in a:
                out.append((p, "qemu-only"))
            else:
                diff(a[k], b[k], p, out)
    elif isinstance(a, list) and isinstance(b, list):
        if a and b:
            diff(a[0], b[0], path + "[]", out)
    elif a != b and {a, b} != {"int", "number"}:     # 0.0 may print as 0: both numbers
        out.append((path, "type %s vs %s" % (a, b)))


def known_differences():
    """The block of docs/CONTROL.md under "Known differences": lines
    'PATH  kvmove-only|qemu-only|type'; PATH may end in * (a prefix)."""
    text = open(os.path.join(ROOT, "docs", "CONTROL.md")).read()
    m = re.search(r"```known-differences\n(.*?)```", text, re.S)
    check(m, "docs/CONTROL.md has no ```known-differences block")
    rules = []
    for line in m.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            path, kind = line.split()[:2]
            rules.append((path, kind))
    return rules


def allowed(path, what, rules):
    for p, kind in rules:
        hit = path.startswith(p[:-1]) if p.endswith("*") else path == p
        if hit and (what == kind or (kind == "type" and what.startswith("type"))):
            return True
    return False


class Qemu:
    """A QEMU 7.2 VMM with the test guest, as bench/ starts it."""

    def __init__(self, h, name, incoming=False):
        self.h = h
        self.name = name
        self.dir = os.path.join(h.tmpdir, name)
        os.makedirs(self.dir)
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
                "-m", MEM, "-smp", "1", "-nographic", "-no-reboot", "-name", "web1",
                "-kernel", h.guest, "-append", GUEST, "-serial",
                "file:" + os.path.join(self.dir, "console.log"), "-display", "none",
                "-monitor", "none", "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if incoming:
            argv += ["-incoming", "defer"]
        self.proc = h.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = kvtest.now() + kvtest.scaled(30)
        while not os.path.exists(self.qmp_path):
            check(self.proc.poll() is None, "QEMU exited at once")
            check(kvtest.now() < deadline, "QEMU's QMP socket did not appear")
            time.sleep(0.05)

    def qmp(self):
        return kvtest.QMP(self.qmp_path, timeout=30, negotiate=False)


def run_script(h, src_qmp, dst_qmp, dst_port, tag, before_quit=None):
    """The manager's script; returns {step: answer} for the shape diff."""
    got = {}
    s, d = src_qmp(), dst_qmp()
    got["greeting"] = s.greeting
    got["qmp_capabilities"] = s.cmd("qmp_capabilities")
    d.cmd("qmp_capabilities")
    for q in ("query-version", "query-status", "query-name", "query-kvm", "query-cpus-fast",
              "query-block", "query-blockstats", "query-migrate",
              "query-migrate-capabilities", "query-migrate-parameters"):
        got[q] = s.cmd(q)
    got["query-commands"] = s.cmd("query-commands")
    got["migrate_cancel(idle)"] = s.cmd("migrate_cancel")
    got["migrate-set-capabilities"] = s.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "events", "state": True}]})
    got["migrate-set-parameters"] = s.cmd("migrate-set-parameters", {"downtime-limit": 300})
    params = s.cmd("query-migrate-parameters")
    check(params.get("downtime-limit") == 300, "%s: downtime-limit not set: %r" % (tag, params))
    got["dst:query-status"] = d.cmd("query-status")
    got["migrate-incoming"] = d.cmd("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % dst_port})

    # migrate exactly as libvirt sends it, then poll every 10 ms
    got["migrate"] = s.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % dst_port, "blk": False,
                                       "inc": False, "detach": True, "resume": False})
    polls = []
    deadline = kvtest.now() + kvtest.scaled(240)
    while True:
        q = s.cmd("query-migrate")
        polls.append(q)
        if q.get("status") in ("completed", "failed", "cancelled"):
            break
        check(kvtest.now() < deadline, "%s: the migration did not end: %r" % (tag, q))
        time.sleep(0.01)
    check(polls[-1].get("status") == "completed", "%s: %r" % (tag, polls[-1]))
    active = [p for p in polls if p.get("status") == "active"]
    got["query-migrate(active)"] = active[-1] if active else None
    got["query-migrate(completed)"] = polls[-1]
    got["query-status(after)"] = s.cmd("query-status")
    check(got["query-status(after)"].get("status") == "postmigrate",
          "%s: source after the migration: %r" % (tag, got["query-status(after)"]))
    deadline = kvtest.now() + kvtest.scaled(30)
    while d.cmd("query-status").get("status") != "running":
        check(kvtest.now() < deadline, "%s: destination not running" % tag)
        time.sleep(0.05)
    got["dst:query-migrate"] = d.cmd("query-migrate")
    got["query-block(dst)"] = d.cmd("query-block")
    if before_quit:
        before_quit()
    # events so far, by name (first of each)
    for side, c in (("src", s), ("dst", d)):
        try:
            while True:
                obj = c.read_obj(timeout=0.3)
                if obj is None:
                    break
                c.events.append(obj)
        except kvtest.TestFailure:
            pass
        for ev in c.events:
            key = "%s-event:%s" % (side, ev.get("event"))
            got.setdefault(key, ev)
        got["%s-statuses" % side] = [e["data"]["status"] for e in c.events
                                               if e.get("event") == "MIGRATION"]
    got["quit"] = s.cmd("quit")
    s.events = []
    try:
        s.wait_event("SHUTDOWN", timeout=10)
    except kvtest.TestFailure:
        pass
    s.close()
    d.cmd("quit")
    d.close()
    return got, polls


def test(h):
    rules = known_differences()

    # ---- kvmove ----
    ks = h.vmm(name="web1", mem=MEM, append=GUEST)
    kport = kvtest.free_port()
    kd = h.vmm(name="kdst", incoming="defer", expect="web1")
    ks.wait_ready()
    kgot, kpolls = run_script(
        h, lambda: kvtest.QMP(ks.control, timeout=30, negotiate=False),
        lambda: kvtest.QMP(kd.control, timeout=30, negotiate=False), kport, "kvmove",
        before_quit=lambda: kd.wait_verified(start=0))
    # truthful from the first instant, and moving during the first pass
    check(all(p.get("status") not in (None, "none") for p in kpolls),
          "query-migrate answered none/{} after migrate returned: %r"
          % [p.get("status") for p in kpolls[:5]])
    first = [p["ram"]["remaining"] for p in kpolls
             if p.get("status") == "active" and p["ram"]["dirty-sync-count"] == 0]
    check(len(first) >= 2 and first[-1] < first[0], "remaining did not go down during the "
          "first pass: %r" % first[:10])

    # ---- QEMU ----
    qs = Qemu(h, "qsrc")
    qport = kvtest.free_port()
    qd = Qemu(h, "qdst", incoming=True)
    time.sleep(1)
    qgot, _ = run_script(h, qs.qmp, qd.qmp, qport, "qemu")

    # ---- the diff ----
    problems, seen = [], []
    for step in sorted(set(kgot) | set(qgot)):
        if step.endswith("-statuses") or step == "query-commands":
            continue
        if step not in kgot or step not in qgot:
            what = "kvmove-only" if step in kgot else "qemu-only"
            if not allowed(step, what, rules):
                problems.append("%s: %s" % (step, what))
            continue
        out = []
        diff(shape(kgot[step]), shape(qgot[step]), step, out)
        for path, what in out:
            seen.append(path)
            if not allowed(path, what, rules):
                problems.append("%s: %s" % (path, what))
    h.log("kvmove MIGRATION statuses: src %r dst %r" % (kgot["src-statuses"],
                                                        kgot["dst-statuses"]))
    h.log("QEMU   MIGRATION statuses: src %r dst %r" % (qgot["src-statuses"],
                                                        qgot["dst-statuses"]))
    h.log("%d documented differences met" % len(seen))
    check(not problems, "undocumented differences from QEMU (add to docs/CONTROL.md's "
          "known-differences, or fix):\n  " + "\n  ".join(problems))
    check("completed" in kgot["dst-statuses"],
          "the kvmove destination did not report completion: %r" % kgot["dst-statuses"])
    qnames = {c["name"] for c in qgot["query-commands"]}
    knames = {c["name"] for c in kgot["query-commands"]}
    for name in ("query-version", "query-name", "query-cpus-fast", "query-kvm", "query-block",
                 "query-blockstats", "migrate-set-capabilities", "query-migrate-capabilities",
                 "migrate-set-parameters", "query-migrate-parameters", "migrate-incoming",
                 "migrate-start-postcopy", "migrate-continue", "system_powerdown",
                 "query-qmp-schema"):
        check(name in knames and name in qnames, "%s missing (kvmove %s, QEMU %s)"
              % (name, name in knames, name in qnames))


kvtest.main(test)
