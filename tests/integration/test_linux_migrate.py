#!/usr/bin/env python3
"""Migrating a Linux kernel while it boots.

Debian's kernel (PVH vmlinux, 2 vCPUs, the initramfs of guest/linux/) boots
on a source VMM.  After its banner, while it is still booting, it is
live-migrated to a second VMM (QMP `migrate {"uri": "tcp:..."}`), and later,
still booting there, quick-migrated through a file (`migrate {"uri":
"file:..."}`, then `kvmove run --restore`) to a third, and once both vCPUs
are up and the timer ticks, live-migrated again to a fourth.  A reference VM
boots the same kernel side by side, untouched.

Checks, at each switchover:
  - later boot messages appear on the new VMM's console;
  - the guest's console output, joined across the VMMs (a line cut by the
    switchover continues on the next console), has no duplicated and no
    missing lines: the lines around the switchover appear, contiguous and in
    the same order, in the reference VM's output (numbers masked);
  - kernel time stamps never go backwards, and across the switchover they
    advance by the host time that passed, less at most the downtime (the
    guest's clock stops while it is paused): no jump larger than the
    measured downtime.  At the third switchover the stamps are the
    jiffies-held clock (CLOCK below), so there they must only not go
    backwards or ahead of the host; their lag is logged.
Everything measured (downtime, time stamps, host times) is logged.
"""
import collections
import os
import re

import kvlinux
import kvtest
from kvtest import TestFailure, check, now, scaled

# CLOCK: printk time stamps are local_clock(), which follows kvm-clock from
# its first line until sched_clock_init() (around "Calibrating delay loop");
# from there until "clocksource: Switched to clocksource kvm-clock" it is
# held to jiffies-based time, and where interrupts stay off for long
# stretches (CPL-0 code in KVM's emulator on PVM hosts) jiffies fall
# behind: the stamps lag the host by tens of seconds with or without a
# migration.  Both switchovers are therefore in the first part.

MEM = "1G"
TOL = 1.0           # s: console arrival jitter (UART output is line-buffered)
WINDOW = 5          # lines each side of a switchover compared with the reference
AFTER = 4           # complete lines a new VMM must print before the next step

# Messages whose presence or position depends on timing, not on the boot
# sequence: left out of the comparison with the reference.
TIMING = re.compile(r"random: crng init|hrtimer: interrupt took|clocksource: .*watchdog|"
                    r"sched_clock: Marking stable|rcu: INFO|hogged CPU|"
                    r"clocksource: Switched to clocksource|tsc: Refined TSC")


def normalise(text):
    text = re.sub(r"0x[0-9a-fA-F]+", "#", text)
    return re.sub(r"\d+", "#", text).strip()


def joined(*vms):
    """The guest's console across VMMs: [(host_t, guest_t, text, vm_index)].
    A line cut at a switchover is joined, with the time the rest arrived."""
    out = []
    carry = b""
    for k, vm in enumerate(vms):
        with open(vm.console_path, "rb") as f:
            data = f.read()
        times = [t for t, _ in vm.console.snapshot()]
        parts = (carry + data).split(b"\n")
        carry = parts.pop()
        for i, p in enumerate(parts):
            text = p.rstrip(b"\r").decode("utf-8", "replace")
            t = times[i] if i < len(times) else now()
            gt, msg = kvlinux.parse_line(text)
            out.append((t, gt, msg, k))
    return out


def wait_lines(vm, n, timeout, start=0):
    """Wait for n complete console lines after line start; fail if the VMM dies."""
    deadline = now() + scaled(timeout)
    while len(vm.console) < start + n:
        vm.check_alive()
        if now() > deadline:
            raise TestFailure("%s printed %d lines in %.0f s, expected %d"
                              % (vm.name, len(vm.console) - start, scaled(timeout), n))
        with vm.console._cond:
            vm.console._cond.wait(0.2)


def migrate(src, uri):
    """QMP migrate on the source; the terminal MIGRATION event's data.  A
    source that completed waits in postmigrate (QMP's way) and is quit."""
    with src.qmp(timeout=30) as q:
        q.cmd("migrate", {"uri": uri})
        while True:
            ev = q.wait_event("MIGRATION", timeout=300)
            st = ev["data"].get("status")
            if st in ("completed", "failed", "cancelled"):
                if st == "completed":
                    rs = q.cmd("query-status")
                    check(rs.get("status") == "postmigrate",
                          "source after the migration: %r" % rs)
                    q.cmd("quit")
                return ev["data"]


def live_migrate(h, vm, name, what):
    """Live-migrate vm to a new VMM called name; wait until the guest's
    console goes on there.  Returns (the new VMM, downtime in s)."""
    dst = h.incoming(name, vm)
    h.log("%s at line %d: %s" % (what, len(vm.console), vm.console.tail(1)[0]))
    res = migrate(vm, dst.uri)
    h.log("%s: %r" % (what, res))
    check(res.get("status") == "completed", "%s: %r" % (what, res))
    downtime = res.get("stats", {}).get("downtime", 0) / 1000.0
    check(downtime > 0, "%s: no downtime in the stats: %r" % (what, res))
    rc = vm.wait_exit(timeout=60)
    check(rc == 0, "%s: the source VMM exited %d after the migration" % (what, rc))
    wait_lines(dst, AFTER, timeout=300)
    h.log("%s: the destination continues: %s" % (what, " | ".join(dst.console.tail(AFTER))))
    check(dst.cmd("query-status").get("status") == "running",
          "%s: the destination is not running" % what)
    return dst, downtime


def check_switchover(h, lines, ref_lines, k, downtime_s, what, judge_lag=True):
    """Checks at the boundary between VMM k-1 and VMM k of the joined stream."""
    first = next(i for i, l in enumerate(lines) if l[3] == k)
    # the last stamped line before and the first stamped line after (a
    # stamp of 0 means the kernel's clock did not run yet)
    before = [l for l in lines[:first] if l[1]]
    after = [l for l in lines[first:] if l[1]]
    check(before and after, "%s: no time-stamped lines on both sides" % what)
    (th1, tg1, m1, _), (th2, tg2, m2, _) = before[-1], after[0]
    host_dt, guest_dt = th2 - th1, tg2 - tg1
    h.log("%s: last line before: [%.6f] %s (host %.2f)" % (what, tg1, m1, th1 - h.t0))
    h.log("%s: first line after: [%.6f] %s (host %.2f)" % (what, tg2, m2, th2 - h.t0))
    h.log("%s: guest time +%.3f s over host time +%.3f s; downtime %.3f s; the guest "
          "clock lags by %.3f s" % (what, guest_dt, host_dt, downtime_s, host_dt - guest_dt))
    check(guest_dt >= 0, "%s: kernel time went backwards (%.6f -> %.6f)" % (what, tg1, tg2))
    check(guest_dt <= host_dt + TOL, "%s: kernel time jumped ahead: +%.3f s in %.3f s"
          % (what, guest_dt, host_dt))
    check(not judge_lag or host_dt - guest_dt <= downtime_s + TOL,
          "%s: kernel time stamps lag the host "
          "by %.3f s, more than the downtime %.3f s" % (what, host_dt - guest_dt, downtime_s))

    # No missing or duplicated lines: the window around the switchover is a
    # contiguous run of the reference's lines.
    keep = lambda ls: [normalise(l[2]) for l in ls if l[2].strip() and not TIMING.search(l[2])]
    lo = [l for l in lines[:first]][-WINDOW * 2:]
    hi = [l for l in lines[first:]][:WINDOW * 2]
    win = keep(lo)[-WINDOW:] + keep(hi)[:WINDOW]
    ref = keep(ref_lines)
    starts = [i for i in range(len(ref)) if ref[i:i + len(win)] == win]
    if not starts:
        h.log("%s: window around the switchover:\n    %s" % (what, "\n    ".join(win)))
        near = [i for i, r in enumerate(ref) if r == win[0]]
        ctx = ref[near[0]:near[0] + len(win) + 3] if near else ref[-len(win):]
        h.log("%s: the reference there:\n    %s" % (what, "\n    ".join(ctx)))
    check(starts, "%s: the %d lines around the switchover are not a contiguous run of "
          "the reference boot's lines (lost, duplicated or reordered output)"
          % (what, len(win)))


def check_order(lines, ref_lines, what):
    """Time stamps never go backwards, and no line appears more often than
    in the reference boot (the kernel itself prints a few lines twice, e.g.
    "printk: console [ttyS0] enabled" on the boot console and the real one)."""
    stamped = [(l[1], l[2]) for l in lines if l[1] is not None]
    for (a, ma), (b, mb) in zip(stamped, stamped[1:]):
        check(b >= a, "%s: time stamps go backwards: [%.6f] %s then [%.6f] %s"
              % (what, a, ma, b, mb))
    ref_count = collections.Counter(l[2] for l in ref_lines)
    for (stamp, text), n in collections.Counter(stamped).items():
        check(n == 1 or ref_count[text] >= n, "%s: line printed %d times, %d in the "
              "reference boot: [%.6f] %s" % (what, n, ref_count[text], stamp, text))


def test(h):
    vmlinux = kvlinux.vmlinux(h)
    initrd = kvlinux.initramfs(h)
    append = kvlinux.CMDLINE + " kvload.disk=none"
    args = dict(mem=MEM, cpus=2, kernel=vmlinux, append=append,
                extra=["--initrd", initrd])
    src = h.vmm(name="src", **args)
    ref = h.vmm(name="ref", **args)

    # Live, after the banner, once the kernel's clock runs (time stamps
    # before kvm-clock are all 0) and a few more lines are out.
    src.console.wait_for(r"Linux version \d", timeout=300, what="the kernel banner")
    i, _, _ = src.console.wait_for(r"^\[\s*\d+\.\d*[1-9]\d*\] ", timeout=300,
                                   what="a non-zero kernel time stamp")
    wait_lines(src, 3, timeout=300, start=i)
    dst, live_downtime = live_migrate(h, src, "dst", "live migration")

    # Quick migration a little later, still in the part of the boot where
    # the time stamps are the kernel's clock (see CLOCK below): save to a
    # file, restore in a third VMM.
    i, _, _ = dst.console.wait_for(r"Kernel command line:", timeout=300,
                                   what="the kernel command line message")
    wait_lines(dst, 2, timeout=300, start=i + 1)
    path = os.path.join(h.tmpdir, "vm.sav")
    t_pause = now()
    res = migrate(dst, "file:" + path)
    h.log("save: %r" % res)
    check(res.get("status") == "completed", "save: %r" % res)
    # the file is complete (synced and renamed) once the status says so
    rst = h.restore("rst", path, expect=dst.vm_name)
    deadline = now() + scaled(120)
    while True:
        try:
            if rst.cmd("query-status").get("status") == "running":
                break
        except (TestFailure, kvtest.QMPError, OSError):
            pass
        rst.check_alive()
        check(now() < deadline, "the restored VM is not running after 120 s")
    quick_downtime = now() - t_pause
    check(dst.wait_exit(timeout=60) == 0, "the saving VMM did not exit 0")
    h.log("quick migration: %.3f s from the save command to the restored VM running"
          % quick_downtime)
    wait_lines(rst, AFTER, timeout=300)
    h.log("restored VM continues: %s" % " | ".join(rst.console.tail(AFTER)))

    # Live again once both vCPUs run and the timer ticks through the LAPIC
    # (the IOAPIC/PIT timer check is behind it): the state a running SMP
    # kernel depends on.  Its console must go on in order; its time stamps
    # are the jiffies-held clock here (CLOCK above), so they must not go
    # backwards or jump ahead, and their lag is logged, not judged.
    i, _, _ = rst.console.wait_for(r"smp: Brought up \d+ nodes?, 2 CPUs", timeout=480,
                                   what="the second vCPU up")
    wait_lines(rst, 3, timeout=300, start=i + 1)
    dst2, smp_downtime = live_migrate(h, rst, "dst2", "live migration, 2 CPUs")

    # Let the reference get past the last switchover's window.
    lines = joined(src, dst, rst, dst2)
    last_switch = next(i for i, l in enumerate(lines) if l[3] == 3)
    try:
        wait_lines(ref, last_switch + 2 * WINDOW + 5, timeout=300)
    except TestFailure:
        # Where the reference's vCPUs are, for whoever reads the log.
        for _ in range(3):
            ref.cmd("stop")
            h.log("reference vCPUs: %r" % ref.cmd("x-query-vcpus"))
            ref.cmd("cont")
            kvtest.time.sleep(2)
        raise
    ref_lines = joined(ref)

    check_order(lines, ref_lines, "the migrated guest's console")
    check_switchover(h, lines, ref_lines, 1, live_downtime, "live migration")
    check_switchover(h, lines, ref_lines, 2, quick_downtime, "quick migration")
    check_switchover(h, lines, ref_lines, 3, smp_downtime, "live migration, 2 CPUs",
                     judge_lag=False)
    h.log("RESULT live downtime %.1f ms, quick %.1f s, live with 2 CPUs up %.1f ms; %d "
          "console lines across 4 VMMs (%s)"
          % (live_downtime * 1000, quick_downtime, smp_downtime * 1000, len(lines),
             " / ".join(str(sum(1 for l in lines if l[3] == k)) for k in range(4))))


kvtest.main(test)
