#!/usr/bin/env python3
"""The verifier catches a corrupted page: flip a byte inside the working set
behind the guest's back (x-corrupt-page) and expect VERIFY FAIL naming that
page.  This proves the memory verification the migration tests rely on
actually detects damage."""
import kvtest
from kvtest import check

PAGE = 4096


def test(h):
    # rate=0: nothing rewrites the page before the verifier looks at it.
    vm = h.vmm(name="corrupt", mem="1G",
               append=kvtest.guest_cmdline(wss="64M", rate=0, hb=1000, verify_every=200))
    vm.wait_ready()
    ranges = kvtest.parse_wss(vm.console)
    check(ranges, "no WSS lines before READY")
    i, _, _ = vm.console.wait_for(kvtest.RX_VERIFY_OK, timeout=120, fail_on=kvtest.RX_BAD,
                                  what="a clean VERIFY OK before corrupting")

    start, end = max(ranges, key=lambda r: r[1] - r[0])
    page = start + ((end - start) // 2) // PAGE * PAGE
    gpa = page + 123
    h.log("corrupting gpa 0x%x (page 0x%x) in WSS range 0x%x-0x%x" % (gpa, page, start, end))
    ret = vm.cmd("x-corrupt-page", {"gpa": gpa})
    check(ret == {"gpa": gpa}, "x-corrupt-page returned %r" % (ret,))

    _, _, m = vm.console.wait_for(r"^VERIFY FAIL cpu=\d+ page=(0x[0-9a-fA-F]+)(.*)$",
                                  start=i, timeout=120, what="VERIFY FAIL for the page")
    found = int(m.group(1), 16)
    check(found == page, "the guest reported page 0x%x, we corrupted page 0x%x (%s)"
          % (found, page, m.group(0)))
    h.log("guest reported: %s" % m.group(0))

    # A bad gpa is refused and does not hurt the VM.
    try:
        vm.cmd("x-corrupt-page", {"gpa": 1 << 50})
        raise kvtest.TestFailure("x-corrupt-page outside RAM succeeded")
    except kvtest.QMPError as e:
        h.log("outside RAM: %s" % e)
    vm.check_alive()


kvtest.main(test)
