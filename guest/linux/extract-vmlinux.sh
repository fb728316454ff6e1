#!/usr/bin/env bash
# extract-vmlinux.sh - get the uncompressed ELF kernel (vmlinux) out of a
# bzImage such as Debian's /boot/vmlinuz-*, so kvmove (and QEMU) can boot it
# through its PVH entry point.
#
#   guest/linux/extract-vmlinux.sh [BZIMAGE] OUT
#
# BZIMAGE defaults to the newest /boot/vmlinuz-*.  The compressed payload is
# found through the setup header (payload_offset/payload_length, boot
# protocol 2.08+) and, failing that, by scanning for the magic of every
# format Linux can compress itself with (xz, zstd, gzip, lz4, bzip2, lzma,
# lzo).  The result must be an x86-64 ELF that carries the Xen PVH entry
# note (XEN_ELFNOTE_PHYS32_ENTRY, CONFIG_PVH=y); otherwise the script fails
# and says why.  Exit status: 0 ok, 1 failure, 2 usage.
set -euo pipefail

die() { echo "extract-vmlinux: $*" >&2; exit 1; }

case $# in
  1) src=$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n 1 || true); out=$1 ;;
  2) src=$1; out=$2 ;;
  *) echo "usage: $0 [BZIMAGE] OUT" >&2; exit 2 ;;
esac
[ -n "$src" ] && [ -r "$src" ] || die "no readable kernel image (${src:-/boot/vmlinuz-* not found}; install linux-image-amd64)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Little-endian unsigned integer of $3 bytes at offset $2 of file $1.
le() { od -An -tu"$3" -j "$2" -N "$3" --endian=little "$1" | tr -d ' '; }

# Is $1 an ELF with the PVH note?  Prints the reason when not.
check_elf() {
  local f=$1
  [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = "177ELF" ] || { echo "not an ELF file"; return 1; }
  # Xen notes: owner "Xen", type 18 = XEN_ELFNOTE_PHYS32_ENTRY.  readelf
  # prints them as "Xen 0x... Unknown note type: (0x00000012)" or by name.
  if ! readelf -n "$f" 2>/dev/null | grep -Eqi 'Xen .*(0x00000012|PHYS32_ENTRY)'; then
    echo "ELF has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): kernel built without CONFIG_PVH"
    return 1
  fi
  return 0
}

# Decompress file $1 (starting at byte offset $2, optional length $3) with
# the tool matching its magic into $tmp/vmlinux.  Trailing garbage after
# the stream is normal (the bzImage continues), so tool errors about it are
# ignored: the ELF check below decides.
try_at() {
  local off=$1 len=${2:-} magic cmd
  magic=$(od -An -tx1 -j "$off" -N 6 "$src" | tr -d ' \n')
  case $magic in
    fd377a585a00*) cmd="xz -dc" ;;
    28b52ffd*)     cmd="zstd -dcq" ;;
    1f8b08*|1f8b00*) cmd="gzip -dc" ;;
    02214c18*)     cmd="lz4 -dcq -l" ;;  # legacy lz4 frame, as the kernel writes it
    425a68*)       cmd="bzip2 -dc" ;;
    5d0000*)       cmd="xz -dc --format=lzma" ;;
    894c5a*)       cmd="lzop -dc" ;;
    *) return 1 ;;
  esac
  command -v "${cmd%% *}" >/dev/null || { echo "extract-vmlinux: payload at $off needs ${cmd%% *}, which is not installed" >&2; return 1; }
  if [ -n "$len" ]; then
    tail -c +"$((off + 1))" "$src" | head -c "$len" | $cmd >"$tmp/vmlinux" 2>/dev/null || true
  else
    tail -c +"$((off + 1))" "$src" | $cmd >"$tmp/vmlinux" 2>/dev/null || true
  fi
  [ -s "$tmp/vmlinux" ] && check_elf "$tmp/vmlinux" >/dev/null
}

found=
size=$(stat -c %s "$src")
if [ "$size" -gt 1024 ] && [ "$(head -c 4 "$src" | od -An -c | tr -d ' ')" = "177ELF" ]; then
  cp "$src" "$tmp/vmlinux"   # already an ELF
  found=yes
elif [ "$size" -gt $((0x250)) ] && [ "$(dd if="$src" bs=1 skip=$((0x202)) count=4 2>/dev/null)" = "HdrS" ]; then
  version=$(le "$src" $((0x206)) 2)
  sects=$(le "$src" $((0x1f1)) 1)
  [ "$sects" -eq 0 ] && sects=4
  if [ "$version" -ge $((0x208)) ]; then
    poff=$(le "$src" $((0x248)) 4)
    plen=$(le "$src" $((0x24c)) 4)
    start=$(( (sects + 1) * 512 + poff ))
    if [ "$plen" -gt 0 ] && [ $((start + plen)) -le "$size" ] && try_at "$start" "$plen"; then
      found=yes
    fi
  fi
fi
if [ -z "$found" ]; then
  # No usable header: scan for every known magic, first hit that yields
  # an ELF wins.
  for m in '\xfd7zXZ\x00' '\x28\xb5\x2f\xfd' '\x1f\x8b\x08' '\x02\x21\x4c\x18' 'BZh' '\x5d\x00\x00' '\x89\x4c\x5a'; do
    for off in $(LC_ALL=C grep -obUaP "$m" "$src" 2>/dev/null | cut -d: -f1 | head -n 8); do
      if try_at "$off"; then found=yes; break 2; fi
    done
  done
fi
[ -n "$found" ] || die "$src: no compressed payload that decompresses to an ELF kernel"
why=$(check_elf "$tmp/vmlinux") || die "$src: $why"
mv "$tmp/vmlinux" "$out"
echo "extract-vmlinux: $src -> $out ($(stat -c %s "$out") bytes, PVH entry note present)" >&2
