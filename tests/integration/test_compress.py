#!/usr/bin/env python3
"""Compressed guest pages (kvmove migrate --compress, docs/MIGRATE.md).

The test guest's compress=75 makes three quarters of every page a run that
any compressor removes; compress=0 (the default) leaves nothing to remove.

  1. lz4, forced, over 2 channels, with the guest dirtying 64 MiB/s of a
     128 MiB working set: pages resent in later rounds are compressed too,
     the verifier finds every page the newest on the destination, and the
     page data on the wire is less than half the page data sent.
  2. zstd, forced, one channel, the same VM moving on: likewise.
  3. auto on a link slowed to 64 MiB/s (--bandwidth): compressing costs
     less than the bytes it saves, so auto compresses, and says so.
  4. auto on loopback with memory that does not compress: not one page is
     sent compressed (the sampling probes aside, nothing is spent).
  5. off: no page compressed, and the summary says compression is off.
  6. a bad mode is refused by the CLI before anything starts.
  7. quick migration's file: 'kvmove save --compress lz4' of the
     compressible guest writes a file smaller than half its working set
     (the file's HELLO lists compress), and 'kvmove run --restore' brings
     it back verified."""
import os

import kvtest
from kvtest import check

WSS = 128 << 20


def codec(run):
    c = run.stat("compression") or {}
    return (c.get("x-lz4-pages", 0), c.get("x-zstd-pages", 0), c.get("x-raw-pages", 0),
            c.get("compressed-size", 0), c.get("x-mode"))


def check_smaller(run, what):
    lz4, zstd, raw, size, _ = codec(run)
    data = (lz4 + zstd + raw) * 4096
    check(data > 0 and size < data / 2,
          "%s: %d bytes of page data on the wire for %d bytes of pages" % (what, size, data))


def test(h):
    # 1. lz4 over two channels, a busy guest
    src = h.vmm(name="src", mem="512M",
                append=kvtest.guest_cmdline(wss="128M", rate=64, hb=1000, compress=75))
    dst = h.incoming("dst1", src)
    src.wait_ready()
    src.wait_verified()
    run = src.migrate(dst.uri, "--channels", "2", "--compress", "lz4")
    kvtest.check_migrated(src, dst, run, cpus=1, wss=WSS)
    lz4, zstd, raw, size, mode = codec(run)
    check(mode == "lz4" and lz4 > 0 and zstd == 0,
          "lz4 forced: mode %s, %d lz4 pages, %d zstd" % (mode, lz4, zstd))
    check(run.stat("ram", "dirty-sync-count", default=0) >= 1, "no round after the first pass")
    check_smaller(run, "lz4")
    h.log("1. lz4, 2 channels, 64 MiB/s: %s; %d lz4 pages, %d raw, %.1f MiB of page data"
          % (run.summary(), lz4, raw, size / 1048576.0))

    # 2. zstd, one channel, the same VM moving on
    dst2 = h.incoming("dst2", dst)
    run = dst.migrate(dst2.uri, "--channels", "1", "--compress", "zstd")
    kvtest.check_migrated(dst, dst2, run, cpus=1, wss=WSS)
    lz4, zstd, raw, size, mode = codec(run)
    check(mode == "zstd" and zstd > 0 and lz4 == 0,
          "zstd forced: mode %s, %d lz4 pages, %d zstd" % (mode, lz4, zstd))
    check_smaller(run, "zstd")
    h.log("2. zstd, 1 channel: %s; %d zstd pages, %d raw" % (run.summary(), zstd, raw))

    # 3. auto on a slow link: it compresses
    dst3 = h.incoming("dst3", dst2)
    run = dst2.migrate(dst3.uri, "--bandwidth", "64")
    kvtest.check_migrated(dst2, dst3, run, cpus=1, wss=WSS)
    lz4, zstd, raw, size, mode = codec(run)
    check(mode == "auto" and lz4 + zstd > raw,
          "auto at 64 MiB/s with compressible memory: %d lz4, %d zstd, %d raw pages"
          % (lz4, zstd, raw))
    h.log("3. auto at 64 MiB/s: %s; %d lz4, %d zstd, %d raw" % (run.summary(), lz4, zstd, raw))

    # 7. (here, while a compressible guest runs) a compressed state file
    path = os.path.join(h.tmpdir, "vm.kvmstate")
    run = dst3.save(path, "--compress", "lz4")
    run.expect(0, "completed")
    check(dst3.wait_exit(timeout=60) == 0, "the saved VMM did not exit 0")
    size = os.path.getsize(path)
    check(size < WSS / 2, "the compressed state file has %d bytes for a %d-byte working set"
          % (size, WSS))
    back = h.restore("back", path, expect=dst3.vm_name)
    back.wait_verified(start=0)
    h.log("7. save --compress lz4: %.1f MiB file for %d MiB of working set; restored, verified"
          % (size / 1048576.0, WSS >> 20))
    back.kill()

    # 4. auto on loopback, memory that does not compress
    src = h.vmm(name="src4", mem="512M",
                append=kvtest.guest_cmdline(wss="128M", rate=16, hb=1000))
    dst4 = h.incoming("dst4", src)
    src.wait_ready()
    src.wait_verified()
    run = src.migrate(dst4.uri)
    kvtest.check_migrated(src, dst4, run, cpus=1, wss=WSS)
    lz4, zstd, raw, size, mode = codec(run)
    check(mode == "auto" and lz4 + zstd == 0 and raw > 0,
          "auto, incompressible memory: %d lz4, %d zstd, %d raw pages" % (lz4, zstd, raw))
    h.log("4. auto, incompressible: %s" % run.summary())

    # 5. off, and the human summary says so
    dst5 = h.incoming("dst5", dst4)
    r = dst4.cli("migrate", "--to", dst5.uri, "--compress", "off", timeout=300)
    check(r.returncode == 0, "migrate --compress off failed: %r" % r.stderr)
    check("compression  off" in r.stdout, "the summary does not say 'compression  off': %r"
          % r.stdout)
    dst5.wait_verified()

    # 6. a bad mode never reaches the VMM
    r = dst5.cli("migrate", "--to", "tcp:127.0.0.1:1", "--compress", "zlib", timeout=30)
    check(r.returncode == 2 and "zlib" in r.stderr,
          "--compress zlib: exit %d, stderr %r" % (r.returncode, r.stderr))


kvtest.main(test)
