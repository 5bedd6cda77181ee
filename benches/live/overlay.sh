#!/usr/bin/env bash
# Live overlay benchmark, run by hand (root): pod-a on node 1 to pod-b on
# node 2 across a VXLAN overlay (VNI 7, UDP 4789) on a veth underlay, in the
# same run for
#   - podswitch: podswitchd on both nodes (TAP pods, uplink = AF_PACKET on
#     the underlay veth, WORKERS workers each), and
#   - the kernel: a flannel-style `vxlan` device + `cni0` bridge on both nodes
#     (route via the remote VTEP address, permanent neighbour, FDB entry);
# measuring TCP (one iperf3 stream, SECS s), UDP (64-byte payloads, FLOWS
# flows, udpblast, best received rate of a paced sweep) and RTT (median of
# 1000 UDP ping-pongs), and printing the podswitch / kernel ratios.
# Knobs: SECS (10), ROUNDS (3), UDP_SECS (3), RATES, WORKERS (1), FLOWS (32),
# BUSY_POLL_US (200), UDP (1; 0 skips the UDP sweep), TUNNEL_GSO (auto; off
# makes podswitchd cut super-frames in software, the path before tunnel GSO).
# Prints min/median/max per side and the ratio of the medians, and the load
# average at start and end (run it on a quiet machine: load < 2.5). Traffic only flows between the namespaces this script
# creates (pso<pid>-*), which it deletes on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, TAP)" >&2; exit 1; }
SECS=${SECS:-10}
WORKERS=${WORKERS:-1}
FLOWS=${FLOWS:-32}
UDP_SECS=${UDP_SECS:-3}
ROUNDS=${ROUNDS:-3}
RATES=${RATES:-50000 100000 150000 200000 0}
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
nice cargo build --release -q -p podswitch-control --bin podswitchd
nice cargo build --release -q -p podswitch-benches --bin udpblast
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
# PODSWITCHD_BIN: another build to measure (a before/after in one sitting).
PSD=${PODSWITCHD_BIN:-$TARGET/release/podswitchd}
BLAST=$TARGET/release/udpblast
P=pso$$
TMP=$(mktemp -d)
PIDS=()
NSS="n1 n2 a b kn1 kn2 ka kb"
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  for ns in $NSS; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
for ns in $NSS; do ip netns add "$P-$ns"; ip -n "$P-$ns" link set lo up; done

# --- podswitch on both nodes ------------------------------------------------
ip link add u1 netns "$P-n1" address 02:00:c0:a8:c8:01 type veth peer name u2 netns "$P-n2" address 02:00:c0:a8:c8:02
ip -n "$P-n1" link set u1 up; ip -n "$P-n2" link set u2 up
for n in 1 2; do
  x=$([ $n = 1 ] && echo a || echo b); peer=$((3 - n))
  cat >"$TMP/n$n.toml" <<TOML
[bridge]
gateway = "10.244.$n.1/24"
gateway_mac = "02:00:0a:f4:0$n:01"
[uplink]
port = "up"
address = "192.168.200.$n/24"
mac = "02:00:c0:a8:c8:0$n"
[[ports]]
name = "up"
kind = "afpacket"
ifname = "u$n"
[[ports]]
name = "pod-$x"
kind = "tap"
ifname = "${P}$x"
netns = "/var/run/netns/$P-$x"
mac = "02:00:0a:f4:0$n:02"
ips = ["10.244.$n.2"]
[overlay]
vni = 7
[[nodes]]
name = "n$peer"
node_ip = "192.168.200.$peer"
pod_cidr = "10.244.$peer.0/24"
TOML
  ip netns exec "$P-n$n" "$PSD" run --config "$TMP/n$n.toml" --run-dir "$TMP/run$n" --api-socket "$TMP/run$n/api.sock" \
    --state-dir "$TMP/state$n" --workers "$WORKERS" --busy-poll-us "${BUSY_POLL_US:-200}" --tunnel-gso "${TUNNEL_GSO:-auto}" 2>"$TMP/podswitchd$n.log" &
  PIDS+=($!)
done
for n in 1 2; do
  for _ in $(seq 100); do [ -f "$TMP/run$n/stats.json" ] && break; sleep 0.1; done
  [ -f "$TMP/run$n/stats.json" ] || { cat "$TMP/podswitchd$n.log"; exit 1; }
done

# --- the kernel: vxlan0 + cni0 on both nodes (flannel's vxlan backend) -----
ip link add ku1 netns "$P-kn1" type veth peer name ku2 netns "$P-kn2"
for n in 1 2; do
  ns=$P-kn$n; x=$([ $n = 1 ] && echo a || echo b); peer=$((3 - n))
  ip -n "$ns" link set "ku$n" up
  ip -n "$ns" addr add "192.168.200.$n/24" dev "ku$n"
  ip -n "$ns" link add cni0 type bridge
  ip -n "$ns" addr add "10.244.$n.1/24" dev cni0
  ip -n "$ns" link set cni0 up
  ip -n "$ns" link add vxlan0 address "02:56:c0:a8:c8:0$n" type vxlan id 7 dstport 4789 local "192.168.200.$n" dev "ku$n" nolearning
  ip -n "$ns" link set vxlan0 mtu 1450 up
  ip -n "$ns" addr add "10.244.$n.0/32" dev vxlan0
  ip -n "$ns" route add "10.244.$peer.0/24" via "10.244.$peer.0" dev vxlan0 onlink
  ip -n "$ns" neigh add "10.244.$peer.0" lladdr "02:56:c0:a8:c8:0$peer" dev vxlan0 nud permanent
  bridge -n "$ns" fdb append "02:56:c0:a8:c8:0$peer" dev vxlan0 dst "192.168.200.$peer"
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  ip link add "v$x" netns "$ns" type veth peer name eth0 netns "$P-k$x"
  ip -n "$ns" link set "v$x" master cni0 up
  ip -n "$P-k$x" link set eth0 mtu 1450 up
  ip -n "$P-k$x" addr add "10.244.$n.2/24" dev eth0
  ip -n "$P-k$x" route add default via "10.244.$n.1"
done

DST=10.244.2.2
tcp() { # client ns, server ns -> Gbit/s of one iperf3 stream
  ip netns exec "$2" iperf3 -s -1 -B $DST -p 5201 >/dev/null 2>&1 &
  local srv=$!; sleep 0.5
  ip netns exec "$1" iperf3 -c $DST -p 5201 -t "$SECS" -J \
    | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
  wait $srv || true
}
udp() { # client ns, server ns -> "best_rx_pps loss_at_that_rate"
  local pps=0 loss=100 rate sent recv got
  for rate in $RATES; do
    ip netns exec "$2" "$BLAST" sink $DST 9000 $((UDP_SECS + 2)) >"$TMP/sink" &
    local sinkpid=$!; sleep 0.5
    sent=$(ip netns exec "$1" "$BLAST" send $DST 9000 "$FLOWS" 64 "$UDP_SECS" 200000000 "$rate" | awk '{print $2}')
    wait $sinkpid
    recv=$(awk '{print $2}' "$TMP/sink"); got=$(awk '{print $(NF-1)}' "$TMP/sink")
    echo "  $1: offered $rate pps (0 = unpaced): sent $sent, received $recv ($got pps)" >&2
    if python3 -c "import sys; sys.exit(0 if $got > $pps else 1)"; then
      pps=$got; loss=$(python3 -c "print('%.1f' % (100.0 * (1 - $recv / max($sent, 1))))")
    fi
  done
  echo "$pps $loss"
}
rtt() { # client ns, server ns -> median round trip (us) of 1000 UDP ping-pongs
  ip netns exec "$2" "$BLAST" echo $DST 7 10 &
  local echopid=$!; sleep 0.3
  ip netns exec "$1" "$BLAST" rtt $DST 7 1000 | sed -n 's/.*median \([0-9.]*\) us/\1/p'
  kill $echopid 2>/dev/null; wait $echopid 2>/dev/null || true
}
median() { python3 -c "import statistics,sys; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" "$@"; }

for ns in "$P-a" "$P-ka"; do # resolve neighbours (ARP on both sides) first
  for _ in 1 2 3; do ip netns exec "$ns" "$BLAST" rtt $DST 9 3 >/dev/null || true; done
done
ps_t=(); k_t=(); ps_r=(); k_r=()
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS: TCP and RTT, podswitch then kernel vxlan ..." >&2
  ps_t+=("$(tcp "$P-a" "$P-b")"); k_t+=("$(tcp "$P-ka" "$P-kb")")
  ps_r+=("$(rtt "$P-a" "$P-b")"); k_r+=("$(rtt "$P-ka" "$P-kb")")
done
echo "TCP Gbit/s podswitch: ${ps_t[*]}; kernel vxlan: ${k_t[*]}" >&2
echo "RTT us podswitch: ${ps_r[*]}; kernel vxlan: ${k_r[*]}" >&2
ps_pps=0 ps_loss=0 k_pps=0 k_loss=0
if [ "${UDP:-1}" != 0 ]; then
  echo "UDP sweep ..." >&2
  read -r ps_pps ps_loss < <(udp "$P-a" "$P-b")
  read -r k_pps k_loss < <(udp "$P-ka" "$P-kb")
fi
whole=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"].get("vxlan_gso_sent_whole", 0))' "$TMP/run1/stats.json" 2>/dev/null || echo "?")
python3 - "${ps_t[*]}" "${k_t[*]}" "${ps_r[*]}" "${k_r[*]}" "$ps_pps" "$ps_loss" "$k_pps" "$k_loss" \
  "$WORKERS" "$ROUNDS" "$SECS" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "${TUNNEL_GSO:-auto}" "$whole" <<'PY'
import statistics, sys
ps_t, k_t, ps_r, k_r = ([float(x) for x in a.split()] for a in sys.argv[1:5])
ps_pps, ps_loss, k_pps, k_loss = map(float, sys.argv[5:9])
workers, rounds, secs, load_start, load_end, tunnel_gso, whole = sys.argv[9:16]
spread = lambda v: f"{min(v):.2f}/{statistics.median(v):.2f}/{max(v):.2f}"
print(f"two nodes, VXLAN VNI 7 on a veth underlay; podswitchd: {workers} worker(s) per node, TAP pods, --tunnel-gso {tunnel_gso} (node 1 sent {whole} super-frames whole); kernel: vxlan0 + cni0 (flannel-style)")
print(f"TCP and RTT: {rounds} alternating rounds ({secs} s TCP, 1000 UDP ping-pongs), min/median/max, ratio of medians; UDP: best of a paced-rate sweep")
print(f"load average at start: {load_start}; at end: {load_end}")
print(f"{'':28} {'podswitch':>20} {'kernel vxlan':>20} {'ratio':>7}")
print(f"{'TCP 1 stream (Gbit/s)':28} {spread(ps_t):>20} {spread(k_t):>20} {statistics.median(ps_t)/statistics.median(k_t):7.2f}")
if ps_pps or k_pps:
    print(f"{'UDP 64 B best rx (pps)':28} {ps_pps:20.0f} {k_pps:20.0f} {ps_pps/max(k_pps,1):7.2f}")
    print(f"{'UDP loss at that rate (%)':28} {ps_loss:20.1f} {k_loss:20.1f}")
print(f"{'RTT (us)':28} {spread(ps_r):>20} {spread(k_r):>20} {'%+.1f' % (statistics.median(ps_r)-statistics.median(k_r)):>7}")
PY
