#!/usr/bin/env python3
"""Migrations are TLS 1.3 with mutual authentication unless an operator
says --insecure, and a destination talks only to the source it should.

  psk      a PSK made by kvmove keygen: migrated, memory verified
  x509     certificates (QEMU's layout, made with certtool) and a destination
           with --tls-peer naming the source's CN: migrated, verified
  refused  each with the reason named and the source's VM running on:
           no credentials at the source; a wrong PSK; a certificate of
           another CA; a valid certificate of a node the destination does
           not take (--tls-peer); a plaintext source at a TLS destination and
           a TLS source at a plaintext one; a source whose destination
           accepts and never answers (handshake deadline).  A silent
           connection to a destination is dropped after its deadline.  The
           destinations survive every refusal and then take their VM."""
import os
import socket
import threading

import kvtest
from kvtest import check

GUEST = kvtest.guest_cmdline(wss="32M", rate=32, hb=1000)


def boot(h, name, tls):
    vm = h.vmm(name=name, mem="256M", append=GUEST, tls=tls)
    vm.wait_ready()
    return vm


def refused(h, src, dst_uri, words, what):
    run = src.migrate(dst_uri)
    desc = run.stat("error-desc", default="") or run.stderr
    check(run.rc != 0, "%s: migrated anyway: %r" % (what, run.result))
    check(any(w in desc for w in words), "%s: the reason is not named (%r): %r"
          % (what, words, desc))
    check(src.cmd("query-status")["status"] == "running", "%s: the source stopped" % what)
    h.log("%s: refused: %s" % (what, desc))


def test(h):
    pki = h.tls_x509                    # CA 1: server cert, client CN "source"
    other_ca = kvtest.make_pki(os.path.join(h.tmpdir, "other-ca"), "source",
                               ca_name="someone else's CA")
    intruder = kvtest.make_pki(os.path.join(h.tmpdir, "intruder"), "intruder", ca_from=pki)
    psk = h.psk("web1.psk", identity="web1")
    wrong = h.psk("wrong.psk", identity="web1")

    # ---- x509, with the destination naming the one source it takes ----
    web1 = boot(h, "web1", tls=None)
    dst = h.incoming("dst", web1, extra=["--tls-peer", "source"])
    for name, tls, words in (
            ("no credentials", "none", ["no TLS credentials"]),
            ("another CA", ("x509", other_ca), ["CA", "certificate"]),
            ("a node not assigned", ("x509", intruder), ["intruder", "not the source"]),
            ("plaintext source", "insecure", ["TLS"])):
        vm = boot(h, "src-" + name.replace(" ", "-"), tls)
        refused(h, vm, dst.uri, words, name)
        vm.kill()
    # a connection that never says anything is dropped after the deadline
    idle = socket.create_connection(("127.0.0.1", dst.port))
    run = web1.migrate(dst.uri)
    idle.close()
    kvtest.check_migrated(web1, dst, run)
    err = dst.stderr()
    # four reached it: another CA, the intruder, plaintext, the silent one (a
    # source without credentials refuses itself before connecting)
    check(err.count("refused a connection") >= 4, "the destination did not report the "
          "refused peers: %r" % err[-3000:])
    h.log("x509 with --tls-peer: %s" % run.summary())

    # ---- PSK ----
    a = boot(h, "a", ("psk", psk))
    b = h.incoming("b", a, tls=("psk", psk))
    bad = boot(h, "bad", ("psk", wrong))
    refused(h, bad, b.uri, ["key", "PSK", "psk"], "a wrong PSK")
    run = a.migrate(b.uri)
    kvtest.check_migrated(a, b, run)
    h.log("PSK: %s" % run.summary())

    # ---- a TLS source at a plaintext destination ----
    c = boot(h, "c", ("psk", psk))
    plain = h.incoming("plain", c, tls="insecure")
    refused(h, c, plain.uri, ["plaintext"], "TLS source, plaintext destination")

    # ---- a destination that accepts and never answers ----
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    held = []
    t = threading.Thread(target=lambda: held.append(ls.accept()), daemon=True)
    t.start()
    refused(h, c, "tcp:127.0.0.1:%d" % ls.getsockname()[1], ["timed out", "time"],
            "a silent destination")
    ls.close()
    c.wait_verified()


kvtest.main(test)
