#!/usr/bin/env python3
"""A VMM that takes its VM from elsewhere confines itself before it reads a
byte of it: an incoming VMM (and a restoring one) runs under a seccomp
filter (mode 2), with no-new-privs, an empty capability bounding set and
only the capabilities it may need; exec, fork and unshare fail with EPERM
when tried from inside it (x-query-sandbox tries them: an exec of a path
that does not exist would say ENOENT without the filter).  A migration into
it, with post-copy, and a restore complete and verify under the filter.
A VMM that boots its own kernel is not confined (it reads nothing from a
peer)."""
import os

import kvtest
from kvtest import check

CAP_NET_ADMIN, CAP_DAC_OVERRIDE, CAP_SYS_PTRACE = 12, 1, 19
ALLOWED = (1 << CAP_NET_ADMIN) | (1 << CAP_DAC_OVERRIDE) | (1 << CAP_SYS_PTRACE)


def status(vm):
    with open("/proc/%d/status" % vm.proc.pid) as f:
        return dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)


def check_confined(vm):
    st = status(vm)
    check(st.get("Seccomp") == "2", "%s: Seccomp %r" % (vm.name, st.get("Seccomp")))
    check(st.get("NoNewPrivs") == "1", "%s: NoNewPrivs %r" % (vm.name, st.get("NoNewPrivs")))
    eff, bnd = int(st["CapEff"], 16), int(st["CapBnd"], 16)
    check(eff & ~ALLOWED == 0, "%s: capabilities beyond what it needs: %#x" % (vm.name, eff))
    check(bnd == 0, "%s: bounding set %#x" % (vm.name, bnd))
    p = vm.cmd("x-query-sandbox")
    for what in ("execve", "fork", "unshare"):
        check(p.get(what) == "Operation not permitted", "%s: %s answered %r (%r)"
              % (vm.name, what, p.get(what), p))
    return p


def test(h):
    src = h.vmm(name="web1", mem="256M", append=kvtest.guest_cmdline(wss="32M", rate=64))
    src.wait_ready()
    check(status(src).get("Seccomp") == "0", "a VMM booting its own kernel is confined")
    dst = h.incoming("dst", src)
    p = check_confined(dst)
    h.log("incoming VMM, before the migration: %r" % p)
    run = src.migrate(dst.uri, "--policy", "postcopy", "--bandwidth", "16")
    kvtest.check_migrated(src, dst, run)
    check_confined(dst)

    path = os.path.join(h.tmpdir, "web1.kvmstate")
    dst.save(path).expect(0, "completed")
    dst.wait_exit(timeout=60)
    r = h.restore("restored", path, expect="web1")
    r.wait_verified(start=0)
    check_confined(r)
    kvtest.check_serial(src, dst, r)


kvtest.main(test)
