#!/usr/bin/env bash
# Live benchmark, run by hand (root): what a restart or an upgrade costs
# (issue 24). Two pods (c, s) on TAP ports and ClusterIP services to s:
#   - a probe stream: UDP datagrams at PPS per second from c to a ClusterIP
#     (10.96.0.12:9000 -> s:9000); the sink in s reports the largest gap
#     between two arrivals, and the datagrams lost;
#   - CONNS established TCP connections through ClusterIPs, half where the
#     client speaks first (10.96.0.10:80 -> s:8080), half where the endpoint
#     does (10.96.0.11:80 -> s:8081), idle during the event; after it each
#     is checked both ways (lost: reset, or no answer within 5 s).
# Events, ROUNDS times each, in turn:
#   takeover  podswitchd run --takeover beside the running one (an upgrade)
#   kill9     kill -9, then the same command line at once
#   sigterm   SIGTERM, wait for the exit, then the same command line
#   start     SIGTERM, the state file removed, then the same command line:
#             the process start time (start to the first probe forwarded,
#             with no state), against which kill9's gap is judged
# Knobs: ROUNDS (3), PPS (10000), CONNS (100), WORKERS (1),
# CAPACITY ([conntrack] capacity, 1048576 = the default), EVENTS (all four),
# KEEP_LOGS (a directory to keep the daemons' logs in).
# Traffic only flows between the namespaces this script creates
# (prs<pid>-*), which it deletes on exit; every loop is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, TAP)" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
PPS=${PPS:-10000}
CONNS=${CONNS:-100}
WORKERS=${WORKERS:-1}
CAPACITY=${CAPACITY:-1048576}
EVENTS=${EVENTS:-takeover kill9 sigterm start}
if [ -z "${BIN_DIR:-}" ]; then
  nice cargo build --release -q -p podswitch-control --bin podswitchd
  nice cargo build --release -q -p podswitch-benches --bin restart_probe
  BIN_DIR=$PWD/target/release
fi
PSD=$BIN_DIR/podswitchd
PROBE=$BIN_DIR/restart_probe
P=prs$$
TMP=$(mktemp -d)
RUN=$TMP/run
DPID=
cleanup() {
  [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  exec 3>&- 2>/dev/null || true
  for ns in node c s; do ip netns del "$P-$ns" 2>/dev/null || true; done
  [ -n "${KEEP_LOGS:-}" ] && cp "$TMP"/d*.log "$KEEP_LOGS"/ 2>/dev/null; rm -rf "$TMP"
}
trap cleanup EXIT
for ns in node c s; do ip netns add "$P-$ns"; ip -n "$P-$ns" link set lo up; done

port() { # name last-octet
  printf '[[ports]]\nname = "%s"\nkind = "tap"\nifname = "%s%s"\nnetns = "/var/run/netns/%s-%s"\nmac = "02:00:0a:f4:01:%02x"\nips = ["10.244.1.%s"]\n' \
    "$1" "$P" "$1" "$P" "$1" "$2" "$2"
}
service() { # name vip protocol port target
  printf '[[services]]\nname = "%s"\ncluster_ip = "%s"\nprotocol = "%s"\nport = %s\ntarget_port = %s\nendpoints = [{ address = "10.244.1.3" }]\n' "$@"
}
{
  printf '[node]\nname = "bench"\n[bridge]\ngateway = "10.244.1.1/24"\ngateway_mac = "02:00:0a:f4:01:01"\n'
  printf '[conntrack]\ncapacity = %s\n' "$CAPACITY"
  port c 2; port s 3
  service up 10.96.0.10 TCP 80 8080
  service push 10.96.0.11 TCP 80 8081
  service probe 10.96.0.12 UDP 9000 9000
} >"$TMP/node.toml"

N=0
start_daemon() { # [--takeover]; sets DPID, waits until it forwards
  N=$((N + 1))
  ip netns exec "$P-node" "$PSD" run --config "$TMP/node.toml" --run-dir "$RUN" \
    --api-socket "$RUN/api.sock" --state-dir "$TMP/state" --workers "$WORKERS" "$@" \
    2>"$TMP/d$N.log" &
  DPID=$!
  for _ in $(seq 500); do grep -qs forwarding "$TMP/d$N.log" && return 0; sleep 0.02; done
  cat "$TMP/d$N.log" >&2; exit 1
}
start_daemon
for pod in c:2 s:3; do
  for _ in $(seq 100); do ip -n "$P-${pod%:*}" -4 addr | grep -q "10.244.1.${pod#*:}/" && break; sleep 0.1; done
done

event() { # kind; the probe and the connections are running
  local old=$DPID
  case $1 in
    takeover) start_daemon --takeover; wait "$old" 2>/dev/null || true ;;
    kill9) kill -KILL "$old"; wait "$old" 2>/dev/null || true; start_daemon ;;
    sigterm) kill -TERM "$old"; wait "$old" 2>/dev/null || true; start_daemon ;;
    start)
      kill -TERM "$old"; wait "$old" 2>/dev/null || true
      rm -f "$RUN/dataplane.state"
      SINCE=$("$PROBE" now)
      start_daemon ;;
  esac
}

declare -A GAP LOST CONN START
round() { # kind round
  local kind=$1 r=$2 secs=5
  SINCE=0
  ip netns exec "$P-s" "$PROBE" gap-sink 10.244.1.3 9000 $((secs + 1)) >"$TMP/sink" &
  local sink=$!
  sleep 0.2
  ip netns exec "$P-c" "$PROBE" gap-send 10.96.0.12 9000 "$PPS" "$secs" >/dev/null &
  local send=$!
  coproc CONNS_PROC { "$PROBE" conns "$P-c" "$P-s" 10.96.0.10:80 10.96.0.11:80 10.244.1.3:8080 10.244.1.3:8081 "$CONNS" 2>&1; }
  local line; read -r -t 30 line <&"${CONNS_PROC[0]}"
  echo ok >&"${CONNS_PROC[1]}"; read -r -t 30 line <&"${CONNS_PROC[0]}"
  [ "$line" = "ok=$CONNS lost=0" ] || { echo "before $kind: $line" >&2; exit 1; }
  sleep 1
  event "$kind"
  sleep 1.5
  echo ok >&"${CONNS_PROC[1]}"; read -r -t 30 line <&"${CONNS_PROC[0]}"
  eval "exec ${CONNS_PROC[1]}>&-"
  wait "$CONNS_PROC_PID" 2>/dev/null || true
  wait "$send" || true
  wait "$sink" || true
  local gap first lost conn
  gap=$(sed -n 's/.*gap_us=\([0-9]*\).*/\1/p' "$TMP/sink")
  lost=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' "$TMP/sink")
  conn=${line#*lost=}
  GAP[$kind]+="$gap "; LOST[$kind]+="$lost "; CONN[$kind]+="$conn "
  first=""
  if [ "$kind" = start ]; then
    # The largest gap is the restart's: it ends with the first probe forwarded.
    first=$(( ($(sed -n 's/.*gap_end_ns=\([0-9]*\).*/\1/p' "$TMP/sink") - SINCE) / 1000 ))
    START[$kind]+="$first "
  fi
  printf '%-9s round %d: largest gap %6.1f ms, probes lost %5d, connections lost %d/%d%s\n' \
    "$kind" "$r" "$(awk -v g="$gap" 'BEGIN { print g / 1000 }')" "$lost" "$conn" "$CONNS" \
    "${first:+, start to first probe forwarded $(awk -v g="$first" 'BEGIN { printf "%.1f", g / 1000 }') ms}"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); PPS=$PPS CONNS=$CONNS WORKERS=$WORKERS CAPACITY=$CAPACITY"
for r in $(seq "$ROUNDS"); do
  for kind in $EVENTS; do round "$kind" "$r"; done
done
summary() { # label values (µs) -> min/median/max in ms
  python3 - "$@" <<'PY'
import sys
label, v = sys.argv[1], sorted(float(x) / 1000 for x in sys.argv[2].split())
print("%-28s min %7.1f  median %7.1f  max %7.1f ms" % (label, v[0], v[len(v) // 2], v[-1]))
PY
}
echo
for kind in $EVENTS; do
  summary "$kind: largest gap" "${GAP[$kind]}"
  echo "$kind: connections lost per round: ${CONN[$kind]}(of $CONNS); probes lost: ${LOST[$kind]}"
done
[ -n "${START[start]:-}" ] && summary "process start to 1st probe" "${START[start]}"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
