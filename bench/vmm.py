"""vmm.py - start kvmove and QEMU on the same test guest, follow their
consoles, drive their migrations over QMP, and read what each process cost.

Python 3 standard library only.  The ideas (console follower with
CLOCK_MONOTONIC arrival times, a small QMP client) are those of
tests/integration/kvtest.py, kept here in a form a benchmark needs:
precise arrival times, per-process CPU and memory, and no test asserts.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import ctypes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGKILL when the bench dies, however it
    dies (kept across exec, so also through `ip netns exec`)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def now():
    """Host CLOCK_MONOTONIC in seconds (console arrival times use it too)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class BenchError(Exception):
    """A run that cannot give a data point; the message says why."""


RX_HB = re.compile(r"^HB (\d+) (\d+)$")
RX_VERIFY_OK = re.compile(r"^VERIFY OK (\d+) cpu=(\d+) pages=(\d+) writes=(\d+)")
RX_BAD = re.compile(r"^(VERIFY (FAIL|BAD)|EXCEPTION|ERROR)\b")

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# Console follower
# --------------------------------------------------------------------------

class Console:
    """Follows a console file as it grows.  ``lines`` is a list of
    (t, text): t is the host CLOCK_MONOTONIC time the line's last byte was
    read (polled every 0.5 ms, so good to ~1 ms).  ``partial`` is a last
    line without its newline (a line the switchover cut: it continues on
    the next VMM's console)."""

    POLL_S = 0.0005

    def __init__(self, path):
        self.path = path
        self.lines = []
        self.partial = b""
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        f = None
        try:
            while not self._stop.is_set():
                if f is None:
                    try:
                        f = open(self.path, "rb", buffering=0)
                    except FileNotFoundError:
                        time.sleep(self.POLL_S)
                        continue
                data = f.read(1 << 20)
                if data:
                    self._add(data)
                else:
                    time.sleep(self.POLL_S)
            if f is not None:
                data = f.read()
                if data:
                    self._add(data)
        finally:
            if f is not None:
                f.close()

    def _add(self, data):
        t = now()
        parts = (self.partial + data).split(b"\n")
        rest = parts.pop()
        with self.cond:
            for p in parts:
                self.lines.append((t, p.rstrip(b"\r").decode("utf-8", "replace")))
            self.partial = rest
            self.cond.notify_all()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def snapshot(self, start=0):
        with self.cond:
            return list(self.lines[start:])

    def __len__(self):
        with self.cond:
            return len(self.lines)

    def tail(self, n=20):
        return [text for _, text in self.snapshot()[-n:]]

    def wait_for(self, rx, timeout, start=0, alive=None, what=None):
        """Wait for a line (index >= start) matching rx; (index, t, match).
        A guest error line (VERIFY FAIL/BAD, EXCEPTION) fails at once."""
        if isinstance(rx, str):
            rx = re.compile(rx)
        deadline = now() + timeout
        i = start
        while True:
            with self.cond:
                if i >= len(self.lines):
                    self.cond.wait(0.05)
                batch = self.lines[i:]
            for t, text in batch:
                if RX_BAD.search(text):
                    raise BenchError("guest error on %s: %s" % (self.path, text))
                m = rx.search(text)
                if m:
                    return i, t, m
                i += 1
            if batch:
                continue
            if alive is not None and not alive():
                time.sleep(0.2)
                if len(self) == i:
                    raise BenchError("%s: the VMM exited while waiting for %s"
                                     % (self.path, what or rx.pattern))
            if now() > deadline:
                raise BenchError("%s: no %s within %.0f s (last lines: %s)"
                                 % (self.path, what or rx.pattern, timeout, self.tail(5)))

    def bad_lines(self):
        return [text for _, text in self.snapshot() if RX_BAD.search(text)]


# --------------------------------------------------------------------------
# QMP client
# --------------------------------------------------------------------------

class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=30):
        deadline = now() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if now() > deadline:
                    raise BenchError("cannot connect to QMP socket %s" % path)
                time.sleep(0.05)
        self.path = path
        self.buf = b""
        self.events = []
        self.eof = False
        greeting = self.read_obj(timeout)
        if not greeting or "QMP" not in greeting:
            raise BenchError("%s: not a QMP greeting: %r" % (path, greeting))
        self.cmd("qmp_capabilities")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def read_obj(self, timeout):
        """The next JSON object (reply or event); None on EOF or timeout."""
        deadline = now() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                return None
            left = deadline - now()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                data = b""
            if not data:
                self.eof = True
                if not self.buf.strip():
                    return None
                self.buf += b"\n"
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        if not line.strip():
            return self.read_obj(max(0.0, deadline - now()))
        return json.loads(line)

    def cmd(self, name, args=None, timeout=30):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        try:
            self.sock.sendall((json.dumps(req) + "\n").encode())
        except OSError as e:
            raise BenchError("%s: sending %s: %s" % (self.path, name, e))
        deadline = now() + timeout
        while True:
            obj = self.read_obj(max(0.0, deadline - now()))
            if obj is None:
                raise BenchError("%s: no reply to %s" % (self.path, name))
            if "event" in obj:
                self.events.append(obj)
                continue
            if "error" in obj:
                raise QMPError("%s: %s: %s" % (name, obj["error"].get("class"),
                                               obj["error"].get("desc")))
            return obj.get("return")

    def poll_events(self, timeout):
        """Read whatever arrives within timeout into self.events."""
        obj = self.read_obj(timeout)
        while obj is not None:
            if "event" in obj:
                self.events.append(obj)
            obj = self.read_obj(0.0) if b"\n" in self.buf else None


# --------------------------------------------------------------------------
# Processes: start, reap with rusage, CPU and memory from /proc
# --------------------------------------------------------------------------

def proc_cpu_s(pid):
    """utime + stime of a live process, seconds (None if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_hwm_mib(pid):
    """Peak RSS (VmHWM) of a live process, MiB (None if gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None


class Proc:
    """A child process reaped with wait4, so its CPU time and peak RSS are
    known even after it exited (a kvmove source exits at completion)."""

    def __init__(self, argv, log_path, netns=None):
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv   # ip execs: same pid
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=_die_with_parent)
        self.pid = self.p.pid
        self.rc = None
        self.rusage = None
        self.cpu_last = 0.0     # last /proc sample, for processes that exit

    def poll(self):
        if self.rc is None:
            try:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status, ru = self.pid, 0, None
            if pid == self.pid:
                self.rc = os.waitstatus_to_exitcode(status)
                self.rusage = ru
                self.p.returncode = self.rc   # so Popen never waits again
                self._log.close()
        return self.rc

    def alive(self):
        return self.poll() is None

    def wait(self, timeout):
        deadline = now() + timeout
        while self.poll() is None:
            if now() > deadline:
                return None
            time.sleep(0.01)
        return self.rc

    def cpu_s(self):
        """CPU seconds so far (from rusage once it exited)."""
        if self.poll() is not None and self.rusage is not None:
            return self.rusage.ru_utime + self.rusage.ru_stime
        v = proc_cpu_s(self.pid)
        return v if v is not None else self.cpu_last

    def hwm_mib(self):
        if self.poll() is not None and self.rusage is not None:
            return self.rusage.ru_maxrss / 1024.0
        return proc_hwm_mib(self.pid)

    def kill(self):
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(5) is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(5)
        if not self._log.closed:
            self._log.close()

    def log_tail(self, n=5):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").strip().splitlines()[-n:]
        except OSError:
            return []


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_listening(port):
    """Something listens on port (any local address) in this namespace."""
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1].endswith(":%04X" % port) and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def ns_listening(netns, port):
    if not netns:
        return tcp_listening(port)
    r = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/tcp"],
                       capture_output=True, text=True)
    return any(l.split()[1].endswith(":%04X" % port) and l.split()[3] == "0A"
               for l in r.stdout.splitlines()[1:] if len(l.split()) > 3)


# --------------------------------------------------------------------------
# One VMM process running (or about to receive) the guest
# --------------------------------------------------------------------------

class VM:
    """Common to both VMMs: a process, its console and its QMP socket."""

    kind = "?"

    def __init__(self, workdir, name, netns=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.netns = netns
        self.console_path = os.path.join(self.dir, "console.log")
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        open(self.console_path, "wb").close()
        self.console = None
        self.proc = None
        self._qmp = None

    def _start(self, argv):
        self.proc = Proc(argv, os.path.join(self.dir, "vmm.log"), self.netns)
        self.console = Console(self.console_path)

    def qmp(self):
        if self._qmp is None:
            if not self.proc.alive():
                raise BenchError("%s exited (%s): %s" % (self.name, self.proc.rc,
                                                         self.proc.log_tail()))
            self._qmp = QMP(self.qmp_path)
        return self._qmp

    def cmd(self, name, args=None, timeout=30):
        return self.qmp().cmd(name, args, timeout=timeout)

    def wait_ready(self, timeout):
        self.console.wait_for(r"^READY$", timeout, alive=self.proc.alive, what="READY")

    def pause(self):
        self.cmd("stop")

    def resume(self):
        self.cmd("cont")

    def close(self):
        if self._qmp:
            self._qmp.close()
            self._qmp = None
        if self.proc:
            self.proc.kill()
        if self.console:
            self.console.close()

    def stop(self):
        """Ask the VMM to quit; kill it if it does not."""
        if self.proc and self.proc.alive():
            try:
                self.cmd("quit", timeout=5)
            except (BenchError, QMPError, OSError):
                pass
            self.proc.wait(10)
        self.close()


class Kvmove(VM):
    kind = "kvmove"

    def __init__(self, workdir, name, kvmove, netns=None, tls=None):
        """tls: None for plaintext (--insecure, as QEMU migrates by default),
        or kvmove run's TLS options (["--tls-psk", FILE])."""
        super().__init__(workdir, name, netns)
        self.kvmove = kvmove
        self.tls = list(tls) if tls else ["--insecure"]

    def boot(self, mem, kernel, append, extra=()):
        """extra: more kvmove run options (--disk, --net ...)."""
        self._start([self.kvmove, "run", "--name", "bench", "--mem", mem, "--cpus", "1",
                     "--kernel", kernel, "--append", append,
                     "--console", self.console_path, "--control", self.qmp_path] + self.tls
                    + list(extra))

    def incoming(self, host, port, via=None, name="bench", extra=()):
        """A destination for the VM called name (--expect); via: the shared
        directory quick migrations come through (--via); extra: more
        options (--allow-disk, --allow-tap ...)."""
        self.uri = "tcp:%s:%d" % (host, port)
        self._start([self.kvmove, "run", "--incoming", self.uri, "--expect", name,
                     "--console", self.console_path, "--control", self.qmp_path]
                    + (["--via", via] if via else []) + self.tls + list(extra))
        deadline = now() + 30
        while not ns_listening(self.netns, port):
            if not self.proc.alive() or now() > deadline:
                raise BenchError("kvmove destination does not listen on %d: %s"
                                 % (port, self.proc.log_tail()))
            time.sleep(0.02)

    def incoming_local(self, path, name="bench"):
        """A same-host destination on the UNIX socket at path (a hand-over
        of kvmove migrate --to unix:PATH needs no TLS; the options are kept
        for the VM's next, remote, migration)."""
        self.uri = "unix:" + path
        self._start([self.kvmove, "run", "--incoming", self.uri, "--expect", name,
                     "--console", self.console_path, "--control", self.qmp_path] + self.tls)
        deadline = now() + 30
        while not os.path.exists(path):
            if not self.proc.alive() or now() > deadline:
                raise BenchError("kvmove destination does not listen on %s: %s"
                                 % (path, self.proc.log_tail()))
            time.sleep(0.02)

    def migrate(self, dst_uri, params, timeout):
        """Start the migration and wait for its terminal MIGRATION event;
        returns (status, stats) with kvmove's query-migrate fields."""
        q = self.qmp()
        args = {"uri": dst_uri}
        args.update(params)
        q.cmd("migrate", args)
        deadline = now() + timeout
        cancelled = False
        while True:
            for ev in q.events:
                if ev.get("event") == "MIGRATION" and "stats" in ev.get("data", {}):
                    q.events = []
                    return ev["data"]["status"], ev["data"]["stats"]
            q.events = [e for e in q.events if e.get("event") == "MIGRATION"]
            if q.eof:
                raise BenchError("kvmove source closed its socket without a final "
                                 "MIGRATION event")
            if now() > deadline and not cancelled:
                try:
                    q.cmd("migrate_cancel")
                except (QMPError, BenchError):
                    pass
                cancelled = True
                deadline = now() + 60
            elif now() > deadline:
                raise BenchError("kvmove migration did not end after cancel")
            q.poll_events(0.2)


def set_caps(vm, caps):
    """caps: {capability: bool}, set explicitly (a QEMU that was a
    destination keeps what it was given then)."""
    if caps:
        vm.cmd("migrate-set-capabilities",
               {"capabilities": [{"capability": c, "state": bool(v)} for c, v in caps.items()]})


class Qemu(VM):
    kind = "qemu"

    def __init__(self, workdir, name, qemu="qemu-system-x86_64", netns=None):
        super().__init__(workdir, name, netns)
        self.qemu = qemu

    def _argv(self, mem, kernel, append):
        # the brief's command line; the serial goes to a file we follow
        return [self.qemu, "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", mem,
                "-smp", "1", "-nographic", "-no-reboot", "-kernel", kernel, "-append", append,
                "-serial", "file:" + self.console_path, "-display", "none",
                "-monitor", "none", "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]

    def boot(self, mem, kernel, append):
        self.mem, self.kernel, self.append = mem, kernel, append
        self._start(self._argv(mem, kernel, append))

    def incoming(self, like, host, port, caps, params):
        """A destination for `like`'s guest: same command line, -incoming
        defer, capabilities and parameters set, then migrate-incoming."""
        self.uri = "tcp:%s:%d" % (host, port)
        self._start(self._argv(like.mem, like.kernel, like.append) + ["-incoming", "defer"])
        self.mem, self.kernel, self.append = like.mem, like.kernel, like.append
        set_caps(self, caps)
        if params:
            self.cmd("migrate-set-parameters", params)
        self.cmd("migrate-incoming", {"uri": self.uri})

    def migrate(self, dst_uri, caps, params, timeout, max_rounds):
        """Set up and start; poll query-migrate until completed or failed.
        More than max_rounds dirty syncs (kvmove's max-rounds) or the
        timeout: cancelled and reported as not converged."""
        set_caps(self, caps)
        if params:
            self.cmd("migrate-set-parameters", params)
        self.cmd("migrate", {"uri": dst_uri})
        deadline = now() + timeout
        while True:
            st = self.cmd("query-migrate")
            status = st.get("status")
            if status in ("completed", "failed", "cancelled"):
                return status, st
            rounds = st.get("ram", {}).get("dirty-sync-count", 0)
            if now() > deadline or rounds > max_rounds:
                self.cmd("migrate_cancel")
                end = now() + 60
                while now() < end:
                    st = self.cmd("query-migrate")
                    if st.get("status") in ("cancelled", "failed", "completed"):
                        break
                    time.sleep(0.05)
                if st.get("status") == "completed":
                    return "completed", st
                st["x-error-id"] = "converge"
                st["error-desc"] = ("not converged after %d dirty syncs / %.0f s"
                                    % (rounds, timeout))
                return "failed", st
            time.sleep(0.02)
