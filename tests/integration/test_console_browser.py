#!/usr/bin/env python3
"""The management console in a real browser: Debian's chromium, headless,
driven by puppeteer-core (tests/browser/console.mjs) against `kvmove console`
on a live cluster (three namespace hosts, a real etcd, real agents,
verifying guests).

  - a wrong token is refused by the sign-in form (401 shown); a read-only
    user who clicks "Migrate" sees the 403 message, and nothing is queued
  - the admin signs in through the form; the page shows every node as a
    card and every VM as a row
  - choosing h3 for web1 and clicking "Migrate": the migration's row
    appears, its progress bar moves (h1's migration link is shaped so the
    move takes seconds), then the row lands in the history with the
    downtime the migration record holds; web1 runs and verifies on h3
  - busy1 (dirtying faster than h1's link sends) migrating to h3: its
    "Cancel" button ends it; the history says cancelled, busy1 verifies on h1
  - clicking "Maintenance on" on h2's card: the card says draining, then
    drained; /kvmove/drains/h2 says drained and h2's VMs verify elsewhere
  - app1's Stop, Start and Quick buttons: stopped, running again, then a
    quick migration in the history; app1 verifies where the record says
  - the event log shows the admin's actions and the reader's refusal

First, tests/browser/render.mjs: the page alone against a made-up cluster
(a node down, a bad record, drains incomplete and under way, a VM handed
over, failed, never started, a queued and a failed migration, tips), the
requests its buttons send and a refusal shown.

A screenshot after each step is kept in BUILD/test-artifacts/console/.
Chromium and tests/browser/node_modules come from scripts/deps.sh: without
them the test fails (it does not skip)."""
import json
import os
import shutil
import subprocess
import threading

import kvcluster
import kvtest
from kvtest import check, now, scaled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROWSER = os.path.join(ROOT, "tests", "browser")
CHROMIUM = "/usr/bin/chromium"


def browser_tools():
    """node, or a failure saying what is missing and how to get it."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append("Debian's chromium (%s)" % CHROMIUM)
    node = shutil.which("node")
    if not node:
        missing.append("node")
    if not os.path.isfile(os.path.join(BROWSER, "node_modules", "puppeteer-core",
                                       "package.json")):
        missing.append("tests/browser/node_modules (puppeteer-core)")
    check(not missing, "the browser test needs %s: run scripts/deps.sh" % ", ".join(missing))
    return node


def add_token(h, tokens, name, role):
    r = h.run([h.kvmove, "console", "token", "add", "--tokens", tokens, "--name", name,
               "--role", role])
    check(r.returncode == 0, "console token add %s: exit %d: %s" % (name, r.returncode, r.stderr))
    token = r.stdout.strip().split()[-1] if r.stdout.strip() else ""
    check(len(token) == 64, "console token add printed %r, not a token" % r.stdout)
    return token


def start_console(h, c, tokens):
    """`kvmove console` on a free port of 127.0.0.1 (the root namespace
    reaches etcd on the management network); its URL once it listens."""
    port = kvtest.free_port()
    log = open(os.path.join(h.tmpdir, "console.log"), "ab")
    p = h.popen([h.kvmove, "console", "--listen", "127.0.0.1:%d" % port, "--tokens", tokens,
                 "--etcd", c.endpoints], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
    log.close()
    c.wait("the console listening on port %d" % port,
           lambda: kvtest.tcp_listening(port) or p.poll() is not None, timeout=30)
    check(p.poll() is None, "kvmove console exited (%s):\n%s" % (p.returncode, console_log(h)))
    return "http://127.0.0.1:%d" % port


def console_log(h):
    try:
        with open(os.path.join(h.tmpdir, "console.log"), errors="replace") as f:
            return "".join(f.readlines()[-40:])
    except OSError:
        return ""


def keep_shots(h, shots):
    """Copy the screenshots to BUILD/test-artifacts/console/ (also after a
    failure: they show where it stopped)."""
    build = os.environ.get("KVMOVE_BUILD") or os.path.dirname(h.kvmove)
    dest = os.path.join(build, "test-artifacts", "console")
    shutil.rmtree(dest, ignore_errors=True)
    if os.path.isdir(shots):
        shutil.copytree(shots, dest)
        print("screenshots: %s (%d)" % (dest, len(os.listdir(dest))))


def run_browser(h, node, argv, timeout):
    """Run console.mjs, its log lines echoed as they come; (rc, what it saw)."""
    shown = ["TOKEN" if i and argv[i - 1] in ("--token", "--read-token") else a
             for i, a in enumerate(argv)]
    h.log("$ node tests/browser/console.mjs " + " ".join(shown))
    p = subprocess.Popen([node, os.path.join(BROWSER, "console.mjs")] + argv, cwd=BROWSER,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    h.procs.append(p)

    def echo():
        for line in p.stderr:
            print(line, end="", flush=True)
    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        out, _ = p.communicate(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise kvtest.TestFailure("the browser script did not finish within %d s" % timeout)
    t.join(5)
    seen = {}
    for line in reversed(out.splitlines()):
        try:
            seen = json.loads(line)
            break
        except ValueError:
            continue
    return p.returncode, seen


def test(h):
    node = browser_tools()
    t_start = now()
    # first the page alone against a made-up cluster (the states a healthy
    # test cluster never shows), then the real thing
    shots = os.path.join(h.tmpdir, "screenshots")
    os.makedirs(shots)
    h.add_cleanup(lambda: keep_shots(h, shots))
    r = h.run([node, os.path.join(BROWSER, "render.mjs"), "--out",
               os.path.join(shots, "00-made-up-cluster.png")], timeout=120)
    check(r.returncode == 0, "the page against a made-up cluster (tests/browser/render.mjs):\n%s"
          % r.stderr)
    c = kvcluster.Cluster(h, hosts=3, mig_nets=1, etcd_members=1)
    c.up()
    # web1: enough memory in use that its move over h1's shaped link takes
    # seconds (the progress bar must be seen moving); db1 and app1: small
    c.vm_create("web1", mem="256M", wss="96M", rate=1)
    c.vm_create("db1")
    c.vm_create("app1")
    # busy1 dirties its memory far faster than h1's link sends it: its
    # migration runs until cancelled
    c.vm_create("busy1", mem="256M", wss="128M", rate=400)
    c.cli("vm", "start", "web1", "--on", "h1")
    c.cli("vm", "start", "busy1", "--on", "h1")
    c.cli("vm", "start", "db1", "--on", "h2")
    c.cli("vm", "start", "app1", "--on", "h2")
    for vm, n in (("web1", "h1"), ("busy1", "h1"), ("db1", "h2"), ("app1", "h2")):
        c.wait_state(vm, "running", n)
    kvcluster.sh("ip", "netns", "exec", c.ns(1), "tc", "qdisc", "add", "dev", "mig0", "root",
                 "tbf", "rate", "200mbit", "burst", "256kb", "latency", "50ms")

    tokens = os.path.join(h.tmpdir, "console.tokens")
    admin = add_token(h, tokens, "admin", "admin")
    reader = add_token(h, tokens, "viewer", "read")
    check(oct(os.stat(tokens).st_mode & 0o777) == "0o600",
          "the token file is mode %o, not 0600" % (os.stat(tokens).st_mode & 0o777))
    url = start_console(h, c, tokens)
    h.log("console at %s; cluster ready after %.1f s" % (url, now() - t_start))

    rc, seen = run_browser(h, node, [
        "--url", url, "--token", admin, "--read-token", reader, "--out", shots,
        "--vm", "web1", "--to", "h3", "--ro-vm", "db1", "--drain", "h2", "--quick-vm", "app1", "--cancel-vm", "busy1",
        "--nodes", "h1,h2,h3", "--vms", "web1,db1,app1,busy1", "--timeout", "120"], timeout=300)
    h.log("the browser saw: %s" % json.dumps({k: v for k, v in seen.items()
                                              if k not in ("events", "nodeCards", "vmRows")}))
    check(rc == 0, "the browser script failed (exit %s); the console's log:\n%s\n%s"
          % (rc, console_log(h), c.diagnostics()))

    # nothing fetched from elsewhere, no script error in the page
    check(not seen.get("external"), "the page fetched from elsewhere: %s" % seen.get("external"))

    # 1. refusals
    check(seen["wrongToken"].get("status") == "401",
          "a wrong token: the page said %r" % seen["wrongToken"])
    ro = seen["readOnly"]
    check(ro.get("status") == "403" and "403" in ro.get("text", ""),
          "the read-only user's migrate: the page said %r" % ro)
    check(seen.get("readerRole") == "read" and seen.get("adminRole") == "admin",
          "roles shown: reader %r, admin %r" % (seen.get("readerRole"), seen.get("adminRole")))
    db1_migs = [m for m in c.migrations().values() if isinstance(m, dict) and m.get("vm") == "db1"]
    check(all(m.get("drain") for m in db1_migs),
          "a migration of db1 not queued by the drain exists (the reader's click?): %s" % db1_migs)

    # 2. the cluster as shown
    cards = {n["node"]: n for n in seen["nodeCards"]}
    check(sorted(cards) == ["h1", "h2", "h3"], "node cards: %s" % sorted(cards))
    for n in cards.values():
        check(n["state"] == "up", "card %s: %s" % (n["node"], n["text"]))
    rows = {r["vm"]: r for r in seen["vmRows"]}
    for vm, n in (("web1", "h1"), ("db1", "h2"), ("app1", "h2")):
        check(rows.get(vm, {}).get("node") == n and rows[vm]["state"] == "running",
              "VM row %s: %s" % (vm, rows.get(vm)))
    check("web1" in cards["h1"]["text"] and "db1" in cards["h2"]["text"],
          "the cards do not list their VMs: %s" % cards)

    # 3. the migration: moved, verified, its figures as recorded
    mig = seen["migration"]
    rec = c.get_json("/kvmove/migrations/" + mig["id"])
    check(rec and rec.get("state") == "completed" and rec.get("to") == "h3",
          "migration %s: %r" % (mig["id"], rec))
    check(c.owner("web1") == "h3", "web1's owner is %r after the move" % c.owner("web1"))
    c.wait_verified("web1", "h3")
    moving = sorted({p["pct"] for p in mig["progress"] if p["pct"] > 0})
    check(len(moving) >= 2, "the progress bar was not seen moving: %s" % mig["progress"])
    check(any(p["eta"] not in ("-", "") for p in mig["progress"]),
          "no ETA was shown: %s" % mig["progress"])
    check(max(p["points"] for p in mig["progress"]) >= 2 and seen["history"]["chartPoints"] >= 2,
          "the throughput chart drew %s points in flight, %s in the history"
          % ([p["points"] for p in mig["progress"]], seen["history"]["chartPoints"]))
    hist = seen["history"]
    down = rec["stats"]["downtime-ms"]
    check(hist["result"] == "completed" and hist["downtimeMs"] == down,
          "history row %s, record's downtime %s ms" % (hist, down))
    check(seen.get("historyOfVm") == ["web1"], "web1's history alone showed %s"
          % seen.get("historyOfVm"))
    h.log("migration %s: %d progress updates seen (%s %%), history: %s; recorded %.1f s, "
          "downtime %d ms" % (mig["id"], len(mig["progress"]),
                              ", ".join("%.0f" % p for p in moving), hist["cells"],
                              rec["stats"]["total-time-ms"] / 1e3, down))

    # 3b. busy1's migration, cancelled while it ran: busy1 stays on h1
    cc = seen["cancel"]
    crec = c.get_json("/kvmove/migrations/" + cc["id"])
    check(crec and crec.get("state") == "cancelled" and cc["result"] == "cancelled",
          "busy1's cancelled migration: page %s, record %r" % (cc, crec))
    check(c.owner("busy1") == "h1" and cc["node"] == "h1",
          "busy1 is on %r (the page said %r) after its cancelled migration"
          % (c.owner("busy1"), cc["node"]))
    c.wait_state("busy1", "running", "h1")
    c.wait_verified("busy1", "h1")
    h.log("busy1's migration cancelled by its button: %s; %s" % (cc["cells"], cc["message"]))

    # 4. the drain: drained, its VMs verified where they went
    d = c.get_json("/kvmove/drains/h2")
    check(d and d.get("state") == "drained", "h2's drain: %r" % d)
    check(seen["drain"][-1]["state"] == "drained" and "none" in seen["drain"][-1]["vms"],
          "the card ended %s" % seen["drain"][-1])
    for vm in ("db1", "app1"):
        n = c.owner(vm)
        check(n in ("h1", "h3"), "%s is on %r after h2's drain" % (vm, n))
        c.wait_verified(vm, n)
    h.log("h2's card: %s" % " | ".join(s["text"] for s in seen["drain"]))

    # 5. stop, start, quick migration by the buttons
    q = seen["quick"]
    qrec = c.get_json("/kvmove/migrations/" + q["id"])
    check(qrec and qrec.get("quick") and qrec.get("state") == "completed"
          and q["result"] == "completed" and q["downtimeMs"] == qrec["stats"]["downtime-ms"],
          "app1's quick migration: page %s, record %r" % (q, qrec))
    check(c.owner("app1") == qrec["to"] == q["node"],
          "app1 is on %r; the record says %r, the page %r" % (c.owner("app1"), qrec["to"], q["node"]))
    c.wait_verified("app1", qrec["to"])
    h.log("app1: stopped, started on %s, quick-migrated to %s: %s"
          % (qrec["from"], qrec["to"], q["cells"]))

    # 6. the event log
    ev = seen["events"]
    for action in ("vms.stop", "vms.start", "migrations.cancel"):
        check(any(e["who"] == "admin" and e["action"] == action and e["status"] == "200"
                  for e in ev), "the event log lacks the admin's %s: %s" % (action, ev))
    check(any(e["who"] == "admin" and e["action"] and "migrate" in e["action"]
              and e["status"].startswith("2") for e in ev),
          "the event log lacks the admin's migrate: %s" % ev)
    check(any(e["who"] == "admin" and "maintenance" in (e["action"] or "") for e in ev),
          "the event log lacks the admin's maintenance: %s" % ev)
    check(any(e["who"] == "viewer" and e["status"] == "403" for e in ev),
          "the event log lacks the reader's refusal: %s" % ev)
    check(len(seen["shots"]) >= 10, "screenshots: %s" % seen["shots"])
    h.log("browser steps: %s" % "; ".join("%.1f s %s" % (s["t"], s["what"])
                                           for s in seen["steps"]))
    h.log("whole test %.1f s, the browser's part %.1f s" % (now() - t_start, seen["seconds"]))


if __name__ == "__main__":
    kvtest.main(test)
