"""kvtest - the integration test harness: real VMMs, real guests, real KVM.

A test is one file that ends with ``kvtest.main(test)``; ``test(h)`` gets a
``Harness`` that starts VMMs (``h.vmm(...)``), owns a temporary directory and
cleans everything up however the test ends (VMMs killed, files removed).

    import kvtest

    def test(h):
        vm = h.vmm(mem="1G", append="wss=64M rate=32")
        vm.wait_ready()
        vm.console.wait_for(r"^VERIFY OK ")

    kvtest.main(test)

Environment (set by CTest):
    KVMOVE_BIN            the kvmove binary
    KVMOVE_GUEST          the test guest ELF
    KVMOVE_BUILD          the build directory
    KVMOVE_ALLOW_NO_KVM   if "1", a test that needs /dev/kvm and cannot open it
                          is skipped (exit 77) instead of failing
    KVMOVE_TIMEOUT_SCALE  multiply every timeout (slow or nested hosts)
    KVMOVE_KEEP           if "1", keep the temporary directory for inspection

Exit status of a test: 0 pass, 1 fail, 77 skipped.  Timeouts are generous
and nothing asserts on timing: timings belong in bench/.

Python 3 standard library only.
"""

import faulthandler
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77


def now():
    """Host CLOCK_MONOTONIC in seconds (what console arrival times use)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def timeout_scale():
    try:
        return max(0.1, float(os.environ.get("KVMOVE_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def scaled(seconds):
    return seconds * timeout_scale()


class TestFailure(Exception):
    """A test assertion failed; the message says what and why."""


class Skip(Exception):
    """The test cannot run here (and that is allowed): exit 77."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def env_path(name):
    v = os.environ.get(name)
    if not v:
        raise TestFailure("environment variable %s is not set (run through ctest, "
                          "or set it to the path)" % name)
    if not os.path.exists(v):
        raise TestFailure("%s=%s does not exist (build it first)" % (name, v))
    return v


def require_kvm():
    """Fail without /dev/kvm, unless KVMOVE_ALLOW_NO_KVM=1 (then skip)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
        return
    except OSError as e:
        why = "cannot open /dev/kvm: %s" % e.strerror
    if os.environ.get("KVMOVE_ALLOW_NO_KVM") == "1":
        raise Skip(why + " (KVMOVE_ALLOW_NO_KVM=1)")
    raise TestFailure(why + " (set KVMOVE_ALLOW_NO_KVM=1 to skip instead)")


# --------------------------------------------------------------------------
# Console follower
# --------------------------------------------------------------------------

class Console:
    """Follows a console file as it grows, line by line.

    ``lines`` is a list of ``(t, text)``: the host CLOCK_MONOTONIC time (s)
    the line was seen and its text without the newline.  A background thread
    polls the file every ~1 ms, so arrival times are good to about that
    (benchmarks measuring heartbeat gaps can rely on it).
    """

    POLL_S = 0.001

    def __init__(self, path):
        self.path = path
        self.lines = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._partial = b""
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()

    def _run(self):
        f = None
        try:
            while not self._stop.is_set():
                if f is None:
                    try:
                        f = open(self.path, "rb")
                    except FileNotFoundError:
                        time.sleep(self.POLL_S)
                        continue
                data = f.read(1 << 20)
                if not data:
                    time.sleep(self.POLL_S)
                    continue
                self._add(data)
            if f is not None:   # whatever arrived last
                data = f.read()
                if data:
                    self._add(data)
        finally:
            if f is not None:
                f.close()

    def _add(self, data):
        t = now()
        parts = (self._partial + data).split(b"\n")
        self._partial = parts.pop()
        new = [(t, p.rstrip(b"\r").decode("utf-8", "replace")) for p in parts]
        if new:
            with self._cond:
                self.lines.extend(new)
                self._cond.notify_all()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def __len__(self):
        with self._cond:
            return len(self.lines)

    def snapshot(self, start=0):
        with self._cond:
            return list(self.lines[start:])

    def tail(self, n=40):
        with self._cond:
            out = [text for _, text in self.lines[-n:]]
        if self._partial:
            out.append(self._partial.decode("utf-8", "replace") + "  <no newline yet>")
        return out

    def find(self, pattern, start=0):
        """All (index, t, match) for lines from start matching pattern."""
        rx = re.compile(pattern)
        out = []
        for i, (t, text) in enumerate(self.snapshot(start), start):
            m = rx.search(text)
            if m:
                out.append((i, t, m))
        return out

    def wait_for(self, pattern, timeout=60, start=0, fail_on=None, what=None):
        """Wait until a line (index >= start) matches pattern (a regex).

        Returns (index, t, match).  fail_on: a regex that, if it matches a
        line first, fails the test at once (e.g. VERIFY FAIL, EXCEPTION).
        Fails early if the producer (the VMM) died: see ``alive``.
        """
        rx = re.compile(pattern)
        bad = re.compile(fail_on) if fail_on else None
        deadline = now() + scaled(timeout)
        grace = None    # once the producer died: let the follower catch up
        i = start
        while True:
            with self._cond:
                if i >= len(self.lines):
                    self._cond.wait(0.05)
                batch = self.lines[i:]
            for t, text in batch:
                if bad and bad.search(text):
                    raise TestFailure("console line %d %r matches %r while waiting "
                                      "for %r" % (i, text, fail_on, what or pattern))
                m = rx.search(text)
                if m:
                    return i, t, m
                i += 1
            # also while lines keep coming: a console that never stops
            # talking must not keep the wait from ending
            if now() >= deadline:
                raise TestFailure("timed out after %.0f s waiting for %r on the "
                                  "console (%d lines so far)"
                                  % (scaled(timeout), what or pattern, len(self)))
            if batch:
                continue
            dead = self.alive() if self.alive else None
            if dead:
                if grace is None:
                    grace = now() + 0.5
                elif now() > grace:
                    raise TestFailure("waiting for %r on the console: %s"
                                      % (what or pattern, dead))

    # Set by the owner: returns a reason string once the producer is gone.
    alive = None


# --------------------------------------------------------------------------
# QMP client
# --------------------------------------------------------------------------

class QMPError(Exception):
    def __init__(self, cls, desc, reply):
        super().__init__("%s: %s" % (cls, desc))
        self.cls = cls
        self.desc = desc
        self.reply = reply


class QMP:
    """A small QMP client: greeting, qmp_capabilities, execute, events."""

    def __init__(self, path, timeout=10, negotiate=True):
        self.path = path
        self.timeout = scaled(timeout)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.read_obj()
        check("QMP" in self.greeting, "not a QMP greeting: %r" % self.greeting)
        self._id = 0
        if negotiate:
            self.cmd("qmp_capabilities")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_line(self, timeout=None):
        """One raw line (bytes, without "\\n"); None on EOF."""
        deadline = now() + (scaled(timeout) if timeout is not None else self.timeout)
        while b"\n" not in self.buf:
            left = deadline - now()
            if left <= 0:
                raise TestFailure("timed out reading from %s" % self.path)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TestFailure("timed out reading from %s" % self.path)
            except ConnectionResetError:
                data = b""
            if not data:
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def read_obj(self, timeout=None):
        """The next JSON object from the server (event or reply); None on EOF."""
        line = self.read_line(timeout)
        if line is None:
            return None
        try:
            return json.loads(line)
        except ValueError as e:
            raise TestFailure("malformed line from the VMM %r: %s" % (line, e))

    def read_reply(self, timeout=None):
        """The next reply (events are queued); None on EOF."""
        while True:
            obj = self.read_obj(timeout)
            if obj is None or "event" not in obj:
                return obj
            self.events.append(obj)

    def execute(self, name, arguments=None, id=None, timeout=None):
        """Send a command and return the whole reply dict (return or error)."""
        req = {"execute": name}
        if arguments is not None:
            req["arguments"] = arguments
        if id is None:
            self._id += 1
            id = self._id
        req["id"] = id
        self.send_raw(json.dumps(req) + "\n")
        reply = self.read_reply(timeout)
        if reply is None:
            raise TestFailure("%s: connection closed before the reply to %s"
                              % (self.path, name))
        return reply

    def cmd(self, name, arguments=None, timeout=None):
        """Execute and return the "return" value; QMPError on an error."""
        reply = self.execute(name, arguments, timeout=timeout)
        if "error" in reply:
            e = reply["error"]
            raise QMPError(e.get("class"), e.get("desc"), reply)
        return reply.get("return")

    def wait_event(self, name, timeout=30):
        """Wait for (and remove from the queue) the next event called name."""
        deadline = now() + scaled(timeout)
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("event") == name:
                    return self.events.pop(i)
            left = deadline - now()
            if left <= 0:
                raise TestFailure("timed out waiting for event %s (got: %s)"
                                  % (name, [e.get("event") for e in self.events]))
            obj = self.read_obj(timeout=left / timeout_scale())
            if obj is None:
                raise TestFailure("connection closed while waiting for event %s" % name)
            if "event" in obj:
                self.events.append(obj)

    def wait_closed(self, timeout=30):
        """Wait for the server to close the connection (queue events)."""
        deadline = now() + scaled(timeout)
        while True:
            left = deadline - now()
            if left <= 0:
                raise TestFailure("%s: connection still open after %.0f s"
                                  % (self.path, scaled(timeout)))
            obj = self.read_obj(timeout=left / timeout_scale())
            if obj is None:
                return
            if "event" in obj:
                self.events.append(obj)


# --------------------------------------------------------------------------
# The guest's output
# --------------------------------------------------------------------------

RX_HB = r"^HB (\d+) (\d+)$"
RX_VERIFY_OK = r"^VERIFY OK (\d+) cpu=(\d+)"
RX_BAD = r"^(VERIFY (FAIL|BAD)|EXCEPTION)\b"


def guest_cmdline(**kw):
    """wss=64M rate=32 ... from keyword arguments (None values left out)."""
    return " ".join("%s=%s" % (k, v) for k, v in kw.items() if v is not None)


def parse_wss(console):
    """The guest's working-set ranges [(start, end)], end exclusive."""
    return [(int(m.group(1), 16), int(m.group(2), 16))
            for _, _, m in console.find(r"^WSS (0x[0-9a-fA-F]+) (0x[0-9a-fA-F]+)$")]


def heartbeats(console, start=0):
    """[(host_t, seq, guest_us)] for every HB line from start."""
    return [(t, int(m.group(1)), int(m.group(2)))
            for _, t, m in console.find(RX_HB, start)]


def wait_hb(console, min_seq=0, start=0, timeout=60):
    """Wait for a heartbeat with seq >= min_seq; (index, host_t, seq, guest_us)."""
    deadline = now() + scaled(timeout)
    i = start
    while True:
        left = max(0.001, (deadline - now()) / timeout_scale())
        i, t, m = console.wait_for(RX_HB, start=i, timeout=left, fail_on=RX_BAD,
                                   what="a heartbeat with seq >= %d" % min_seq)
        if int(m.group(1)) >= min_seq:
            return i, t, int(m.group(1)), int(m.group(2))
        i += 1


def check_no_errors(console):
    bad = console.find(RX_BAD)
    check(not bad, "the guest reported errors: %s"
          % "; ".join(m.string for _, _, m in bad[:5]))


# --------------------------------------------------------------------------
# Migration helpers
# --------------------------------------------------------------------------

def make_pki(d, client_cn, ca_name="kvmove test CA", server_ips=None, ca_from=None):
    """An x509 directory in QEMU's layout (ca-cert.pem, server-cert.pem,
    server-key.pem, client-cert.pem, client-key.pem) made with certtool: a
    CA (or ca_from's), a server certificate for localhost and the test
    networks' addresses, a client certificate whose CN is client_cn.
    Returns d."""
    os.makedirs(d, exist_ok=True)
    ips = server_ips or (["127.0.0.1"] + ["10.20.0.%d" % i for i in range(1, 20)] +
                         ["10.10.0.%d" % i for i in range(1, 20)])

    def certtool(*args, template=None):
        argv = ["certtool"] + list(args)
        if template is not None:
            tp = os.path.join(d, "template.cfg")
            with open(tp, "w") as f:
                f.write(template)
            argv += ["--template", tp]
        r = subprocess.run(argv, capture_output=True, text=True)
        check(r.returncode == 0, "certtool %s: %s" % (" ".join(args), r.stderr[-500:]))

    p = lambda n: os.path.join(d, n)    # noqa: E731
    if ca_from:
        for f in ("ca-key.pem", "ca-cert.pem"):
            shutil.copy(os.path.join(ca_from, f), p(f))
    else:
        certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", p("ca-key.pem"))
        certtool("--generate-self-signed", "--load-privkey", p("ca-key.pem"), "--outfile",
                 p("ca-cert.pem"), template='cn = "%s"\nca\ncert_signing_key\n'
                 'expiration_days = 2\n' % ca_name)
    for role, cn, extra in (("server", "kvmove-destination",
                             'tls_www_server\ndns_name = "localhost"\n' +
                             "".join('ip_address = "%s"\n' % ip for ip in ips)),
                            ("client", client_cn, "tls_www_client\n")):
        certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile",
                 p(role + "-key.pem"))
        certtool("--generate-certificate", "--load-privkey", p(role + "-key.pem"),
                 "--load-ca-certificate", p("ca-cert.pem"), "--load-ca-privkey",
                 p("ca-key.pem"), "--outfile", p(role + "-cert.pem"),
                 template='cn = "%s"\nsigning_key\nencryption_key\nexpiration_days = 2\n%s'
                 % (cn, extra))
    os.unlink(p("template.cfg"))
    return d


def free_port():
    """A TCP port on 127.0.0.1 that nobody uses right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_listening(port):
    """True if a socket listens on 127.0.0.1:port or 0.0.0.0:port."""
    want = {"0100007F:%04X" % port, "00000000:%04X" % port}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] in want and fields[3] == "0A":     # TCP_LISTEN
                    return True
    except OSError:
        pass
    return False


class MigrateRun:
    """The outcome of ``kvmove migrate|save --json``: rc, events (the
    NDJSON event lines, progress included), result (the last line: the
    query-migrate fields), stdout, stderr."""

    def __init__(self, rc, stdout, stderr):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.events = []
        self.result = None
        for line in stdout.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise TestFailure("kvmove --json printed a line that is not JSON %r: %s"
                                  % (line, e))
            if "event" in obj:
                self.events.append(obj)
            else:
                self.result = obj

    def named(self, event):
        return [e for e in self.events if e.get("event") == event]

    def statuses(self):
        """The MIGRATION statuses in order."""
        return [e["data"]["status"] for e in self.named("MIGRATION")]

    def stat(self, *path, default=None):
        """A field of the result: stat("ram", "transferred")."""
        v = self.result
        for k in path:
            if not isinstance(v, dict) or k not in v:
                return default
            v = v[k]
        return v

    def expect(self, rc, status=None, error_id=None):
        """Check the exit code, the status and x-error-id of the result."""
        check(self.rc == rc, "kvmove exited %d, expected %d; stderr: %r; result: %r"
              % (self.rc, rc, self.stderr, self.result))
        check(self.result is not None, "no result line on stdout: %r" % self.stdout)
        if status:
            check(self.result.get("status") == status, "status %r, expected %r: %r"
                  % (self.result.get("status"), status, self.result))
        if error_id:
            check(self.result.get("x-error-id") == error_id, "x-error-id %r, expected %r: %r"
                  % (self.result.get("x-error-id"), error_id, self.result))
        return self

    def summary(self):
        """One line with the numbers a CI log should keep."""
        r = self.result or {}
        ram = r.get("ram", {})
        return ("status %s, total %s ms, downtime %s ms, transferred %.1f MiB, rounds %s, "
                "throttle %s%%" % (r.get("status"), r.get("total-time"), r.get("downtime"),
                                   ram.get("transferred", 0) / 1048576.0,
                                   ram.get("dirty-sync-count"),
                                   r.get("cpu-throttle-percentage", 0)))


class MigrateProc:
    """``kvmove migrate|save --json`` running in the background (so a test
    can act while it runs: kill a peer, send SIGINT).  Output goes to files
    (a pipe nobody reads would block the progress lines)."""

    count = 0

    def __init__(self, vm, verb, args):
        MigrateProc.count += 1
        base = os.path.join(vm.h.tmpdir, "%s-%s-%d" % (vm.name, verb, MigrateProc.count))
        self.h = vm.h
        self.out_path, self.err_path = base + ".out", base + ".err"
        self.argv = [vm.h.kvmove, verb, "--control", vm.control, "--json"] + list(args)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = vm.h.popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err)

    def signal(self, sig):
        self.h.log("sending signal %d to kvmove %s (pid %d)" % (sig, self.argv[1],
                                                                 self.proc.pid))
        self.proc.send_signal(sig)

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def finish(self, timeout=300):
        """Wait for the end; a MigrateRun."""
        try:
            rc = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise TestFailure("%s did not finish within %.0f s" % (self.argv, scaled(timeout)))
        with open(self.out_path, errors="replace") as f:
            out = f.read()
        err = self.stderr()
        last = out.splitlines()[-1:] if out else []
        self.h.log("  kvmove %s exit %d; result: %s; stderr: %r"
                   % (self.argv[1], rc, last[0] if last else "-", err))
        return MigrateRun(rc, out, err)


def serial_lines(*vmms):
    """The guest's serial output across migrations: the console files of the
    VMMs that ran it, in order, joined into one stream (a line cut by the
    switchover continues at the start of the next file)."""
    data = b""
    for vm in vmms:
        with open(vm.console_path, "rb") as f:
            data += f.read()
    return [l.rstrip(b"\r").decode("utf-8", "replace") for l in data.split(b"\n")]


def check_serial(*vmms):
    """Across the VMMs that ran one guest, in order: heartbeats have
    consecutive sequence numbers (none lost, none repeated) and the guest
    reported no error.  Returns the list of heartbeat seqs."""
    lines = serial_lines(*vmms)
    rx_hb, rx_bad = re.compile(RX_HB), re.compile(RX_BAD)
    bad = [l for l in lines if rx_bad.search(l)]
    check(not bad, "the guest reported errors: %s" % "; ".join(bad[:5]))
    seqs = [int(m.group(1)) for m in map(rx_hb.match, lines) if m]
    check(seqs, "no heartbeats at all")
    for a, b in zip(seqs, seqs[1:]):
        check(b == a + 1, "heartbeat seq %d follows %d (lost or repeated output)" % (b, a))
    return seqs


def check_migrated(src, dst, run, cpus=1, wss=None, timeout=180):
    """After ``kvmove migrate`` reported success: the source VMM exited 0,
    the guest runs on the destination and verifies all of its memory there
    (every cpu, a whole pass after the switchover), its heartbeats continue
    across the switch with consecutive seqs, and the stats are sane
    (downtime > 0, at least wss bytes of pages sent, at least one dirty
    sync).  Compressed pages count as whole pages: with compression on,
    the bytes on the wire may be fewer than the working set."""
    run.expect(0, "completed")
    rc = src.wait_exit(timeout=60)
    check(rc == 0, "the source VMM exited %d after the migration, expected 0" % rc)
    check("migrated" in src.stderr(), "the source VMM did not say it migrated: %r"
          % src.stderr()[-500:])
    n_src = len(heartbeats(src.console))
    dst.wait_verified(start=0, cpus=cpus, timeout=timeout)
    seqs = check_serial(src, dst)
    wait_hb(dst.console, min_seq=seqs[-1] + 10, timeout=timeout)
    seqs = check_serial(src, dst)
    check(len(seqs) > n_src, "no heartbeats on the destination")
    st = dst.cmd("query-status")
    check(st.get("status") == "running", "destination status after migration: %r" % st)
    ram = run.stat("ram", default={})
    check(run.stat("downtime", default=0) > 0, "downtime %r is not > 0" % run.stat("downtime"))
    if wss:
        compressed = run.stat("compression", "pages", default=0)
        moved = ram.get("normal-bytes", 0) if compressed else ram.get("transferred", 0)
        check(moved >= wss, "only %r bytes %s for a %d-byte working set"
              % (moved, "of pages sent" if compressed else "transferred", wss))
    check(ram.get("dirty-sync-count", 0) >= 1, "dirty-sync-count %r"
          % ram.get("dirty-sync-count"))
    return seqs


def predict(src, dst_uri, *args):
    """``kvmove migrate --check-only`` from src to dst_uri: the x-prediction
    (the guest's sampled dirty rate, the link, each policy's outcome)."""
    run = src.migrate(dst_uri, "--check-only", *args)
    run.expect(0, "completed")
    p = run.stat("x-prediction")
    check(isinstance(p, dict) and p.get("dirty-rate", 0) >= 0, "no x-prediction: %r"
          % run.result)
    src.h.log("prediction: guest dirties %.1f MiB/s (working set %.0f MiB), link %.0f MiB/s; "
              "choice %s" % (p["dirty-rate"] / 2**20, p["working-set"] / 2**20,
                             p["bandwidth"] / 2**20, p.get("choice")))
    return p


def link_slower_than_guest(src, dst_uri, factor=3):
    """A --bandwidth (MiB/s) that the guest on src out-dirties `factor` times,
    from its dirty rate as sampled here and now (hosts differ tenfold in how
    fast a guest dirties memory under dirty logging, so no fixed link speed
    makes a guest "too fast" everywhere)."""
    p = predict(src, dst_uri)
    rate = p["dirty-rate"] / 2**20
    check(rate >= 1, "the guest dirties only %.2f MiB/s: too slow to outrun any link" % rate)
    return max(1, int(rate / factor))


def heartbeat_gap_ms(src, dst):
    """What the guest's user felt at the switchover: host arrival time of the
    last heartbeat on src's console to the first on dst's (ms, to ~1 ms)."""
    a, b = heartbeats(src.console), heartbeats(dst.console)
    check(a and b, "no heartbeats on %s" % (src.name if not a else dst.name))
    return (b[0][0] - a[-1][0]) * 1000


def check_never_ran(vm):
    """A destination that must not have run the guest: its console has no
    guest output at all."""
    text = open(vm.console_path, "rb").read()
    check(not re.search(rb"HB \d+", text), "%s ran the guest: its console has heartbeats: %r"
          % (vm.name, text[:200]))


# --------------------------------------------------------------------------
# A VMM process
# --------------------------------------------------------------------------

class VMM:
    """One ``kvmove run`` process in the harness's temporary directory."""

    def __init__(self, harness, name="kvtest", mem="1G", cpus=1, append="",
                 kernel=None, extra=(), control=True, incoming=None, restore=None,
                 netns=None, expect=None, tls=None):
        """A VMM booting kernel (default: the test guest); or, with
        incoming="tcp:HOST:PORT", a migration destination; or, with
        restore=FILE, one restoring a saved VM (the VM's size comes from
        the source then).  netns: run it inside that network namespace (a
        "host" of scripts/kvmove-cluster.sh); its control socket and files
        stay reachable from here.  expect: the name of the VM an incoming
        (or restoring) VMM takes (--expect)."""
        self.h = harness
        self.name = name
        # the guest's VM name: its --name, or what an incoming VMM expects
        self.vm_name = expect if (incoming or restore) else name
        self.dir = os.path.join(harness.tmpdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.console_path = os.path.join(self.dir, "console.log")
        self.stderr_path = os.path.join(self.dir, "vmm.stderr")
        self.control = os.path.join(self.dir, "ctl.sock") if control else None
        self.incoming = incoming
        if incoming or restore:
            self.argv = [harness.kvmove, "run"]
            self.argv += ["--incoming", incoming] if incoming else ["--restore", restore]
            self.argv += ["--console", self.console_path]
            if expect:
                self.argv += ["--expect", expect]
        else:
            self.argv = [harness.kvmove, "run", "--name", name, "--mem", str(mem),
                         "--cpus", str(cpus), "--kernel", kernel or harness.guest,
                         "--append", append, "--console", self.console_path]
        if self.control:
            self.argv += ["--control", self.control]
        self.argv += harness.tls_args(tls) + list(extra)
        if netns:
            self.argv = ["ip", "netns", "exec", netns] + self.argv
        open(self.console_path, "wb").close()
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        self.console = Console(self.console_path)
        self.console.alive = self._dead_reason
        self.expect_exit = False
        self._qmp = None
        self.h.log("started VMM %s (pid %d): %s" % (name, self.proc.pid,
                                                     " ".join(self.argv)))

    def _dead_reason(self):
        rc = self.proc.poll()
        if rc is None:
            return None
        return "the VMM exited with status %d" % rc

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def check_alive(self):
        dead = self._dead_reason()
        if dead:
            raise TestFailure(dead)

    # ---- control ----

    def wait_socket(self, timeout=30):
        deadline = now() + scaled(timeout)
        while not os.path.exists(self.control):
            self.check_alive()
            if now() > deadline:
                raise TestFailure("control socket %s did not appear in %.0f s"
                                  % (self.control, scaled(timeout)))
            time.sleep(0.01)

    def qmp(self, timeout=10):
        """A new QMP connection (negotiated).  Close it, or use ``with``."""
        self.wait_socket()
        return QMP(self.control, timeout=timeout)

    def cmd(self, name, arguments=None):
        """Run one command on a shared connection; return its "return"."""
        if self._qmp is None:
            self._qmp = self.qmp()
        return self._qmp.cmd(name, arguments)

    def cli(self, verb, *args, timeout=60, control=True, log_lines=None):
        """Run ``kvmove VERB --control SOCK ARGS``; a CompletedProcess (text)."""
        argv = [self.h.kvmove, verb]
        if control:
            argv += ["--control", self.control]
        argv += list(args)
        return self.h.run(argv, timeout=timeout, log_lines=log_lines)

    # ---- guest ----

    def wait_ready(self, timeout=180):
        """Wait for the banner, the WSS list and READY; fail on guest errors."""
        self.console.wait_for(r"KVMOVE-TESTGUEST v1 ", timeout=timeout,
                              fail_on=RX_BAD, what="the guest banner")
        self.console.wait_for(r"^READY$", timeout=timeout, fail_on=RX_BAD,
                              what="READY")

    def wait_exit(self, timeout=30):
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise TestFailure("the VMM did not exit within %.0f s" % scaled(timeout))

    def kill(self):
        """Stop the VMM (SIGTERM, then SIGKILL after 5 s).  Idempotent."""
        if self._qmp:
            self._qmp.close()
            self._qmp = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.console.close()
        if not self._stderr.closed:
            self._stderr.close()

    # ---- migration ----

    def wait_listening(self, timeout=30):
        """An --incoming VMM: wait until it listens (without connecting: a
        destination takes its first connection for the migration)."""
        port = int(self.incoming.rsplit(":", 1)[1])
        deadline = now() + scaled(timeout)
        while not tcp_listening(port):
            self.check_alive()
            if now() > deadline:
                raise TestFailure("%s: nothing listens on port %d after %.0f s"
                                  % (self.name, port, scaled(timeout)))
            time.sleep(0.02)

    def migrate(self, to, *args, timeout=300):
        """``kvmove migrate --json --to URI ARGS`` against this VMM: a
        MigrateRun (exit code, events, result)."""
        r = self.cli("migrate", "--to", to, "--json", *args, timeout=timeout, log_lines=1)
        return MigrateRun(r.returncode, r.stdout, r.stderr)

    def migrate_bg(self, to, *args):
        """``kvmove migrate --json`` in the background: a MigrateProc."""
        return MigrateProc(self, "migrate", ["--to", to] + list(args))

    def save(self, path, *args, timeout=300):
        """``kvmove save --json FILE`` against this VMM: a MigrateRun."""
        r = self.cli("save", "--json", path, *args, timeout=timeout, log_lines=1)
        return MigrateRun(r.returncode, r.stdout, r.stderr)

    def wait_verified(self, start=None, cpus=1, timeout=120):
        """Prove that the guest verified all of its memory after console line
        start (default: now): per cpu, a VERIFY OK line, then one at least two
        passes later, so one whole pass began after the first line.  Fails on
        VERIFY FAIL / BAD.  Returns the index of the last line used."""
        if start is None:
            start = len(self.console)
        last = start
        for cpu in range(cpus):
            rx = r"^VERIFY OK (\d+) cpu=%d " % cpu
            i, _, m = self.console.wait_for(rx, start=start, timeout=timeout, fail_on=RX_BAD,
                                            what="VERIFY OK for cpu %d" % cpu)
            first = int(m.group(1))
            while True:
                i, _, m = self.console.wait_for(rx, start=i + 1, timeout=timeout,
                                                fail_on=RX_BAD,
                                                what="a second VERIFY OK for cpu %d" % cpu)
                if int(m.group(1)) >= first + 2:
                    break
            last = max(last, i)
        return last

    SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                           r"runtime error: |WARNING: ThreadSanitizer")

    def sanitizer_report(self):
        """The first sanitizer complaint in the VMM's output, or None."""
        text = self.stderr()
        m = self.SANITIZER.search(text)
        return text[m.start():m.start() + 2000] if m else None

    def diagnostics(self, lines=40):
        out = ["---- VMM %s: %s" % (self.name, " ".join(self.argv))]
        rc = self.proc.poll()
        out.append("---- status: %s" % ("running" if rc is None else "exited %d" % rc))
        out.append("---- console tail (%s):" % self.console_path)
        out += ["  " + l for l in self.console.tail(lines)]
        out.append("---- VMM stderr:")
        out += ["  " + l for l in self.stderr().splitlines()[-lines:]]
        return "\n".join(out)


# --------------------------------------------------------------------------
# Harness and entry point
# --------------------------------------------------------------------------

class Harness:
    """What a test gets: paths, a temporary directory, VMM/process factories."""

    def __init__(self, name, need_kvm=True):
        self.name = name
        self.vmms = []
        self.procs = []
        self.cleanups = []
        self.t0 = now()
        if need_kvm:
            require_kvm()
        self.kvmove = env_path("KVMOVE_BIN")
        self.guest = env_path("KVMOVE_GUEST")
        self.tmpdir = tempfile.mkdtemp(prefix="kvtest-%s-" % name)   # last: nothing to leak
        self._tls_x509 = None

    @property
    def tls_x509(self):
        """This test's x509 credentials (QEMU's layout, made on first use):
        every VMM migrates over TLS with them unless a test says otherwise,
        and the fault proxy terminates TLS with them."""
        if self._tls_x509 is None:
            self._tls_x509 = make_pki(os.path.join(self.tmpdir, "pki"), "source")
        return self._tls_x509

    def psk(self, name="keys.psk", identity="kvmove"):
        """A new PSK file made by kvmove keygen."""
        path = os.path.join(self.tmpdir, name)
        r = self.run([self.kvmove, "keygen", "--identity", identity, path])
        check(r.returncode == 0, "kvmove keygen: %s" % r.stderr)
        return path

    def tls_args(self, tls):
        """kvmove run's TLS options: tls None (this test's x509 credentials),
        "insecure", ("psk", FILE), ("x509", DIR), or "none" (no option)."""
        if tls is None:
            return ["--tls-creds", self.tls_x509]
        if tls == "insecure":
            return ["--insecure"]
        if tls == "none":
            return []
        return ["--tls-psk" if tls[0] == "psk" else "--tls-creds", tls[1]]

    def log(self, msg):
        print("[%7.2f] %s" % (now() - self.t0, msg), flush=True)

    def vmm(self, **kw):
        vm = VMM(self, **kw)
        self.vmms.append(vm)
        return vm

    def incoming(self, name, expect, extra=(), wait=True, tls=None):
        """A destination VMM (``kvmove run --incoming``) on a free port of
        127.0.0.1 for the VM of `expect` (a VMM, or a VM name: --expect);
        .uri is its address.  Waits until it listens."""
        port = free_port()
        expect = getattr(expect, "vm_name", expect)
        check(isinstance(expect, str) and expect, "incoming(%r): which VM does it take?"
              % name)
        vm = self.vmm(name=name, incoming="tcp:127.0.0.1:%d" % port, extra=extra,
                      expect=expect, tls=tls)
        vm.port = port
        vm.uri = "tcp:127.0.0.1:%d" % port
        if wait:
            vm.wait_listening()
        return vm

    def restore(self, name, path, extra=(), expect=None):
        """A VMM restoring a saved VM (``kvmove run --restore path``)."""
        return self.vmm(name=name, restore=path, extra=extra, expect=expect)

    def add_cleanup(self, fn):
        """Call fn() at cleanup (before the VMMs are killed)."""
        self.cleanups.append(fn)

    def run(self, argv, timeout=60, log_lines=None):
        """Run a command to its end; a CompletedProcess (text).  log_lines:
        log only that many last lines of stdout (long NDJSON output)."""
        self.log("$ " + " ".join(argv))
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise TestFailure("%s did not finish within %.0f s" % (argv, scaled(timeout)))
        out = r.stdout
        if log_lines is not None and out.count("\n") > log_lines:
            out = "[%d lines] ..." % out.count("\n") + "".join(
                out.splitlines(True)[-log_lines:])
        self.log("  exit %d; stdout: %r; stderr: %r" % (r.returncode, out, r.stderr))
        return r

    def popen(self, argv, **kw):
        """A helper process killed at cleanup."""
        self.log("$ " + " ".join(argv) + " &")
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def diagnostics(self):
        return "\n".join(vm.diagnostics() for vm in self.vmms)

    def finish(self):
        """After a passing test: stop every VMM (SIGTERM: a clean host
        shutdown) and fail if a sanitizer complained in any of them."""
        for vm in self.vmms:
            vm.kill()
        for vm in self.vmms:
            report = vm.sanitizer_report()
            if report:
                raise TestFailure("VMM %s: sanitizer report:\n%s" % (vm.name, report))

    def cleanup(self):
        for fn in self.cleanups:
            try:
                fn()
            except Exception as e:
                print("cleanup: %s" % e, file=sys.stderr)
        for vm in self.vmms:
            try:
                vm.kill()
            except Exception as e:     # keep cleaning up the rest
                print("cleanup of %s: %s" % (vm.name, e), file=sys.stderr)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("KVMOVE_KEEP") == "1":
            print("keeping %s" % self.tmpdir)
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def main(test, need_kvm=True):
    """Run test(h) and exit 0 (pass), 1 (fail) or 77 (skip)."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    h = None
    status = 1

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    # CTest kills a test that overruns its TIMEOUT with SIGKILL: no
    # traceback, no clean-up (a cluster left up holds its addresses and
    # fails the tests after it).  So fail first, 30 s before the limit CTest
    # passes in KVMOVE_TEST_TIMEOUT, where the test stands; and should the
    # main thread be stuck where no Python runs, dump every thread's stack
    # 10 s before.
    try:
        budget = float(os.environ.get("KVMOVE_TEST_TIMEOUT", "0"))
    except ValueError:
        budget = 0
    if budget > 60:
        def on_alarm(signum, frame):
            raise TestFailure("still running %.0f s before CTest's limit of %.0f s"
                              % (30, budget))
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(int(budget - 30))
        faulthandler.dump_traceback_later(budget - 10, exit=False)
    try:
        h = Harness(name, need_kvm=need_kvm)
        test(h)
        h.finish()
        status = 0
        print("PASS %s" % name)
    except Skip as e:
        status = SKIP
        print("SKIP %s: %s" % (name, e))
    except (TestFailure, QMPError, AssertionError, OSError, KeyboardInterrupt) as e:
        print("FAIL %s: %s" % (name, e))
        traceback.print_exc()
        if h:
            print(h.diagnostics())
    except Exception as e:
        print("FAIL %s: unexpected %s: %s" % (name, type(e).__name__, e))
        traceback.print_exc()
        if h:
            print(h.diagnostics())
    finally:
        signal.alarm(0)     # the clean-up is not cut short by the budget
        if h:
            h.cleanup()
    sys.stdout.flush()
    sys.exit(status)
