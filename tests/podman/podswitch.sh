#!/usr/bin/env bash
# The podman CNI test for podswitch: run.sh with the podswitch plugin, and
# podswitchd running in the same private network namespace podman uses.
#
#   PODSWITCHD=target/debug/podswitchd PLUGIN=target/debug/podswitch tests/podman/podswitch.sh
#
# Builds nothing. Environment:
#   PODSWITCHD     the podswitchd binary (required)
#   PLUGIN         the CNI plugin binary, type "podswitch" (required)
#   PODSWITCHCTL   podswitchctl (optional: with it, the daemon's ports are
#                  checked after ADD (two, with the containers' addresses) and
#                  after rm (none left))
#   CNI_VERSION    0.4.0 or 1.0.0 (default 1.0.0); several: CNI_VERSIONS="0.4.0 1.0.0"
#   SUBNET, GATEWAY, GATEWAY_MAC  the pod subnet (default 10.244.7.0/24, 10.244.7.1, 02:00:0a:f4:07:01)
#   WORKERS        podswitchd --workers (default 1)
#   PLUGIN_CONF_JSON  override the plugin's conflist entry (see run.sh)
# Exit codes as run.sh: 0 pass, 1 fail, 77 skip.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
self=$(readlink -f "$0")

# ---- hooks (run by run.sh inside its private netns, with WORKDIR etc. set) ----
daemon_dir() { echo "$WORKDIR/podswitchd"; }
case "${1:-}" in
start-daemon)
  d=$(daemon_dir)
  mkdir -p "$d"
  cat >"$d/node.toml" <<EOF
[node]
name = "podman-test"

[bridge]
gateway = "$GATEWAY/${SUBNET#*/}"
gateway_mac = "$GATEWAY_MAC"
EOF
  "$PODSWITCHD" run --workers "${WORKERS:-1}" --config "$d/node.toml" \
    --run-dir "$d/run" --api-socket "$d/api.sock" --state-dir "$d/state" \
    </dev/null >"$LOG_DIR/podswitchd.log" 2>&1 &
  echo $! >"$d/pid"
  # Ready when it forwards (first stats file) and the API socket exists.
  for _ in $(seq 1 200); do
    if [ -S "$d/api.sock" ] && [ -e "$d/run/stats.json" ]; then
      echo "podswitchd $(cat "$d/pid") ready in $(readlink /proc/self/ns/net)"
      exit 0
    fi
    kill -0 "$(cat "$d/pid")" 2>/dev/null || { echo "podswitchd exited early" >&2; exit 1; }
    sleep 0.1
  done
  echo "podswitchd not ready after 20 s" >&2
  exit 1
  ;;
stop-daemon)
  pidfile="$(daemon_dir)/pid"
  [ -f "$pidfile" ] || exit 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || exit 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "podswitchd $pid stopped"; exit 0; }
    sleep 0.1
  done
  echo "podswitchd $pid ignored SIGTERM for 10 s; SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null
  exit 0
  ;;
check-ports)
  # $2: expected number of ports; the remaining args: addresses they must carry.
  [ -n "${PODSWITCHCTL:-}" ] || exit 0
  want=$2
  shift 2
  ports=$("$PODSWITCHCTL" --socket "$(daemon_dir)/api.sock" --timeout 10 -o json port list)
  echo "$ports" >"$LOG_DIR/ports-$want.json"
  n=$(jq '.ports | length' <<<"$ports")
  [ "$n" = "$want" ] || { echo "podswitchd has $n ports, expected $want: $ports" >&2; exit 1; }
  for ip in "$@"; do
    jq -e --arg ip "$ip" '[.ports[] | select((.ips // []) | index($ip))] | length == 1' <<<"$ports" >/dev/null ||
      { echo "no podswitchd port carries $ip: $ports" >&2; exit 1; }
  done
  echo "podswitchd ports: $n $*"
  exit 0
  ;;
"") ;;
*)
  echo "usage: $0 (no arguments; the subcommands are run.sh hooks)" >&2
  exit 2
  ;;
esac

# ---- the test ----------------------------------------------------------------
: "${PODSWITCHD:?set PODSWITCHD to the podswitchd binary}"
: "${PLUGIN:?set PLUGIN to the podswitch CNI plugin binary}"
for b in "$PODSWITCHD" "$PLUGIN" ${PODSWITCHCTL:+"$PODSWITCHCTL"}; do
  [ -x "$b" ] || { echo "FAIL: $b missing or not executable" >&2; exit 1; }
done
PODSWITCHD=$(readlink -f "$PODSWITCHD")
PLUGIN=$(readlink -f "$PLUGIN")
PODSWITCHCTL=${PODSWITCHCTL:+$(readlink -f "$PODSWITCHCTL")}
export PODSWITCHD PLUGIN PODSWITCHCTL WORKERS=${WORKERS:-1}
export SUBNET=${SUBNET:-10.244.7.0/24} GATEWAY=${GATEWAY:-10.244.7.1} GATEWAY_MAC=${GATEWAY_MAC:-02:00:0a:f4:07:01}
export PLUGIN_TYPE=podswitch
# The plugin reads: socket (podswitchd's API), mtu, ipam.ranges, ipam.dataDir.
export PLUGIN_CONF_JSON=${PLUGIN_CONF_JSON:-'{"socket":"@WORKDIR@/podswitchd/api.sock","mtu":1500,"ipam":{"ranges":[[{"subnet":"@SUBNET@"}]],"dataDir":"@IPAM_DIR@"}}'}
export BEFORE_NETWORK="'$self' start-daemon"
export AFTER_ADD="'$self' check-ports 2 \"\$IP_A\" \"\$IP_B\""
export AFTER_RM="'$self' check-ports 0"
export AFTER_TEST="'$self' stop-daemon"

rc=0
for v in ${CNI_VERSIONS:-${CNI_VERSION:-1.0.0}}; do
  start=$(date +%s%N)
  if CNI_VERSION=$v "$here/run.sh"; then
    echo "podswitch cniVersion $v: PASS in $((($(date +%s%N) - start) / 1000000)) ms" >&2
  else
    rc=$?
    echo "podswitch cniVersion $v: exit $rc" >&2
    break
  fi
done
exit $rc
