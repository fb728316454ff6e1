#!/usr/bin/env python3
"""vCPU throttling (auto-converge's tool) works on any host: a guest that
writes memory as fast as its CPU lets it is throttled through the control
socket (x-set-throttle) at 20, 50, 80 and 99 %, and the guest's own write
counter (VERIFY lines, writes=) says how fast it still writes.

  - every step strictly lowers the guest's write rate;
  - at 99 % the guest writes less than a tenth of its unthrottled rate;
  - a pause while throttled at 99 % parks the vCPU (query-status says
    paused, the heartbeats stop) and cont gives it back, still throttled;
  - x-set-throttle is refused for bad values.

Rates are ratios measured in one run, against the same guest unthrottled:
no host speed is assumed.  The rates and the pause latency are logged for
bench/ (they are not judged here)."""
import kvtest
from kvtest import check

# rate far above what one vCPU can write: the guest is CPU-bound, so its
# write rate follows the CPU time it gets
GUEST = kvtest.guest_cmdline(wss="64M", rate=1000000, hb=10000, verify_every=500)
RX = r"^VERIFY OK (\d+) cpu=0 pages=(\d+) writes=(\d+)"
WINDOW_S = 4.0


def write_rate(vm, seconds=WINDOW_S):
    """Pages/s the guest wrote over at least `seconds` of host time, from two
    VERIFY lines (host arrival times)."""
    i, t0, m = vm.console.wait_for(RX, start=len(vm.console), timeout=60,
                                   fail_on=kvtest.RX_BAD, what="a VERIFY line")
    w0 = int(m.group(3))
    while True:
        i, t1, m = vm.console.wait_for(RX, start=i + 1, timeout=60, fail_on=kvtest.RX_BAD,
                                       what="a later VERIFY line")
        if t1 - t0 >= seconds:
            return (int(m.group(3)) - w0) / (t1 - t0)


def test(h):
    vm = h.vmm(name="t", mem="512M", append=GUEST)
    vm.wait_ready()
    vm.wait_verified()

    for bad in (-1, 100, "50", None):
        try:
            vm.cmd("x-set-throttle", {"percent": bad} if bad is not None else {})
        except kvtest.QMPError as e:
            check("percent" in e.desc, "unhelpful error for %r: %s" % (bad, e.desc))
        else:
            raise kvtest.TestFailure("x-set-throttle accepted percent=%r" % bad)

    rates = {0: write_rate(vm)}
    h.log("unthrottled: %.0f pages/s" % rates[0])
    for pct in (20, 50, 80, 99):
        r = vm.cmd("x-set-throttle", {"percent": pct})
        check(r.get("percent") == pct, "x-set-throttle answered %r" % r)
        write_rate(vm, 1.5)     # let the new duty cycle settle
        rates[pct] = write_rate(vm, WINDOW_S if pct < 99 else 2 * WINDOW_S)
        h.log("throttle %2d%%: %.0f pages/s (%.3f of unthrottled; ideal %.2f)"
              % (pct, rates[pct], rates[pct] / rates[0], (100 - pct) / 100))
    steps = [0, 20, 50, 80, 99]
    for a, b in zip(steps, steps[1:]):
        check(rates[b] < rates[a], "throttle %d%% did not lower the write rate below %d%%'s: "
              "%.0f vs %.0f pages/s (all: %r)" % (b, a, rates[b], rates[a], rates))
    check(rates[99] < rates[0] / 10, "at 99%% the guest still writes %.0f pages/s, more than "
          "a tenth of %.0f unthrottled" % (rates[99], rates[0]))

    # a pause must not wait out a throttle sleep (up to ~1 s at 99 %)
    t0 = kvtest.now()
    vm.cmd("stop")
    latency = kvtest.now() - t0
    check(vm.cmd("query-status")["status"] == "paused", "not paused after stop")
    n = len(vm.console)
    h.log("pause latency at 99%% throttle: %.1f ms" % (latency * 1e3))
    seen = len(kvtest.heartbeats(vm.console, n))
    kvtest.time.sleep(1.5)
    check(len(kvtest.heartbeats(vm.console, n)) <= seen + 1,
          "heartbeats went on while paused")
    vm.cmd("cont")
    kvtest.wait_hb(vm.console, start=len(vm.console))
    after = write_rate(vm, 2 * WINDOW_S)
    check(after < rates[0] / 10, "after cont the guest is no longer throttled: %.0f pages/s"
          % after)
    vm.cmd("x-set-throttle", {"percent": 0})
    back = write_rate(vm)
    check(back > rates[80], "unthrottled again but still slow: %.0f pages/s (80%%: %.0f)"
          % (back, rates[80]))
    h.log("back to 0%%: %.0f pages/s" % back)
    vm.wait_verified()
    kvtest.check_no_errors(vm.console)


kvtest.main(test)
