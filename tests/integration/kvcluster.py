"""kvcluster - a kvmove cluster for integration tests: namespace hosts
(scripts/kvmove-cluster.sh), a real etcd of three members on the management
network, one real ``kvmove agent`` per host, and the CLI.

    import kvtest, kvcluster

    def test(h):
        c = kvcluster.Cluster(h, hosts=4)
        c.up()
        c.vm_create("web1", mem="128M", wss="32M")
        c.cli("vm", "start", "web1", "--on", "h1")
        c.wait_verified("web1", "h1")

Everything it starts it stops at cleanup: agents and VMMs by PID (the VMMs
from the agents' run directories), etcd members by PID, namespaces by name.
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import time

import etcdlib
import kvtest
from kvtest import check, now, scaled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_SH = os.path.join(ROOT, "scripts", "kvmove-cluster.sh")
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380


def spare_feature(c, node):
    """A CPU feature node's record has (what its KVM offers a guest) that the
    x86-64 baseline model does not (so hiding it never stops a test guest):
    a common one if it can."""
    r = c.h.run([c.h.kvmove, "cpu-models", "--json"])
    check(r.returncode == 0, "kvmove cpu-models: %s" % r.stderr)
    models = json.loads(r.stdout)["models"]
    base = set(next(m["features"] for m in models if m["name"] == "x86-64"))
    have = c.wait("%s's node record" % node,
                  lambda: (c.get_json("/kvmove/nodes/" + node) or {}).get("cpu-features"))
    spare = [f for f in have if f not in base]
    check(spare, "%s offers nothing beyond x86-64: %s" % (node, have))
    for f in ("sse4_2", "popcnt", "cx16", "lahf_lm", "clflushopt"):
        if f in spare:
            return f
    return next((f for f in spare if not f.startswith("kvm")), spare[0])


def sh(*argv, check_rc=True):
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if check_rc and r.returncode:
        raise kvtest.TestFailure("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr))
    return r


def vmm_opened(pid, path):
    """Has process pid the file at path open (or is it gone, so that it
    never will)?"""
    try:
        st = os.stat(path)
        fds = os.listdir("/proc/%d/fd" % pid)
    except FileNotFoundError:
        return not os.path.exists("/proc/%d" % pid)
    for fd in fds:
        try:
            o = os.stat("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


# held while a cluster is up (Cluster.up .. down)
LOCK_PATH = "/tmp/kvmove-cluster-tests.lock"

class Agent:
    def __init__(self, cluster, k, extra=()):
        self.c = cluster
        self.k = k
        self.name = "h%d" % k
        self.run_dir = os.path.join(cluster.h.tmpdir, "run-" + self.name)
        os.makedirs(self.run_dir, exist_ok=True)
        self.log_path = os.path.join(cluster.h.tmpdir, "agent-%s.log" % self.name)
        self.extra = list(extra)
        self.allow = [cluster.shared]
        self.proc = None

    def argv(self):
        a = ["ip", "netns", "exec", self.c.ns(self.k), self.c.h.kvmove, "agent",
             "--name", self.name, "--etcd", self.c.endpoints,
             "--mgmt-addr", "10.10.0.%d" % self.k, "--run-dir", self.run_dir,
             "--lease-ttl", str(self.c.lease_ttl), "--tls-psk", self.c.psk,
             # small VMs: offer more vCPUs than this 2-core machine has
             "--cpus", "16", "--quick-dir", self.c.quick_dir]
        for d in self.allow:
            a += ["--allow-disk", d]
        for n in range(self.c.mig_nets):
            a += ["--migration-net", "10.%d.0.0/24" % (20 + 10 * n)]
        return a + self.extra

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        self.c.h.log("started agent %s (pid %d)" % (self.name, self.proc.pid))
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.c.h.log("agent %s stopped (%s)" % (self.name, sig))

    def kill_node(self):
        """The whole node dies: SIGKILL the agent and every VMM it started.
        The VMMs' PIDs."""
        pids = self.vmm_pids()
        self.kill()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        return pids

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def vmm_pids(self):
        pids = []
        for f in os.listdir(self.run_dir):
            if f.endswith(".pid"):
                try:
                    with open(os.path.join(self.run_dir, f)) as fh:
                        pids.append(int(fh.read().strip()))
                except (OSError, ValueError):
                    pass
        return pids

    def console(self, vm):
        return os.path.join(self.run_dir, vm + ".console")

    def vmm_pid(self, vm):
        """The PID of vm's VMM on this node (its pid file), or None."""
        try:
            with open(os.path.join(self.run_dir, vm + ".pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None


class Cluster:
    # a lease of 5 s renewed every 1.7 s: short enough for tests that wait for
    # a dead agent's node to go, long enough for a CI machine whose two
    # cores are busy with other tests (3 s let a starved agent's node lapse)
    def __init__(self, h, hosts=4, mig_nets=2, etcd_members=3, lease_ttl=5):
        self.h = h
        self.hosts = hosts
        self.mig_nets = mig_nets
        self.lease_ttl = lease_ttl
        self.prefix = "kc%d" % (os.getpid() % 10000)
        self.shared = "/tmp/%s-cluster/shared" % self.prefix
        self.quick_dir = os.path.join(self.shared, "quick")
        self.etcd_ips = ["10.10.0.%d" % (201 + i) for i in range(etcd_members)]
        self.endpoints = ",".join("http://%s:%d" % (ip, ETCD_CLIENT_PORT)
                                  for ip in self.etcd_ips)
        self.agents = {}
        self.etcd = None
        self.psk = None
        self.consoles = {}

    def ns(self, k):
        return "%s-h%d" % (self.prefix, k)

    # ---- set-up and tear-down ----

    def up(self, start_agents=True):
        h = self.h
        # every cluster uses the same addresses (etcd at 10.10.0.201, ...):
        # one at a time on a machine, whoever runs it (CTest serializes its
        # own; two developers' or helpers' runs would collide)
        self.lock = open(LOCK_PATH, "a")
        t = now()
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        if now() - t > 1:
            h.log("waited %.0f s for another cluster test to end" % (now() - t))
        self.remove_stale()
        h.add_cleanup(self.down)
        sh("bash", CLUSTER_SH, "up", "-p", self.prefix, "-n", str(self.hosts),
           "--mig-nets", str(self.mig_nets), "--etcd", str(len(self.etcd_ips)))
        os.makedirs(self.quick_dir, exist_ok=True)
        members = [(None, ip, ETCD_CLIENT_PORT, ETCD_PEER_PORT) for ip in self.etcd_ips]
        self.etcd = etcdlib.EtcdCluster(members, os.path.join(h.tmpdir, "etcd"),
                                        token=self.prefix)
        self.etcd.start()
        self.psk = os.path.join(h.tmpdir, "cluster.psk")
        r = h.run([h.kvmove, "keygen", "--identity", "kvmove-cluster", self.psk])
        check(r.returncode == 0, "keygen failed: %s" % r.stderr)
        for k in range(1, self.hosts + 1):
            self.agents["h%d" % k] = Agent(self, k)
        if start_agents:
            for a in self.agents.values():
                a.start()
            self.wait_nodes(self.hosts)

    def remove_stale(self):
        """With the lock held no other cluster is live, so any left on the
        machine belongs to a run that was killed before its cleanup (CTest's
        timeout kills the whole process tree): it would hold the addresses
        and fail every cluster test after it.  Take it down."""
        names = sh("ip", "-o", "link", "show", check_rc=False).stdout.split("\n")
        names = [ln.split(":")[1].strip().split("@")[0] for ln in names if ln.count(":") > 1]
        prefixes = {m.group(1) for m in (re.match(r"^(kc\d+)root$", n) for n in names) if m}
        for ln in sh("ip", "netns", "list", check_rc=False).stdout.splitlines():
            m = re.match(r"^(kc\d+)-(sw|h\d+|client)\b", ln)
            if m:
                prefixes.add(m.group(1))
        for p in sorted(prefixes - {self.prefix}):
            self.h.log("taking down cluster %s, left by a run that was killed" % p)
            sh("bash", CLUSTER_SH, "down", "-p", p, check_rc=False)

    def down(self):
        for a in self.agents.values():
            try:
                a.kill(signal.SIGKILL)
            except Exception as e:
                print("agent %s: %s" % (a.name, e))
        for a in self.agents.values():
            for pid in a.vmm_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for c in self.consoles.values():
            c.close()
        if self.etcd:
            self.etcd.stop()
        sh("bash", CLUSTER_SH, "down", "-p", self.prefix, check_rc=False)
        if getattr(self, "lock", None):
            self.lock.close()       # releases the flock
            self.lock = None

    def diagnostics(self):
        out = []
        for a in self.agents.values():
            out.append("---- agent %s ----\n%s" % (a.name, "\n".join(a.log().splitlines()[-40:])))
        return "\n".join(out)

    # ---- the store ----

    def get(self, key):
        return etcdlib.get(self.etcd.endpoints(), key)

    def get_json(self, key):
        v = self.get(key)
        return json.loads(v) if v is not None else None

    def prefix_json(self, prefix):
        out = {}
        for k, v in etcdlib.get_prefix(self.etcd.endpoints(), prefix).items():
            try:
                out[k] = json.loads(v)
            except ValueError:
                out[k] = v
        return out

    def owner(self, vm):
        return self.get("/kvmove/vms/%s/owner" % vm)

    # ---- the CLI ----

    def cli(self, *args, timeout=120, expect=0, js=True):
        argv = [self.h.kvmove] + list(args) + ["--etcd", self.endpoints]
        if js:
            argv.append("--json")
        r = self.h.run(argv, timeout=timeout)
        if expect is not None:
            check(r.returncode == expect, "%s: exit %d (expected %d): %s%s"
                  % (" ".join(args), r.returncode, expect, r.stderr, r.stdout[-2000:]))
        if js and r.stdout.strip():
            try:
                r.json = json.loads(r.stdout)
            except ValueError:
                r.json = None
        else:
            r.json = None
        return r

    def wait_nodes(self, n, timeout=60):
        deadline = now() + scaled(timeout)
        while now() < deadline:
            nodes = self.prefix_json("/kvmove/nodes/")
            if len(nodes) >= n:
                return nodes
            time.sleep(0.2)
        raise kvtest.TestFailure("only %d of %d nodes registered:\n%s"
                                 % (len(self.prefix_json("/kvmove/nodes/")), n,
                                    self.diagnostics()))

    # ---- VMs ----

    def vm_create(self, name, mem="128M", wss="16M", rate=8, cpus=1, disk=None, extra=(),
                  ip=None):
        append = kvtest.guest_cmdline(wss=wss, rate=rate, hb=10000, verify_every=500, ip=ip)
        args = ["vm", "create", name, "--mem", mem, "--cpus", str(cpus),
                "--kernel", self.h.guest, "--append", append]
        if disk:
            args += ["--disk", disk]
        return self.cli(*args, *extra)

    def console(self, vm, node):
        """A follower of vm's console on node, one per VMM there: a VMM
        truncates its console when it starts, so a VM that comes back to a
        node (or is booted again there) gets a new follower; the old one
        would hold the last VMM's lines and read the new file from the old
        offset."""
        key = (vm, node)
        pid = self.agents[node].vmm_pid(vm)
        con = self.consoles.get(key)
        if con is not None and pid is not None:
            if con.vmm_pid is None:
                con.vmm_pid = pid
            elif con.vmm_pid != pid:
                con.close()
                del self.consoles[key]
        if key not in self.consoles:
            path = self.agents[node].console(vm)
            deadline = now() + scaled(60)
            while not os.path.exists(path):
                check(now() < deadline, "no console for %s on %s:\n%s"
                      % (vm, node, self.diagnostics()))
                time.sleep(0.1)
            # the file may still be the last VMM's until this one opens (and
            # so truncates) it: follow it only from then on
            pid = self.agents[node].vmm_pid(vm)
            while pid is not None and not vmm_opened(pid, path):
                if now() >= deadline:
                    raise kvtest.TestFailure("the VMM of %s on %s (pid %d) never opened its "
                                             "console %s:\n%s" % (vm, node, pid, path,
                                                                  self.diagnostics()))
                time.sleep(0.01)
            con = kvtest.Console(path)
            con.vmm_pid = pid
            self.consoles[key] = con
        return self.consoles[key]

    def wait_verified(self, vm, node, timeout=120):
        """The guest of vm on node verified all its memory (a VERIFY OK
        after a pass that began on this node), and reported nothing bad.
        Only lines that arrive from now on count: a VM checked again on a
        node (still running after a refused move, or back after moving
        away) must show new passes, not the ones already seen."""
        con = self.console(vm, node)
        i, _, m = con.wait_for(kvtest.RX_VERIFY_OK, start=len(con.lines), timeout=timeout,
                               fail_on=kvtest.RX_BAD,
                               what="VERIFY OK from %s on %s" % (vm, node))
        first = int(m.group(1))
        # two more whole passes: every page checked at least once here
        while int(m.group(1)) < first + 2:
            i, _, m = con.wait_for(kvtest.RX_VERIFY_OK, start=i + 1, timeout=timeout,
                                   fail_on=kvtest.RX_BAD,
                                   what="a later VERIFY OK from %s on %s" % (vm, node))
        kvtest.check_no_errors(con)

    def wait(self, what, fn, timeout=60, interval=0.1):
        """fn()'s first true value, polled every interval; a failure naming
        what, with the agents' logs, after timeout (scaled) seconds."""
        deadline = now() + scaled(timeout)
        while True:
            v = fn()
            if v:
                return v
            check(now() < deadline, "timed out after %d s waiting for %s\n%s"
                  % (timeout, what, self.diagnostics()))
            time.sleep(interval)

    def wait_state(self, vm, state, node=None, timeout=60):
        deadline = now() + scaled(timeout)
        st = None
        while now() < deadline:
            st = self.get_json("/kvmove/vms/%s/status" % vm)
            if st and st.get("state") == state and (node is None or st.get("node") == node):
                return st
            time.sleep(0.2)
        raise kvtest.TestFailure("%s never reached %s%s: %r\n%s"
                                 % (vm, state, " on " + node if node else "", st,
                                    self.diagnostics()))

    def migrate(self, vm, *args, expect=0, timeout=300):
        r = self.cli("vm", "migrate", vm, *args, expect=expect, timeout=timeout)
        return r.json or {}

    def migrations(self):
        return self.prefix_json("/kvmove/migrations/")
