#!/usr/bin/env bash
# make demo: kvmove as an operator meets it.  Three hosts (network
# namespaces with a management network, a migration network and shared
# storage: scripts/kvmove-cluster.sh), the embedded etcd of 'kvmove cluster
# init' (also listening on the management network), one agent per host,
# four verifying test guests placed by the cluster, one migrated by name,
# then host h1 put into maintenance and drained with progress; at the end
# each VM's verdict and the cluster's migration history.  Everything it
# starts it stops (by PID; namespaces by name), and its directory goes.
set -euo pipefail

BUILD=${1:-build}
KVMOVE=$(readlink -f "$BUILD/kvmove")
GUEST=$(readlink -f "$BUILD/guest/testguest.elf")
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=kvdemo
ETCD_IP=10.10.0.201
VMS="web1 web2 db1 cache1"

[ -x "$KVMOVE" ] && [ -f "$GUEST" ] || { echo "demo: build first (make)" >&2; exit 1; }
[ -w /dev/kvm ] || { echo "demo: /dev/kvm is missing or not writable; kvmove needs KVM" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }
if (exec 3<>/dev/tcp/127.0.0.1/2479) 2>/dev/null; then
	echo "demo: an etcd already answers on 127.0.0.1:2479; the demo wants its own" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/kvmove-demo.XXXXXX)
agents=()
cleanup() {
	set +e
	for p in "${agents[@]}"; do kill -KILL "$p" 2>/dev/null; done
	for f in "$dir"/run-*/*.pid; do
		[ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
	done
	[ -f "$dir/lib/etcd.pid" ] && kill -KILL "$(cat "$dir/lib/etcd.pid")" 2>/dev/null
	bash "$HERE/kvmove-cluster.sh" down -p "$PREFIX" >/dev/null 2>&1
	wait 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ETCD="--etcd http://$ETCD_IP:2479"
kv() { "$KVMOVE" "$@" $ETCD; }
kvrun() { printf '$ kvmove %s\n' "$*"; kv "$@"; }

say "three hosts: namespaces h1..h3 with a management and a migration network"
bash "$HERE/kvmove-cluster.sh" up -p "$PREFIX" -n 3 --etcd 1 >/dev/null
shared=/tmp/$PREFIX-cluster/shared

say "kvmove cluster init: the embedded etcd, listening on the management network too"
printf '$ kvmove cluster init --dir %s --listen %s\n' "$dir/lib" "$ETCD_IP"
"$KVMOVE" cluster init --dir "$dir/lib" --listen "$ETCD_IP"

say "one agent per host"
for k in 1 2 3; do
	mkdir -p "$dir/run-h$k"
	ip netns exec "$PREFIX-h$k" "$KVMOVE" agent --name "h$k" $ETCD \
		--mgmt-addr "10.10.0.$k" --run-dir "$dir/run-h$k" --tls-psk "$dir/lib/cluster.psk" \
		--cpus 16 --allow-disk "$shared" --migration-net 10.20.0.0/24 \
		>"$dir/agent-h$k.log" 2>&1 &
	agents+=($!)
	disown	# killed at the end: no "Killed" line from bash
done
for _ in $(seq 1 100); do
	[ "$(kv node list --json | grep -c '"name"')" -ge 3 ] && break
	sleep 0.2
done
kvrun node list

say "four VMs, placed by the cluster (kvmove vm create, vm start without --on)"
for vm in $VMS; do
	kv vm create "$vm" --mem 256M --cpus 1 --kernel "$GUEST" \
		--append "wss=128M rate=16 hb=100000 verify_every=1000" >/dev/null
done
for vm in web1 web2 db1; do
	kv vm start "$vm" --on h1 >/dev/null
done
kv vm start cache1 >/dev/null
kvrun vm list

say "migrate one by name: kvmove vm migrate web2 (the cluster picks where)"
sleep 2
kvrun vm migrate web2

say "maintenance on h1: its VMs move away, one at a time, with progress"
kvrun node maintenance h1 on --wait
kvrun node show h1

say "each VM's verdict (its guest verifying all of its memory where it runs now)"
sleep 3
bad=0
for vm in $VMS; do
	node=$(kv vm show "$vm" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("owner") or "-")')
	con="$dir/run-$node/$vm.console"
	ok=$(grep -c '^VERIFY OK' "$con" 2>/dev/null || true)
	fails=$(cat "$dir"/run-*/"$vm".console 2>/dev/null | grep -cE '^VERIFY (FAIL|BAD)' || true)
	printf '  %-7s on %s: %s VERIFY OK lines there, %s VERIFY FAIL/BAD anywhere\n' \
		"$vm" "$node" "$ok" "$fails"
	[ "$ok" -gt 0 ] && [ "$fails" = 0 ] || bad=1
done

say "the cluster's migration history"
kvrun migration list --all

say "done: maintenance off, everything stopped and removed"
kv node maintenance h1 off >/dev/null
if [ "$bad" = 0 ]; then
	echo "demo: every VM verified all of its memory where it runs"
else
	echo "demo: a VM did not verify (see above)" >&2
	exit 1
fi
