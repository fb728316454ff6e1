#!/usr/bin/env bash
# make demo: the main job.  Two local VMMs; the verifying test guest runs on
# the first, is live-migrated to the second while it dirties memory, and the
# stats and the guest's own verdict are printed.
set -euo pipefail

BUILD=${1:-build}
KVMOVE=$BUILD/kvmove
GUEST=$BUILD/guest/testguest.elf
MEM=${DEMO_MEM:-1G}
CMDLINE=${DEMO_CMDLINE:-"wss=768M rate=128 hb=100000 seed=7 verify_every=1000"}

[ -x "$KVMOVE" ] && [ -f "$GUEST" ] || { echo "demo: build first (make)" >&2; exit 1; }
if [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is missing or not writable; kvmove needs KVM" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/kvmove-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "a pre-shared key for both hosts: kvmove keygen $dir/keys.psk"
"$KVMOVE" keygen --identity demo "$dir/keys.psk"
say "host A: kvmove run --mem $MEM --kernel testguest.elf --append '$CMDLINE' --tls-psk keys.psk"
"$KVMOVE" run --name demo --mem "$MEM" --kernel "$GUEST" --append "$CMDLINE" \
	--tls-psk "$dir/keys.psk" \
	--lock "$dir/demo.lock" --console "$dir/a.console" --control "$dir/a.sock" 2>"$dir/a.err" &
pids+=($!)
say "host B: kvmove run --incoming tcp:127.0.0.1:$port --expect demo --tls-psk keys.psk"
"$KVMOVE" run --incoming "tcp:127.0.0.1:$port" --expect demo --tls-psk "$dir/keys.psk" \
	--lock "$dir/demo.lock" \
	--console "$dir/b.console" --control "$dir/b.sock" 2>"$dir/b.err" &
pids+=($!)

for _ in $(seq 1 600); do
	grep -q '^READY' "$dir/a.console" 2>/dev/null && break
	kill -0 "${pids[0]}" 2>/dev/null || { cat "$dir/a.err" >&2; exit 1; }
	sleep 0.1
done
grep -q '^READY' "$dir/a.console" || { echo "demo: guest never became READY" >&2; exit 1; }
sleep 2
say "guest on A (its console):"
grep -v '^HB' "$dir/a.console" | head -8
grep '^HB' "$dir/a.console" | tail -3

say "kvmove migrate --control A --to tcp:127.0.0.1:$port"
"$KVMOVE" migrate --control "$dir/a.sock" --to "tcp:127.0.0.1:$port"
rc=$?
wait "${pids[0]}" 2>/dev/null || true

sleep 3
say "guest on B (its console, after the switchover):"
grep -v '^HB' "$dir/b.console" | head -6
grep '^HB' "$dir/b.console" | tail -3

# Heartbeats: the serial stream continues across hosts; a line may be split.
last_a=$(grep -E '^HB [0-9]+ [0-9]+$' "$dir/a.console" | tail -1 | cut -d' ' -f2)
first_b=$(grep -E '^HB [0-9]+ [0-9]+$' "$dir/b.console" | head -1 | cut -d' ' -f2)
ok_b=$(grep -c '^VERIFY OK' "$dir/b.console" || true)
fail=$(cat "$dir/a.console" "$dir/b.console" | grep -c '^VERIFY \(FAIL\|BAD\)' || true)
say "verdict"
echo "  last heartbeat on A: #$last_a, first on B: #$first_b"
echo "  VERIFY OK lines on B: $ok_b; VERIFY FAIL/BAD lines anywhere: $fail"
"$KVMOVE" status --control "$dir/b.sock"
"$KVMOVE" stop --control "$dir/b.sock" >/dev/null
if [ "$rc" -eq 0 ] && [ "$fail" -eq 0 ] && [ "$ok_b" -gt 0 ] && [ -n "$first_b" ]; then
	echo "  the VM moved from A to B with every page intact"
else
	echo "  FAILED" >&2
	exit 1
fi
