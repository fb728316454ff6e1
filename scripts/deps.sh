#!/usr/bin/env bash
# Install every Debian package kvmove needs to build, test and demo, and the
# browser test's npm packages (tests/browser/package-lock.json).
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
  # the management console (docs/API.md): its HTTP server library; its
  # browser test (tests/browser/) drives Debian's chromium with node
  libmicrohttpd-dev chromium nodejs
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm: Debian's package only where no npm exists (a nodejs from elsewhere
# brings its own, which Debian's npm would conflict with)
if ! command -v npm >/dev/null 2>&1 && \
   ! dpkg-query -W -f='${Status}' npm 2>/dev/null | grep -q "install ok installed"; then
  missing+=(npm)
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "deps.sh: done" >&2
fi

# The browser test's npm packages (puppeteer-core), exactly as the lockfile
# pins them; only when node_modules is missing or older than the lockfile.
# No browser download: the test drives Debian's chromium.
browser="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"
if [ -f "$browser/package-lock.json" ] && \
   { [ ! -d "$browser/node_modules" ] || [ "$browser/package-lock.json" -nt "$browser/node_modules" ]; }; then
  echo "deps.sh: npm ci in $browser" >&2
  (cd "$browser" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  touch "$browser/node_modules"
  echo "deps.sh: npm packages installed" >&2
fi
