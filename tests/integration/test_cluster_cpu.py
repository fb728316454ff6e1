#!/usr/bin/env python3
"""CPU models in the cluster (issue 15): two namespace hosts, a real etcd,
real agents, verifying guests.  h2's agent runs with --x-hide-feature F, F a
feature h1's KVM offers and the x86-64 model does not have: h2 does not
publish it, and its VMMs do not give it to guests.

  a. `cluster cpu-baseline` names the richest model both nodes run (x86-64
     on this host, whose KVM offers no SSE3) and reports F as not shared,
     on h1 only.
  b. A VM created with --cpu x86-64 boots (its VMM runs with --cpu x86-64,
     its status lists the model's features, not h1's), verifies, and moves
     by name to h2, which lacks F, and verifies there; `vm set --cpu host`
     on it while it runs is refused (exit 3) with the reason.  A VM on
     x86-64,+F cannot start on h2 (F named) and placement puts it on h1.
  c. Stopped, `vm set --cpu host` changes it; booted on h1 it is given F,
     and a migration to h2 is refused with F named.
"""
import json
import os

import kvcluster
import kvtest
from kvtest import check

REFUSAL = "stop it first: a CPU model changes only while the VM is off"


def model_features(h, name):
    r = h.run([h.kvmove, "cpu-models", "--json"])
    check(r.returncode == 0, "kvmove cpu-models: %s" % r.stderr)
    return next(m["features"] for m in json.loads(r.stdout)["models"] if m["name"] == name)


def vmm_argv(c, node, vm):
    with open(os.path.join(c.agents[node].run_dir, vm + ".pid")) as f:
        pid = int(f.read())
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().decode(errors="replace").split("\0")


def forget_console(c, vm, node):
    """Before vm boots on node again: its next VMM writes a new console
    (the old run's VERIFY OKs must not count)."""
    con = c.consoles.pop((vm, node), None)
    if con:
        con.close()
    try:
        os.unlink(c.agents[node].console(vm))
    except FileNotFoundError:
        pass


def test(h):
    c = kvcluster.Cluster(h, hosts=2, mig_nets=1)
    c.up(start_agents=False)
    c.agents["h1"].start()
    c.wait_nodes(1)
    feat = kvcluster.spare_feature(c, "h1")
    c.agents["h2"].extra += ["--x-hide-feature", feat]
    c.agents["h2"].start()
    c.wait_nodes(2)
    h2 = c.wait("h2's node record", lambda: c.get_json("/kvmove/nodes/h2"))
    check(feat not in h2.get("cpu-features", [feat]), "h2 publishes %s: %r" % (feat, h2))
    h.log("%s hidden on h2 (h1 offers %d features)"
          % (feat, len(c.get_json("/kvmove/nodes/h1")["cpu-features"])))
    x86 = model_features(h, "x86-64")

    # a. the baseline
    r = c.cli("cluster", "cpu-baseline")
    b = r.json
    check(b and b.get("model") == "x86-64", "cpu-baseline: %r" % b)
    check(feat not in b["shared-beyond"] and feat not in b["common"],
          "cpu-baseline says every node has %s: %r" % (feat, b))
    nodes = {n["name"]: n for n in b["nodes"]}
    check(feat in nodes["h1"]["not-shared"] and feat not in nodes["h2"]["not-shared"],
          "cpu-baseline per node: %r" % nodes)
    r = c.cli("cluster", "cpu-baseline", js=False)
    check("baseline: x86-64" in r.stdout and feat in r.stdout,
          "cpu-baseline for humans: %s" % r.stdout)
    h.log("cpu-baseline: %s" % r.stdout.strip().replace("\n", " | "))

    # b. a VM on x86-64: boots, moves to the node without F
    c.vm_create("m1", extra=["--cpu", "x86-64"])
    r = c.cli("vm", "show", "m1", js=False)
    check("x86-64" in r.stdout, "vm show does not say the model: %s" % r.stdout)
    c.cli("vm", "start", "m1", "--on", "h1")
    st = c.wait_state("m1", "running", "h1")
    check(sorted(st["cpu-features"]) == sorted(x86),
          "m1's status features are not x86-64's: %r" % st["cpu-features"])
    argv = vmm_argv(c, "h1", "m1")
    check("--cpu" in argv and argv[argv.index("--cpu") + 1] == "x86-64",
          "m1's VMM was not given --cpu x86-64: %r" % argv)
    c.wait_verified("m1", "h1")
    r = c.cli("vm", "set", "m1", "--cpu", "host", expect=3)
    check(REFUSAL in r.stderr, "vm set on a running VM: %s" % r.stderr)
    rec = c.migrate("m1", "--to", "h2")
    check(rec.get("state") == "completed" and c.owner("m1") == "h2", "m1 to h2: %r" % rec)
    c.wait_state("m1", "running", "h2")
    c.wait_verified("m1", "h2")
    h.log("m1 (x86-64) moved h1 -> h2 (without %s) and verified" % feat)

    # a model with F: not on h2, placed on h1
    c.vm_create("m2", extra=["--cpu", "x86-64,+" + feat])
    r = c.cli("vm", "start", "m2", "--on", "h2", expect=3)
    check(feat in r.stdout + r.stderr, "the refusal on h2 does not name %s: %s"
          % (feat, r.stdout + r.stderr))
    c.cli("vm", "start", "m2")
    st = c.wait_state("m2", "running", "h1")
    check(feat in st["cpu-features"], "m2's status lacks %s: %r" % (feat, st))
    c.cli("vm", "stop", "m2")

    # c. off: the model changes; on host from h1 it is given F and stays off h2
    c.cli("vm", "stop", "m1")
    r = c.cli("vm", "set", "m1", "--cpu", "host")
    check(r.json and r.json.get("cpu") == "host", "vm set: %r" % r.json)
    check((c.get_json("/kvmove/vms/m1/spec") or {}).get("cpu") == "host",
          "the definition still says %r" % c.get_json("/kvmove/vms/m1/spec"))
    c.cli("vm", "set", "m1", "--cpu", "nosuchmodel", expect=2)
    forget_console(c, "m1", "h1")
    c.cli("vm", "start", "m1", "--on", "h1")
    st = c.wait_state("m1", "running", "h1")
    check(feat in st["cpu-features"], "m1 on host lacks %s: %r" % (feat, st))
    check("--cpu" not in vmm_argv(c, "h1", "m1"), "m1 on host was given --cpu")
    c.wait_verified("m1", "h1")
    r = c.cli("vm", "migrate", "m1", "--to", "h2", expect=3)
    out = r.stdout + r.stderr
    check("missing CPU features" in out and feat in out,
          "the refusal does not name %s: %s" % (feat, out))
    check(c.owner("m1") == "h1", "m1 left h1: %s" % c.owner("m1"))
    c.wait_verified("m1", "h1")
    h.log("m1 on host: refused on h2 (missing %s), still verifying on h1" % feat)


kvtest.main(test)
