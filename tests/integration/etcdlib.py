"""etcdlib - real etcd clusters for integration tests, and a few etcd v3
calls over its JSON gateway (the same one kvmove speaks, see
docs/CLUSTER.md).

    import etcdlib

    members = [("h1", "10.10.0.1", 2379, 2380), ("h2", "10.10.0.2", 2379, 2380),
               ("h3", "10.10.0.3", 2379, 2380)]
    with etcdlib.EtcdCluster(members, tmpdir, token="t1") as c:
        etcdlib.put(c.endpoints(), "/kvmove/config", '{"migration-limit": 1}')
        c.kill(0)
        ...
        c.restart(0)

A member is (netns or None, ip, client_port, peer_port); with a netns its
etcd runs under `ip netns exec NETNS`.  Each member's data directory and log
(etcd-NAME.log) live in tmpdir.  Timings are made for tests: heartbeat
100 ms, election timeout 1 s.

The module functions take an endpoint or a comma-separated list of them
(tried in order) and speak HTTP from the calling process: the caller sees to
it that the address is reachable from there.

Python 3 standard library only.  `python3 etcdlib.py` runs a self-test on
127.0.0.1 ports 23790-23795.
"""

import atexit
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ETCD = "etcd"

# Talks to etcd must not go through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EtcdError(Exception):
    """etcd answered with an error, or no endpoint answered."""


def _b64(s):
    if isinstance(s, str):
        s = s.encode("utf-8", "surrogateescape")
    return base64.b64encode(s).decode("ascii")


def _unb64(s):
    return base64.b64decode(s or "", validate=True).decode("utf-8", "surrogateescape")


def _prefix_end(prefix):
    """The range end of every key that starts with prefix (bytes)."""
    b = bytearray(prefix.encode("utf-8", "surrogateescape"))
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\0"
    b[-1] += 1
    return bytes(b)


def _range_fields(prefix):
    if prefix == "":
        return {"key": _b64(b"\0"), "range_end": _b64(b"\0")}
    return {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}


def _int(v):
    """An int64 field (a decimal string; missing = 0)."""
    return int(v) if v not in (None, "") else 0


class _Unavailable(EtcdError):
    """A member answered but cannot serve now (no leader, timed out...)."""


# A member without a leader says so at once instead of waiting for one.
_HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-Hasleader": "true"}


def _post1(endpoint, path, body, timeout):
    req = urllib.request.Request(endpoint.rstrip("/") + path,
                                 data=json.dumps(body).encode(), headers=_HEADERS)
    try:
        with _opener.open(req, timeout=timeout) as r:
            data = r.read()
    except urllib.error.HTTPError as e:
        data = e.read()
    try:
        o = json.loads(data.decode("utf-8", "replace").splitlines()[0] if data else "")
    except ValueError:
        raise EtcdError("%s%s: not an etcd answer: %r" % (endpoint, path, data[:200]))
    if not isinstance(o, dict):
        raise EtcdError("%s%s: not an etcd answer: %r" % (endpoint, path, data[:200]))
    if "error" in o and "header" not in o:
        e = o["error"]
        msg = str(e.get("message") if isinstance(e, dict) else o.get("message") or e)
        code = e.get("grpc_code") if isinstance(e, dict) else o.get("code")
        if code in (4, 14) or any(s in msg for s in ("no leader", "timed out",
                                                     "too many requests", "leader changed")):
            raise _Unavailable("%s: %s" % (endpoint, msg))
        raise EtcdError("%s%s: %s" % (endpoint, path, msg))
    return o


def post(endpoints, path, body, timeout=5.0):
    """POST body (a dict) to path at the first endpoint that answers; the
    answer as a dict.  Like kvmove's store: an endpoint that does not answer,
    or answers "no leader" (an election), makes it try the next; when some
    member answered, passes over all of them go on for up to timeout.
    EtcdError for an error answer or when no member could serve."""
    eps = [e.strip() for e in endpoints.split(",") if e.strip()]
    deadline = time.monotonic() + timeout
    last = "no endpoint"
    first = True
    while True:
        answered = False
        for ep in eps:
            left = timeout if first else deadline - time.monotonic()
            if left <= 0:
                break
            try:
                return _post1(ep, path, body, left)
            except _Unavailable as e:
                answered = True
                last = str(e)
            except (OSError, http.client.HTTPException) as e:
                last = "%s: %s" % (ep, getattr(e, "reason", e))
        first = False
        if not answered or time.monotonic() + 0.1 >= deadline:
            raise EtcdError("etcd at %s: no quorum or unreachable: %s" % (endpoints, last))
        time.sleep(0.1)


def get(endpoint, key, timeout=5.0):
    """The value of key (str), or None."""
    o = post(endpoint, "/v3/kv/range", {"key": _b64(key)}, timeout)
    kvs = o.get("kvs") or []
    return _unb64(kvs[0].get("value")) if kvs else None


def get_prefix(endpoint, prefix, timeout=5.0):
    """{key: value} of every key under prefix."""
    o = post(endpoint, "/v3/kv/range", _range_fields(prefix), timeout)
    return {_unb64(kv["key"]): _unb64(kv.get("value")) for kv in o.get("kvs") or []}


def put(endpoint, key, value, timeout=5.0):
    """Write key; the revision of the write."""
    o = post(endpoint, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, timeout)
    return _int(o["header"].get("revision"))


def delete(endpoint, key, timeout=5.0):
    """Delete key; how many keys were deleted (0 or 1)."""
    o = post(endpoint, "/v3/kv/deleterange", {"key": _b64(key)}, timeout)
    return _int(o.get("deleted"))


def revision(endpoint, timeout=5.0):
    """The store's current revision (a linearizable read)."""
    o = post(endpoint, "/v3/kv/range", {"key": _b64("/"), "count_only": True}, timeout)
    return _int(o["header"].get("revision"))


def history(endpoint, prefix, start_rev=1, timeout=30.0):
    """Every change under prefix from revision start_rev up to the current
    revision, oldest first: [(revision, "PUT"|"DELETE", key, value)] (value
    None for a delete).

    The current revision is read first (the target); then a watch of the
    whole keyspace from start_rev runs until it delivered the event of the
    target revision: every revision after 1 is some key's change, so that
    event always comes.  The changes under prefix are kept.  timeout is a
    safety net (EtcdError), not part of the logic.  A compacted start_rev is
    an EtcdError."""
    target = revision(endpoint)
    start_rev = max(1, start_rev)
    if target < max(start_rev, 2):
        return []
    want = prefix.encode("utf-8", "surrogateescape")
    body = {"create_request": {"key": _b64(b"\0"), "range_end": _b64(b"\0"),
                               "start_revision": str(start_rev)}}
    out = []
    deadline = time.monotonic() + timeout
    last = None
    for ep in [e.strip() for e in endpoint.split(",") if e.strip()]:
        req = urllib.request.Request(ep.rstrip("/") + "/v3/watch",
                                     data=json.dumps(body).encode(), headers=_HEADERS)
        try:
            r = _opener.open(req, timeout=max(0.1, deadline - time.monotonic()))
        except (OSError, http.client.HTTPException) as e:
            last = "%s: %s" % (ep, getattr(e, "reason", e))
            continue
        with r:
            while True:
                if time.monotonic() > deadline:
                    raise EtcdError("history: no event of revision %d within %.0f s"
                                    % (target, timeout))
                line = r.readline()
                if not line:
                    raise EtcdError("history: the watch at %s ended early" % ep)
                if not line.strip():
                    continue
                o = json.loads(line)
                if "error" in o:
                    raise EtcdError("history: %s: %s" % (ep, o["error"]))
                res = o.get("result", {})
                if res.get("canceled"):
                    raise EtcdError("history: watch canceled (compacted at %s): %s"
                                    % (res.get("compact_revision"),
                                       res.get("cancel_reason", "")))
                done = False
                for ev in res.get("events") or []:
                    kv = ev.get("kv", {})
                    rev = _int(kv.get("mod_revision"))
                    if rev > target:
                        done = True
                        break
                    key = base64.b64decode(kv.get("key", ""), validate=True)
                    if key.startswith(want):
                        kind = ev.get("type", "PUT")
                        out.append((rev, kind, key.decode("utf-8", "surrogateescape"),
                                    None if kind == "DELETE" else _unb64(kv.get("value"))))
                    if rev >= target:
                        done = True
                if done:
                    return out
    raise EtcdError("etcd at %s: unreachable: %s" % (endpoint, last))


def _post_in_netns(netns, url, body, timeout):
    """POST from inside netns (a short python3 there); the answer dict."""
    script = ("import json,sys,urllib.request as u\n"
              "o=u.build_opener(u.ProxyHandler({}))\n"
              "r=u.Request(sys.argv[1],data=sys.argv[2].encode(),"
              "headers={'Content-Type':'application/json'})\n"
              "sys.stdout.write(o.open(r,timeout=float(sys.argv[3])).read().decode())\n")
    p = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script, url,
                        json.dumps(body), str(timeout)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 5)
    if p.returncode:
        raise EtcdError("%s (netns %s): %s" % (url, netns, p.stderr.decode()[-300:]))
    return json.loads(p.stdout)


class EtcdCluster:
    """One etcd cluster, one process per member (see the module doc)."""

    def __init__(self, members, tmpdir, token="kvmove-test"):
        self.members = [tuple(m) for m in members]
        self.tmpdir = tmpdir
        self.token = token
        self.names = ["etcd%d" % i for i in range(len(self.members))]
        self.procs = [None] * len(self.members)
        self._atexit = False

    # -- addresses -----------------------------------------------------

    def client_url(self, i):
        _, ip, cport, _ = self.members[i]
        return "http://%s:%d" % (ip, cport)

    def peer_url(self, i):
        _, ip, _, pport = self.members[i]
        return "http://%s:%d" % (ip, pport)

    def endpoints(self):
        return ",".join(self.client_url(i) for i in range(len(self.members)))

    def log_path(self, i):
        return os.path.join(self.tmpdir, "etcd-%s.log" % self.names[i])

    # -- processes -----------------------------------------------------

    def _spawn(self, i, state):
        netns = self.members[i][0]
        cluster = ",".join("%s=%s" % (self.names[k], self.peer_url(k))
                           for k in range(len(self.members)))
        cmd = [ETCD, "--name", self.names[i],
               "--data-dir", os.path.join(self.tmpdir, "etcd-%s.data" % self.names[i]),
               "--listen-client-urls", self.client_url(i),
               "--advertise-client-urls", self.client_url(i),
               "--listen-peer-urls", self.peer_url(i),
               "--initial-advertise-peer-urls", self.peer_url(i),
               "--initial-cluster", cluster,
               "--initial-cluster-state", state,
               "--initial-cluster-token", self.token,
               "--heartbeat-interval", "100", "--election-timeout", "1000",
               "--logger", "zap", "--log-outputs", "stderr"]
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd   # execs etcd: same pid
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        with open(self.log_path(i), "ab") as log:
            log.write(("==== %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(cmd))).encode())
            log.flush()
            self.procs[i] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True)
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True

    def start(self, timeout=30.0):
        """Start every member (a new cluster); wait until it is healthy."""
        os.makedirs(self.tmpdir, exist_ok=True)
        try:
            for i in range(len(self.members)):
                self._spawn(i, "new")
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, i):
        """SIGKILL member i and reap it."""
        p = self.procs[i]
        if p is not None:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
            self.procs[i] = None

    def restart(self, i, timeout=30.0):
        """Start member i again (its data directory kept) and wait until it
        is back in the cluster with a leader."""
        self.kill(i)
        self._spawn(i, "existing")
        self.wait_healthy(timeout, only=[i])

    def stop(self):
        """Kill every member by its pid and reap it.  Safe to call twice."""
        for i in range(len(self.procs)):
            try:
                self.kill(i)
            except OSError:
                pass

    def running(self):
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def __enter__(self):
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- health --------------------------------------------------------

    def status(self, i, timeout=1.0):
        """Member i's /v3/maintenance/status (a dict), or None."""
        try:
            if self.members[i][0]:
                return _post_in_netns(self.members[i][0],
                                      self.client_url(i) + "/v3/maintenance/status", {},
                                      timeout)
            return _post1(self.client_url(i), "/v3/maintenance/status", {}, timeout)
        except (OSError, ValueError, EtcdError, http.client.HTTPException,
                subprocess.TimeoutExpired):
            return None

    def leader(self):
        """The index of the member the running members agree leads, or None."""
        ids = {}
        for i in self.running():
            st = self.status(i)
            if st is None:
                return None
            ids[i] = (st.get("header", {}).get("member_id"), st.get("leader"))
        leaders = {lead for _, lead in ids.values()}
        if len(leaders) != 1 or not next(iter(leaders)) or next(iter(leaders)) == "0":
            return None
        lead = next(iter(leaders))
        for i, (mid, _) in ids.items():
            if mid == lead:
                return i
        return None

    def wait_healthy(self, timeout=30.0, only=None):
        """Wait until every running member (or those in only) answers its
        status and all running members agree on a leader among them."""
        deadline = time.monotonic() + timeout
        while True:
            dead = [i for i, p in enumerate(self.procs)
                    if p is not None and p.poll() is not None]
            if dead:
                raise EtcdError("etcd member %s exited (log: %s)" % (
                    self.names[dead[0]], self.log_path(dead[0])))
            want = only if only is not None else self.running()
            if want and all(self.procs[i] is not None and self.status(i) for i in want) \
                    and self.leader() is not None:
                return
            if time.monotonic() > deadline:
                raise EtcdError("etcd cluster %s not healthy within %.0f s (logs in %s)"
                                % (self.endpoints(), timeout, self.tmpdir))
            time.sleep(0.2)


def _self_test():
    tmp = tempfile.mkdtemp(prefix="etcdlib-")
    members = [(None, "127.0.0.1", 23790 + 2 * i, 23791 + 2 * i) for i in range(3)]
    try:
        with EtcdCluster(members, tmp, token="etcdlib-self-test") as c:
            eps = c.endpoints()
            r1 = put(eps, "/selftest/a", "1")
            assert get(eps, "/selftest/a") == "1"
            assert get(eps, "/selftest/none") is None
            put(eps, "/selftest/b", 'two "quoted"\n\u00e9')
            assert get_prefix(eps, "/selftest/") == {"/selftest/a": "1",
                                                     "/selftest/b": 'two "quoted"\n\u00e9'}
            lead = c.leader()
            print("leader: %s; killing it" % c.names[lead])
            c.kill(lead)
            c.wait_healthy()   # the others elect a new leader
            put(eps, "/selftest/c", "3")
            delete(eps, "/selftest/a")
            assert get(eps, "/selftest/c") == "3"
            c.restart(lead)
            # the restarted member caught up
            deadline = time.monotonic() + 10
            while get(c.client_url(lead), "/selftest/c") != "3":
                assert time.monotonic() < deadline, "restarted member did not catch up"
                time.sleep(0.1)
            h = history(eps, "/selftest/", r1)
            kinds = [(k, key, v) for _, k, key, v in h]
            assert kinds == [("PUT", "/selftest/a", "1"),
                             ("PUT", "/selftest/b", 'two "quoted"\n\u00e9'),
                             ("PUT", "/selftest/c", "3"),
                             ("DELETE", "/selftest/a", None)], kinds
            assert [rev for rev, *_ in h] == sorted(rev for rev, *_ in h)
            assert history(eps, "/selftest/", revision(eps) + 1) == []
            # quorum lost: an error within the timeout, then back
            c.kill(0)
            c.kill(1)
            t0 = time.monotonic()
            try:
                put(eps, "/selftest/d", "4", timeout=2.0)
                raise AssertionError("a put without quorum succeeded")
            except EtcdError as e:
                print("without quorum: %s (%.1f s)" % (e, time.monotonic() - t0))
                assert time.monotonic() - t0 < 5
            c.restart(0)
            c.restart(1)
            c.wait_healthy()
            put(eps, "/selftest/d", "4")
            assert get(c.client_url(1), "/selftest/d") == "4"
            pids = [p.pid for p in c.procs]
        for pid in pids:
            try:
                os.kill(pid, 0)
                raise AssertionError("etcd %d still runs" % pid)
            except ProcessLookupError:
                pass
        print("etcdlib self-test: OK")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    _self_test()
