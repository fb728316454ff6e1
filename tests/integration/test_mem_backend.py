#!/usr/bin/env python3
"""Guest RAM backends (--mem-backend, docs/MEMORY.md) across live migrations,
each host choosing its own: anon -> hugetlb -> memfd -> anon by pre-copy,
then anon -> memfd by post-copy (anon as a post-copy source), the guest
verifying all of its memory after every hop and its heartbeats unbroken.
What a backend cannot do is refused with a reason and changes nothing: a
same-host hand-over of anonymous RAM, and post-copy into anon or hugetlb
RAM (docs/MEMORY.md says why).

The test reserves 2 MiB huge pages for the hugetlb VMMs (root:
/proc/sys/vm/nr_hugepages) and puts the pool back as it found it."""
import os

import kvtest
from kvtest import check

WSS = 64 << 20
GUEST = kvtest.guest_cmdline(wss="64M", rate=16, hb=1000)
POOL = "/proc/sys/vm/nr_hugepages"


def backend(vm):
    return vm.cmd("query-vm").get("mem-backend")


def reserve_huge_pages(h, pages):
    with open(POOL) as f:
        old = int(f.read())

    def put_back():
        with open(POOL, "w") as f:
            f.write(str(old))
    h.add_cleanup(put_back)
    with open(POOL, "w") as f:
        f.write(str(old + pages))
    with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
        free = int(f.read())
    check(free >= pages, "reserved %d huge pages, only %d are free (memory too "
          "fragmented?)" % (pages, free))


def test(h):
    kvtest.require_kvm()        # before the host's huge-page pool is touched
    reserve_huge_pages(h, 2 * 128 + 8)      # two 256 MiB VMs may hold them at once

    a = h.vmm(name="a", mem="256M", append=GUEST, extra=["--mem-backend", "anon"])
    a.wait_ready()
    a.wait_verified()
    check(backend(a) == "anon", "a: %r" % backend(a))

    # anon -> hugetlb -> memfd, pre-copy
    b = h.incoming("b", a, extra=["--mem-backend", "hugetlb"])
    run = a.migrate(b.uri)
    kvtest.check_migrated(a, b, run, wss=WSS)
    check(backend(b) == "hugetlb", "b: %r" % backend(b))
    h.log("anon -> hugetlb: %s" % run.summary())

    c = h.incoming("c", b)
    run = b.migrate(c.uri)
    kvtest.check_migrated(b, c, run, wss=WSS)
    check(backend(c) == "memfd", "c: %r" % backend(c))
    h.log("hugetlb -> memfd: %s" % run.summary())

    d = h.incoming("d", c, extra=["--mem-backend", "anon"])
    run = c.migrate(d.uri)
    kvtest.check_migrated(c, d, run, wss=WSS)
    check(backend(d) == "anon", "d: %r" % backend(d))
    h.log("memfd -> anon: %s" % run.summary())

    # anonymous RAM cannot be handed to a new VMM on the same host
    run = d.migrate("unix:" + os.path.join(h.tmpdir, "d.mig"))
    check(run.rc != 0, "a same-host hand-over of anonymous RAM was started")
    why = run.stat("error-desc", default="") + run.stderr
    check("anonymous" in why and "tcp:127.0.0.1" in why, "no clear reason: %r" % why)
    check(d.cmd("query-status")["status"] == "running", "the VM stopped after the refusal")

    # post-copy into anon or hugetlb RAM: refused, named, nothing changes
    for b_ in ("hugetlb", "anon"):
        x = h.incoming("x-" + b_, d, extra=["--mem-backend", b_])
        run = d.migrate(x.uri, "--policy", "postcopy")
        check(run.rc != 0, "post-copy into %s RAM was accepted" % b_)
        why = run.stat("error-desc", default="") + run.stderr
        check("--mem-backend" in why, "no clear reason: %r" % why)
        check(d.cmd("query-status")["status"] == "running",
              "the VM stopped after the refusal")
        kvtest.check_never_ran(x)
    d.wait_verified()

    # anon as a post-copy source
    e = h.incoming("e", d)
    run = d.migrate(e.uri, "--policy", "postcopy")
    kvtest.check_migrated(d, e, run, wss=WSS)
    check(run.stat("x-policy") == "postcopy", "x-policy %r" % run.stat("x-policy"))
    h.log("anon -> memfd (post-copy): %s" % run.summary())
    kvtest.check_serial(a, b, c, d, e)


kvtest.main(test)
