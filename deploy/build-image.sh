#!/usr/bin/env bash
# Builds the podswitch container image from this repository, offline: the
# release binaries, the CNI plugin's installer and conflist, a static busybox
# (for install-cni.sh's /bin/sh) and nft, with the shared libraries they load,
# on FROM scratch (deploy/Containerfile). Nothing is pulled from a registry.
#
#   deploy/build-image.sh [--tag TAG] [--bin-dir DIR] [--save FILE] [--context DIR]
#
#   --tag TAG      image name (default localhost/podswitch:latest)
#   --bin-dir DIR  take podswitchd, podswitchctl and podswitch (the CNI plugin)
#                  from DIR instead of running `cargo build --release`
#   --save FILE    also write the image as a docker-archive tarball, to load
#                  into the nodes' runtime (ctr -n k8s.io images import FILE)
#   --context DIR  prepare the build context in DIR (kept) instead of a
#                  temporary directory
#
# Needs podman, ldd, busybox-static (/bin/busybox, statically linked) and
# nftables (nft). Binaries are copied without their debug information.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tag=localhost/podswitch:latest
bin_dir=
save=
context=

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}
die() { echo "build-image: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --save) save=$2; shift 2 ;;
    --context) context=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "build-image: unknown argument $1" >&2; usage 2 ;;
  esac
done

command -v podman >/dev/null || die "podman is not installed"
command -v ldd >/dev/null || die "ldd is not installed (libc-bin)"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox is not installed (apt-get install busybox-static)"
busybox=$(readlink -f "$busybox")
if ldd "$busybox" >/dev/null 2>&1; then
  die "$busybox is dynamically linked; install busybox-static"
fi
nft=$(command -v nft || true)
[ -n "$nft" ] || die "nft is not installed (apt-get install nftables)"

if [ -z "$bin_dir" ]; then
  (cd "$root" && cargo build --release -p podswitch-control -p podswitch-cni --bins)
  bin_dir=$root/target/release
fi
for b in podswitchd podswitchctl podswitch; do
  [ -x "$bin_dir/$b" ] || die "no executable $bin_dir/$b"
done

if [ -z "$context" ]; then
  context=$(mktemp -d "${TMPDIR:-/tmp}/podswitch-image.XXXXXX")
  trap 'rm -rf "$context"' EXIT
else
  rm -rf "$context/rootfs"
  mkdir -p "$context"
fi
rootfs=$context/rootfs
mkdir -p "$rootfs"/{bin,usr/local/bin,usr/sbin,opt/podswitch,etc,tmp,run,var/lib}
chmod 1777 "$rootfs/tmp"

# copy FILE DEST MODE: without debug information when it is an ELF file.
copy() {
  cp -L "$1" "$2"
  if command -v objcopy >/dev/null && objcopy --strip-debug "$2" 2>/dev/null; then :; fi
  chmod "$3" "$2"
}
# Every shared library ldd names for FILE, at the same path in the rootfs.
copy_libs() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
    [ -e "$rootfs$lib" ] && continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}

copy "$bin_dir/podswitchd" "$rootfs/usr/local/bin/podswitchd" 0755
copy "$bin_dir/podswitchctl" "$rootfs/usr/local/bin/podswitchctl" 0755
copy "$bin_dir/podswitch" "$rootfs/opt/podswitch/podswitch" 0755
cp "$root/deploy/install-cni.sh" "$rootfs/opt/podswitch/install-cni.sh"
chmod 0755 "$rootfs/opt/podswitch/install-cni.sh"
cp "$root/deploy/podswitchd-entrypoint.sh" "$rootfs/opt/podswitch/podswitchd-entrypoint.sh"
chmod 0755 "$rootfs/opt/podswitch/podswitchd-entrypoint.sh"
cp "$root/cni/10-podswitch.conflist" "$rootfs/opt/podswitch/10-podswitch.conflist"
chmod 0644 "$rootfs/opt/podswitch/10-podswitch.conflist"
cp -L "$nft" "$rootfs/usr/sbin/nft"
for f in usr/local/bin/podswitchd usr/local/bin/podswitchctl opt/podswitch/podswitch usr/sbin/nft; do
  copy_libs "$rootfs/$f"
done
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
# nft names protocols and services through these when they exist.
for f in /etc/protocols /etc/services; do
  [ -f "$f" ] && cp "$f" "$rootfs$f"
done
cp "$root/deploy/Containerfile" "$context/Containerfile"

version=$("$rootfs/usr/local/bin/podswitchd" --version | awk '{ print $2 }')
podman build --pull=never --file "$context/Containerfile" --tag "$tag" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.source=podswitch" "$context"
if [ -n "$save" ]; then
  podman save --format docker-archive --output "$save" "$tag"
  echo "build-image: saved $tag to $save" >&2
fi
echo "build-image: built $tag (podswitchd $version)" >&2
