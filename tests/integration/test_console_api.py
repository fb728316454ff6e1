#!/usr/bin/env python3
"""The management console's HTTP API (docs/API.md) against a real cluster:
two namespace hosts, a real etcd, real agents, verifying guests, and
`kvmove console` on 127.0.0.1.

  1. Access: no credential, an unknown token, a token of a user not yet in
     the file: 401 and nothing changes; a read-only user reads but gets 403
     on every change; a cookie session (POST /api/login) works for reads
     and needs X-Kvmove: 1 for changes; a user added to the token file
     while the console runs is accepted without a restart.
  2. Every read endpoint: nodes, node, vms, vm, migrations, tips, audit,
     cluster, whoami, metrics (Prometheus text), events (a `change` event
     arrives when something changes).
  3. Bad input: malformed JSON, wrong types, unknown fields, an unknown VM,
     node or path, a bad name, an oversized body, a wrong method: 4xx with a
     message, and nothing changed (the VM still runs where it ran, no
     migration recorded, the node not in maintenance).
  4. Changes: migrate web1 to h2 (202, the record's ID; it completes and the
     guest verifies there); a queued migration cancelled through the API;
     maintenance on for h2 drains it (web1 back to h1), off again; stop and
     start a VM.  Every change is in the audit log with who and the status.
"""
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import kvcluster
import kvtest
from kvtest import check


class Api:
    def __init__(self, base, token=None):
        self.base = base
        self.token = token
        self.cookie = None

    def call(self, method, path, body=None, raw=None, headers=None, auth=True):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth and self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=150) as r:
                status, text, hdrs = r.status, r.read().decode(), r.headers
        except urllib.error.HTTPError as e:
            status, text, hdrs = e.code, e.read().decode(), e.headers
        try:
            j = json.loads(text) if text else None
        except ValueError:
            j = None
        return status, j, text, hdrs

    def expect(self, status, method, path, body=None, **kw):
        st, j, text, _ = self.call(method, path, body, **kw)
        check(st == status, "%s %s: %d (expected %d): %s" % (method, path, st, status,
                                                              text[:400]))
        if status >= 400:
            check(isinstance(j, dict) and j.get("error"),
                  "%s %s: %d without an error message: %r" % (method, path, st, text[:200]))
        return j, text


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def add_user(h, tokens, name, role):
    r = h.run([h.kvmove, "console", "token", "add", "--tokens", tokens, "--name", name,
               "--role", role])
    check(r.returncode == 0 and len(r.stdout.strip()) == 64,
          "token add: %d %s %s" % (r.returncode, r.stdout, r.stderr))
    return r.stdout.strip()


def unchanged(c, api, vm, node):
    """Nothing moved: the VM runs on node, no migration queued or running,
    no node in maintenance."""
    st = c.get_json("/kvmove/vms/%s/status" % vm)
    check(st and st.get("state") == "running" and st.get("node") == node,
          "%s is not running on %s any more: %r" % (vm, node, st))
    migs = [m for m in c.migrations().values() if m.get("state") in ("queued", "running")]
    check(not migs, "a migration appeared: %r" % migs)
    for k, v in c.prefix_json("/kvmove/nodecfg/").items():
        check(not (isinstance(v, dict) and v.get("maintenance")), "%s: %r" % (k, v))


def test(h):
    c = kvcluster.Cluster(h, hosts=2, mig_nets=1)
    c.up()
    c.vm_create("web1")
    c.vm_create("db1")
    c.cli("vm", "start", "web1", "--on", "h1")
    c.cli("vm", "start", "db1", "--on", "h1")
    c.wait_state("web1", "running", "h1")
    c.wait_state("db1", "running", "h1")
    c.wait_verified("web1", "h1")

    tokens = os.path.join(h.tmpdir, "console.tokens")
    admin = add_user(h, tokens, "alice", "admin")
    reader = add_user(h, tokens, "bob", "read")
    check(os.stat(tokens).st_mode & 0o777 == 0o600, "the token file is not 0600")
    port = free_port()
    log = open(os.path.join(h.tmpdir, "console.log"), "wb")
    p = h.popen([h.kvmove, "console", "--listen", "127.0.0.1:%d" % port, "--tokens", tokens,
                 "--etcd", c.endpoints], stdout=log, stderr=subprocess.STDOUT)
    h.add_cleanup(lambda: (p.kill(), p.wait()))
    base = "http://127.0.0.1:%d" % port
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            check(time.time() < deadline and p.poll() is None, "the console did not start: %s"
                  % open(log.name).read())
            time.sleep(0.1)
    A, R, N = Api(base, admin), Api(base, reader), Api(base)

    # 1. access
    N.expect(401, "GET", "/api/vms")
    N.expect(401, "POST", "/api/vms/web1/migrate", {"to": "h2"})
    Api(base, "0" * 64).expect(401, "GET", "/api/nodes")
    Api(base, "not-a-token").expect(401, "POST", "/api/nodes/h2/maintenance", {"on": True})
    st, _, _, hd = N.call("GET", "/metrics")
    check(st == 401 and "Bearer" in (hd.get("WWW-Authenticate") or ""), "metrics: %d" % st)
    j, _ = R.expect(200, "GET", "/api/whoami")
    check(j == {"name": "bob", "role": "read"}, "whoami: %r" % j)
    R.expect(200, "GET", "/api/vms")
    for path, body in (("/api/vms/web1/migrate", {"to": "h2"}), ("/api/vms/web1/stop", None),
                       ("/api/nodes/h2/maintenance", {"on": True}),
                       ("/api/tips/t20261205000000-abcdef/apply", None)):
        R.expect(403, "POST", path, body)
    unchanged(c, A, "web1", "h1")
    # the page's way: a cookie, and X-Kvmove: 1 for changes
    S = Api(base)
    st, j, _, hd = S.call("POST", "/api/login", {"token": admin})
    check(st == 200 and j == {"name": "alice", "role": "admin"}, "login: %d %r" % (st, j))
    cookie = hd.get("Set-Cookie") or ""
    check("HttpOnly" in cookie and "SameSite=Strict" in cookie, "cookie: %r" % cookie)
    S.cookie = cookie.split(";")[0]
    S.expect(200, "GET", "/api/vms")
    S.expect(403, "POST", "/api/nodes/h2/maintenance", {"on": True})
    Api(base).expect(401, "POST", "/api/login", {"token": "f" * 64})
    Api(base).expect(400, "POST", "/api/login", {"tok": admin})
    unchanged(c, A, "web1", "h1")
    # a user added while the console runs
    carol = add_user(h, tokens, "carol", "read")
    j, _ = Api(base, carol).expect(200, "GET", "/api/whoami")
    check(j["name"] == "carol", "new user: %r" % j)
    h.log("access: 401 without or with a bad token, 403 for read-only changes, cookie + "
          "X-Kvmove, a user added live")

    # 2. reads
    nodes, _ = A.expect(200, "GET", "/api/nodes")
    check(sorted(n["name"] for n in nodes) == ["h1", "h2"], "nodes: %r" % nodes)
    node, _ = A.expect(200, "GET", "/api/nodes/h1")
    check(node.get("name") == "h1", "node h1: %r" % node)
    vms, _ = A.expect(200, "GET", "/api/vms")
    check(sorted(v["name"] for v in vms) == ["db1", "web1"], "vms: %r" % vms)
    vm, _ = A.expect(200, "GET", "/api/vms/web1")
    check(vm.get("name") == "web1", "vm web1: %r" % vm)
    migs, _ = A.expect(200, "GET", "/api/migrations?all=1")
    check(set(migs) == {"queued", "running", "finished"}, "migrations: %r" % migs)
    A.expect(200, "GET", "/api/tips")
    A.expect(200, "GET", "/api/audit")
    cl, _ = A.expect(200, "GET", "/api/cluster")
    check(all(k in cl for k in ("rev", "nodes", "vms", "migrations", "tips", "audit")),
          "cluster: %r" % list(cl))
    _, text = A.expect(200, "GET", "/metrics")
    for m in ("kvmove_nodes{state=\"up\"} 2", "kvmove_node_vms{node=\"h1\"} 2",
              "kvmove_vms{state=\"running\"} 2", "kvmove_migration_downtime_seconds_bucket"):
        check(m in text, "metrics lack %r:\n%s" % (m, text[:2000]))
    h.log("reads: %d nodes, %d VMs, metrics %d lines" % (len(nodes), len(vms),
                                                         len(text.splitlines())))

    # 3. bad input: 4xx with a message, nothing changed
    bad = [
        (400, "POST", "/api/vms/web1/migrate", None, b"{not json"),
        (400, "POST", "/api/vms/web1/migrate", {"to": 7}, None),
        (400, "POST", "/api/vms/web1/migrate", {"to": "h2", "when": "now"}, None),
        (400, "POST", "/api/vms/web1/migrate", {"quick": "yes"}, None),
        (400, "POST", "/api/vms/web1/migrate", {"downtime_ms": -5}, None),
        (400, "POST", "/api/vms/web1/migrate", None, b"[1, 2]"),
        (400, "POST", "/api/vms/web1/migrate", {"to": "../etc"}, None),
        (400, "POST", "/api/nodes/h2/maintenance", {"on": "yes"}, None),
        (400, "POST", "/api/nodes/h2/maintenance", {}, None),
        (400, "POST", "/api/vms/web1/stop", {"force": True}, None),
        (400, "GET", "/api/vms/..", None, None),
        (400, "GET", "/api/vms/-rf", None, None),
        (404, "GET", "/api/vms/nosuch", None, None),
        (404, "POST", "/api/vms/nosuch/migrate", {"to": "h2"}, None),
        (404, "GET", "/api/nodes/nosuch", None, None),
        (404, "GET", "/api/nothing", None, None),
        (404, "POST", "/api/vms/web1/explode", None, None),
        (405, "PUT", "/api/vms/web1", {"name": "x"}, None),
        (405, "DELETE", "/api/nodes/h1", None, None),
        (409, "DELETE", "/api/vms/web1", None, None),
        (400, "POST", "/api/vms", {"name": "Bad Name"}, None),
        (400, "POST", "/api/vms", {"name": "n2", "cpus": "two"}, None),
        (400, "POST", "/api/vms", {"name": "n2", "disks": "/a.img"}, None),
        (400, "POST", "/api/vms", {"name": "n2", "kernel": h.guest}, None),
        (409, "POST", "/api/vms", {"name": "web1", "mem": "128M", "cpus": 1,
                                   "kernel": h.guest}, None),
        (400, "POST", "/api/vms/web1/set", {}, None),
        (400, "POST", "/api/nodes/h2/set", {"migration_limit": "lots"}, None),
        (400, "POST", "/api/balancer", {"mode": "fast"}, None),
        (409, "POST", "/api/vms/web1/migrate", {"to": "h1"}, None),
        (404, "POST", "/api/tips/t20261205000000-abcdef/apply", None, None),
        (400, "POST", "/api/tips/t1/apply", None, None),
        (404, "POST", "/api/migrations/m20261205000000-abcdef/cancel", None, None),
        (413, "POST", "/api/vms/web1/migrate", None, b"{\"to\": \"" + b"a" * 70000 + b"\"}"),
    ]
    for status, method, path, body, raw in bad:
        j, _ = A.expect(status, method, path, body, raw=raw)
        h.log("  %s %s -> %d %s" % (method, path, status, j["error"][:100]))
    unchanged(c, A, "web1", "h1")
    check(set(v["name"] for v in A.call("GET", "/api/vms")[1]) == {"web1", "db1"},
          "a refused create left a VM behind")
    c.wait_verified("web1", "h1")

    # definitions: create, change, delete a VM; a node's limit; the balancer
    R.expect(403, "POST", "/api/vms", {"name": "new1"})
    R.expect(403, "DELETE", "/api/vms/db1")
    spec, _ = A.expect(201, "POST", "/api/vms", {
        "name": "new1", "mem": "128M", "cpus": 1, "kernel": h.guest, "append": "wss=8M",
        "restart": "on-failure", "priority": "low", "cpu": "x86-64"})
    got = c.get_json("/kvmove/vms/new1/spec")
    check(got and got["cpu"] == "x86-64" and got["restart"] == "on-failure" and
          got["mem"] == 128 << 20, "created through the API: %r" % got)
    A.expect(200, "POST", "/api/vms/new1/set", {"cpu": "host"})
    check(c.get_json("/kvmove/vms/new1/spec")["cpu"] == "host", "vm set through the API")
    A.expect(200, "DELETE", "/api/vms/new1")
    A.expect(404, "GET", "/api/vms/new1")
    A.expect(200, "POST", "/api/nodes/h2/set", {"migration_limit": 2})
    check((c.get_json("/kvmove/nodecfg/h2") or {}).get("migration-limit") == 2,
          "node set through the API: %r" % c.get_json("/kvmove/nodecfg/h2"))
    A.expect(200, "POST", "/api/nodes/h2/set", {"migration_limit": "default"})
    bal, _ = A.expect(200, "GET", "/api/balancer")
    A.expect(200, "POST", "/api/balancer", {"mode": "recommend", "samples": 4})
    bal2, _ = A.expect(200, "GET", "/api/balancer")
    check(bal2 != bal and "recommend" in json.dumps(bal2), "balancer: %r -> %r" % (bal, bal2))
    A.expect(200, "POST", "/api/balancer", {"mode": "off"})
    h.log("definitions through the API: create, set, delete, node limit, balancer %s"
          % json.dumps(bal2)[:120])

    # 4. changes
    # an event stream first: a change must reach it
    ev = urllib.request.Request(base + "/api/events",
                                headers={"Authorization": "Bearer " + reader})
    stream = urllib.request.urlopen(ev, timeout=30)
    check(stream.headers.get("Content-Type") == "text/event-stream", "events: %r"
          % stream.headers.get("Content-Type"))
    first = stream.readline().decode()
    check(first.startswith("event: change"), "first event: %r" % first)
    rec, _ = A.expect(202, "POST", "/api/vms/web1/migrate", {"to": "h2"})
    check(rec.get("id") and rec.get("vm") == "web1", "migrate: %r" % rec)
    t0 = time.time()
    lines = []
    while time.time() - t0 < 20 and len(lines) < 6:
        line = stream.readline().decode()
        if line.startswith("event: change"):
            lines.append(line)
    stream.close()
    check(len(lines) >= 2, "only %d change events while web1 moved" % len(lines))
    m = c.wait("migration %s to end" % rec["id"],
               lambda: (A.call("GET", "/api/migrations?all=1")[1] or {}).get("finished") and
               next((x for x in A.call("GET", "/api/migrations?all=1")[1]["finished"]
                     if x["id"] == rec["id"]), None), timeout=120)
    check(m["state"] == "completed", "migration through the API: %r" % m)
    c.wait_state("web1", "running", "h2")
    c.wait_verified("web1", "h2")
    h.log("migrated through the API: %s, downtime %s ms; %d change events"
          % (rec["id"], m.get("stats", {}).get("downtime-ms"), len(lines)))

    # a queued migration, cancelled: h1 may run one at a time
    c.cli("node", "set", "h1", "--migration-limit", "1", js=False)
    c.cli("node", "set", "h2", "--migration-limit", "1", js=False)
    big1 = A.expect(202, "POST", "/api/vms/db1/migrate", {"to": "h2"})[0]
    back = A.expect(202, "POST", "/api/vms/web1/migrate", {"to": "h1"})[0]
    st, j, text, _ = A.call("POST", "/api/migrations/%s/cancel" % back["id"])
    check(st in (200, 409), "cancel: %d %s" % (st, text))
    if st == 200:
        h.log("cancel: %s" % j.get("result"))
        mig = c.get_json("/kvmove/migrations/%s" % back["id"])
        check(mig["state"] == "cancelled", "cancelled migration: %r" % mig)
    else:
        h.log("cancel came too late (%s): the migration ended first" % j["error"])
    # once ended, a cancel is refused
    A.expect(409, "POST", "/api/migrations/%s/cancel" % back["id"])
    A.expect(400, "POST", "/api/migrations/not-an-id/cancel")
    c.wait("db1's migration to end", lambda: (c.get_json("/kvmove/migrations/%s" % big1["id"])
                                             or {}).get("state") in ("completed", "failed"),
           timeout=120)

    # a running migration, cancelled: a guest dirtying faster than a 1 ms
    # downtime allows keeps it in pre-copy; the VM stays on its node
    c.vm_create("busy1", mem="512M", wss="256M", rate=400)
    c.cli("vm", "start", "busy1", "--on", "h1")
    c.wait_state("busy1", "running", "h1")
    c.wait_verified("busy1", "h1")
    run = A.expect(202, "POST", "/api/vms/busy1/migrate", {"to": "h2", "downtime_ms": 1})[0]
    c.wait("busy1's migration to run", lambda: (c.get_json("/kvmove/migrations/%s" % run["id"])
                                                or {}).get("state") == "running", timeout=60)
    j, _ = A.expect(200, "POST", "/api/migrations/%s/cancel" % run["id"])
    mig = c.get_json("/kvmove/migrations/%s" % run["id"])
    check(mig["state"] == "cancelled", "running migration after cancel: %r" % mig)
    check(c.get("/kvmove/migration-cancel/%s" % run["id"]) is None,
          "the cancel request outlived its migration")
    c.wait_state("busy1", "running", "h1")
    c.wait_verified("busy1", "h1")
    h.log("running migration cancelled through the API: %s (%s)"
          % (j["result"], mig.get("reason")))
    A.expect(200, "POST", "/api/vms/busy1/stop")
    c.wait_state("busy1", "stopped")

    # maintenance through the API drains h2
    A.expect(200, "POST", "/api/nodes/h2/maintenance", {"on": True})
    c.wait("h2 drained", lambda: (c.get_json("/kvmove/drains/h2") or {}).get("state")
           == "drained", timeout=180)
    node, _ = A.expect(200, "GET", "/api/nodes/h2")
    h.log("h2 drained through the API: %s" % json.dumps(node.get("drain"))[:200])
    A.expect(200, "POST", "/api/nodes/h2/maintenance", {"on": False})
    c.wait_state("web1", "running", "h1")
    c.wait_verified("web1", "h1")

    # stop and start
    A.expect(200, "POST", "/api/vms/db1/stop")
    c.wait_state("db1", "stopped")
    A.expect(200, "POST", "/api/vms/db1/start")
    c.wait_state("db1", "running")

    # the audit log: every change, who, status
    audit, _ = A.expect(200, "GET", "/api/audit")
    acts = [(e["who"], e["action"], e["target"], e["status"]) for e in audit]
    for want in (("alice", "vms.migrate", "web1", 202), ("bob", "vms.migrate", "web1", 403),
                 ("alice", "vms.create", "new1", 201), ("alice", "vms.delete", "new1", 200),
                 ("bob", "vms.create", "new1", 403), ("alice", "balancer.set", "", 200),
                 ("alice", "nodes.maintenance", "h2", 200), ("alice", "vms.stop", "db1", 200),
                 ("alice", "vms.migrate", "web1", 400)):
        check(want in acts, "audit log lacks %r: %r" % (want, acts[:20]))
    _, text = A.expect(200, "GET", "/metrics")
    check("kvmove_migrations{result=\"completed\"}" in text and
          "kvmove_migration_total_seconds_count{kind=\"live\"}" in text, "metrics after moves")
    h.log("audit: %d entries; console log:\n%s" % (len(audit), open(log.name).read()[-1500:]))


kvtest.main(test)
