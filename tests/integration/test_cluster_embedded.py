#!/usr/bin/env python3
"""The embedded default: a one-machine cluster with no etcd knowledge.

  `kvmove cluster init --dir D` starts a single-member etcd on
  127.0.0.1:2479 (data, log, pid and the cluster key under D); an agent
  started without --etcd finds it (and the key); `vm create`, `vm start`
  and `vm stop` without --etcd work against it; the VM runs and its guest
  verifies its memory.  Nothing outside D and the test's directory is
  written (KVMOVE_CLUSTER_CONF points at a file that does not exist, so no
  /etc/kvmove/cluster.conf of this machine interferes)."""
import os
import signal
import socket
import time

import kvtest
from kvtest import check, now, scaled


def port_open(port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        return s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        s.close()


def test(h):
    check(not port_open(2479), "something already listens on 127.0.0.1:2479 (the embedded "
          "etcd's port): stop it before this test")
    d = os.path.join(h.tmpdir, "kvmove-lib")
    run = os.path.join(h.tmpdir, "run")
    env_unset = ["env", "-u", "KVMOVE_ETCD",
                 "KVMOVE_CLUSTER_CONF=" + os.path.join(h.tmpdir, "no-such.conf")]

    def kill_etcd():
        try:
            with open(os.path.join(d, "etcd.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    h.add_cleanup(kill_etcd)

    r = h.run(env_unset + [h.kvmove, "cluster", "init", "--dir", d])
    check(r.returncode == 0, "cluster init: %s" % r.stderr)
    check(os.path.exists(os.path.join(d, "cluster.psk")), "no cluster key in %s" % d)
    r = h.run(env_unset + [h.kvmove, "cluster", "status", "--json"])
    check(r.returncode == 0, "cluster status: %s" % r.stderr)

    log = open(os.path.join(h.tmpdir, "agent.log"), "wb")
    agent = h.popen(env_unset + [h.kvmove, "agent", "--cluster-dir", d, "--run-dir", run,
                                 "--name", "solo"], stdout=log, stderr=log)

    def kill_vmms():
        for f in os.listdir(run) if os.path.isdir(run) else []:
            if f.endswith(".pid"):
                try:
                    with open(os.path.join(run, f)) as fh:
                        os.kill(int(fh.read()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
    h.add_cleanup(kill_vmms)

    deadline = now() + scaled(30)
    while True:
        r = h.run(env_unset + [h.kvmove, "node", "list", "--json"])
        if r.returncode == 0 and "solo" in r.stdout:
            break
        check(now() < deadline and agent.poll() is None, "the agent did not register")
        time.sleep(0.5)
    append = kvtest.guest_cmdline(wss="16M", rate=8, hb=10000, verify_every=500)
    r = h.run(env_unset + [h.kvmove, "vm", "create", "t1", "--mem", "128M", "--cpus", "1",
                           "--kernel", h.guest, "--append", append])
    check(r.returncode == 0, "vm create: %s" % r.stderr)
    r = h.run(env_unset + [h.kvmove, "vm", "start", "t1"], timeout=120)
    check(r.returncode == 0, "vm start: %s" % r.stderr)
    con = kvtest.Console(os.path.join(run, "t1.console"))
    try:
        con.wait_for(kvtest.RX_VERIFY_OK, timeout=60, fail_on=kvtest.RX_BAD,
                     what="VERIFY OK from t1")
    finally:
        con.close()
    r = h.run(env_unset + [h.kvmove, "vm", "stop", "t1"], timeout=120)
    check(r.returncode == 0, "vm stop: %s" % r.stderr)
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=30)
    check(agent.returncode == 0, "the agent exited %d on SIGTERM" % agent.returncode)


kvtest.main(test)
