#!/usr/bin/env python3
"""Preflight, before any memory moves, with one source VM (1 GiB):

  - unreachable destination (nobody listens): exit 5, x-error-id unreachable
  - --check-only against a destination too small for the VM (--max-mem 512M):
    exit 3, failure id memory; the destination exits 3 naming the check
  - a real migration to such a destination: exit 3, x-error-id preflight,
    failure id memory; the destination exits 3
  - --check-only against a good destination: exit 0, "preflight passed";
    the destination keeps waiting, and a real migration to it then works

The VM keeps running untouched on the source after every refusal and
verifies all of its memory; refusing destinations never ran the guest."""
import json

import kvtest
from kvtest import check

WSS = 256 << 20


def refused(h, src, run, dst):
    run.expect(3, "failed", "preflight")
    fails = run.stat("x-preflight", "failures", default=[])
    check(run.stat("x-preflight", "ok") is False, "x-preflight: %r" % run.stat("x-preflight"))
    check(any(f.get("id") == "memory" for f in fails), "no 'memory' failure in %r" % fails)
    check(run.stat("ram", "transferred", default=-1) < (1 << 20),
          "%r bytes went to a destination that refused" % run.stat("ram", "transferred"))
    rc = dst.wait_exit(timeout=60)
    check(rc == 3, "the refusing destination exited %d, expected 3" % rc)
    err = dst.stderr()
    check("preflight" in err and "[memory]" in err, "destination stderr: %r" % err)
    kvtest.check_never_ran(dst)
    check(src.cmd("query-status")["status"] == "running", "source not running")
    return fails


def test(h):
    src = h.vmm(name="src", mem="1G", append=kvtest.guest_cmdline(wss="256M", rate=32, hb=1000))
    src.wait_ready()
    src.wait_verified()

    # nobody listens
    port = kvtest.free_port()
    run = src.migrate("tcp:127.0.0.1:%d" % port)
    run.expect(5, "failed", "unreachable")
    h.log("unreachable: %s" % run.stat("error-desc"))
    r = src.cli("migrate", "--to", "tcp:127.0.0.1:%d" % port)
    check(r.returncode == 5 and "cannot reach the destination" in r.stderr,
          "human mode, unreachable: exit %d, stderr %r" % (r.returncode, r.stderr))

    # check-only against a destination that is too small
    small = h.incoming("small1", src, extra=["--max-mem", "512M"])
    run = src.migrate(small.uri, "--check-only")
    check(run.stat("x-check-only") is True, "x-check-only: %r" % run.result)
    fails = refused(h, src, run, small)
    h.log("check-only refused: %s" % json.dumps(fails))

    # a real migration to a destination that is too small (human output)
    small = h.incoming("small2", src, extra=["--max-mem", "512M"])
    r = src.cli("migrate", "--to", small.uri)
    check(r.returncode == 3, "refused migration, human mode: exit %d" % r.returncode)
    check("refused the VM at preflight" in r.stderr and "[memory]" in r.stderr,
          "human mode does not show the failed check: %r" % r.stderr)
    q = src.cmd("query-migrate")
    check(q.get("x-error-id") == "preflight", "query-migrate after refusal: %r" % q)
    rc = small.wait_exit(timeout=60)
    check(rc == 3, "the refusing destination exited %d, expected 3" % rc)
    kvtest.check_never_ran(small)
    src.wait_verified()
    kvtest.check_serial(src)

    # check-only against a good destination, then the real thing
    dst = h.incoming("dst", src)
    r = src.cli("migrate", "--to", dst.uri, "--check-only")
    check(r.returncode == 0 and "preflight passed" in r.stdout,
          "check-only against a good destination: exit %d, stdout %r, stderr %r"
          % (r.returncode, r.stdout, r.stderr))
    run = src.migrate(dst.uri, "--check-only")
    run.expect(0, "completed")
    check(run.stat("x-check-only") is True and run.stat("x-preflight", "ok") is True,
          "check-only result: %r" % run.result)
    ram = run.stat("ram", default={})
    check(ram.get("normal", -1) == 0 and ram.get("duplicate", -1) == 0,
          "check-only moved memory: %r" % ram)
    check(isinstance(run.stat("x-prediction"), dict), "check-only predicted nothing: %r"
          % run.result)
    dst.check_alive()
    check(dst.cmd("query-status")["status"] == "inmigrate", "the destination stopped waiting")
    dst.wait_listening()
    src.check_alive()
    check(src.cmd("query-status")["status"] == "running", "check-only stopped the source")

    run = src.migrate(dst.uri)
    kvtest.check_migrated(src, dst, run, wss=WSS)
    h.log("after two check-only probes: %s" % run.summary())


kvtest.main(test)
