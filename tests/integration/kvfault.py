"""kvfault - a fault-injecting TCP proxy for migration tests.

The proxy listens on 127.0.0.1 (a free port), and forwards every connection
to the real destination.  It understands the migration stream's record
framing (docs/FORMAT.md: u16 type, u16 flags, u32 length, payload, u64
checksum; little-endian) in both directions, keeps a log of every record it
forwarded, and can act on the Nth record of a type in a direction, before
forwarding it:

    cut    close both connections (the record is not forwarded)
    flip   flip one byte of the payload (the record's checksum no longer fits;
           for an empty record, a byte of the checksum)
    stall  hold this record and everything after it in that direction (the
           proxy stops reading, so the sender feels TCP back-pressure) until
           the test calls release(); the other direction keeps flowing
    drop   leave the whole record out (every record keeps its own valid
           checksum: only end-to-end counts can notice)
    dup    forward the record twice (a replay, checksums intact)
    swap   forward the next record of any type first, then this one

    from kvfault import FaultProxy
    px = FaultProxy(h, dst.port)            # h: the kvtest Harness
    st = px.stall("src", "RAM", nth=2)
    src.cmd("migrate", {"uri": px.uri})
    st.wait()                               # the 2nd RAM record is held
    dst.proc.kill()
    st.release()

"src" is the source -> destination direction, "dst" the way back.  Counting
is per connection (a check-only probe is a connection of its own) and each
rule fires once, on the first connection that reaches it (or, with
conn=K, only on the Kth connection accepted, from 0: a migration over
several channels opens its extra ones after the first).  The proxy is
closed by the harness at cleanup.

Python 3 standard library only.
"""

import socket
import ssl
import struct
import threading

from kvtest import TestFailure, now, scaled

HDR = struct.Struct("<HHI")
HDR_SIZE = 8
TRAILER_SIZE = 8
MAX_PAYLOAD = 64 << 20      # beyond this the bytes are not a record stream

REC = {1: "HELLO", 2: "CONFIG", 3: "PREFLIGHT", 4: "RAM", 5: "ROUND", 6: "VM_ARCH",
       7: "VCPU", 8: "DEVICE", 9: "STATE_END", 10: "READY", 11: "GO", 12: "RESUMED",
       13: "ERROR", 14: "END", 15: "SAVED", 16: "PROBE", 17: "PROBE_ACK", 18: "POSTCOPY",
       19: "DISCARD", 20: "PAGE_REQ", 21: "POSTCOPY_END", 22: "POSTCOPY_DONE", 23: "NEEDED",
       24: "CHANNEL_END"}
REC_TYPE = {v: k for k, v in REC.items()}


def rec_type(t):
    """A record type from its name ("RAM") or number."""
    if isinstance(t, int):
        return t
    try:
        return REC_TYPE[t.upper()]
    except KeyError:
        raise ValueError("unknown record type %r" % t)


class Record:
    """One record the proxy saw: connection index, direction, type, sizes."""

    def __init__(self, conn, direction, rtype, flags, length, t):
        self.conn = conn
        self.dir = direction
        self.type = rtype
        self.name = REC.get(rtype, "type%d" % rtype)
        self.flags = flags
        self.len = length
        self.t = t
        self.action = None      # "cut", "flip", "stall" if a rule fired here

    def __repr__(self):
        return "%s#%d:%s(%d)%s" % (self.dir, self.conn, self.name, self.len,
                                   "[%s]" % self.action if self.action else "")


class Rule:
    """One planned fault.  For a stall: wait() until it holds data, release()."""

    def __init__(self, proxy, direction, rtype, nth, action, offset=None, conn=None):
        if direction not in ("src", "dst"):
            raise ValueError("direction must be 'src' or 'dst'")
        self.proxy = proxy
        self.dir = direction
        self.type = rec_type(rtype)
        self.nth = nth
        self.action = action
        self.offset = offset
        self.conn = conn        # only on this connection (by accept order), or any
        self.fired = threading.Event()      # the rule acted
        self.released = threading.Event()   # stall: let the data go
        self.record = None
        self.claimed = False

    def __repr__(self):
        return "%s at %s %s #%d" % (self.action, self.dir, REC.get(self.type), self.nth)

    def wait(self, timeout=120):
        """Wait until the rule fired (for a stall: the data is being held)."""
        if not self.fired.wait(scaled(timeout)):
            raise TestFailure("proxy: %r did not happen within %.0f s (records seen: %s)"
                              % (self, scaled(timeout), self.proxy.summary()))
        return self.record

    def release(self):
        self.released.set()


class _TlsSock:
    """A TLS socket two pump threads can share: one reads, the other writes.
    OpenSSL objects are not for concurrent use, so every call holds a lock,
    and a read waits at most 50 ms at a time so the writer gets its turn."""

    def __init__(self, sock):
        self.s = sock
        self.lock = threading.Lock()
        self.s.settimeout(0.05)

    def recv(self, n):
        while True:
            with self.lock:
                try:
                    return self.s.recv(n)
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
                except ssl.SSLZeroReturnError:
                    return b""
            threading.Event().wait(0.001)

    def sendall(self, data):
        view = memoryview(data)
        while view:
            with self.lock:
                try:
                    n = self.s.send(view[:1 << 16])
                except (socket.timeout, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    n = 0
            view = view[n:]
            if not n:
                threading.Event().wait(0.001)

    def shutdown(self, how):
        with self.lock:
            try:
                self.s.shutdown(how)
            except (OSError, ValueError):
                pass

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def tls_contexts(pki):
    """The proxy's two TLS sides from a kvmove x509 directory (QEMU's
    layout): to the source it is the destination (server cert), to the
    destination it is the source (client cert)."""
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.minimum_version = ssl.TLSVersion.TLSv1_3
    srv.load_cert_chain(pki + "/server-cert.pem", pki + "/server-key.pem")
    srv.load_verify_locations(pki + "/ca-cert.pem")
    srv.verify_mode = ssl.CERT_REQUIRED
    cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli.minimum_version = ssl.TLSVersion.TLSv1_3
    cli.load_cert_chain(pki + "/client-cert.pem", pki + "/client-key.pem")
    cli.load_verify_locations(pki + "/ca-cert.pem")
    cli.check_hostname = False
    return srv, cli


class _Conn:
    """One proxied connection: two pump threads."""

    def __init__(self, proxy, idx, client):
        self.proxy = proxy
        self.idx = idx
        self.client = client
        self.server = None
        self.lock = threading.Lock()
        self.closed = False
        self.counts = {"src": {}, "dst": {}}
        self.eof = {"src": False, "dst": False}

    def start(self):
        try:
            self.server = socket.create_connection(("127.0.0.1", self.proxy.target_port),
                                                   timeout=10)
            self.server.settimeout(None)
            if self.proxy.tls:
                # terminate TLS on both sides: faults act on the records
                srv, cli = self.proxy.tls
                self.client.settimeout(10)
                self.client = _TlsSock(srv.wrap_socket(self.client, server_side=True))
                self.server.settimeout(10)
                self.server = _TlsSock(cli.wrap_socket(self.server))
        except (OSError, ssl.SSLError) as e:
            self.proxy.log("proxy: conn %d: cannot reach the destination: %s" % (self.idx, e))
            self.close()
            return
        for d, a, b in (("src", self.client, self.server), ("dst", self.server, self.client)):
            t = threading.Thread(target=self.pump, args=(d, a, b), daemon=True,
                                 name="kvfault-%d-%s" % (self.idx, d))
            t.start()
            self.proxy.threads.append(t)

    def close(self, why=None):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        if why:
            self.proxy.log("proxy: conn %d: closing both sides: %s" % (self.idx, why))
        for s in (self.client, self.server):
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _half_close(self, direction, to):
        """EOF from one side: pass it on; once both sides ended, close."""
        try:
            to.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self.lock:
            self.eof[direction] = True
            both = all(self.eof.values())
        if both:
            self.close()

    def _act(self, direction, rec, data, start):
        """Find the rule for this whole record (at data[start:]); a flip is
        done here, in place.  Returns the rule or None."""
        n = self.counts[direction].get(rec.type, 0) + 1
        self.counts[direction][rec.type] = n
        rule = self.proxy._match(direction, rec.type, n, self.idx)
        if rule is None:
            return None
        rec.action = rule.action
        rule.record = rec
        self.proxy.log("proxy: conn %d: %s at %s record %s #%d (%d bytes)"
                       % (self.idx, rule.action, direction, rec.name, n, rec.len))
        if rule.action == "flip" and rec.len == 0:
            data[start + HDR_SIZE] ^= 0xFF     # no payload: the checksum then
        elif rule.action == "flip":
            off = rule.offset if rule.offset is not None else rec.len // 2
            data[start + HDR_SIZE + min(off, rec.len - 1)] ^= 0xFF
        return rule

    def pump(self, direction, src, dst):
        buf = bytearray()
        parse = True
        try:
            while not self.closed:
                try:
                    data = src.recv(1 << 20)
                except OSError as e:
                    self.close("%s side: %s" % ("source" if direction == "src"
                                                else "destination", e))
                    return
                if not data:
                    self._half_close(direction, dst)
                    return
                buf += data
                if not parse:           # not a record stream: plain forwarding
                    dst.sendall(buf)
                    del buf[:]
                    continue
                pos = 0
                while len(buf) - pos >= HDR_SIZE:
                    rtype, flags, length = HDR.unpack_from(buf, pos)
                    if length > MAX_PAYLOAD:
                        parse = False
                        self.proxy.log("proxy: conn %d: %s: length %d is not a record; "
                                       "forwarding the rest as is"
                                       % (self.idx, direction, length))
                        break
                    total = HDR_SIZE + length + TRAILER_SIZE
                    if len(buf) - pos < total:
                        break
                    rec = Record(self.idx, direction, rtype, flags, length, now())
                    rule = self._act(direction, rec, buf, pos)
                    action = rule.action if rule else None
                    if action == "cut":
                        dst.sendall(buf[:pos])
                        self.proxy._add(rec)
                        rule.fired.set()
                        self.close("cut at %s" % rec.name)
                        return
                    if action in ("drop", "dup", "swap"):
                        # send what came before, then rework this record
                        dst.sendall(buf[:pos])
                        rec_bytes = bytes(buf[pos:pos + total])
                        del buf[:pos + total]
                        pos = 0
                        self.proxy._add(rec)
                        rule.fired.set()
                        if action == "dup":
                            dst.sendall(rec_bytes + rec_bytes)
                        elif action == "swap":
                            held = rec_bytes
                            while len(buf) < HDR_SIZE or len(buf) < HDR_SIZE + HDR.unpack_from(
                                    buf, 0)[2] + TRAILER_SIZE:
                                more = src.recv(1 << 20)
                                if not more:
                                    break
                                buf += more
                            if len(buf) >= HDR_SIZE:
                                n2 = HDR_SIZE + HDR.unpack_from(buf, 0)[2] + TRAILER_SIZE
                                dst.sendall(bytes(buf[:n2]) + held)
                                del buf[:n2]
                            else:
                                dst.sendall(held)
                        continue
                    if action == "stall":
                        dst.sendall(buf[:pos])
                        del buf[:pos]
                        pos = 0
                        self.proxy._add(rec)
                        rule.fired.set()
                        while not rule.released.wait(0.05):
                            if self.closed:
                                return
                        self.proxy.log("proxy: conn %d: released %s" % (self.idx, rec.name))
                    else:
                        self.proxy._add(rec)
                        if rule:
                            rule.fired.set()
                    pos += total
                if pos:
                    dst.sendall(buf[:pos])
                    del buf[:pos]
                if not parse and buf:
                    dst.sendall(buf)
                    del buf[:]
        except OSError as e:
            # the receiver hung up: like a real path, what the other direction
            # already carries (the receiver's ERROR, say) still arrives
            other = "dst" if direction == "src" else "src"
            with self.lock:
                self.eof[direction] = True
            deadline = now() + 5
            while not self.closed and not self.eof[other] and now() < deadline:
                threading.Event().wait(0.01)
            self.close("%s: forwarding failed: %s" % (direction, e))


class FaultProxy:
    """A fault-injecting proxy in front of a destination on 127.0.0.1:target_port."""

    def __init__(self, harness, target_port, tls=None):
        """tls: an x509 directory (QEMU's layout) to terminate TLS with on
        both sides; by default the harness's, when its VMMs use x509."""
        self.h = harness
        self.target_port = target_port
        pki = tls or getattr(harness, "tls_x509", None)
        self.tls = tls_contexts(pki) if pki else None
        self.records = []
        self.rules = []
        self.conns = []
        self.threads = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.uri = "tcp:127.0.0.1:%d" % self.port
        self._accept = threading.Thread(target=self._serve, daemon=True, name="kvfault")
        self._accept.start()
        harness.add_cleanup(self.close)
        self.log("proxy: %s -> 127.0.0.1:%d" % (self.uri, target_port))

    def log(self, msg):
        self.h.log(msg)

    # ---- planning faults ----

    def _rule(self, direction, rtype, nth, action, offset=None, conn=None):
        r = Rule(self, direction, rtype, nth, action, offset, conn)
        with self._lock:
            self.rules.append(r)
        return r

    def cut(self, direction, rtype, nth=1, conn=None):
        """Close both connections instead of forwarding that record."""
        return self._rule(direction, rtype, nth, "cut", conn=conn)

    def flip(self, direction, rtype, nth=1, offset=None):
        """Flip one payload byte (default: the middle one) of that record
        (of its checksum if it has no payload)."""
        return self._rule(direction, rtype, nth, "flip", offset)

    def drop(self, direction, rtype, nth=1):
        """Leave that record out entirely (framing and checksums stay valid)."""
        return self._rule(direction, rtype, nth, "drop")

    def dup(self, direction, rtype, nth=1):
        """Send that record twice."""
        return self._rule(direction, rtype, nth, "dup")

    def swap(self, direction, rtype, nth=1):
        """Send the record after that one first."""
        return self._rule(direction, rtype, nth, "swap")

    def stall(self, direction, rtype, nth=1, conn=None):
        """Hold that record and all later data in that direction until
        release() (or until the connection dies)."""
        return self._rule(direction, rtype, nth, "stall", conn=conn)

    def release_all(self):
        for r in self.rules:
            r.release()

    def _match(self, direction, rtype, n, conn):
        with self._lock:
            for r in self.rules:
                if (not r.claimed and r.dir == direction and r.type == rtype
                        and r.nth == n and r.conn in (None, conn)):
                    r.claimed = True
                    return r
        return None

    # ---- what was seen ----

    def _add(self, rec):
        with self._cond:
            self.records.append(rec)
            self._cond.notify_all()

    def seen(self, direction=None, conn=None):
        """Names of the records seen, in order (optionally one direction/conn)."""
        with self._lock:
            return [r.name for r in self.records
                    if (direction is None or r.dir == direction)
                    and (conn is None or r.conn == conn)]

    def count(self, direction, rtype):
        t = rec_type(rtype)
        with self._lock:
            return sum(1 for r in self.records if r.dir == direction and r.type == t)

    def summary(self):
        """A short run-length description: 'src#0: HELLO CONFIG RAM*812 ...'."""
        with self._lock:
            recs = list(self.records)
        out, last, n = [], None, 0
        for r in recs:
            key = "%s#%d:%s" % (r.dir, r.conn, r.name)
            if key == last:
                n += 1
                continue
            if last:
                out.append(last + ("*%d" % n if n > 1 else ""))
            last, n = key, 1
        if last:
            out.append(last + ("*%d" % n if n > 1 else ""))
        return " ".join(out)

    def wait_record(self, direction, rtype, nth=1, timeout=120):
        """Wait until the nth record of that type went by (any connection)."""
        t = rec_type(rtype)
        deadline = now() + scaled(timeout)
        with self._cond:
            while True:
                got = [r for r in self.records if r.dir == direction and r.type == t]
                if len(got) >= nth:
                    return got[nth - 1]
                left = deadline - now()
                if left <= 0:
                    raise TestFailure("proxy: no %s record #%d in direction %s within "
                                      "%.0f s" % (REC.get(t), nth, direction,
                                                  scaled(timeout)))
                self._cond.wait(min(left, 0.1))

    # ---- plumbing ----

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    c.close()
                    return
                conn = _Conn(self, len(self.conns), c)
                self.conns.append(conn)
            self.log("proxy: connection %d accepted" % conn.idx)
            conn.start()

    def cut_all(self):
        """Close every connection now."""
        for c in list(self.conns):
            c.close("cut_all")

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.release_all()
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            c.close()
        for t in self.threads:
            t.join(timeout=2)
