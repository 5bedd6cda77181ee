#!/usr/bin/env bash
# Live benchmark, run by hand (root): two pods attached to podswitchd (TAP
# ports, 2 workers) and the same two pods on a Linux bridge (veth), measured
# in the same run:
#   - TCP, iperf3 with 1, 2 and 4 streams (STREAMS), SECS seconds each,
#     and the CPU time of the whole machine per GB received (all tasks:
#     pods, podswitchd, kernel; /proc/stat, so run it on a quiet machine)
#   - UDP with 64-byte payloads from many flows (udpblast, sendmmsg/recvmmsg),
#     offered at a sweep of paced rates: the best packets/s received, and the
#     loss at that rate
#   - round-trip latency: median of 1000 UDP ping-pongs
# each ROUNDS times, podswitch and the bridge alternating within a round;
# printed: min / median / max per side, the ratio of the medians, and the
# load average before and after.
# Knobs: SECS (10, per TCP run), ROUNDS (3), STREAMS ("1 2 4"), UDP_SECS (4
# per offered rate), RATES, WORKERS (2), FLOWS (32), ATTACH (tap | afpacket),
# BUSY_POLL_US (200). Traffic only flows between the
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
STREAMS=${STREAMS:-1 2 4}
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }
nice cargo build --release -q -p podswitch-control --bin podswitchd
nice cargo build --release -q -p podswitch-benches --bin udpblast
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
# PODSWITCHD_BIN: another build to measure (a before/after in one sitting).
PSD=${PODSWITCHD_BIN:-$TARGET/release/podswitchd}
BLAST=$TARGET/release/udpblast
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
P=psb$$
TMP=$(mktemp -d)
DPID=
# CPU per GB counts this script's tasks through a cpuacct cgroup (cgroup v1
# here; without it, the whole machine's busy time from /proc/stat), plus
# the ksoftirqd threads, which run deferred packet work for everyone.
CG=/sys/fs/cgroup/cpuacct/psb$$
if mkdir "$CG" 2>/dev/null; then echo $$ >"$CG/cgroup.procs"; else CG=; fi
KSOFTIRQD=$(grep -l '^ksoftirqd/' /proc/[0-9]*/comm | sed 's/comm$/stat/' | tr '\n' ' ')
cleanup() {
  [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  if [ -n "$CG" ]; then echo $$ >/sys/fs/cgroup/cpuacct/cgroup.procs; rmdir "$CG" 2>/dev/null || true; fi
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

cpu_ns() { # CPU time (ns) of this script's tasks (pods, podswitchd, their kernel work) and of the ksoftirqd threads
  local own soft tick
  tick=$(getconf CLK_TCK)
  soft=$(awk '{s += $14 + $15} END {print s + 0}' $KSOFTIRQD)
  if [ -n "$CG" ]; then
    own=$(cat "$CG/cpuacct.usage")
  else
    own=$(awk -v t="$tick" '/^cpu / {print ($2 + $3 + $4 + $7 + $8) * 1e9 / t}' /proc/stat)
  fi
  python3 -c "print(int($own + $soft * 1e9 / $tick))"
}
tcp() { # pod-a ns, pod-b ns, streams -> "Gbit/s CPU-seconds-per-GB"
  local a=$1 b=$2 n=$3
  ip netns exec "$b" iperf3 -s -1 -B 10.244.1.3 -p 5201 >/dev/null 2>&1 &
  local srv=$!; sleep 0.5
  local before after try
  before=$(cpu_ns)
  for try in 1 2 3; do # the server may not listen yet on a loaded machine
    ip netns exec "$a" iperf3 -c 10.244.1.3 -p 5201 -t "$SECS" -P "$n" -J >"$TMP/iperf.json" && break
    sleep 1
  done
  after=$(cpu_ns)
  wait $srv || true
  python3 - "$TMP/iperf.json" $((after - before)) <<'PY'
import json, sys
end = json.load(open(sys.argv[1]))["end"]["sum_received"]
gb = end["bytes"] / 1e9
print("%.2f %.3f" % (end["bits_per_second"] / 1e9, int(sys.argv[2]) / 1e9 / max(gb, 1e-9)))
PY
}

udp() { # pod-a ns, pod-b ns -> "best_rx_pps loss_at_that_rate"
  # Offered rates swept (RFC 2544 style); the best received rate counts, with
  # the loss at that rate. An unpaced sender alone keeps one of this machine's
  # two cores busy producing packets that are only dropped.
  local a=$1 b=$2 pps=0 loss=100 rate unpaced=0
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
    [ "$rate" = 0 ] && unpaced=$got
  done
  echo "$pps $loss $unpaced"
}

rtt() { # pod-a ns, pod-b ns -> median round trip (us) of 1000 UDP ping-pongs
  local a=$1 b=$2
  ip netns exec "$b" "$BLAST" echo 10.244.1.3 7 10 &
  local echopid=$!; sleep 0.3
  ip netns exec "$a" "$BLAST" rtt 10.244.1.3 7 1000 | sed -n 's/.*median \([0-9.]*\) us/\1/p'
  kill $echopid 2>/dev/null; wait $echopid 2>/dev/null || true
}

for ns in "$P-a" "$P-la"; do # resolve neighbours first
  ip netns exec "$ns" "$BLAST" rtt 10.244.1.3 9 3 >/dev/null
done
# Every measurement alternates between the two topologies, ROUNDS times:
# this machine's timing drifts within a run, so values of one round are
# compared, and the medians of the rounds summarised.
: >"$TMP/results"
record() { echo "$1 $2 $3" >>"$TMP/results"; } # metric side value
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS: TCP ($STREAMS streams), RTT, UDP; podswitchd then Linux bridge ..." >&2
  for n in $STREAMS; do
    read -r g c < <(tcp "$P-a" "$P-b" "$n"); record "tcp$n" ps "$g"; record "cpu$n" ps "$c"
    read -r g c < <(tcp "$P-la" "$P-lb" "$n"); record "tcp$n" lb "$g"; record "cpu$n" lb "$c"
  done
  record rtt ps "$(rtt "$P-a" "$P-b")"; record rtt lb "$(rtt "$P-la" "$P-lb")"
  read -r pps loss unpaced < <(udp "$P-a" "$P-b")
  record udp ps "$pps"; record udploss ps "$loss"; record unpaced ps "$unpaced"
  read -r pps loss unpaced < <(udp "$P-la" "$P-lb")
  record udp lb "$pps"; record udploss lb "$loss"; record unpaced lb "$unpaced"
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
SECS=$SECS WORKERS=$WORKERS ATTACH=$ATTACH ROUNDS=$ROUNDS STREAMS=$STREAMS LOAD_START=$LOAD_START LOAD_END=$LOAD_END \
  python3 - "$TMP/results" <<'PY'
import os, statistics, sys
from collections import defaultdict
values = defaultdict(list)
for line in open(sys.argv[1]):
    metric, side, value = line.split()
    values[(metric, side)].append(float(value))
env = os.environ.get
print(f"podswitchd: {env('WORKERS')} workers, {env('ATTACH')} ports; Linux bridge: veth + br0")
print(f"{env('ROUNDS')} rounds, podswitchd and the bridge alternating in each ({env('SECS')} s TCP runs, "
      f"1000 UDP ping-pongs, UDP 64 B: best of a paced sweep and the unpaced sender)")
print(f"load average: {env('LOAD_START')} before, {env('LOAD_END')} after")
def fmt(v, digits):
    return "/".join(f"{x:.{digits}f}" for x in (min(v), statistics.median(v), max(v)))
print(f"{'min/median/max':30} {'podswitchd':>24} {'Linux bridge':>24} {'ratio':>7}")
rows = [(f"tcp{n}", f"TCP {n} stream(s) (Gbit/s)", 2) for n in env('STREAMS').split()]
rows += [(f"cpu{n}", f"CPU s per GB, {n} stream(s)", 3) for n in env('STREAMS').split()]
rows += [("udp", "UDP 64 B best rx (pps)", 0), ("udploss", "UDP loss at that rate (%)", 1),
         ("unpaced", "UDP 64 B unpaced rx (pps)", 0), ("rtt", "RTT median (us)", 1)]
for metric, label, digits in rows:
    ps, lb = values[(metric, "ps")], values[(metric, "lb")]
    if not ps or not lb:
        continue
    mp, ml = statistics.median(ps), statistics.median(lb)
    if metric == "rtt":
        ratio = "%+.1f" % (mp - ml)
    elif metric == "udploss":
        ratio = ""
    else:
        ratio = "%.2f" % (mp / ml if ml else float("nan"))
    print(f"{label:30} {fmt(ps, digits):>24} {fmt(lb, digits):>24} {ratio:>7}")
PY
