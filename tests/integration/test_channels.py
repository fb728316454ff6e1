#!/usr/bin/env python3
"""RAM over several connections (kvmove migrate --channels N).

  1. 4 channels, a guest dirtying 64 MiB/s of a 128 MiB working set: the
     migration completes with 4 connections (counted by a proxy that sees
     every record: each extra one carries HELLO, RAM and CHANNEL_END only),
     and the guest verifies all of its memory on the destination.
  2. the VM that arrived that way moves on over 2 channels: pages resent in
     later rounds go on the connection of their stripe, and every page is
     the newest on the destination (the verifier).
  3. an extra channel cut in the middle of RAM: the migration fails before
     GO like a broken single stream; the source VM runs on and verifies; the
     destination names the channel and never ran the guest.
  4. cancel during the first pass with 4 channels: status cancelled, the VM
     runs on at the source.
  5. strangers that connect to the destination while it waits for the
     extra channels (one silent, one speaking HTTP) are turned away, the
     silent one without holding up the real channel; the migration
     completes."""
import socket

import kvtest
from kvfault import FaultProxy
from kvtest import check

WSS = 128 << 20


def conns_by_kind(px):
    """The proxied connections' source-side records, per connection."""
    out = {}
    for r in list(px.records):
        if r.dir == "src":
            out.setdefault(r.conn, set()).add(r.name)
    return out


def test(h):
    # 1. four channels
    src = h.vmm(name="src", mem="512M",
                append=kvtest.guest_cmdline(wss="128M", rate=64, hb=1000))
    dst = h.incoming("dst1", src)
    px = FaultProxy(h, dst.port)
    src.wait_ready()
    src.wait_verified()
    run = src.migrate(px.uri, "--channels", "4")
    kvtest.check_migrated(src, dst, run, cpus=1, wss=WSS)
    kinds = conns_by_kind(px)
    check(len(kinds) == 4, "expected 4 connections, the proxy saw %d: %s"
          % (len(kinds), px.summary()))
    extra = [k for c, k in kinds.items() if c != 0]
    for k in extra:
        check(k == {"HELLO", "RAM", "CHANNEL_END"},
              "an extra channel carried %s" % sorted(k))
    check("CONFIG" in kinds[0] and "STATE_END" in kinds[0],
          "the first connection carried %s" % sorted(kinds[0]))
    h.log("1. 4 channels, 64 MiB/s: %s" % run.summary())
    px.close()

    # 2. the same VM on, over 2 channels
    dst2 = h.incoming("dst2", dst)
    run = dst.migrate(dst2.uri, "--channels", "2")
    kvtest.check_migrated(dst, dst2, run, cpus=1, wss=WSS)
    h.log("2. on over 2 channels: %s" % run.summary())
    src = dst2

    # 3. an extra channel cut in the middle of RAM
    dst3 = h.incoming("dst3", src)
    px = FaultProxy(h, dst3.port)
    cut = px.cut("src", "RAM", nth=40, conn=2)
    mig = src.migrate_bg(px.uri, "--channels", "3")
    cut.wait()
    run = mig.finish(timeout=180)
    run.expect(1, "failed")
    rc = dst3.wait_exit(timeout=90)
    check(rc == 1, "the destination exited %d, expected 1" % rc)
    err = dst3.stderr()
    check("channel 3 of 3" in err, "the destination does not name the channel: %r" % err)
    kvtest.check_never_ran(dst3)
    check(src.cmd("query-status").get("status") == "running", "the source VM is not running")
    src.wait_verified()
    kvtest.check_serial(src)
    h.log("3. channel cut: %s: %s" % (run.stat("x-error-id"), run.stat("error-desc")))
    px.close()

    # 4. cancel while an extra channel is blocked (the proxy holds its RAM)
    dst4 = h.incoming("dst4", src)
    px = FaultProxy(h, dst4.port)
    hold = px.stall("src", "RAM", nth=2, conn=3)
    mig = src.migrate_bg(px.uri, "--channels", "4")
    hold.wait()
    check(src.cmd("query-migrate")["status"] == "active", "not in pre-copy while held")
    src.cmd("migrate_cancel")
    run = mig.finish(timeout=120)
    run.expect(4, "cancelled", "cancelled")
    hold.release()
    check(dst4.wait_exit(timeout=90) == 1, "the destination of a cancelled migration "
          "did not exit 1")
    kvtest.check_never_ran(dst4)
    check(src.cmd("query-status").get("status") == "running", "the source VM is not running")
    src.wait_verified()
    px.close()
    h.log("4. cancelled with 4 channels: %s" % run.summary())

    # 5. a stranger while the destination waits for the extra channels
    dst5 = h.incoming("dst5", src)
    px = FaultProxy(h, dst5.port)
    hold = px.stall("src", "HELLO", nth=1, conn=1)     # the first extra channel
    mig = src.migrate_bg(px.uri, "--channels", "2")
    hold.wait()
    # a silent one (it would hold a one-at-a-time handshake for its whole
    # timeout) and a talkative one
    quiet = socket.create_connection(("127.0.0.1", dst5.port), timeout=10)
    noisy = socket.create_connection(("127.0.0.1", dst5.port), timeout=10)
    noisy.sendall(b"GET / HTTP/1.0\r\n\r\n")
    hold.release()
    run = mig.finish(timeout=300)
    quiet.close()
    noisy.close()
    kvtest.check_migrated(src, dst5, run, cpus=1, wss=WSS)
    check("refused a connection while waiting for the migration's channels"
          in dst5.stderr(), "the stranger was not reported: %r" % dst5.stderr())
    h.log("5. stranger turned away; migrated: %s" % run.summary())
    px.close()


kvtest.main(test)
