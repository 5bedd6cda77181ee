#!/bin/sh
# Installs the podswitch CNI plugin and its network configuration.
# Idempotent: files are replaced atomically (copy to a temporary name in
# the destination directory, then rename), so a runtime never executes or
# reads a half-written file.
#
#   deploy/install-cni.sh [--bin-dest DIR] [--conf-dest DIR] [--bin FILE] [--conflist FILE]
#
# Defaults: target/release/podswitch -> /opt/cni/bin/podswitch and
# cni/10-podswitch.conflist -> /etc/cni/net.d/10-podswitch.conflist
# (paths relative to the repository root, or absolute). In the DaemonSet's
# init container the image carries both files and the host directories are
# mounted as the destinations.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release/podswitch"
conflist="$root/cni/10-podswitch.conflist"
bin_dest=/opt/cni/bin
conf_dest=/etc/cni/net.d

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dest) bin_dest=$2; shift 2 ;;
        --conf-dest) conf_dest=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --conflist) conflist=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "install-cni: unknown argument $1" >&2; usage 2 ;;
    esac
done

[ -f "$bin" ] || { echo "install-cni: no plugin binary at $bin (cargo build --release -p podswitch-cni)" >&2; exit 1; }
[ -f "$conflist" ] || { echo "install-cni: no conflist at $conflist" >&2; exit 1; }

install_file() { # src dest_dir name mode
    mkdir -p "$2"
    tmp="$2/.$3.tmp.$$"
    cp "$1" "$tmp"
    chmod "$4" "$tmp"
    mv -f "$tmp" "$2/$3"
    echo "installed $2/$3"
}

install_file "$bin" "$bin_dest" podswitch 0755
install_file "$conflist" "$conf_dest" "$(basename "$conflist")" 0644
