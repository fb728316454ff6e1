#!/usr/bin/env python3
"""A -> B -> A: a 2-vCPU guest (both CPUs dirtying and verifying their own
slices) migrates to a destination and back to a third VMM on A's side.
After each hop: the previous VMM exited 0, both CPUs verify all of their
memory on the new host, heartbeats stay consecutive across both switches
(the serial stream of A, B and A' is one stream)."""
import kvtest
from kvtest import check

WSS = 256 << 20


def test(h):
    a = h.vmm(name="a", mem="1G", cpus=2,
              append=kvtest.guest_cmdline(wss="256M", rate=32, hb=1000, cpus=2))
    b = h.incoming("b", a)
    a.wait_ready()
    a.console.wait_for(r"^CPUS 2$", timeout=60, what="CPUS 2")
    a.wait_verified(cpus=2)

    run1 = a.migrate(b.uri)
    kvtest.check_migrated(a, b, run1, cpus=2, wss=WSS)
    h.log("A -> B: %s" % run1.summary())

    a2 = h.incoming("a2", b)      # A's side again, a fresh VMM listening
    run2 = b.migrate(a2.uri)
    kvtest.check_migrated(b, a2, run2, cpus=2, wss=WSS)
    h.log("B -> A: %s" % run2.summary())

    seqs = kvtest.check_serial(a, b, a2)
    h.log("heartbeats %d..%d consecutive over A, B and A again" % (seqs[0], seqs[-1]))
    info = a2.cmd("query-vm")
    check(info.get("cpus") == 2 and info.get("mem") == 1 << 30 and info.get("name") == "a",
          "the VM after the round trip: %r" % info)


kvtest.main(test)
