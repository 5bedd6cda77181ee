#!/usr/bin/env bash
# Records the captures in this folder from real traffic between network
# namespaces that this script creates and removes again. Run as root:
#
#     sudo pcaps/record.sh            # writes pcaps/*.pcap
#     OUT=/tmp/x pcaps/record.sh      # writes elsewhere
#
# Topology and addresses are described in pcaps/README.md. Traffic only ever
# flows between the namespaces made here; every loop is bounded in count and
# time, and the EXIT trap stops what was started (by PID) and deletes the
# namespaces.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE}
GEN="$HERE/gen/traffic.py"

die() { echo "record.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "must run as root (namespaces and tcpdump)"

need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null && return
    echo "installing $2 for $1" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}
need tcpdump tcpdump
need ping iputils-ping
need ethtool ethtool
need python3 python3

# --- addresses (keep in sync with README.md) --------------------------------
GW_IP=10.244.1.1 GW_MAC=02:00:0a:f4:01:01
A_IP=10.244.1.2 A_MAC=02:00:0a:f4:01:02
B_IP=10.244.1.3 B_MAC=02:00:0a:f4:01:03
A_HOST_MAC=02:00:0a:f4:01:82 B_HOST_MAC=02:00:0a:f4:01:83 # bridge ports, never on the wire as src
UP_IP=192.168.100.1 UP_MAC=02:00:c0:a8:64:01
EXT_IP=192.168.100.2 EXT_MAC=02:00:c0:a8:64:02
REMOTE_IP=10.244.2.1

ID="psrec-$$"
NS_NODE="$ID-node" NS_A="$ID-a" NS_B="$ID-b" NS_EXT="$ID-ext"
TMP=$(mktemp -d "/tmp/$ID.XXXXXX")
PIDS=()

cleanup() {
    local pid ns
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "$NS_A" "$NS_B" "$NS_EXT" "$NS_NODE"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

reap() { # reap PID: wait for a background job we started and forget its PID
    local pid=$1 status=0 keep=() p
    wait "$pid" || status=$?
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    return "$status"
}

# --- topology -----------------------------------------------------------------
make_ns() { # make_ns NAME: a namespace with lo up and IPv6 off before any link exists
    ip netns add "$1"
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$1" link set lo up
}

no_offload() { # checksums and segmentation in software: captured frames are MTU-sized with valid checksums
    in_ns "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
}

add_pod() { # add_pod NS HOST_IF HOST_MAC IP MAC
    local ns=$1 host_if=$2 host_mac=$3 ip=$4 mac=$5
    make_ns "$ns"
    ip -n "$NS_NODE" link add "$host_if" address "$host_mac" type veth peer name eth0 netns "$ns"
    ip -n "$ns" link set eth0 address "$mac"
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$GW_IP"
    no_offload "$ns" eth0
    ip -n "$NS_NODE" link set "$host_if" master br0 up
    no_offload "$NS_NODE" "$host_if"
}

build_topology() {
    make_ns "$NS_NODE"
    in_ns "$NS_NODE" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$NS_NODE" link add br0 address "$GW_MAC" type bridge stp_state 0 mcast_snooping 0
    ip -n "$NS_NODE" addr add "$GW_IP/24" dev br0
    ip -n "$NS_NODE" link set br0 up
    add_pod "$NS_A" veth-a "$A_HOST_MAC" "$A_IP" "$A_MAC"
    add_pod "$NS_B" veth-b "$B_HOST_MAC" "$B_IP" "$B_MAC"

    make_ns "$NS_EXT"
    ip -n "$NS_NODE" link add up0 address "$UP_MAC" type veth peer name eth0 netns "$NS_EXT"
    ip -n "$NS_EXT" link set eth0 address "$EXT_MAC"
    ip -n "$NS_NODE" addr add "$UP_IP/24" dev up0
    ip -n "$NS_EXT" addr add "$EXT_IP/24" dev eth0
    ip -n "$NS_EXT" addr add "$REMOTE_IP/24" dev lo # dummy links are not built into this kernel
    ip -n "$NS_NODE" link set up0 up
    ip -n "$NS_EXT" link set eth0 up
    no_offload "$NS_NODE" up0
    no_offload "$NS_EXT" eth0
    ip -n "$NS_EXT" route add 10.244.1.0/24 via "$UP_IP"
    ip -n "$NS_NODE" route add 10.244.2.0/24 via "$EXT_IP"
}

flush_neigh() { local ns; for ns in "$@"; do ip -n "$ns" neigh flush all; done; }

# --- helpers ------------------------------------------------------------------
wait_for_line() { # wait_for_line FILE TEXT: up to 5 s
    local i
    for i in $(seq 50); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done
    die "timed out waiting for '$2' in $1: $(cat "$1" 2>/dev/null)"
}

CAP_PIDS=()
start_capture() { # start_capture NS IFACE FILE [tcpdump args...]
    local ns=$1 iface=$2 file=$3; shift 3
    local log="$TMP/$(basename "$file").log"
    ip netns exec "$ns" tcpdump -i "$iface" -s 0 -U --immediate-mode -B 32768 -Z root -n -w "$TMP/$(basename "$file")" "$@" 2>"$log" &
    PIDS+=($!)
    CAP_PIDS+=("$!:$file:$log")
    wait_for_line "$log" "listening on"
}

stop_captures() { # SIGTERM every running capture, check for drops, move files into place
    local entry pid file log captured received
    sleep 0.5 # let the last replies reach the socket
    for entry in "${CAP_PIDS[@]}"; do
        IFS=: read -r pid file log <<<"$entry"
        kill -TERM "$pid" 2>/dev/null || true
        reap "$pid" || true
        # -c stops tcpdump itself; otherwise every packet the filter passed must be in the file
        captured=$(sed -n 's/^\([0-9]*\) packets* captured$/\1/p' "$log")
        received=$(sed -n 's/^\([0-9]*\) packets* received by filter$/\1/p' "$log")
        grep -qx "0 packets dropped by kernel" "$log" && [[ -n $captured && $captured -ge $received ]] ||
            die "capture $file lost packets: $(cat "$log")"
        mv "$TMP/$(basename "$file")" "$file"
    done
    CAP_PIDS=()
}

start_server() { # start_server NS ARGS...: a bounded traffic.py server, waits until it listens
    local ns=$1; shift
    local log="$TMP/server-$RANDOM.log"
    timeout 60 ip netns exec "$ns" python3 "$GEN" "$@" >"$log" 2>&1 &
    PIDS+=($!)
    SERVER_PID=$!
    wait_for_line "$log" "ready"
}

run_in() { local ns=$1; shift; timeout 60 ip netns exec "$ns" "$@"; } # foreground traffic, with a deadline

# --- recordings ---------------------------------------------------------------
record_arp_gateway() {
    flush_neigh "$NS_A" "$NS_NODE"
    start_capture "$NS_A" eth0 "$OUT/arp-gateway.pcap"
    run_in "$NS_A" ping -q -c 1 -W 2 "$GW_IP" >/dev/null
    stop_captures
}

record_ping_gateway() {
    run_in "$NS_A" ping -q -c 1 -W 2 "$GW_IP" >/dev/null # resolve first: no ARP in this file
    start_capture "$NS_A" eth0 "$OUT/ping-gateway.pcap"
    run_in "$NS_A" ping -q -c 5 -i 0.2 -W 2 "$GW_IP" >/dev/null
    stop_captures
}

record_l2_pod_to_pod() {
    flush_neigh "$NS_A" "$NS_B"
    start_server "$NS_B" tcp-server --addr "$B_IP" --port 5001
    local tcp_server=$SERVER_PID
    start_server "$NS_B" dns-server --addr "$B_IP" --port 53 --queries 3
    local dns_server=$SERVER_PID
    start_capture "$NS_A" eth0 "$OUT/l2-pod-to-pod.pcap"
    run_in "$NS_A" ping -q -c 3 -i 0.2 -W 2 "$B_IP" >/dev/null
    run_in "$NS_A" python3 "$GEN" tcp-client --addr "$B_IP" --port 5001 \
        --src-addr "$A_IP" --src-port 40001 --bytes 262144 >/dev/null
    run_in "$NS_A" python3 "$GEN" dns-client --addr "$B_IP" --port 53 \
        --src-addr "$A_IP" --src-port 40053 --queries 3
    reap "$tcp_server"
    reap "$dns_server"
    stop_captures
}

record_routed() {
    flush_neigh "$NS_A" "$NS_NODE" "$NS_EXT"
    start_server "$NS_EXT" tcp-server --addr "$REMOTE_IP" --port 8080
    local server=$SERVER_PID
    start_capture "$NS_A" eth0 "$OUT/routed.pcap"
    start_capture "$NS_NODE" up0 "$OUT/routed-up0.pcap"
    run_in "$NS_A" ping -q -c 5 -i 0.2 -W 2 "$REMOTE_IP" >/dev/null
    run_in "$NS_A" python3 "$GEN" tcp-client --addr "$REMOTE_IP" --port 8080 \
        --src-addr "$A_IP" --src-port 40080 --bytes 64 >/dev/null
    reap "$server"
    stop_captures
}

record_small_udp() { # record_small_udp FILE DST_NS DST_IP
    local file=$1 dst_ns=$2 dst_ip=$3 count=20000
    run_in "$NS_A" ping -q -c 1 -W 2 "$dst_ip" >/dev/null # ARP resolved before the capture
    start_server "$dst_ns" udp-sink --addr "$dst_ip" --port 9000 --count "$count"
    local sink=$SERVER_PID
    start_capture "$NS_A" eth0 "$file" -c "$count" "udp and src host $A_IP and dst port 9000"
    run_in "$NS_A" python3 "$GEN" udp-blast --addr "$dst_ip" --port 9000 \
        --src-addr "$A_IP" --src-port 42000 --flows 64 --count "$count" >/dev/null
    reap "$sink"
    stop_captures
}

summarize() { # frames per file, by tcpdump's reading of them
    local f
    printf '%-24s %7s %9s\n' file frames bytes
    for f in arp-gateway ping-gateway l2-pod-to-pod routed routed-up0 small-udp small-udp-routed; do
        printf '%-24s %7s %9s\n' "$f.pcap" "$(tcpdump -nn -r "$OUT/$f.pcap" 2>/dev/null | wc -l)" \
            "$(stat -c %s "$OUT/$f.pcap")"
    done
}

mkdir -p "$OUT"
build_topology
record_arp_gateway
record_ping_gateway
record_l2_pod_to_pod
record_routed
record_small_udp "$OUT/small-udp.pcap" "$NS_B" "$B_IP"
record_small_udp "$OUT/small-udp-routed.pcap" "$NS_EXT" "$REMOTE_IP"
summarize
