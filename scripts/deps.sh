#!/usr/bin/env bash
# Install every Debian package kvmove needs to build, test and demo.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

PKGS=(
  # build
  gcc make cmake ninja-build pkg-config
  # libraries
  libjansson-dev libxxhash-dev libzstd-dev liblz4-dev libcmocka-dev
  libgnutls28-dev  # TLS channels (src/state/channel_tls.c)
  gnutls-bin       # certtool: making x509 credentials (docs/TLS.md)
  libseccomp-dev libcap-ng-dev   # the incoming VMM's sandbox
  # the cluster (docs/CLUSTER.md): etcd is its store, spoken to over etcd's
  # v3 JSON gateway with libcurl; etcdctl only for operators and tests
  etcd-server etcd-client libcurl4-openssl-dev
  # tests: the peer VMM, and tools the integration tests use
  qemu-system-x86 python3 iproute2 procps iputils-ping
  # Linux guests (guest/linux/, docs/linux-guests.md): Debian's kernel (in a
  # container this only drops files in /boot and /lib/modules), busybox, and
  # what the vmlinux and initramfs scripts use
  linux-image-amd64 busybox-static kmod xz-utils libc6-dev
  gnuplot-nox  # bench/: plots
  # fuzzing (make fuzz, fuzz-smoke; docs/FUZZING.md): clang, libFuzzer's
  # runtime (Debian 12's clang is 14), llvm-symbolizer for readable reports
  clang libclang-rt-14-dev llvm-14
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: done" >&2
