#!/usr/bin/env bash
# Drives a CNI plugin through a real runtime: podman 4.x with network_backend
# "cni", entirely inside a private network namespace this script creates.
#
#   two containers from a static busybox rootfs on a one-plugin CNI network;
#   both get addresses (podman inspect, and eth0 inside agrees);
#   ping A->B and B->A (and the gateway, when the result names one);
#   HTTP (busybox httpd in A, wget in B);
#   `podman network reload B` (DEL + ADD with CNI_ARGS IP=/MAC=) keeps B's address
#   and traffic works again;
#   `podman rm -f` of each releases its address (the IPAM store no longer
#   names the container or its IP; libcni's cached result is gone).
#
# Exit 0 = pass, 1 = fail (podman, plugin and daemon logs printed),
# 77 = skipped (not root, or podman cannot be installed).
#
# Environment:
#   PLUGIN            the plugin binary (default: /usr/lib/cni/$PLUGIN_TYPE, i.e. a
#                     reference plugin from containernetworking-plugins)
#   PLUGIN_TYPE       its CNI type, the name podman runs it by (default: podswitch)
#   CNI_VERSION       the conflist's cniVersion: 0.4.0 or 1.0.0 (default 1.0.0;
#                     podman 4.3's libcni rejects 1.1.0 results)
#   PLUGIN_CONF_JSON  JSON object merged into the plugin's entry of the conflist
#                     (everything but type/name/cniVersion). Placeholders:
#                     @WORKDIR@ @SUBNET@ @GATEWAY@ @IPAM_DIR@ @NET_NAME@
#                     (default: {"ipam":{"ranges":[[{"subnet":"@SUBNET@"}]],"dataDir":"@IPAM_DIR@"}})
#   SUBNET, GATEWAY   pod subnet and gateway (default 10.244.7.0/24, 10.244.7.1)
#   BEFORE_NETWORK    shell command run before podman first loads the network,
#                     inside the private netns (e.g. start a daemon the plugin needs;
#                     background it and write its PID under $WORKDIR)
#   AFTER_ADD         shell command run (in the netns) once both containers are up
#                     and traffic works; must succeed (sees IP_A IP_B CID_A CID_B)
#   AFTER_RM          shell command run (in the netns) after both containers are
#                     removed; must succeed (e.g. the daemon has no ports left)
#   AFTER_TEST        shell command always run at exit, after containers are
#                     removed, before the netns goes (e.g. stop the daemon)
#   Hooks see: WORKDIR NETNS NETNS_PATH NET_NAME SUBNET GATEWAY IPAM_DIR LOG_DIR
#   IPAM_DIR          where the plugin's IPAM keeps its store (default $WORKDIR/ipam)
#   INSTALL           0 = never apt-get (skip with 77 if podman is missing)
#   KEEP              1 = keep $WORKDIR (the conflist, logs, storage is still removed)
#   PODMAN_LOG_LEVEL  podman --log-level (default warn)
set -uo pipefail

PLUGIN_TYPE=${PLUGIN_TYPE:-podswitch}
CNI_VERSION=${CNI_VERSION:-1.0.0}
SUBNET=${SUBNET:-10.244.7.0/24}
GATEWAY=${GATEWAY:-10.244.7.1}
PODMAN_LOG_LEVEL=${PODMAN_LOG_LEVEL:-warn}
PLUGIN_CONF_JSON=${PLUGIN_CONF_JSON:-'{"ipam":{"ranges":[[{"subnet":"@SUBNET@"}]],"dataDir":"@IPAM_DIR@"}}'}
T0=$(date +%s%N)

say() {
  local ms=$((($(date +%s%N) - T0) / 1000000))
  printf '[podman-cni %3d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2
}
skip() { echo "SKIP: $*" >&2; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root"
case "$CNI_VERSION" in 0.4.0 | 1.0.0) ;; *) echo "CNI_VERSION must be 0.4.0 or 1.0.0 (podman 4.3)" >&2; exit 2 ;; esac

# ---- packages ---------------------------------------------------------------
need_pkgs=()
command -v podman >/dev/null || need_pkgs+=(podman)
command -v runc >/dev/null || need_pkgs+=(runc)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
command -v ip >/dev/null || need_pkgs+=(iproute2)
static_busybox() { [ -x /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1; }
static_busybox || need_pkgs+=(busybox-static)
if [ -z "${PLUGIN:-}" ] && [ ! -x "/usr/lib/cni/$PLUGIN_TYPE" ]; then need_pkgs+=(containernetworking-plugins); fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "${INSTALL:-1}" != 0 ] && command -v apt-get >/dev/null || skip "missing ${need_pkgs[*]} and INSTALL=0 or no apt-get"
  say "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 600 apt-get install -y -qq "${need_pkgs[@]}" >/dev/null 2>&1; then
    timeout 300 apt-get update -qq >/dev/null 2>&1
    timeout 600 apt-get install -y -qq "${need_pkgs[@]}" >/dev/null 2>&1 || skip "apt-get install ${need_pkgs[*]} failed"
  fi
fi
command -v podman >/dev/null && command -v runc >/dev/null || skip "podman/runc unavailable"
static_busybox || skip "/bin/busybox is not static (install busybox-static)"
PLUGIN=${PLUGIN:-/usr/lib/cni/$PLUGIN_TYPE}
[ -x "$PLUGIN" ] || { echo "FAIL: plugin binary $PLUGIN missing or not executable" >&2; exit 1; }

# ---- private environment ----------------------------------------------------
ID="$$-$RANDOM"
export WORKDIR; WORKDIR=$(mktemp -d /var/tmp/podswitch-podman.XXXXXX)
export NETNS="psw-podman-$ID" NET_NAME="pswnet-$ID"
export NETNS_PATH="/run/netns/$NETNS" SUBNET GATEWAY
export IPAM_DIR=${IPAM_DIR:-$WORKDIR/ipam} LOG_DIR=$WORKDIR/logs
mkdir -p "$WORKDIR"/{bin,net.d,storage,runroot,tmp,rootfs/bin,rootfs/www} "$IPAM_DIR" "$LOG_DIR"
PODMAN_LOG=$LOG_DIR/podman.log
CTR_A="psw-a-$ID" CTR_B="psw-b-$ID"
IMAGE="localhost/podswitch-busybox-$ID:latest"
failed=1
CIDS=()

NS() { nsenter --net="$NETNS_PATH" "$@"; }
# podman in the private netns, bounded; stderr to the log (and to ours on failure).
P() {
  local out rc
  out=$(NS timeout "${PT:-90}" podman --log-level="$PODMAN_LOG_LEVEL" "$@" 2>>"$PODMAN_LOG")
  rc=$?
  printf '%s' "$out"
  { echo "+ podman $* -> $rc"; } >>"$PODMAN_LOG"
  return $rc
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
run_hook() { # name command
  [ -n "$2" ] || return 0
  say "hook $1"
  NS bash -c "$2" >>"$LOG_DIR/hooks.log" 2>&1
}

cleanup() {
  local rc=$?
  set +e
  # Finish the cleanup even if our reader went away or we are interrupted again.
  trap '' PIPE INT TERM HUP
  [ $rc = 0 ] && [ $failed = 0 ] || failed=1
  if [ -e "$NETNS_PATH" ]; then
    for c in "$CTR_A" "$CTR_B"; do PT=60 P rm -f -t 0 "$c" >/dev/null 2>&1; done
  fi
  run_hook AFTER_TEST "${AFTER_TEST:-}" || echo "AFTER_TEST failed" >&2
  if [ $failed = 1 ]; then
    echo "===== logs ($WORKDIR) =====" >&2
    for f in "$LOG_DIR"/*; do
      [ -f "$f" ] || continue
      echo "----- $(basename "$f") (last 200 lines)" >&2
      tail -n 200 "$f" >&2
    done
    if [ -f "$WORKDIR/net.d/$NET_NAME.conflist" ]; then
      echo "----- conflist" >&2; cat "$WORKDIR/net.d/$NET_NAME.conflist" >&2
    fi
    echo "----- IPAM store $IPAM_DIR" >&2; find "$IPAM_DIR" -type f -exec sh -c 'echo "$1: $(head -c 300 "$1" | tr "\n" " ")"' _ {} \; >&2
  fi
  if [ -e "$NETNS_PATH" ]; then
    PT=60 P rmi -a -f >/dev/null 2>&1
  fi
  # The overlay driver mounts inside the storage root: unmount before removing.
  awk -v p="$WORKDIR/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  # libcni's result cache is global (/var/lib/cni/results); drop entries of our network.
  rm -f /var/lib/cni/results/"$NET_NAME"-* 2>/dev/null
  ip netns del "$NETNS" 2>/dev/null
  # cgroupfs: podman leaves libpod_parent/conmon behind; rmdir fails (harmlessly) while any podman uses them.
  for d in /sys/fs/cgroup/*/libpod_parent; do rmdir "$d/conmon" "$d" 2>/dev/null; done
  if [ "${KEEP:-0}" = 1 ]; then
    rm -rf "$WORKDIR/storage" "$WORKDIR/runroot" "$WORKDIR/rootfs" "$WORKDIR/rootfs.tar"
    echo "kept $WORKDIR" >&2
  else
    rm -rf "$WORKDIR"
  fi
  if [ $failed = 0 ]; then say "PASS ($PLUGIN_TYPE, cniVersion $CNI_VERSION)"; else say "FAIL ($PLUGIN_TYPE, cniVersion $CNI_VERSION)"; fi
  [ $failed = 0 ] && exit 0
  [ $rc = 0 ] && exit 1
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

hard_nofile=$(ulimit -Hn)
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
cat >"$WORKDIR/containers.conf" <<EOF
[containers]
# Rootful podman asks for nofile=1048576; a sandbox without CAP_SYS_RESOURCE
# cannot raise its hard limit, and podman lowers its own nproc to 32768.
default_ulimits = ["nofile=$hard_nofile:$hard_nofile", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
# crun 1.8 refuses cgroup v1 hybrid hosts; runc is fine.
runtime = "runc"
tmp_dir = "$WORKDIR/tmp"
# File locks under tmp_dir instead of the machine-wide /dev/shm/libpod_lock,
# which a fresh podman root would reset under any other podman on the host.
lock_type = "file"
image_default_transport = "containers-storage:"

[network]
network_backend = "cni"
cni_plugin_dirs = ["$WORKDIR/bin", "/usr/lib/cni"]
network_config_dir = "$WORKDIR/net.d"
default_network = "$NET_NAME"
EOF
cat >"$WORKDIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORKDIR/storage"
runroot = "$WORKDIR/runroot"
EOF
export CONTAINERS_CONF=$WORKDIR/containers.conf CONTAINERS_STORAGE_CONF=$WORKDIR/storage.conf
ln -s "$(readlink -f "$PLUGIN")" "$WORKDIR/bin/$PLUGIN_TYPE"

subst() { sed -e "s|@WORKDIR@|$WORKDIR|g" -e "s|@SUBNET@|$SUBNET|g" -e "s|@GATEWAY@|$GATEWAY|g" -e "s|@IPAM_DIR@|$IPAM_DIR|g" -e "s|@NET_NAME@|$NET_NAME|g"; }
extra=$(printf '%s' "$PLUGIN_CONF_JSON" | subst)
jq -n --arg v "$CNI_VERSION" --arg n "$NET_NAME" --arg t "$PLUGIN_TYPE" --argjson extra "$extra" \
  '{cniVersion: $v, name: $n, plugins: [({type: $t} + ($extra | del(.type, .name, .cniVersion)))]}' \
  >"$WORKDIR/net.d/$NET_NAME.conflist" || fail "PLUGIN_CONF_JSON is not a JSON object: $extra"

ip netns add "$NETNS" || fail "ip netns add $NETNS"
ip -n "$NETNS" link set lo up
say "workdir $WORKDIR, netns $NETNS, network $NET_NAME ($PLUGIN_TYPE, cniVersion $CNI_VERSION)"

# ---- image: static busybox rootfs -> podman import ------------------------------
cp /bin/busybox "$WORKDIR/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$WORKDIR/rootfs/bin/$a"; done
mkdir -p "$WORKDIR/rootfs"/{etc,tmp,proc,sys,dev,sbin,usr/bin}
echo "hello-from-$NET_NAME" >"$WORKDIR/rootfs/www/index.html"
echo "root:x:0:0:root:/:/bin/sh" >"$WORKDIR/rootfs/etc/passwd"
echo "root:x:0:" >"$WORKDIR/rootfs/etc/group"
tar -C "$WORKDIR/rootfs" -cf "$WORKDIR/rootfs.tar" . || fail "tar rootfs"
P import --change 'CMD=["/bin/sh"]' "$WORKDIR/rootfs.tar" "$IMAGE" >/dev/null || fail "podman import"
say "image imported"

run_hook BEFORE_NETWORK "${BEFORE_NETWORK:-}" || fail "BEFORE_NETWORK hook failed"

# podman loads the network only if every plugin's VERSION lists the conflist's version.
P network inspect "$NET_NAME" >"$LOG_DIR/network-inspect.json" || fail "podman does not load network $NET_NAME (VERSION must list $CNI_VERSION)"
say "network loaded"

# ---- two containers ---------------------------------------------------------------
RUN=(run -d --pull=never --network "$NET_NAME")
P "${RUN[@]}" --name "$CTR_A" "$IMAGE" httpd -f -p 8080 -h /www >/dev/null || fail "podman run $CTR_A (ADD)"
P "${RUN[@]}" --name "$CTR_B" "$IMAGE" sleep 600 >/dev/null || fail "podman run $CTR_B (ADD)"
say "containers running"

net_field() { # container field
  P inspect -f "{{(index .NetworkSettings.Networks \"$NET_NAME\").$2}}" "$1"
}
ip2int() { local IFS=.; read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
in_subnet() { # ip
  local net=${SUBNET%/*} len=${SUBNET#*/}
  local mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
  [ $(($(ip2int "$1") & mask)) = $(($(ip2int "$net") & mask)) ]
}
check_addr() { # container -> echoes IP
  local c=$1 ipa mac len gw inside
  ipa=$(net_field "$c" IPAddress) || fail "podman inspect $c"
  mac=$(net_field "$c" MacAddress)
  len=$(net_field "$c" IPPrefixLen)
  gw=$(net_field "$c" Gateway)
  echo "$c: ip=$ipa/$len mac=$mac gateway=$gw" >>"$LOG_DIR/addresses.log"
  [[ $ipa =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "$c has no IPv4 address in podman inspect ('$ipa'): the result needs an interface with sandbox=CNI_NETNS and a MAC, and ips[].interface pointing at it"
  in_subnet "$ipa" || fail "$c address $ipa is outside $SUBNET"
  [[ $mac =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || fail "$c has no MAC in podman inspect ('$mac')"
  inside=$(P exec "$c" ip -4 -o addr show dev eth0) || fail "$c: ip addr show eth0"
  [[ $inside == *" $ipa/"* ]] || fail "$c: eth0 inside does not carry $ipa: $inside"
  inside=$(P exec "$c" cat /sys/class/net/eth0/address)
  [ "$inside" = "$mac" ] || fail "$c: eth0 MAC $inside differs from the result's $mac"
  echo "$ipa"
}
IP_A=$(check_addr "$CTR_A") || exit 1
IP_B=$(check_addr "$CTR_B") || exit 1
[ "$IP_A" != "$IP_B" ] || fail "both containers got $IP_A"
GW_RESULT=$(net_field "$CTR_A" Gateway)
CID_A=$(P inspect -f '{{.Id}}' "$CTR_A") CID_B=$(P inspect -f '{{.Id}}' "$CTR_B")
say "addresses: $CTR_A=$IP_A $CTR_B=$IP_B gateway=${GW_RESULT:-none}"

# The IPAM store names each live attachment (a file named after the IP, or a
# file mentioning the container ID or the IP).
ipam_mentions() { # ip cid
  [ -n "$(find "$IPAM_DIR" -name "$1" -print -quit)" ] && return 0
  grep -rqsF -- "$2" "$IPAM_DIR" && return 0
  return 1
}
ipam_mentions "$IP_A" "$CID_A" || fail "IPAM store $IPAM_DIR does not record $CTR_A ($IP_A)"
ipam_mentions "$IP_B" "$CID_B" || fail "IPAM store $IPAM_DIR does not record $CTR_B ($IP_B)"

traffic() { # phase
  P exec "$CTR_A" timeout 15 ping -c 3 -i 0.2 -W 2 "$IP_B" >>"$LOG_DIR/traffic.log" || fail "$1: ping $CTR_A -> $CTR_B ($IP_B)"
  P exec "$CTR_B" timeout 15 ping -c 3 -i 0.2 -W 2 "$IP_A" >>"$LOG_DIR/traffic.log" || fail "$1: ping $CTR_B -> $CTR_A ($IP_A)"
  if [ -n "$GW_RESULT" ] && [ "$GW_RESULT" != "<no value>" ]; then
    P exec "$CTR_B" timeout 15 ping -c 2 -i 0.2 -W 2 "$GW_RESULT" >>"$LOG_DIR/traffic.log" || fail "$1: ping $CTR_B -> gateway $GW_RESULT"
  fi
  # busybox 1.35 static wget -T segfaults: bound it with timeout instead.
  local body
  body=$(P exec "$CTR_B" timeout 15 wget -q -O - "http://$IP_A:8080/index.html") || fail "$1: HTTP $CTR_B -> $CTR_A"
  [ "$body" = "hello-from-$NET_NAME" ] || fail "$1: HTTP body '$body'"
  say "$1: ping both ways, HTTP ok"
}
traffic "after ADD"
export IP_A IP_B CID_A CID_B
run_hook AFTER_ADD "${AFTER_ADD:-}" || fail "AFTER_ADD hook failed"

# ---- network reload: DEL + ADD with CNI_ARGS IP=<old>;MAC=<old> ----------------------
P network reload "$CTR_B" >>"$LOG_DIR/podman.log" || fail "podman network reload $CTR_B"
IP_B2=$(check_addr "$CTR_B") || exit 1
[ "$IP_B2" = "$IP_B" ] || fail "network reload changed $CTR_B's address: $IP_B -> $IP_B2"
say "network reload kept $IP_B"
traffic "after reload"

# ---- removal releases the addresses ----------------------------------------------------
for c in "$CTR_A" "$CTR_B"; do # one name per rm: podman 4.3 skips the rest if one is missing
  P rm -f -t 0 "$c" >/dev/null || fail "podman rm -f $c (DEL)"
done
released=0
for _ in $(seq 1 50); do
  if ! ipam_mentions "$IP_A" "$CID_A" && ! ipam_mentions "$IP_B" "$CID_B"; then released=1; break; fi
  sleep 0.2
done
[ $released = 1 ] || fail "IPAM store $IPAM_DIR still holds $IP_A/$IP_B after podman rm"
for cid in "$CID_A" "$CID_B"; do
  [ ! -e "/var/lib/cni/results/$NET_NAME-$cid-eth0" ] || fail "libcni cache still holds $cid (DEL not completed)"
done
say "rm released both addresses"
run_hook AFTER_RM "${AFTER_RM:-}" || fail "AFTER_RM hook failed"

failed=0
