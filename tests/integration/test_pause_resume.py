#!/usr/bin/env python3
"""kvmove pause / resume: STOP and RESUME events, status says paused, no
heartbeats while paused, heartbeats continue with the next sequence number
after resume, and the guest's memory still verifies."""
import json
import time

import kvtest
from kvtest import check


def test(h):
    vm = h.vmm(name="pr", mem="1G",
               append=kvtest.guest_cmdline(wss="64M", rate=32, hb=1000))
    vm.wait_ready()
    kvtest.wait_hb(vm.console, min_seq=10, timeout=60)

    with vm.qmp() as q:
        r = vm.cli("pause")
        check(r.returncode == 0, "kvmove pause exited %d: %s" % (r.returncode, r.stderr))
        check(r.stdout.strip() == "pr: paused", "kvmove pause printed %r" % r.stdout)
        q.wait_event("STOP", timeout=30)

        r = vm.cli("status", "--json")
        check(r.returncode == 0, "status --json exited %d" % r.returncode)
        st = json.loads(r.stdout)
        check(st.get("status") == "paused" and st.get("running") is False,
              "status while paused: %r" % st)

        # Output already in flight when the vCPUs stopped settles first.
        time.sleep(0.3)
        n_paused = len(vm.console)
        hbs = kvtest.heartbeats(vm.console)
        check(hbs, "no heartbeats before pause")
        last_seq = hbs[-1][1]
        time.sleep(1.0)
        new = kvtest.heartbeats(vm.console, n_paused)
        check(not new, "%d heartbeats arrived while paused (first: seq %d)"
              % (len(new), new[0][1] if new else -1))
        h.log("paused at HB seq %d; quiet for 1 s" % last_seq)

        r = vm.cli("resume")
        check(r.returncode == 0, "kvmove resume exited %d: %s" % (r.returncode, r.stderr))
        check(r.stdout.strip() == "pr: running", "kvmove resume printed %r" % r.stdout)
        q.wait_event("RESUME", timeout=30)

    i, _, seq, _ = kvtest.wait_hb(vm.console, min_seq=0, start=n_paused, timeout=60)
    check(seq == last_seq + 1, "first heartbeat after resume has seq %d, expected %d"
          % (seq, last_seq + 1))
    kvtest.wait_hb(vm.console, min_seq=seq + 20, start=i, timeout=60)
    vm.console.wait_for(kvtest.RX_VERIFY_OK, start=i, timeout=120, fail_on=kvtest.RX_BAD,
                        what="VERIFY OK after resume")
    st = vm.cmd("query-status")
    check(st.get("status") == "running" and st.get("running") is True,
          "status after resume: %r" % st)
    kvtest.check_no_errors(vm.console)


kvtest.main(test)
