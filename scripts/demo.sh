#!/usr/bin/env bash
# make demo: boot the verifying test guest on kvmove, show its heartbeats and
# verifier for a few seconds, pause and resume it, then stop it cleanly.
set -euo pipefail

BUILD=${1:-build}
KVMOVE=$BUILD/kvmove
GUEST=$BUILD/guest/testguest.elf
SECONDS_TO_SHOW=${DEMO_SECONDS:-6}

[ -x "$KVMOVE" ] && [ -f "$GUEST" ] || { echo "demo: build first (make)" >&2; exit 1; }
if [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is missing or not writable; kvmove needs KVM" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/kvmove-demo.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

console=$dir/console.log
sock=$dir/demo.sock
cmdline="wss=256M rate=64 hb=250000 seed=7 verify_every=1000"

echo "== kvmove run --mem 1G --kernel $GUEST --append '$cmdline'"
"$KVMOVE" run --name demo --mem 1G --cpus 1 --kernel "$GUEST" --append "$cmdline" \
	--console "$console" --control "$sock" 2>"$dir/vmm.err" &
pid=$!

# Wait for the socket (the VMM is up) and the guest's READY line.
for _ in $(seq 1 300); do
	[ -S "$sock" ] && grep -q '^READY' "$console" 2>/dev/null && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "demo: the VMM exited early:" >&2; cat "$dir/vmm.err" >&2; exit 1
	fi
	sleep 0.1
done
grep -q '^READY' "$console" || { echo "demo: guest never became READY" >&2; cat "$console" >&2; exit 1; }

# Show the console live for a few seconds (heartbeat every 250 ms here,
# verifier every second).
timeout "$SECONDS_TO_SHOW" tail -n +1 -f "$console" || true

echo "== kvmove status"
"$KVMOVE" status --control "$sock"
echo "== kvmove pause (heartbeats stop)"
"$KVMOVE" pause --control "$sock"
"$KVMOVE" status --control "$sock"
before=$(grep -c '^HB ' "$console")
sleep 1
after=$(grep -c '^HB ' "$console")
echo "   heartbeats during 1 s of pause: $((after - before))"
echo "== kvmove resume"
"$KVMOVE" resume --control "$sock"
sleep 1.5
tail -n 4 "$console"
echo "== kvmove stop"
"$KVMOVE" stop --control "$sock"
wait "$pid"; rc=$?; pid=
echo "   VMM exited with status $rc"

ok=$(grep -c '^VERIFY OK' "$console" || true)
fail=$(grep -c '^VERIFY FAIL' "$console" || true)
echo "== verifier: $ok VERIFY OK lines, $fail VERIFY FAIL lines"
[ "$fail" -eq 0 ] && [ "$ok" -gt 0 ] && [ "$rc" -eq 0 ]
