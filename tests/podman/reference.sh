#!/usr/bin/env bash
# Validates the harness with the reference plugins (containernetworking-plugins):
# bridge + host-local IPAM, for every CNI version podman 4.3 speaks.
#   tests/podman/reference.sh [0.4.0|1.0.0 ...]
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
export PLUGIN_TYPE=bridge PLUGIN=${PLUGIN:-/usr/lib/cni/bridge}
# A bridge local to the private netns; no ipMasq (no iptables rules needed).
export PLUGIN_CONF_JSON='{"bridge":"pswbr0","isGateway":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"@SUBNET@","gateway":"@GATEWAY@"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"@IPAM_DIR@"}}'
if [ ! -x "$PLUGIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq containernetworking-plugins >/dev/null
fi
[ $# -gt 0 ] || set -- 0.4.0 1.0.0
for v in "$@"; do
  start=$(date +%s%N)
  CNI_VERSION=$v "$here/run.sh"
  echo "reference bridge/host-local cniVersion $v: PASS in $((($(date +%s%N) - start) / 1000000)) ms" >&2
done
