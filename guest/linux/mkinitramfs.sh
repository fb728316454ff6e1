#!/usr/bin/env bash
# mkinitramfs.sh - build the Linux guest's initramfs: busybox-static, the
# installed kernel's virtio modules (virtio_pci, virtio_blk, virtio_net and
# everything they depend on) plus ext4 for the disk, and kvload (the
# workload: memory dirtier with console heartbeats and a file written and
# verified on the virtio disk; see kvload.c).
#
#   guest/linux/mkinitramfs.sh OUT.cpio[.gz] [KERNEL_VERSION]
#
# OUT ending in .gz is gzip-compressed; otherwise the archive is left
# uncompressed, which is what PVM hosts want: there the kernel's inflate
# code runs in KVM's instruction emulator for minutes.
#
# KERNEL_VERSION defaults to the newest /lib/modules/* that has a
# /boot/vmlinuz-* next to it.  Needs: busybox-static, gcc (static libc),
# kmod (modprobe), python3, gzip.  Modules built into the kernel are skipped;
# compressed ones (.ko.xz/.ko.zst/.ko.gz) are stored uncompressed.
#
# The guest's /init reads its settings from the kernel command line:
#   kvload.hb_ms=N kvload.wss_mb=N kvload.rate_mb=N kvload.file_kb=N
#   kvload.disk=DEV (default /dev/vda; "none": no disk)
# and prints KVINIT lines while it sets up, then runs kvload.
set -euo pipefail

die() { echo "mkinitramfs: $*" >&2; exit 1; }

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 OUT.cpio[.gz] [KERNEL_VERSION]" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 2 ]; then
  kver=$2
else
  kver=
  for v in $(ls -1v /lib/modules 2>/dev/null); do
    [ -e "/boot/vmlinuz-$v" ] && kver=$v
  done
fi
[ -n "$kver" ] && [ -d "/lib/modules/$kver" ] || die "no kernel modules found (install linux-image-amd64)"
busybox=$(command -v busybox || true)
[ -x /bin/busybox ] && busybox=/bin/busybox
[ -n "$busybox" ] || die "busybox not found (install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
  die "$busybox is dynamically linked; install busybox-static"
fi
command -v modprobe >/dev/null || die "modprobe not found (install kmod)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,mnt,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"

gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/kvload" "$here/kvload.c" \
  || die "building kvload failed (is the static libc installed? libc6-dev)"

# Modules in load order, each once.
: >"$root/etc/modules.order"
for m in virtio_pci virtio_blk virtio_net ext4; do
  modprobe -S "$kver" -D "$m" 2>/dev/null || die "modprobe does not know $m for $kver"
done | while read -r kind path _; do
  [ "$kind" = insmod ] || continue          # "builtin NAME": nothing to load
  name=$(basename "$path")
  # SIMD versions of crypto (crc32c-intel for ext4) are only soft
  # dependencies: the generic C ones do the same job, and SIMD under
  # kernel_fpu_begin() is what KVM's emulator refuses on PVM hosts.
  case $name in *-intel.ko*|*pclmul*|*aesni*|*avx*|*ssse3*) continue ;; esac
  base=${name%%.ko*}.ko
  grep -qx "$base" "$root/etc/modules.order" && continue
  case $name in
    *.ko.xz)  xz -dc "$path" >"$root/lib/modules/$base" ;;
    *.ko.zst) zstd -dcq "$path" >"$root/lib/modules/$base" ;;
    *.ko.gz)  gzip -dc "$path" >"$root/lib/modules/$base" ;;
    *)        cp "$path" "$root/lib/modules/$base" ;;
  esac
  echo "$base" >>"$root/etc/modules.order"
done

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "KVINIT start $(uname -r)"

arg() {  # kvload.NAME=VALUE from the kernel command line, or the default
  v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^kvload\.$1=//p" | tail -n 1)
  echo "${v:-$2}"
}

for m in $(cat /etc/modules.order); do
  if insmod "/lib/modules/$m" 2>/dev/null; then echo "KVINIT module $m"; fi
done

disk=$(arg disk /dev/vda)
file=
if [ "$disk" != none ]; then
  i=0
  while [ ! -b "$disk" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  if [ -b "$disk" ]; then
    if mke2fs -q -F "$disk" >/dev/null 2>&1 && mount -t ext2 "$disk" /mnt; then
      file=/mnt/kvload.dat
      echo "KVINIT disk $disk mounted"
    else
      echo "KVINIT ERROR cannot format or mount $disk"
    fi
  else
    echo "KVINIT ERROR no disk $disk"
  fi
fi

echo "KVINIT ready"
/bin/kvload hb_ms=$(arg hb_ms 100) wss_mb=$(arg wss_mb 64) rate_mb=$(arg rate_mb 32) \
  file=$file file_kb=$(arg file_kb 1024)
echo "KVINIT kvload exited with status $?"
sync
poweroff -f
EOF
chmod +x "$root/init"

# newc archive written here rather than by cpio(1): /dev/console must be a
# character device (5, 1) before /init runs, or the kernel has no console
# for it, and making one with mknod would need root.
case $out in *.gz) compress="gzip -9" ;; *) compress=cat ;; esac
python3 - "$root" <<'PY' | $compress >"$out.tmp"
import os, stat, sys
root, out, ino = sys.argv[1], sys.stdout.buffer, [1]
def entry(name, mode, data=b"", rdev=(0, 0)):
    ino[0] += 1
    name = name.encode() + b"\0"
    hdr = "070701" + "".join("%08X" % v for v in (
        ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name), 0))
    out.write(hdr.encode() + name + b"\0" * (-(110 + len(name)) % 4))
    out.write(data + b"\0" * (-len(data) % 4))
for d, dirs, files in os.walk(root):
    dirs.sort()
    rel = os.path.relpath(d, root)
    if rel != ".":
        entry(rel, stat.S_IFDIR | 0o755)
    for f in sorted(files):
        p = os.path.join(d, f)
        st = os.lstat(p)
        with open(p, "rb") as fh:
            entry(os.path.relpath(p, root), stat.S_IFREG | (st.st_mode & 0o777), fh.read())
entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
entry("TRAILER!!!", 0)
PY
mv "$out.tmp" "$out"
echo "mkinitramfs: $out for $kver ($(wc -l <"$root/etc/modules.order") modules, $(stat -c %s "$out") bytes)" >&2
