#!/usr/bin/env python3
"""kvmove status|pause|resume|stop: human and --json output, and exit codes
(0 ok, 1 the VMM said no, 2 usage, 5 cannot reach the control socket)."""
import json
import os
import re
import socket
import threading

import kvtest
from kvtest import check

GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 0}, '
            b'"package": "fake"}, "capabilities": []}}\n')


class FakeVMM:
    """A control socket that greets and then fails every command but
    qmp_capabilities (mode "fail"), or never says anything ("silent")."""

    def __init__(self, path, mode):
        self.path = path
        self.mode = mode
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(8)
        self.conns = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.mode == "silent":
                continue
            threading.Thread(target=self.talk, args=(c,), daemon=True).start()

    def talk(self, c):
        try:
            c.sendall(GREETING)
            buf = b""
            while True:
                data = c.recv(4096)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    req = json.loads(line)
                    if req["execute"] == "qmp_capabilities":
                        rep = {"return": {}}
                    else:
                        rep = {"error": {"class": "GenericError",
                                         "desc": "fake failure of %s" % req["execute"]}}
                    if "id" in req:
                        rep["id"] = req["id"]
                    c.sendall(json.dumps(rep).encode() + b"\n")
        except OSError:
            return

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def expect(r, code, what, stdout=None, stderr=None):
    check(r.returncode == code, "%s: exit %d, expected %d (stdout %r, stderr %r)"
          % (what, r.returncode, code, r.stdout, r.stderr))
    if stdout is not None:
        check(re.search(stdout, r.stdout), "%s: stdout %r does not match %r"
              % (what, r.stdout, stdout))
    if stderr is not None:
        check(re.search(stderr, r.stderr), "%s: stderr %r does not match %r"
              % (what, r.stderr, stderr))


def test(h):
    kv = h.kvmove

    # ---- usage: exit 2, no VMM needed ----
    for verb in ("status", "pause", "resume", "stop"):
        expect(h.run([kv, verb, "--help"]), 0, verb + " --help", stdout=r"usage: kvmove " + verb)
        expect(h.run([kv, verb]), 2, verb + " without --control", stderr=r"--control")
    expect(h.run([kv, "status", "--control"]), 2, "--control without a value")
    expect(h.run([kv, "status", "--control", "x", "--bogus"]), 2, "unknown option",
           stderr="--bogus")
    expect(h.run([kv, "status", "--control", "x", "extra"]), 2, "extra argument",
           stderr="extra")
    for bad in ("0", "-1", "abc", "1e9", ""):
        expect(h.run([kv, "status", "--control", "x", "--timeout", bad]), 2,
               "--timeout %r" % bad)

    # ---- unreachable: exit 5 with the reason ----
    missing = os.path.join(h.tmpdir, "missing.sock")
    expect(h.run([kv, "status", "--control", missing]), 5, "missing socket",
           stderr=r"no such file")
    stale = os.path.join(h.tmpdir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()   # bound, never listening: a stale socket file
    expect(h.run([kv, "pause", "--control", stale]), 5, "stale socket",
           stderr=r"refused")
    silent = FakeVMM(os.path.join(h.tmpdir, "silent.sock"), "silent")
    expect(h.run([kv, "status", "--control", silent.path, "--timeout", "0.5"]), 5,
           "silent VMM", stderr=r"timed out")
    silent.close()

    # ---- the VMM says no: exit 1 with its message ----
    fake = FakeVMM(os.path.join(h.tmpdir, "fake.sock"), "fail")
    for verb in ("status", "pause", "resume", "stop"):
        expect(h.run([kv, verb, "--control", fake.path]), 1, "failing VMM " + verb,
               stderr=r"fake failure of")
    fake.close()

    # ---- a real VMM ----
    vm = h.vmm(name="cli", mem="1G", cpus=1,
               append=kvtest.guest_cmdline(wss="64M", rate=32, hb=1000))
    vm.wait_ready()
    vm.wait_socket()

    r = vm.cli("status")
    expect(r, 0, "status", stdout=r"^cli: running, 1 vCPU, 1024 MiB, up \d+\.\d s\n$")
    r = vm.cli("status", "--json")
    expect(r, 0, "status --json")
    check(r.stdout.count("\n") == 1, "status --json is not one line: %r" % r.stdout)
    st = json.loads(r.stdout)
    for key, typ in (("name", str), ("cpus", int), ("mem", int), ("uptime-ms", int),
                     ("status", str), ("running", bool)):
        check(isinstance(st.get(key), typ), "status --json: %s is %r" % (key, st.get(key)))
    check(st["name"] == "cli" and st["cpus"] == 1 and st["mem"] == 1 << 30
          and st["status"] == "running" and st["running"] is True,
          "status --json: %r" % st)

    expect(vm.cli("pause"), 0, "pause", stdout=r"^cli: paused\n$")
    expect(vm.cli("status"), 0, "status while paused", stdout=r"^cli: paused, 1 vCPU, ")
    r = vm.cli("pause", "--json")   # pausing a paused VM is fine (as in QMP)
    expect(r, 0, "pause --json")
    check(json.loads(r.stdout).get("status") == "paused", "pause --json: %r" % r.stdout)
    expect(vm.cli("resume"), 0, "resume", stdout=r"^cli: running\n$")
    r = vm.cli("resume", "--json", "--timeout", "30")
    expect(r, 0, "resume --json")
    check(json.loads(r.stdout).get("running") is True, "resume --json: %r" % r.stdout)

    n = len(vm.console)
    kvtest.wait_hb(vm.console, start=n, timeout=60)

    r = vm.cli("stop", "--json")
    expect(r, 0, "stop --json")
    check(json.loads(r.stdout) == {}, "stop --json printed %r" % r.stdout)
    # stop returns once the VMM is gone
    check(vm.proc.poll() is not None or vm.wait_exit(timeout=5) is not None,
          "the VMM is still running after kvmove stop")
    check(vm.proc.returncode == 0, "the VMM exited %d" % vm.proc.returncode)
    expect(vm.cli("status"), 5, "status after stop")
    kvtest.check_no_errors(vm.console)


kvtest.main(test)
