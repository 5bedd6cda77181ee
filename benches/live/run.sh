#!/usr/bin/env bash
# Live benchmark, run by hand (root): two pods attached to podswitchd (TAP
# ports, 2 workers) and the same two pods on a Linux bridge (veth), measured
# in the same run:
#   - TCP, one stream, iperf3, SECS seconds (default 10)
#   - UDP with 64-byte payloads from many flows (udpblast, sendmmsg/recvmmsg):
#     packets/s received and loss
#   - round-trip latency: median of 2000 UDP ping-pongs
# and the podswitch / Linux-bridge ratios. Traffic only flows between the
# namespaces this script creates (psb<pid>-*), which it deletes on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, TAP)" >&2; exit 1; }
SECS=${SECS:-10}
WORKERS=${WORKERS:-2}
FLOWS=${FLOWS:-32}
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

# --- podswitch: pods on TAP ports of podswitchd --------------------------
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
ip netns exec "$P-node" "$PSD" run --config "$TMP/node.toml" --run-dir "$TMP/run" --workers "$WORKERS" 2>"$TMP/podswitchd.log" &
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

measure() { # pod-a ns, pod-b ns -> "tcp_gbps udp_pps udp_loss rtt_us"
  local a=$1 b=$2
  ip netns exec "$a" ping -c 3 -W 1 10.244.1.3 >/dev/null 2>&1 || ip netns exec "$a" "$BLAST" rtt 10.244.1.3 9 3 >/dev/null
  ip netns exec "$b" iperf3 -s -1 -B 10.244.1.3 -p 5201 >/dev/null 2>&1 &
  local srv=$!; sleep 0.5
  local tcp
  tcp=$(ip netns exec "$a" iperf3 -c 10.244.1.3 -p 5201 -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
  wait $srv || true
  ip netns exec "$b" "$BLAST" sink 10.244.1.3 9000 $((SECS + 2)) >"$TMP/sink" &
  local sinkpid=$!; sleep 0.5
  local sent
  sent=$(ip netns exec "$a" "$BLAST" send 10.244.1.3 9000 "$FLOWS" 64 "$SECS" 200000000 | awk '{print $2}')
  wait $sinkpid
  local recv pps
  recv=$(awk '{print $2}' "$TMP/sink"); pps=$(awk '{print $(NF-1)}' "$TMP/sink")
  ip netns exec "$b" "$BLAST" echo 10.244.1.3 7 20 &
  local echopid=$!; sleep 0.3
  local rtt
  rtt=$(ip netns exec "$a" "$BLAST" rtt 10.244.1.3 7 2000 | sed -n 's/.*median \([0-9.]*\) us/\1/p')
  kill $echopid 2>/dev/null; wait $echopid 2>/dev/null || true
  local loss
  loss=$(python3 -c "print('%.1f' % (100.0 * (1 - $recv / max($sent, 1))))")
  echo "$tcp $pps $loss $rtt"
}

echo "measuring podswitchd ($WORKERS workers, TAP) ..." >&2
read -r ps_tcp ps_pps ps_loss ps_rtt < <(measure "$P-a" "$P-b")
echo "measuring Linux bridge (veth) ..." >&2
read -r lb_tcp lb_pps lb_loss lb_rtt < <(measure "$P-la" "$P-lb")

python3 - "$ps_tcp" "$ps_pps" "$ps_loss" "$ps_rtt" "$lb_tcp" "$lb_pps" "$lb_loss" "$lb_rtt" <<'PY'
import sys
ps_tcp, ps_pps, ps_loss, ps_rtt, lb_tcp, lb_pps, lb_loss, lb_rtt = map(float, sys.argv[1:])
print(f"{'':28} {'podswitchd':>12} {'Linux bridge':>13} {'ratio':>7}")
print(f"{'TCP 1 stream (Gbit/s)':28} {ps_tcp:12.2f} {lb_tcp:13.2f} {ps_tcp/lb_tcp:7.2f}")
print(f"{'UDP 64 B payload (pps rx)':28} {ps_pps:12.0f} {lb_pps:13.0f} {ps_pps/lb_pps:7.2f}")
print(f"{'UDP loss (%)':28} {ps_loss:12.1f} {lb_loss:13.1f}")
print(f"{'RTT median (us)':28} {ps_rtt:12.1f} {lb_rtt:13.1f} {'+%.1f' % (ps_rtt-lb_rtt):>7}")
PY
