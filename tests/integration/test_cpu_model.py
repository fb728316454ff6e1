#!/usr/bin/env python3
"""CPU models (kvmove run --cpu, docs/CPU-MODELS.md), with the verifying guest.

  1. The guest's own report (cpuid=1) on the richest named model this host
     runs (x86-64-v2 where KVM offers it; x86-64 on PVM hosts, whose KVM
     offers no SSE3) shows exactly the model's feature bits: no AVX2, no
     AVX-512, no XSAVE component the model does not use.  The same guest on
     `host` sees a feature F the model hides (so the check can fail).
  2. A model this host cannot give is refused at start, the missing
     features named.
  3. A destination started with --x-hide-host-feature F refuses a
     host-model VM from this host at preflight, naming F; the VM keeps
     running and verifying.  The same VM started on the named model
     migrates to such a destination and verifies there; from there, a host
     lacking one of the model's own features (sse2) refuses it by model.

On PVM hosts (/sys/module/kvm_pvm) guest code runs on host ring 3 and most
CPUID bits (leaf 7, 0xD.0, CPUID.1:EDX, bits KVM does not offer) come from
the hardware whatever KVM was told (measured on the development host):
there the inside check covers what KVM does answer (its bits in
CPUID.1:ECX and 0x80000001, the XSAVE subleaves) and prints what leaked.  On
VMX/SVM hosts every feature register is compared."""
import kvtest
from kvtest import check
from kvcpu import controlled, cpu_models, decode, guest_leaves, PVM, sh

def pick_hidden(info, model):
    """A feature this host's KVM offers that the model does not give."""
    host = set(info["host"])
    where = {f["name"]: f for f in info["table"]}
    for f in ("avx2", "avx512f", "cx16", "lahf_lm", "tsc_deadline_timer", "3dnowprefetch",
              "gfni", "clwb", "movdiri"):
        if f in host and f not in model and f in controlled(info):
            return f
    check(False, "this host offers no feature beyond %s to test with: %r"
          % (sorted(model), sorted(host)))
    return where.get("")


def test(h):
    info = cpu_models(h)
    models = {m["name"]: m for m in info["models"]}
    name = "x86-64-v2" if models["x86-64-v2"]["ok"] else "x86-64"
    check(models[name]["ok"], "this host runs no named model: %r" % models)
    model = set(models[name]["features"])
    hidden = pick_hidden(info, model)
    h.log("model %s (best here: %s, PVM host: %s); the hidden feature: %s"
          % (name, info["best"], PVM, hidden))
    app = kvtest.guest_cmdline(wss="32M", rate=8, hb=1000, cpuid=1)

    # 1. the guest's own report, on the model and on host
    onm = h.vmm(name="onmodel", mem="256M", append=app, extra=["--cpu", name])
    onh = h.vmm(name="onhost", mem="256M", append=app)
    lm, lh = guest_leaves(onm), guest_leaves(onh)
    seen_m, seen_h = decode(lm, info["table"]), decode(lh, info["table"])
    ctl = controlled(info)
    check(seen_m & ctl == model & ctl,
          "the guest on %s sees %s; the model gives %s (extra %s, missing %s)"
          % (name, sorted(seen_m & ctl), sorted(model & ctl), sorted((seen_m - model) & ctl),
             sorted((model - seen_m) & ctl)))
    check(hidden in seen_h and hidden not in seen_m,
          "%s: on host %s, on %s %s" % (hidden, hidden in seen_h, name, hidden in seen_m))
    if not PVM:
        for f in ("avx2", "avx512f", "avx512bw", "avx512vl"):
            check(f not in seen_m, "the guest on %s sees %s" % (name, f))
    else:
        h.log("PVM: bits from the hardware the guest sees anyway: %s"
              % " ".join(sorted(seen_m - model)))
    # XSAVE: components the model does not use are gone, with their sizes
    xcr0 = lm.get((0xd, 0), {}).get("eax", 0)
    for (fn, sub), regs in sorted(lm.items()):
        if fn == 0xd and sub >= 2:
            uses = "avx" in model if sub == 2 else "avx512f" in model if sub in (5, 6, 7) \
                else False
            check(uses or regs["eax"] == 0,
                  "XSAVE component %d (%d bytes) offered to a %s guest" % (sub, regs["eax"],
                                                                           name))
    if "xsave" not in model and not PVM:
        check(xcr0 == 0, "CPUID.0xD.0:EAX 0x%x for a model without XSAVE" % xcr0)
    h.log("inside: %d features on %s, %d on host" % (len(seen_m), name, len(seen_h)))
    onm.wait_verified()

    # 2. a model this host cannot give: refused at start, missing features named
    lacking = [m for m in info["models"] if not m["ok"]]
    spec = lacking[-1]["name"] if lacking else "host,+" + next(
        f["name"] for f in info["table"] if f["name"] not in info["host"]
        and not f["name"].startswith("kvm"))
    r = sh([h.kvmove, "run", "--kernel", h.guest, "--mem", "64M", "--cpu", spec,
                    "--console", "none"], timeout=30)
    check(r.returncode == 1 and "this host lacks" in r.stderr,
          "--cpu %s on a host without it: exit %d, %r" % (spec, r.returncode, r.stderr))
    first_missing = (lacking[-1]["missing"].split() or ["?"])[0] if lacking else ""
    check(first_missing in r.stderr, "the refusal does not name %s: %r"
          % (first_missing, r.stderr))
    h.log("refused at start: %s" % r.stderr.strip())

    # 3. a destination without `hidden`: refuses the host-model VM ...
    dst = h.incoming("nohidden1", onh, extra=["--x-hide-host-feature", hidden])
    run = onh.migrate(dst.uri)
    run.expect(3, "failed", "preflight")
    fails = run.stat("x-preflight", "failures", default=[])
    check(any(f.get("id") == "cpu-features" and hidden in f.get("reason", "")
              for f in fails), "no cpu-features failure naming %s: %r" % (hidden, fails))
    rc = dst.wait_exit(timeout=60)
    check(rc == 3, "the refusing destination exited %d" % rc)
    kvtest.check_never_ran(dst)
    check(onh.cmd("query-status")["status"] == "running", "the refused VM stopped")
    onh.wait_verified()
    h.log("host-model VM refused: %s" % [f["reason"] for f in fails])

    # ... and takes the same VM on the named model, which verifies there
    dst = h.incoming("nohidden2", onm, extra=["--x-hide-host-feature", hidden])
    run = onm.migrate(dst.uri)
    kvtest.check_migrated(onm, dst, run, wss=32 << 20)
    h.log("%s VM moved to a host without %s: %s" % (name, hidden, run.summary()))

    # the model travelled with it: a host without one of the model's own
    # features refuses it by the model, not by the source host
    nosse2 = h.incoming("nosse2", dst, extra=["--x-hide-host-feature", "sse2"])
    run = dst.migrate(nosse2.uri)
    run.expect(3, "failed", "preflight")
    fails = run.stat("x-preflight", "failures", default=[])
    check(any(f.get("id") == "cpu-model" and "sse2" in f.get("reason", "") and
              name in f.get("reason", "") for f in fails),
          "no cpu-model failure naming %s and sse2: %r" % (name, fails))
    check(nosse2.wait_exit(timeout=60) == 3, "the refusing destination did not exit 3")
    dst.wait_verified()
    h.log("refused by its model: %s" % [f["reason"] for f in fails])


kvtest.main(test)
