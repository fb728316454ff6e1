#!/usr/bin/env bash
# kvmove-cluster.sh - a small cluster of hosts on one machine, built from
# network namespaces, for trying and testing migrations between "hosts".
#
#   kvmove-cluster.sh up   [-p PREFIX] [-n HOSTS] [--mig-rate RATE] [--mig-nets 1|2]
#                          [--etcd N]
#   kvmove-cluster.sh tap  [-p PREFIX] HOST TAPNAME   # a VM's TAP on HOST's VM network
#   kvmove-cluster.sh exec [-p PREFIX] HOST CMD...    # run CMD on a host (h1, h2, .., client)
#   kvmove-cluster.sh fdb  [-p PREFIX]                # the VM network switch's MAC table
#   kvmove-cluster.sh down [-p PREFIX]
#
# Topology (PREFIX defaults to "kv"):
#   namespace PREFIX-sw      the switches: bridges mgmt, mig and vmnet
#   namespace PREFIX-h1..hN  hosts: mgmt0 10.10.0.K/24 (management),
#                            mig0 10.20.0.K/24 (migration network),
#                            mig1 10.30.0.K/24 (a second one, --mig-nets 2),
#                            br0 bridging the host's VM TAPs to vmnet
#   link PREFIXroot          this (the root) namespace on the management
#                            network as 10.10.0.254, plus 10.10.0.201..200+N
#                            with --etcd N: where the cluster's etcd members
#                            listen (tests and operators reach the cluster
#                            from here)
#   namespace PREFIX-client  a client on the VM network: 10.0.0.1/24
#   directory /tmp/PREFIX-cluster/shared   shared storage (disk images, locks)
# --mig-rate (e.g. 1gbit, 10gbit) shapes each host's migration link with tc tbf.
# Hosts: 1..32.
# Everything it creates it names with PREFIX, and `down` removes exactly that.
set -euo pipefail

prefix=kv
hosts=2
mig_rate=
mig_nets=1
etcd_n=0
cmd=${1:-}
[ -n "$cmd" ] && shift
while [ $# -gt 0 ]; do
	case $1 in
	-p) prefix=$2; shift 2 ;;
	-n) hosts=$2; shift 2 ;;
	--mig-rate) mig_rate=$2; shift 2 ;;
	--mig-nets) mig_nets=$2; shift 2 ;;
	--etcd) etcd_n=$2; shift 2 ;;
	*) break ;;
	esac
done

sw=$prefix-sw
dir=/tmp/$prefix-cluster
nsx() { ip netns exec "$@"; }

up() {
	[ "$hosts" -ge 1 ] && [ "$hosts" -le 32 ] || { echo "1..32 hosts" >&2; exit 2; }
	[ "$mig_nets" -ge 1 ] && [ "$mig_nets" -le 2 ] || { echo "1 or 2 migration networks" >&2; exit 2; }
	[ "$etcd_n" -ge 0 ] && [ "$etcd_n" -le 9 ] || { echo "0..9 etcd addresses" >&2; exit 2; }
	if ip netns list | grep -qw "$sw"; then
		echo "cluster '$prefix' exists already (down it first)" >&2
		exit 1
	fi
	mkdir -p "$dir/shared"
	ip netns add "$sw"
	nsx "$sw" ip link set lo up
	for br in mgmt mig mig2 vmnet; do
		nsx "$sw" ip link add "$br" type bridge
		# forward at once: no STP listening delay, and keep learned MACs
		# only briefly so a moved VM is found by its announce, not luck
		nsx "$sw" ip link set "$br" type bridge forward_delay 0 stp_state 0 ageing_time 30000
		nsx "$sw" ip link set "$br" up
	done
	for k in $(seq 1 "$hosts"); do
		h=$prefix-h$k
		ip netns add "$h"
		nsx "$h" ip link set lo up
		for net in mgmt mig; do
			ip link add "$prefix$k$net" type veth peer name "${net}0" netns "$h"
			ip link set "$prefix$k$net" netns "$sw"
			nsx "$sw" ip link set "$prefix$k$net" master "$net" up
		done
		nsx "$h" ip addr add "10.10.0.$k/24" dev mgmt0
		nsx "$h" ip addr add "10.20.0.$k/24" dev mig0
		nsx "$h" ip link set mgmt0 up
		nsx "$h" ip link set mig0 up
		if [ "$mig_nets" -ge 2 ]; then
			ip link add "$prefix${k}mig2" type veth peer name mig1 netns "$h"
			ip link set "$prefix${k}mig2" netns "$sw"
			nsx "$sw" ip link set "$prefix${k}mig2" master mig2 up
			nsx "$h" ip addr add "10.30.0.$k/24" dev mig1
			nsx "$h" ip link set mig1 up
		fi
		if [ -n "$mig_rate" ]; then
			nsx "$h" tc qdisc add dev mig0 root tbf rate "$mig_rate" burst 1mb latency 50ms
		fi
		# the host's VM bridge, uplinked to the VM network switch
		nsx "$h" ip link add br0 type bridge
		nsx "$h" ip link set br0 type bridge forward_delay 0 stp_state 0
		ip link add "$prefix${k}vm" type veth peer name uplink0 netns "$h"
		ip link set "$prefix${k}vm" netns "$sw"
		nsx "$sw" ip link set "$prefix${k}vm" master vmnet up
		nsx "$h" ip link set uplink0 master br0 up
		nsx "$h" ip link set br0 up
	done
	c=$prefix-client
	ip netns add "$c"
	nsx "$c" ip link set lo up
	ip link add "${prefix}cl" type veth peer name eth0 netns "$c"
	ip link set "${prefix}cl" netns "$sw"
	nsx "$sw" ip link set "${prefix}cl" master vmnet up
	nsx "$c" ip addr add 10.0.0.1/24 dev eth0
	nsx "$c" ip link set eth0 up
	# this namespace on the management network: the cluster's etcd and
	# its operators
	ip link add "${prefix}root" type veth peer name "${prefix}rootsw"
	ip link set "${prefix}rootsw" netns "$sw"
	nsx "$sw" ip link set "${prefix}rootsw" master mgmt up
	ip addr add 10.10.0.254/24 dev "${prefix}root"
	for i in $(seq 1 "$etcd_n"); do
		ip addr add "10.10.0.$((200 + i))/32" dev "${prefix}root"
	done
	ip link set "${prefix}root" up
	echo "cluster '$prefix': $hosts hosts, shared storage $dir/shared"
}

tap() {
	h=$prefix-$1
	nsx "$h" ip tuntap add "$2" mode tap
	nsx "$h" ip link set "$2" master br0 up
}

down() {
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-(sw|h[0-9]+|client)$" || true); do
		# kill what still runs there (VMMs), then the namespace
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	ip link del "${prefix}root" 2>/dev/null || true
	rm -rf "$dir"
}

case $cmd in
up) up ;;
down) down ;;
tap) [ $# -eq 2 ] || { echo "tap HOST TAPNAME" >&2; exit 2; }; tap "$1" "$2" ;;
exec) [ $# -ge 2 ] || { echo "exec HOST CMD..." >&2; exit 2; }; h=$1; shift; nsx "$prefix-$h" "$@" ;;
fdb) nsx "$sw" bridge fdb show br vmnet | grep -v permanent || true ;;
*) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || exit 2 ;;
esac
