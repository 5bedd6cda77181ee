#!/usr/bin/env bash
# Live benchmark, run by hand (root): two pods attached to podswitchd (TAP
# ports, 2 workers) and the same two pods on a Linux bridge (veth), measured
# in the same run:
#   - TCP, one stream, iperf3, SECS seconds (default 10)
#   - UDP with 64-byte payloads from many flows (udpblast, sendmmsg/recvmmsg),
#     offered at a sweep of paced rates: the best packets/s received, and the
#     loss at that rate
#   - round-trip latency: median of 2000 UDP ping-pongs
# Knobs: SECS (10, per TCP round), ROUNDS (3), UDP_SECS (4 per offered rate), RATES, WORKERS (2),
# FLOWS (32), ATTACH (tap | afpacket), BUSY_POLL_US (200).
# and the podswitch / Linux-bridge ratios. Traffic only flows between the
# namespaces this script creates (psb<pid>-*), which it deletes on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, TAP)" >&2; exit 1; }
SECS=${SECS:-10}
WORKERS=${WORKERS:-2}
FLOWS=${FLOWS:-32}
UDP_SECS=${UDP_SECS:-4}
ROUNDS=${ROUNDS:-3}
# Offered UDP rates in packets/s (0 = as fast as the sender can).
RATES=${RATES:-100000 150000 200000 250000 300000 0}
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }
cargo build --release -q -p podswitch-control --bin podswitchd
cargo build --release -q -p podswitch-benches --bin udpblast
PSD=$PWD/target/release/podswitchd
BLAST=$PWD/target/release/udpblast
P=psb$$
TMP=$(mktemp -d)
DPID=
cleanup() {
  [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  for ns in node a b lnode la lb; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
for ns in node a b lnode la lb; do ip netns add "$P-$ns"; ip -n "$P-$ns" link set lo up; done

# --- podswitch: pods on TAP ports of podswitchd (ATTACH=tap, default) or on
# veth pairs whose node ends are AF_PACKET ports (ATTACH=afpacket) --------
ATTACH=${ATTACH:-tap}
if [ "$ATTACH" = afpacket ]; then
for x in a b; do
  ip link add "ps$x" netns "$P-node" type veth peer name eth0 netns "$P-$x"
  ip -n "$P-node" link set "ps$x" up
  ip -n "$P-$x" link set eth0 address "02:00:0a:f4:01:0$([ $x = a ] && echo 2 || echo 3)" up
  ip -n "$P-$x" addr add "10.244.1.$([ $x = a ] && echo 2 || echo 3)/24" dev eth0
  ip -n "$P-$x" route add default via 10.244.1.1
done
cat >"$TMP/node.toml" <<TOML
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[[ports]]
name = "pod-a"
kind = "afpacket"
ifname = "psa"
mac = "02:00:0a:f4:01:02"
ips = ["10.244.1.2"]
[[ports]]
name = "pod-b"
kind = "afpacket"
ifname = "psb"
mac = "02:00:0a:f4:01:03"
ips = ["10.244.1.3"]
TOML
else
cat >"$TMP/node.toml" <<TOML
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[[ports]]
name = "pod-a"
kind = "tap"
ifname = "${P}a"
netns = "/var/run/netns/$P-a"
mac = "02:00:0a:f4:01:02"
ips = ["10.244.1.2"]
[[ports]]
name = "pod-b"
kind = "tap"
ifname = "${P}b"
netns = "/var/run/netns/$P-b"
mac = "02:00:0a:f4:01:03"
ips = ["10.244.1.3"]
TOML
fi
ip netns exec "$P-node" "$PSD" run --config "$TMP/node.toml" --run-dir "$TMP/run" --api-socket "$TMP/run/api.sock" --state-dir "$TMP/state" --workers "$WORKERS" --busy-poll-us "${BUSY_POLL_US:-200}" 2>"$TMP/podswitchd.log" &
DPID=$!
for _ in $(seq 100); do [ -f "$TMP/run/stats.json" ] && break; sleep 0.1; done
[ -f "$TMP/run/stats.json" ] || { cat "$TMP/podswitchd.log"; exit 1; }

# --- Linux bridge: the same pods on veth + br0 ---------------------------
ip -n "$P-lnode" link add br0 type bridge
ip -n "$P-lnode" link set br0 up
ip -n "$P-lnode" addr add 10.244.1.1/24 dev br0
for x in a b; do
  ip link add "v$x" netns "$P-lnode" type veth peer name eth0 netns "$P-l$x"
  ip -n "$P-lnode" link set "v$x" master br0 up
  ip -n "$P-l$x" link set eth0 up
done
ip -n "$P-la" addr add 10.244.1.2/24 dev eth0
ip -n "$P-lb" addr add 10.244.1.3/24 dev eth0

tcp() { # pod-a ns, pod-b ns -> Gbit/s of one iperf3 stream
  local a=$1 b=$2
  ip netns exec "$b" iperf3 -s -1 -B 10.244.1.3 -p 5201 >/dev/null 2>&1 &
  local srv=$!; sleep 0.5
  ip netns exec "$a" iperf3 -c 10.244.1.3 -p 5201 -t "$SECS" -J \
    | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
  wait $srv || true
}

udp() { # pod-a ns, pod-b ns -> "best_rx_pps loss_at_that_rate"
  # Offered rates swept (RFC 2544 style); the best received rate counts, with
  # the loss at that rate. An unpaced sender alone keeps one of this machine's
  # two cores busy producing packets that are only dropped.
  local a=$1 b=$2 pps=0 loss=100 rate
  for rate in $RATES; do
    ip netns exec "$b" "$BLAST" sink 10.244.1.3 9000 $((UDP_SECS + 2)) >"$TMP/sink" &
    local sinkpid=$!; sleep 0.5
    local sent recv got
    sent=$(ip netns exec "$a" "$BLAST" send 10.244.1.3 9000 "$FLOWS" 64 "$UDP_SECS" 200000000 "$rate" | awk '{print $2}')
    wait $sinkpid
    recv=$(awk '{print $2}' "$TMP/sink"); got=$(awk '{print $(NF-1)}' "$TMP/sink")
    echo "  $a: offered $rate pps (0 = unpaced): sent $sent, received $recv ($got pps)" >&2
    if python3 -c "import sys; sys.exit(0 if $got > $pps else 1)"; then
      pps=$got; loss=$(python3 -c "print('%.1f' % (100.0 * (1 - $recv / max($sent, 1))))")
    fi
  done
  echo "$pps $loss"
}

rtt() { # pod-a ns, pod-b ns -> median round trip (us) of 1000 UDP ping-pongs
  local a=$1 b=$2
  ip netns exec "$b" "$BLAST" echo 10.244.1.3 7 10 &
  local echopid=$!; sleep 0.3
  ip netns exec "$a" "$BLAST" rtt 10.244.1.3 7 1000 | sed -n 's/.*median \([0-9.]*\) us/\1/p'
  kill $echopid 2>/dev/null; wait $echopid 2>/dev/null || true
}

median() { python3 -c "import statistics,sys; print('%.2f' % statistics.median(map(float, sys.argv[1:])))" "$@"; }

for ns in "$P-a" "$P-la"; do # resolve neighbours first
  ip netns exec "$ns" "$BLAST" rtt 10.244.1.3 9 3 >/dev/null
done
# TCP and RTT alternate between the two topologies, ROUNDS times, and the
# medians are compared: this machine's timing drifts within a run.
ps_t=(); lb_t=(); ps_r=(); lb_r=()
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS: TCP and RTT, podswitchd then Linux bridge ..." >&2
  ps_t+=("$(tcp "$P-a" "$P-b")"); lb_t+=("$(tcp "$P-la" "$P-lb")")
  ps_r+=("$(rtt "$P-a" "$P-b")"); lb_r+=("$(rtt "$P-la" "$P-lb")")
done
echo "TCP Gbit/s podswitchd: ${ps_t[*]}; Linux bridge: ${lb_t[*]}" >&2
echo "RTT us podswitchd: ${ps_r[*]}; Linux bridge: ${lb_r[*]}" >&2
ps_tcp=$(median "${ps_t[@]}"); lb_tcp=$(median "${lb_t[@]}")
ps_rtt=$(median "${ps_r[@]}"); lb_rtt=$(median "${lb_r[@]}")
echo "UDP sweep ..." >&2
read -r ps_pps ps_loss < <(udp "$P-a" "$P-b")
read -r lb_pps lb_loss < <(udp "$P-la" "$P-lb")

SECS=$SECS WORKERS=$WORKERS ATTACH=$ATTACH ROUNDS=$ROUNDS python3 - "$ps_tcp" "$ps_pps" "$ps_loss" "$ps_rtt" "$lb_tcp" "$lb_pps" "$lb_loss" "$lb_rtt" <<'PY'
import sys
ps_tcp, ps_pps, ps_loss, ps_rtt, lb_tcp, lb_pps, lb_loss, lb_rtt = map(float, sys.argv[1:])
import os
print(f"podswitchd: {os.environ.get('WORKERS', '2')} workers, {os.environ.get('ATTACH', 'tap')} ports; Linux bridge: veth + br0")
print(f"TCP and RTT: medians of {os.environ.get('ROUNDS', '3')} alternating rounds ({os.environ.get('SECS', '10')} s TCP, 1000 UDP ping-pongs); UDP: best of a paced-rate sweep")
print(f"{'':28} {'podswitchd':>12} {'Linux bridge':>13} {'ratio':>7}")
print(f"{'TCP 1 stream (Gbit/s)':28} {ps_tcp:12.2f} {lb_tcp:13.2f} {ps_tcp/lb_tcp:7.2f}")
print(f"{'UDP 64 B best rx (pps)':28} {ps_pps:12.0f} {lb_pps:13.0f} {ps_pps/lb_pps:7.2f}")
print(f"{'UDP loss at that rate (%)':28} {ps_loss:12.1f} {lb_loss:13.1f}")
print(f"{'RTT median (us)':28} {ps_rtt:12.1f} {lb_rtt:13.1f} {'%+.1f' % (ps_rtt-lb_rtt):>7}")
PY
