#!/usr/bin/env python3
"""Regenerate the fuzz targets' seed corpora, tests/fuzz/corpus/<target>/
(docs/FUZZING.md), from real data of the current version.

    scripts/fuzz-corpus.py [--kvmove build/kvmove] [--guest build/guest/testguest.elf]

What it does:
  1. boots the test guest in a real VMM (`kvmove run`: 64 MiB, one vCPU, a
     1 MiB virtio-blk disk the guest drives) and, through a logging proxy
     on its control socket, runs `kvmove status` and `kvmove pause/resume`:
     their requests are the control protocol's seeds;
  2. saves the VM (`kvmove save`, quick migration) to a file: a real stream
     of this version (HELLO, CONFIG, RAM..., VM_ARCH, VCPU, DEVICE...,
     STATE_END, END).  The VMM exits after the save; it is killed by PID if
     it does not;
  3. cuts the stream into small seeds: whole records where they are small,
     RAM records trimmed to a few pages (their checks recomputed with
     libxxhash through ctypes), state sections with the fuzz_vmstate
     selector byte, the CONFIG's JSON; the test guest's loadable ELF image
     (without symbols) and the setup header of Debian's bzImage if one is in
     /boot; synthetic seeds where no real producer exists in a save
     (virtqueue rings, post-copy ranges, a bzImage header like
     tests/unit/test_bzimage.c builds).
Use the kvmove and guest built from the same tree as the targets (the
stream's format must be the one the targets read).  Each target directory
it writes is emptied first; nothing else is touched.  Standard library only.
"""
import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REC = {"HELLO": 1, "CONFIG": 2, "RAM": 4, "VM_ARCH": 6, "VCPU": 7, "DEVICE": 8,
       "STATE_END": 9, "END": 14, "DISCARD": 19, "NEEDED": 23}
MANDATORY = 1
PAGE = 4096
ZERO = 1
LZ4 = 2
ZSTD = 4

# fuzz_vmstate's table selector (tests/fuzz/fuzz_vmstate.c: descs[])
VMS_MIXED, VMS_VCPU, VMS_ARCH, VMS_VIRTIO, VMS_UART = range(5)


class XXH3:
    """XXH3-64 (seed 0) from the system's libxxhash, the stream's check."""

    def __init__(self):
        name = ctypes.util.find_library("xxhash") or "libxxhash.so.0"
        self.lib = ctypes.CDLL(name)
        self.lib.XXH3_64bits.restype = ctypes.c_uint64
        self.lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

    def __call__(self, b):
        return self.lib.XXH3_64bits(bytes(b), len(b))


def record(xxh, rtype, payload, flags=MANDATORY):
    hdr = struct.pack("<HHI", rtype, flags, len(payload))
    return hdr + payload + struct.pack("<Q", xxh(hdr + payload))


def records(data):
    """[(type, flags, payload, raw bytes)] of a stream."""
    out, pos = [], 0
    while len(data) - pos >= 16:
        t, f, n = struct.unpack_from("<HHI", data, pos)
        raw = data[pos:pos + 16 + n]
        out.append((t, f, data[pos + 8:pos + 8 + n], raw))
        pos += 16 + n
    if pos != len(data):
        sys.exit("fuzz-corpus: %d stray bytes at the end of the stream" % (len(data) - pos))
    return out


def ram_layout(p):
    """(header bytes before the entries, count) of a real RAM payload:
    'count' (version 3) or 'sequence, count' (later)."""
    for hdr in (8, 4):
        if len(p) < hdr:
            continue
        count = struct.unpack_from("<I", p, hdr - 4)[0]
        if not 1 <= count <= 256 or len(p) < hdr + 8 * count:
            continue
        ents = struct.unpack_from("<%dQ" % count, p, hdr)
        ndata = sum(1 for e in ents if not e & ZERO)
        if len(p) == hdr + 8 * count + PAGE * ndata:
            return hdr, count
    sys.exit("fuzz-corpus: a RAM record of %d bytes has no layout this script knows" % len(p))


def ram_trim(p, keep, zero_extra=()):
    """The first `keep` entries of a real RAM payload (with their data),
    plus ZERO entries at the given addresses."""
    hdr, count = ram_layout(p)
    ents = list(struct.unpack_from("<%dQ" % count, p, hdr))
    data, pos = {}, hdr + 8 * count
    for i, e in enumerate(ents):
        if not e & ZERO:
            data[i] = p[pos:pos + PAGE]
            pos += PAGE
    kept = ents[:keep] + [g | ZERO for g in zero_extra]
    out = bytearray(p[:hdr - 4]) + struct.pack("<I", len(kept))
    out += struct.pack("<%dQ" % len(kept), *kept)
    for i, e in enumerate(kept):
        if not e & ZERO:
            out += data[i]
    return bytes(out)


class Codec:
    """lz4 and zstd from the system's libraries (what the VMM links)."""

    def __init__(self):
        self.lz4 = ctypes.CDLL(ctypes.util.find_library("lz4") or "liblz4.so.1")
        self.zstd = ctypes.CDLL(ctypes.util.find_library("zstd") or "libzstd.so.1")
        self.zstd.ZSTD_compress.restype = ctypes.c_size_t
        self.zstd.ZSTD_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                            ctypes.c_size_t, ctypes.c_int]
        self.zstd.ZSTD_isError.argtypes = [ctypes.c_size_t]

    def compress(self, flag, page):
        out = ctypes.create_string_buffer(PAGE)
        if flag == LZ4:
            n = self.lz4.LZ4_compress_default(page, out, PAGE, PAGE)
        else:
            n = self.zstd.ZSTD_compress(out, PAGE, page, PAGE, 1)
            n = 0 if self.zstd.ZSTD_isError(n) else n
        return out.raw[:n] if 0 < n < PAGE - 512 else None


def ram_compressed(p, codec, flag):
    """A real RAM payload's data pages sent compressed with flag (LZ4 or
    ZSTD) where they shrink, raw where they do not, ZERO entries kept: what
    a compressing sender writes (docs/FORMAT.md, RAM)."""
    hdr, count = ram_layout(p)
    ents = list(struct.unpack_from("<%dQ" % count, p, hdr))
    out_ents, body, pos = [], b"", hdr + 8 * count
    for e in ents:
        if e & ZERO:
            out_ents.append(e)
            continue
        page = p[pos:pos + PAGE]
        pos += PAGE
        z = codec.compress(flag, page)
        if z is None:
            out_ents.append(e)
            body += page
        else:
            out_ents.append(e | flag)
            body += struct.pack("<H", len(z)) + z
    return p[:hdr] + struct.pack("<%dQ" % count, *out_ents) + body


class Proxy(threading.Thread):
    """A UNIX socket in front of the VMM's control socket that keeps what
    clients send (one connection at a time)."""

    def __init__(self, path, upstream):
        super().__init__(daemon=True)
        self.sent = []
        self.upstream = upstream
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.srv.settimeout(0.5)
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(self.upstream)
            got = bytearray()
            for s in (c, u):
                s.setblocking(False)
            alive = True
            while alive and not self.stop:
                time.sleep(0.005)
                for a, b, keep in ((c, u, True), (u, c, False)):
                    try:
                        d = a.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        d = b""
                    if not d:
                        alive = False
                        break
                    if keep:
                        got += d
                    b.sendall(d)
            self.sent.append(bytes(got))
            c.close()
            u.close()
        self.srv.close()


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


def real_stream(kvmove, guest, tmp):
    """Boot, talk, save: (the stream's bytes, the control requests sent)."""
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    sock = os.path.join(tmp, "ctl.sock")
    psock = os.path.join(tmp, "proxy.sock")
    console = os.path.join(tmp, "console")
    state = os.path.join(tmp, "vm.state")
    cmd = [kvmove, "run", "--name", "fuzzseed", "--mem", "64M", "--cpus", "1",
           "--kernel", guest, "--append", "wss=4M rate=1 hb=100000 diskrate=20 diskblocks=64",
           "--disk", disk, "--console", console, "--control", sock]
    vmm = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "err"), "w"))
    proxy = None
    try:
        wait_for(lambda: os.path.exists(sock) or vmm.poll() is not None, 30, "the control socket")
        if vmm.poll() is not None:
            raise RuntimeError("kvmove run exited %d: %s" % (vmm.returncode,
                               open(os.path.join(tmp, "err")).read()))
        # READY, and a disk pass: the virtqueues hold real ring state
        wait_for(lambda: "DISK OK" in open(console, errors="replace").read(), 120,
                 "the guest's DISK OK line")
        proxy = Proxy(psock, sock)
        proxy.start()
        for verb in (["status"], ["status", "--json"], ["pause"], ["resume"]):
            subprocess.run([kvmove] + verb + ["--control", psock], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30, check=True)
        proxy.stop = True
        proxy.join(5)
        r = subprocess.run([kvmove, "save", "--control", sock, state], timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError("kvmove save exited %d: %s" % (r.returncode, r.stderr))
        vmm.wait(timeout=30)
        with open(state, "rb") as f:
            return f.read(), [s for s in proxy.sent if s]
    finally:
        if proxy:
            proxy.stop = True
        if vmm.poll() is None:
            vmm.kill()          # by its PID (Popen), never by name
            vmm.wait()


def elf_loadable(path):
    """The ELF without what follows its segments (symbols, section headers):
    what the loader reads, and small."""
    with open(path, "rb") as f:
        b = bytearray(f.read())
    if b[:4] != b"\x7fELF" or b[4] != 2:
        sys.exit("fuzz-corpus: %s is not an ELF64" % path)
    phoff, = struct.unpack_from("<Q", b, 32)
    phentsize, phnum = struct.unpack_from("<HH", b, 54)
    end = phoff + phentsize * phnum
    for i in range(phnum):
        _, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", b, phoff + i * phentsize)
        end = max(end, off + filesz)
    out = b[:end]
    struct.pack_into("<QHHH", out, 40, 0, 64, 0, 0)   # no section headers
    struct.pack_into("<HH", out, 58, 0, 0)            # e_shstrndx too
    return bytes(out)


def bz_synthetic(init_size=0x400000, kernel=0x1000):
    """A bzImage as Linux's build lays it out (boot protocol 2.15), like
    tests/unit/test_bzimage.c: 4 setup sectors, a small kernel."""
    b = bytearray(5 * 512 + kernel)
    b[0x1f1] = 4
    struct.pack_into("<H", b, 0x1fe, 0xaa55)
    b[0x200:0x202] = b"\xeb\x6a"
    b[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", b, 0x206, 0x020f)
    b[0x211] = 0x01
    struct.pack_into("<I", b, 0x214, 0x100000)
    struct.pack_into("<I", b, 0x22c, 0x7fffffff)
    struct.pack_into("<I", b, 0x230, 0x200000)
    b[0x234] = 1
    struct.pack_into("<H", b, 0x236, 0x7f)
    struct.pack_into("<I", b, 0x238, 2047)
    struct.pack_into("<Q", b, 0x258, 0x1000000)
    struct.pack_into("<I", b, 0x260, init_size)
    for i in range(kernel):
        b[5 * 512 + i] = (i * 7 + 1) & 0xff
    return bytes(b)


def vmstate_section(version, fields):
    """A state section (docs/FORMAT.md) from [(name, size, [values])]."""
    out = struct.pack("<II", version, len(fields))
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}
    for name, size, vals in fields:
        out += bytes([len(name)]) + name.encode() + bytes([size]) + struct.pack("<I", len(vals))
        out += struct.pack("<%d%s" % (len(vals), fmt[size]), *vals)
    return out


def virtqueue_seed(flags=0, chains=1, top=False):
    """fuzz_virtqueue input: a queue of 8 in a 1 KiB image, chains of a
    readable 16-byte header and a writable 512-byte buffer."""
    base = 0x10000 if not top else None
    img = bytearray(0x1000)
    desc, avail, used, bufs = 0x000, 0x100, 0x200, 0x400
    if top:
        base = ((16 << 20) - len(img)) & ~0xfff
    for c in range(chains):
        d0, d1 = 2 * c, 2 * c + 1
        struct.pack_into("<QIHH", img, desc + 16 * d0, base + bufs + 0x100 * c, 16, 1, d1)
        struct.pack_into("<QIHH", img, desc + 16 * d1, base + bufs + 0x200 + 0x100 * c, 512, 2, 0)
        struct.pack_into("<H", img, avail + 4 + 2 * c, d0)
    struct.pack_into("<HH", img, avail, 0, chains)
    hdr = struct.pack("<HHHBBQQQI", 3, 0, 0, flags | (2 if top else 0), 8, desc, avail, used, 0)
    return hdr + bytes(img)


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvmove", default=os.path.join(ROOT, "build", "kvmove"))
    ap.add_argument("--guest", default=os.path.join(ROOT, "build", "guest", "testguest.elf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fuzz", "corpus"))
    ap.add_argument("--keep", metavar="DIR", help="keep the saved stream in DIR")
    a = ap.parse_args()
    xxh = XXH3()

    tmp = tempfile.mkdtemp(prefix="kvmove-corpus.")
    try:
        stream, requests = real_stream(a.kvmove, a.guest, tmp)
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            shutil.copy(os.path.join(tmp, "vm.state"), a.keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    recs = records(stream)
    by = {}
    for t, f, p, raw in recs:
        by.setdefault(t, []).append((p, raw))
    for need in ("HELLO", "CONFIG", "RAM", "VM_ARCH", "VCPU", "DEVICE", "STATE_END", "END"):
        if REC[need] not in by:
            sys.exit("fuzz-corpus: the saved stream has no %s record" % need)
    hello = json.loads(by[REC["HELLO"]][0][0])
    config = by[REC["CONFIG"]][0][0]
    ram0 = by[REC["RAM"]][0][0]
    devices = {p[1:1 + p[0]].decode(): p for p, _ in by[REC["DEVICE"]]}
    state_raw = b"".join(raw for t, f, p, raw in recs
                         if t in (REC["VM_ARCH"], REC["VCPU"], REC["DEVICE"]))
    tail_raw = b"".join(raw for t, f, p, raw in recs if t in (REC["STATE_END"], REC["END"]))
    head_raw = by[REC["HELLO"]][0][1] + by[REC["CONFIG"]][0][1]

    for t in ("fuzz_stream", "fuzz_ram", "fuzz_devstate", "fuzz_vmstate", "fuzz_config",
              "fuzz_pc_ranges", "fuzz_control", "fuzz_virtqueue", "fuzz_elf", "fuzz_bzimage"):
        shutil.rmtree(os.path.join(a.out, t), ignore_errors=True)

    # --- the stream: whole real records, one RAM record cut to two pages
    ram_small = ram_trim(ram0, 2)
    ram_rec = record(xxh, REC["RAM"], ram_small)
    write(a.out, "fuzz_stream", "head", b"\x00" + head_raw)
    write(a.out, "fuzz_stream", "head-fixcheck", b"\x01" + head_raw)
    for style in range(4):
        # the option byte's bits 3-7 pick how record 0 is read; the RAM
        # record is record 2
        write(a.out, "fuzz_stream", "ram-style%d" % style,
              bytes([((style - 2) % 4) << 3]) + head_raw + ram_rec)
    write(a.out, "fuzz_stream", "state-end", b"\x00" + state_raw + tail_raw)
    write(a.out, "fuzz_stream", "tail-pipe", b"\x04" + tail_raw)
    write(a.out, "fuzz_stream", "head-small-limit", b"\x02" + head_raw)

    # --- RAM payloads
    write(a.out, "fuzz_ram", "real-2pages", ram_small)
    write(a.out, "fuzz_ram", "real-1page-2zero", ram_trim(ram0, 1, (0x200000, 0x100000000)))
    write(a.out, "fuzz_ram", "zero-edges", ram_trim(ram0, 0, (0xbffff000, 0x100000000,
                                                              0x100fff000)))
    codec = Codec()
    for flag, name in ((LZ4, "lz4"), (ZSTD, "zstd")):
        write(a.out, "fuzz_ram", "compressed-" + name,
              ram_compressed(ram_trim(ram0, 8, (0x200000,)), codec, flag))

    # --- state records, and their sections with the table selector
    write(a.out, "fuzz_devstate", "all", state_raw + tail_raw)
    for t, f, p, raw in recs:
        if t == REC["VM_ARCH"]:
            write(a.out, "fuzz_devstate", "vm-arch", raw)
            write(a.out, "fuzz_vmstate", "vm-arch", bytes([VMS_ARCH]) + p)
        elif t == REC["VCPU"]:
            idx = struct.unpack_from("<I", p)[0]
            write(a.out, "fuzz_devstate", "vcpu%d" % idx, raw)
            if idx == 0:
                write(a.out, "fuzz_vmstate", "vcpu0", bytes([VMS_VCPU]) + p[4:])
        elif t == REC["DEVICE"]:
            name = p[1:1 + p[0]].decode()
            write(a.out, "fuzz_devstate", "device-" + name, raw)
    for name, p in devices.items():
        sel = VMS_UART if name.startswith("serial") else VMS_VIRTIO
        write(a.out, "fuzz_vmstate", "device-" + name, bytes([sel]) + p[1 + p[0]:])
    write(a.out, "fuzz_vmstate", "mixed-v2", bytes([VMS_MIXED]) + vmstate_section(2, [
        ("b", 1, [1]), ("w", 2, [2]), ("l", 4, [3]), ("q", 8, [4]), ("wa", 2, [5, 6, 7]),
        ("qa", 8, [8, 9]), ("blob", 1, [1, 2, 3, 4, 5]), ("added", 4, [10])]))
    write(a.out, "fuzz_vmstate", "mixed-v1", bytes([VMS_MIXED]) + vmstate_section(1, [
        ("qa", 8, [8, 9]), ("b", 1, [1]), ("w", 2, [2]), ("l", 4, [3]), ("q", 8, [4]),
        ("wa", 2, [5, 6, 7]), ("blob", 1, [1, 2, 3, 4, 5])]))

    # --- CONFIG: as sent, and with its disk where the target's allow list
    # lets it be opened (or where a symlink leads out)
    write(a.out, "fuzz_config", "real.json", config)
    cfg = json.loads(config)
    for tag, path in (("allowed", "/tmp/kvmove-fuzz-allow/disk.img"),
                      ("symlink", "/tmp/kvmove-fuzz-allow/out"),
                      ("by-name", "/nonexistent/kvmove-fuzz.img")):
        for d in cfg.get("devices", []):
            if "path" in d:
                d["path"] = path
        write(a.out, "fuzz_config", "disk-%s.json" % tag, json.dumps(cfg).encode())

    # --- post-copy ranges (u16 type, u32 count, u64 gpa + u64 pages each):
    # no save carries them; what pc_send_ranges() emits for a VM with RAM
    # on both sides of the hole
    hole = 0xC0000000
    write(a.out, "fuzz_pc_ranges", "discard-3", struct.pack("<HI", REC["DISCARD"], 3) +
          struct.pack("<QQQQQQ", 0xa000, 10, hole - 3 * PAGE, 3, 1 << 32, 2))
    write(a.out, "fuzz_pc_ranges", "needed-end", struct.pack("<HI", REC["NEEDED"], 0))
    write(a.out, "fuzz_pc_ranges", "needed-high", struct.pack("<HI", REC["NEEDED"], 1) +
          struct.pack("<QQ", (1 << 32) + (16 << 20) - 4 * PAGE, 4))

    # --- control: what the CLI really sent, in one read, in 1-byte reads,
    # in 7-byte reads with the small limit; and the target's own commands
    real = b"".join(requests)
    write(a.out, "fuzz_control", "cli-requests", b"\x00" + real)
    write(a.out, "fuzz_control", "cli-requests-bytewise", b"\x01" + real)
    write(a.out, "fuzz_control", "cli-requests-small", b"\x47" + real)
    own = (b'{"execute": "qmp_capabilities"}\n'
           b'{"execute": "echo", "arguments": {"a": [1, {"b": null}]}, "id": 7}\n'
           b'{"execute":"fail","id":"x"}{"execute":"fail-silent"}\n'
           b'{\n "execute": "nothing"\n}\n'
           b'{"execute": "query-commands", "id": [1]}\n'
           b'garbage line\n{"execute": "echo", "arguments": "no"}\n'
           b'{"execute": "x\x01"}\n')
    write(a.out, "fuzz_control", "own-commands", b"\x00" + own)
    write(a.out, "fuzz_control", "own-commands-bytewise", b"\x01" + own)

    # --- virtqueues: rings a driver sets up (synthetic: a save holds the
    # rings, but spread over guest memory that the target cannot map)
    write(a.out, "fuzz_virtqueue", "one-chain", virtqueue_seed())
    write(a.out, "fuzz_virtqueue", "three-chains", virtqueue_seed(chains=3))
    write(a.out, "fuzz_virtqueue", "top-of-ram", virtqueue_seed(top=True))

    # --- loaders: the test guest's loadable image; a bzImage header
    elf = elf_loadable(a.guest)
    write(a.out, "fuzz_elf", "testguest", elf + b"\x00")
    write(a.out, "fuzz_elf", "testguest-headers", elf[:4096] + b"\x00")
    write(a.out, "fuzz_bzimage", "synthetic", bz_synthetic() + b"\x00")
    write(a.out, "fuzz_bzimage", "synthetic-initrd", bz_synthetic() + bytes([2 | (2 << 3)]))
    vmlinuz = sorted(glob.glob("/boot/vmlinuz-*"))
    if vmlinuz:
        with open(vmlinuz[-1], "rb") as f:
            head = f.read(0x8000)
        sects = head[0x1f1] or 4
        write(a.out, "fuzz_bzimage", "debian-setup",
              head[:min(len(head), (sects + 1) * 512 + 4096)] + b"\x00")

    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(a.out) for f in fs)
    print("fuzz-corpus: stream version %s, %d records, %d control requests; %d KiB of "
          "seeds in %s" % (hello.get("version"), len(recs), len(requests), total >> 10,
                           os.path.relpath(a.out, ROOT)))


if __name__ == "__main__":
    main()
