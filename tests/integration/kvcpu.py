"""CPU-model helpers for the integration tests: this host's models and
feature table (kvmove cpu-models), and the test guest's cpuid=1 report."""
import json
import os
import subprocess

from kvtest import check

PVM = os.path.isdir("/sys/module/kvm_pvm")
RX_CPUID = (r"^CPUID 0x([0-9a-f]{8})\.(\d+) eax=0x([0-9a-f]{8}) ebx=0x([0-9a-f]{8}) "
            r"ecx=0x([0-9a-f]{8}) edx=0x([0-9a-f]{8})$")
REGS = ("eax", "ebx", "ecx", "edx")


def sh(argv, timeout=60):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def cpu_models(h, *extra):
    r = sh([h.kvmove, "cpu-models", "--json", "--features"] + list(extra))
    check(r.returncode == 0, "cpu-models: %r" % r.stderr)
    return json.loads(r.stdout)


def guest_leaves(vm):
    """{(leaf, subleaf): {"eax": .., ...}} from the guest's cpuid=1 report."""
    vm.console.wait_for(r"^CPUID done$", timeout=60)
    out = {}
    for _, _, m in vm.console.find(RX_CPUID):
        out[(int(m.group(1), 16), int(m.group(2)))] = dict(
            zip(REGS, (int(m.group(i), 16) for i in range(3, 7))))
    return out


def decode(leaves, table):
    """The named features the guest sees (KVM's own leaf left out)."""
    seen = set()
    for f in table:
        if f["name"].startswith("kvm"):
            continue
        regs = leaves.get((f["leaf"], f["subleaf"]))
        if regs and (regs[f["reg"]] >> f["bit"]) & 1:
            seen.add(f["name"])
    return seen


def controlled(info):
    """Features whose bits this host's KVM decides, as the guest sees them:
    all but KVM's own leaf; on PVM only CPUID.1:ECX and 0x80000001 bits
    that KVM offers (the rest come from the hardware, measured)."""
    host = set(info["host"])
    return {f["name"] for f in info["table"]
            if not f["name"].startswith("kvm") and
            (not PVM or (f["name"] in host and (f["leaf"], f["reg"]) in
                         ((1, "ecx"), (0x80000001, "ecx"), (0x80000001, "edx"))))}
