#!/usr/bin/env bash
# Live benchmark, run by hand (root): the node's own stack to a ClusterIP
# (issue 21). In one run, alternating per round:
#   - podswitch: podswitchd's host port (a TAP in the node namespace, routes
#     for the pod subnet and the service range via the gateway) and a pod on
#     a TAP port; the ClusterIP is podswitch's service DNAT;
#   - Linux: the pod on a veth in a bridge (br0 holds the gateway address)
#     and kube-proxy's iptables path for host traffic: DNAT in nat OUTPUT.
# Measured from the node namespace to the ClusterIP: TCP, one iperf3 stream
# (SECS seconds), and the median round trip of 1000 UDP ping-pongs.
# Knobs: SECS (5), ROUNDS (3), WORKERS (2), BUSY_POLL_US (200).
# Traffic only flows between the namespaces this script creates
# (psh<pid>-*), which it deletes on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, TAP, nftables)" >&2; exit 1; }
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }
command -v iptables >/dev/null || { apt-get update -qq && apt-get install -y -qq iptables >/dev/null; }
# BIN_DIR: binaries built elsewhere (default: a release build here).
if [ -z "${BIN_DIR:-}" ]; then
  nice cargo build --release -q -p podswitch-control --bin podswitchd --bin podswitchctl
  nice cargo build --release -q -p podswitch-benches --bin udpblast
  BIN_DIR=$PWD/target/release
fi
PSD=$BIN_DIR/podswitchd
CTL=$BIN_DIR/podswitchctl
BLAST=$BIN_DIR/udpblast
P=psh$$
TMP=$(mktemp -d)
DPID=
cleanup() {
  [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  for ns in node a lnode la; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
for ns in node a lnode la; do ip netns add "$P-$ns"; ip -n "$P-$ns" link set lo up; done
VIP=10.96.0.10

# --- podswitch ------------------------------------------------------------
cat >"$TMP/node.toml" <<TOML
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[host]
port = "host"
[[ports]]
name = "host"
kind = "tap"
ifname = "${P}h"
mac = "02:00:0a:f4:01:fe"
[[ports]]
name = "pod-a"
kind = "tap"
ifname = "${P}a"
netns = "/var/run/netns/$P-a"
mac = "02:00:0a:f4:01:02"
ips = ["10.244.1.2"]
TOML
ip netns exec "$P-node" "$PSD" run --config "$TMP/node.toml" --run-dir "$TMP/run" --api-socket "$TMP/run/api.sock" --state-dir "$TMP/state" --workers "$WORKERS" --busy-poll-us "${BUSY_POLL_US:-200}" 2>"$TMP/podswitchd.log" &
DPID=$!
for _ in $(seq 100); do [ -f "$TMP/run/stats.json" ] && break; sleep 0.1; done
[ -f "$TMP/run/stats.json" ] || { cat "$TMP/podswitchd.log"; exit 1; }
"$CTL" --socket "$TMP/run/api.sock" service add default/bench --cluster-ip $VIP --port "tcp:80:5201/TCP" --port "udp:7:7/UDP" >/dev/null
"$CTL" --socket "$TMP/run/api.sock" endpoint add default/bench 10.244.1.2 >/dev/null

# --- Linux bridge + kube-proxy's iptables DNAT for the node's traffic ----
ip -n "$P-lnode" link add br0 type bridge
ip -n "$P-lnode" link set br0 up
ip -n "$P-lnode" addr add 10.244.1.1/24 dev br0
ip link add va netns "$P-lnode" type veth peer name eth0 netns "$P-la"
ip -n "$P-lnode" link set va master br0 up
ip -n "$P-la" link set eth0 up
ip -n "$P-la" addr add 10.244.1.2/24 dev eth0
ip -n "$P-la" route add default via 10.244.1.1
ip netns exec "$P-lnode" ip route add 10.96.0.0/12 dev br0 src 10.244.1.1
ip netns exec "$P-lnode" iptables -t nat -A OUTPUT -d $VIP -p tcp --dport 80 -j DNAT --to-destination 10.244.1.2:5201
ip netns exec "$P-lnode" iptables -t nat -A OUTPUT -d $VIP -p udp --dport 7 -j DNAT --to-destination 10.244.1.2:7

tcp() { # node ns, pod ns -> Gbit/s of one iperf3 stream to the ClusterIP
  local node=$1 pod=$2
  ip netns exec "$pod" iperf3 -s -1 -B 10.244.1.2 -p 5201 >/dev/null 2>&1 &
  local srv=$!; sleep 0.5
  ip netns exec "$node" iperf3 -c $VIP -p 80 -t "$SECS" -J \
    | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
  wait $srv || true
}

rtt() { # node ns, pod ns -> median round trip (us) of 1000 UDP ping-pongs to the ClusterIP
  local node=$1 pod=$2
  ip netns exec "$pod" "$BLAST" echo 10.244.1.2 7 10 &
  local echopid=$!; sleep 0.3
  ip netns exec "$node" "$BLAST" rtt $VIP 7 1000 | sed -n 's/.*median \([0-9.]*\) us/\1/p'
  kill $echopid 2>/dev/null; wait $echopid 2>/dev/null || true
}

stats() { python3 -c "import statistics,sys; v=sorted(map(float, sys.argv[1:])); print('%.2f %.2f %.2f' % (v[0], statistics.median(v), v[-1]))" "$@"; }

ps_t=(); lx_t=(); ps_r=(); lx_r=()
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS: podswitchd, then Linux ..." >&2
  ps_t+=("$(tcp "$P-node" "$P-a")"); lx_t+=("$(tcp "$P-lnode" "$P-la")")
  ps_r+=("$(rtt "$P-node" "$P-a")"); lx_r+=("$(rtt "$P-lnode" "$P-la")")
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "host -> ClusterIP, $ROUNDS alternating rounds (${SECS} s TCP, 1000 UDP ping-pongs), min median max"
echo "TCP Gbit/s   podswitchd: $(stats "${ps_t[@]}")   Linux bridge + iptables: $(stats "${lx_t[@]}")"
echo "RTT us       podswitchd: $(stats "${ps_r[@]}")   Linux bridge + iptables: $(stats "${lx_r[@]}")"
python3 - "${ps_t[*]}" "${lx_t[*]}" "${ps_r[*]}" "${lx_r[*]}" <<'PY'
import statistics, sys
pt, lt, pr, lr = ([float(x) for x in a.split()] for a in sys.argv[1:])
print("ratio TCP (podswitchd / Linux), per round: %s; median %.2f" % (
    " ".join("%.2f" % (p / l) for p, l in zip(pt, lt)), statistics.median(pt) / statistics.median(lt)))
print("RTT added (us), median: %+.1f" % (statistics.median(pr) - statistics.median(lr)))
PY
