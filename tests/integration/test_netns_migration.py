"""A VM with a shared disk and a NIC moves between two hosts (network
namespaces from scripts/kvmove-cluster.sh) over the dedicated migration
network while a client on the VM network pings it every 10 ms.

Shown: guest memory verified, the disk verified (blocks written on the
source read back on the destination), pings answered from the new host,
the number of lost pings, the VM network switch learning the VM's MAC on
the new host's port from the announce, and the disk lock moving with the
VM (a third VMM cannot open the disk, before or after)."""

import os
import re
import signal
import subprocess
import threading
import time

import kvtest
from kvtest import check

MAC = "52:54:00:4b:56:01"
GUEST_IP = "10.0.0.10"


def sh(*argv, check_rc=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check_rc and r.returncode:
        raise kvtest.TestFailure("%s failed (%d): %s" % (" ".join(argv), r.returncode, r.stdout))
    return r.stdout


def fdb_port(cluster, prefix):
    """The port of the VM network switch that has learned MAC."""
    out = sh("bash", cluster, "fdb", "-p", prefix)
    for line in out.splitlines():
        if line.lower().startswith(MAC):
            m = re.search(r"dev (\S+)", line)
            return m.group(1) if m else None
    return None


def wait_fdb(h, cluster, prefix, port, timeout=10):
    deadline = time.time() + kvtest.scaled(timeout)
    while time.time() < deadline:
        got = fdb_port(cluster, prefix)
        if got == port:
            return
        time.sleep(0.05)
    raise kvtest.TestFailure("the VM network switch has %s on %r, expected %r"
                             % (MAC, fdb_port(cluster, prefix), port))


class FdbWatch(threading.Thread):
    """Polls the VM network switch's table and notes (monotonic) when MAC
    first shows up on port."""

    def __init__(self, cluster, prefix, port):
        super().__init__(daemon=True)
        self.args = (cluster, prefix, port)
        self.when = None
        self.stop = False

    def run(self):
        cluster, prefix, port = self.args
        while not self.stop and self.when is None:
            if fdb_port(cluster, prefix) == port:
                self.when = kvtest.now()
            time.sleep(0.005)


def test(h):
    if os.geteuid() != 0:
        raise kvtest.TestFailure("needs root for network namespaces")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cluster = os.path.join(root, "scripts", "kvmove-cluster.sh")
    prefix = "kt%d" % (os.getpid() % 10000)
    h.add_cleanup(lambda: sh("bash", cluster, "down", "-p", prefix, check_rc=False))
    sh("bash", cluster, "up", "-p", prefix, "-n", "2")
    shared = "/tmp/%s-cluster/shared" % prefix
    disk = os.path.join(shared, "web1.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    for host in ("h1", "h2"):
        sh("bash", cluster, "tap", "-p", prefix, host, "vmtap0")

    devs = ["--disk", disk, "--net", "tap=vmtap0,mac=" + MAC]
    src = h.vmm(name="src", mem="512M", netns=prefix + "-h1",
                append="wss=256M rate=32 hb=2000 seed=3 ip=%s diskrate=200" % GUEST_IP,
                extra=devs)
    src.wait_ready()
    src.console.wait_for(r"^NET %s ip=%s" % (MAC, GUEST_IP), timeout=60)
    src.console.wait_for(r"^DISK \d+ blocks=", timeout=120)
    src.console.wait_for(r"^DISK OK ", timeout=120)

    # a second VMM can never open the disk for writing while the VM runs
    other = h.vmm(name="other", mem="64M", append="wss=1M", extra=["--disk", disk])
    check(other.wait_exit(timeout=30) != 0, "a second VMM started on a disk in use")
    check("in use" in other.stderr(), "no clear message: %r" % other.stderr()[-300:])

    client = prefix + "-client"
    out = sh("ip", "netns", "exec", client, "ping", "-c", "3", "-W", "2", GUEST_IP,
             check_rc=False)
    check(" 0% packet loss" in out or "3 received" in out,
          "the guest does not answer pings before the migration: %s" % out)
    wait_fdb(h, cluster, prefix, prefix + "1vm")
    h.log("before: the VM network switch has %s on %s" % (MAC, fdb_port(cluster, prefix)))

    port = kvtest.free_port()
    dst = h.vmm(name="dst", netns=prefix + "-h2", incoming="tcp:10.20.0.2:%d" % port,
                expect=src.vm_name, extra=["--allow-disk", disk, "--allow-tap", "vmtap0"])
    dst.console.alive = dst._dead_reason
    deadline = time.time() + kvtest.scaled(30)
    while "waiting for a migration" not in dst.stderr():
        dst.check_alive()
        check(time.time() < deadline, "the destination never listened")
        time.sleep(0.05)

    # ping every 10 ms through the switchover
    pinger = subprocess.Popen(["ip", "netns", "exec", client, "ping", "-i", "0.01", "-W", "1",
                               GUEST_IP], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    h.procs.append(pinger)
    time.sleep(1.0)
    watch = FdbWatch(cluster, prefix, prefix + "2vm")
    watch.start()
    run = src.migrate("tcp:10.20.0.2:%d" % port)
    h.log(run.summary())
    kvtest.check_migrated(src, dst, run, wss=256 << 20)
    wait_fdb(h, cluster, prefix, prefix + "2vm")
    watch.join(timeout=kvtest.scaled(10))
    watch.stop = True
    first = dst.console.snapshot()
    check(first and watch.when, "no destination output or no table change seen")
    h.log("after: the switch learned %s on %s %.0f ms after the guest's first output on "
          "the destination" % (MAC, fdb_port(cluster, prefix), (watch.when - first[0][0]) * 1000))
    time.sleep(1.0)
    pinger.send_signal(signal.SIGINT)
    out, _ = pinger.communicate(timeout=10)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    check(m, "no ping summary: %s" % out[-500:])
    sent, got = int(m.group(1)), int(m.group(2))
    seqs = sorted({int(x) for x in re.findall(r"icmp_seq=(\d+)", out)})
    lost_seqs = [s for s in range(seqs[0], seqs[-1] + 1) if s not in set(seqs)] if seqs else []
    h.log("pings every 10 ms: %d sent, %d answered; %d lost around the switchover (icmp_seq "
          "%s), %d still in flight when the pinger stopped; downtime %s ms"
          % (sent, got, len(lost_seqs), lost_seqs[:20], sent - got - len(lost_seqs),
             run.stat("downtime")))
    check(seqs and seqs[-1] >= sent - 5, "pings stopped being answered after the migration")

    # answered from the new host, and the disk and memory still verify there
    out = sh("ip", "netns", "exec", client, "ping", "-c", "3", "-W", "2", GUEST_IP,
             check_rc=False)
    check("3 received" in out, "the guest does not answer on the new host: %s" % out)
    start = len(dst.console)
    dst.console.wait_for(r"^DISK OK ", start=start, timeout=60)
    dst.console.wait_for(r"^NET STATS .*announce=[1-9]", timeout=60)
    for vm in (src, dst):
        text = "\n".join(line for _, line in vm.console.snapshot())
        for bad in ("DISK FAIL", "DISK BAD", "DISK STALL", "VERIFY FAIL", "VERIFY BAD"):
            check(bad not in text, "%s on %s's console" % (bad, vm.name))
    # the disk went with the VM
    other2 = h.vmm(name="other2", mem="64M", append="wss=1M", extra=["--disk", disk])
    check(other2.wait_exit(timeout=30) != 0, "a second VMM opened the migrated VM's disk")


kvtest.main(test)
