#!/usr/bin/env python3
"""The control socket against a live VMM: malformed, oversized and hostile
input gets errors (or a disconnect), never hurts the VMM or the VM: the
guest keeps beating and verifying, and a normal client still works."""
import json
import os
import random
import socket

import kvtest
from kvtest import check


def raw(vm, negotiate=True):
    """A raw QMP connection (greeting read, optionally negotiated)."""
    return kvtest.QMP(vm.control, timeout=10, negotiate=negotiate)


def expect_error(q, data, cls="GenericError", desc=None, id=None):
    q.send_raw(data)
    reply = q.read_reply()
    check(reply is not None, "connection closed after %r" % data[:80])
    err = reply.get("error")
    check(err, "no error for %r: %r" % (data[:80], reply))
    check(err.get("class") == cls, "class %r for %r, expected %s" % (err.get("class"),
                                                                     data[:80], cls))
    if desc:
        check(desc in err.get("desc", ""), "desc %r for %r, expected it to contain %r"
              % (err.get("desc"), data[:80], desc))
    if id is not None:
        check(reply.get("id") == id, "reply id %r, expected %r" % (reply.get("id"), id))
    return reply


def expect_closed(q, timeout=10):
    """Read until EOF; return the objects seen."""
    seen = []
    while True:
        obj = q.read_obj(timeout=timeout)
        if obj is None:
            return seen
        seen.append(obj)


def test(h):
    vm = h.vmm(name="proto", mem="1G",
               append=kvtest.guest_cmdline(wss="64M", rate=32, hb=1000))
    vm.wait_ready()
    _, _, seq0, _ = kvtest.wait_hb(vm.console, timeout=60)

    # ---- before negotiation ----
    with raw(vm, negotiate=False) as q:
        g = q.greeting["QMP"]
        check(g["version"]["package"].startswith("kvmove ") and g["capabilities"] == [],
              "greeting %r" % q.greeting)
        expect_error(q, '{"execute": "query-status", "id": 1}\n', "CommandNotFound",
                     "Expecting capabilities negotiation", id=1)
        check(q.cmd("qmp_capabilities") == {}, "qmp_capabilities")
        expect_error(q, '{"execute": "qmp_capabilities"}\n', "CommandNotFound")
        check(q.cmd("query-status")["status"] == "running", "query-status")

    # ---- malformed requests on one connection, which stays usable ----
    with raw(vm) as q:
        cases = [
            (b"garbage\n", "GenericError", "JSON parse error"),
            (b"}\n", "GenericError", "JSON parse error"),
            (b"{'execute': 'query-status'}\n", "GenericError", "JSON parse error"),
            (b'{"execute": "query-status",}\n', "GenericError", "JSON parse error"),
            (b"[1, 2]\n", "GenericError", "must be a JSON object"),
            (b"42\n", "GenericError", "must be a JSON object"),
            (b'"query-status"\n', "GenericError", "must be a JSON object"),
            (b"{}\n", "GenericError", "lacks member 'execute'"),
            (b'{"execute": 42}\n', "GenericError", "'execute' must be a string"),
            (b'{"execute": "query-status", "arguments": []}\n', "GenericError",
             "'arguments' must be an object"),
            (b'{"execute": "query-status", "bogus": 1}\n', "GenericError", "unexpected"),
            (b'{"execute": "query-status", "execute": "stop"}\n', "GenericError",
             "JSON parse error"),
            (b'{"execute": "no-such-command"}\n', "CommandNotFound",
             "The command no-such-command has not been found"),
            (b'{"execute": "query-status", "arguments": {"n": 1e999999}}\n',
             "GenericError", "JSON parse error"),
            (b'{"execute": "query-status", "arguments": {"n": 99999999999999999999999999}}\n',
             "GenericError", "JSON parse error"),
            (b'{"execute": "query-st\x00atus"}\n', "GenericError", "JSON parse error"),
            (b'{"execute": "query-st\\u0000atus"}\n', "GenericError", "JSON parse error"),
            (b'{"execute": "\xff\xfe\xc3"}\n', "GenericError", "JSON parse error"),
            (b'{"execute": "query-status\n', "GenericError", "JSON parse error"),
            (b"[" * 5000 + b"]" * 5000 + b"\n", "GenericError", "nesting too deep"),
            (b'{"execute": "query-status", "arguments": {"extra": 1}}\n', "GenericError",
             None),
            (b'{"execute": "x-corrupt-page", "arguments": {"gpa": "zero"}}\n',
             "GenericError", None),
            (b'{"execute": "x-corrupt-page", "arguments": {"gpa": -1}}\n',
             "GenericError", None),
            (b'{"execute": "x-corrupt-page", "arguments": {"gpa": 1e300}}\n',
             "GenericError", None),
            (b'{"execute": "x-corrupt-page", "arguments": {"gpa": 9223372036854775807}}\n',
             "GenericError", None),
            (b'{"execute": "x-corrupt-page"}\n', "GenericError", None),
        ]
        for data, cls, desc in cases:
            r = expect_error(q, data, cls, desc)
            h.log("%-60r -> %s" % (data[:60], r["error"]["desc"][:80]))
        # the id of an invalid request is echoed
        expect_error(q, '{"execute": "query-status", "arguments": 1, "id": {"x": [1]}}\n',
                     id={"x": [1]})
        # back to back without newlines, and split into single bytes
        q.send_raw('{"execute":"query-status","id":1}{"execute":"query-vm","id":2}'
                   '  {"execute":"query-status","id":3}\n')
        ids = [q.read_reply()["id"] for _ in range(3)]
        check(ids == [1, 2, 3], "replies to back-to-back requests: ids %r" % ids)
        for b in b'{"execute": "query-vm", "id": "bytes"}':
            q.send_raw(bytes([b]))
        r = q.read_reply()
        check(r.get("id") == "bytes" and r["return"]["name"] == "proto",
              "byte-by-byte request: %r" % r)
        check(q.cmd("query-status")["status"] == "running", "query-status after garbage")

    # ---- oversized: an error, then the connection is closed ----
    with raw(vm) as q:
        big = b'{"execute": "query-status", "arguments": {"x": "' + b"x" * 70000 + b'"}}\n'
        try:
            q.send_raw(big)
        except OSError:
            pass    # the server may close before reading it all
        seen = expect_closed(q)
        check(seen and "too large" in seen[0].get("error", {}).get("desc", ""),
              "oversized request: %r" % seen)
    with raw(vm) as q:
        try:
            q.send_raw(b"x" * 70000)   # garbage without a newline
        except OSError:
            pass
        seen = expect_closed(q)
        check(seen and "error" in seen[-1], "oversized garbage: %r" % seen)

    # ---- rude clients ----
    s = socket.socket(socket.AF_UNIX)
    s.connect(vm.control)
    s.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "query-sta')
    s.close()   # half a request, then gone
    s = socket.socket(socket.AF_UNIX)
    s.connect(vm.control)
    s.close()   # gone before the greeting
    rnd = random.Random(1)
    for _ in range(5):
        s = socket.socket(socket.AF_UNIX)
        s.connect(vm.control)
        try:
            for _ in range(16):
                s.sendall(bytes(rnd.getrandbits(8) for _ in range(4096)))
        except OSError:
            pass    # dropped for sending too much: fine
        s.close()
    # never reads its replies, floods requests, then leaves
    s = socket.socket(socket.AF_UNIX)
    s.connect(vm.control)
    s.setblocking(False)
    try:
        s.send(b'{"execute": "qmp_capabilities"}\n')
        for _ in range(20000):
            s.send(b'{"execute": "query-status"}\n')
    except OSError:
        pass    # its socket buffer is full: the server stopped reading it
    idle = []
    # 100 clients at once, plus 50 idle ones that never say a word
    for _ in range(50):
        c = socket.socket(socket.AF_UNIX)
        c.connect(vm.control)
        idle.append(c)
    many = [raw(vm) for _ in range(100)]
    for q in many:
        check(q.cmd("query-status")["status"] == "running", "query-status on a crowd")
    for q in many:
        q.close()
    s.close()

    # ---- a normal client still works, and the VM never noticed ----
    r = vm.cli("status")
    check(r.returncode == 0 and ": running," in r.stdout,
          "kvmove status after the abuse: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    for c in idle:
        c.close()
    n = len(vm.console)
    _, _, seq1, _ = kvtest.wait_hb(vm.console, min_seq=0, start=n, timeout=60)
    check(seq1 > seq0, "heartbeats did not advance (%d -> %d)" % (seq0, seq1))
    vm.console.wait_for(kvtest.RX_VERIFY_OK, start=n, timeout=120, fail_on=kvtest.RX_BAD,
                        what="VERIFY OK after the abuse")
    kvtest.check_no_errors(vm.console)
    vm.check_alive()


kvtest.main(test)
