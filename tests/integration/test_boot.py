#!/usr/bin/env python3
"""Boot the test guest: banner, working set, heartbeats with increasing
sequence numbers, VERIFY OK, and never VERIFY FAIL or EXCEPTION."""
import kvtest
from kvtest import check

WSS = 256 << 20


def test(h):
    vm = h.vmm(name="boot", mem="1G", cpus=1,
               append=kvtest.guest_cmdline(wss="256M", rate=32, hb=1000, seed=7))
    vm.wait_ready()

    _, _, m = vm.console.wait_for(r"KVMOVE-TESTGUEST v1 (.*)$")
    fields = dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
    h.log("banner: %s" % fields)
    check(fields.get("cpus") == "1", "banner says cpus=%s, expected 1" % fields.get("cpus"))
    # mem is the RAM the guest found in its memory map (less what firmware
    # tables and holes take): close to, never above, what we gave it.
    mem = int(fields.get("mem", "0"))
    check((1 << 30) * 0.9 <= mem <= 1 << 30,
          "banner says mem=%d, expected about %d" % (mem, 1 << 30))
    check(fields.get("wss") == str(WSS),
          "banner says wss=%s, expected %d" % (fields.get("wss"), WSS))

    ranges = kvtest.parse_wss(vm.console)
    check(ranges, "no WSS lines before READY")
    total = sum(e - s for s, e in ranges)
    check(total == WSS, "WSS ranges cover %d bytes, expected %d: %s"
          % (total, WSS, ["0x%x-0x%x" % r for r in ranges]))
    for s, e in ranges:
        check(s < e and s % 4096 == 0 and e % 4096 == 0,
              "bad WSS range 0x%x-0x%x" % (s, e))

    # Heartbeats: a good run of them, with sequence numbers increasing.
    i0, _, m0 = vm.console.wait_for(kvtest.RX_HB, timeout=60, fail_on=kvtest.RX_BAD,
                                    what="the first heartbeat")
    first = int(m0.group(1))
    kvtest.wait_hb(vm.console, min_seq=first + 50, start=i0, timeout=60)
    vm.console.wait_for(kvtest.RX_VERIFY_OK + r"\b", timeout=120, fail_on=kvtest.RX_BAD,
                        what="VERIFY OK")

    hbs = kvtest.heartbeats(vm.console)
    check(len(hbs) >= 50, "only %d heartbeats" % len(hbs))
    seqs = [s for _, s, _ in hbs]
    for a, b in zip(seqs, seqs[1:]):
        check(b > a, "heartbeat sequence went from %d to %d" % (a, b))
    gaps = sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1)
    h.log("%d heartbeats, seq %d..%d (first seen %d), %d gaps in seq"
          % (len(hbs), seqs[0], seqs[-1], first, gaps))
    guest_us = [g for _, _, g in hbs]
    for a, b in zip(guest_us, guest_us[1:]):
        check(b >= a, "guest clock went backwards in heartbeats: %d -> %d" % (a, b))

    kvtest.check_no_errors(vm.console)
    vm.check_alive()


kvtest.main(test)
