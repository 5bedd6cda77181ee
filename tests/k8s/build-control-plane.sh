#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the tests from the Go module proxy:
# kube-apiserver, kube-controller-manager, kube-proxy and kubectl of one release, and etcd.
# The binaries go into a cache outside the source tree and each is built only when missing
# (a cache made before kubectl was added gets just kubectl):
#   $PODSWITCH_K8S_CACHE (default /var/cache/podswitch-k8s)/<release>/{kube-apiserver,...}
# Prints the cache directory on its last line. Needs Go (1.26 here; /usr/local/go/bin is
# tried when go is not on PATH) and the module proxy. A cold build took ~15 min on 2 cores.
# Concurrent runs wait for each other (flock on the cache root).
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules
# with ./staging/...), so a small wrapper module requires it and pins every staging
# module to the matching v0.x release. etcd is built from its own wrapper module, so
# its dependencies never meet kubernetes'.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.17}
CACHE_ROOT=${PODSWITCH_K8S_CACHE:-/var/cache/podswitch-k8s}
COMPONENTS=(kube-apiserver kube-controller-manager kube-proxy kubectl)

all_built() {
  for c in "${COMPONENTS[@]}" etcd; do
    [ -x "$OUT/$c" ] || return 1
  done
}

OUT="$CACHE_ROOT/$K8S_VERSION"
if all_built; then
  echo "$OUT"
  exit 0
fi
# Without a cache path of its own, a user who cannot write /var/cache builds into ~/.cache.
if [ -z "${PODSWITCH_K8S_CACHE:-}" ] && ! mkdir -p "$CACHE_ROOT" 2>/dev/null; then
  CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/podswitch-k8s"
  OUT="$CACHE_ROOT/$K8S_VERSION"
  if all_built; then
    echo "$OUT"
    exit 0
  fi
fi
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || { echo "build-control-plane: go is not installed" >&2; exit 1; }
mkdir -p "$OUT"
exec 9>"$CACHE_ROOT/.build-lock"
flock 9
if all_built; then # another run built them while this one waited
  echo "$OUT"
  exit 0
fi
started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/podswitch-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
patch=${K8S_VERSION##*.}
staging_version="v0.$minor.$patch"

need_kube=0
for c in "${COMPONENTS[@]}"; do [ -x "$OUT/$c" ] || need_kube=1; done
if [ $need_kube = 1 ]; then
  echo "build-control-plane: building Kubernetes $K8S_VERSION into $OUT" >&2
  mkdir -p "$work/kbin"
  cd "$work/kbin"
  go mod init local/kbin >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
  [ -f "$gomod" ] || { echo "build-control-plane: no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
  go_line=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod" | head -n 1)
  go mod edit -go="$go_line"
  # Every `k8s.io/<name> v0.0.0` requirement of kubernetes is a staging module.
  for m in $(sed -n 's/^\s*\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "$gomod" | sort -u); do
    go mod edit -replace="$m=$m@$staging_version"
  done
  {
    echo '//go:build tools'
    echo
    echo 'package kbin'
    echo
    echo 'import ('
    for c in "${COMPONENTS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ')'
  } >tools.go
  go mod tidy >/dev/null 2>&1 || go mod tidy
  # Both version packages, as Kubernetes' hack/lib/version.sh sets them (kubectl's
  # `version --client` reads client-go's).
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for c in "${COMPONENTS[@]}"; do
    [ -x "$OUT/$c" ] && continue
    echo "build-control-plane: go build $c ($((SECONDS - started)) s)" >&2
    go build -trimpath -ldflags "$ldflags" -o "$OUT/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$OUT/$c.tmp" "$OUT/$c"
  done
fi

if [ ! -x "$OUT/etcd" ]; then
  echo "build-control-plane: building etcd $ETCD_VERSION into $OUT ($((SECONDS - started)) s)" >&2
  mkdir -p "$work/etcd"
  cd "$work/etcd"
  go mod init local/etcdbin >/dev/null 2>&1
  cat >main.go <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy >/dev/null 2>&1 || go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" .
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi
echo "build-control-plane: done in $((SECONDS - started)) s" >&2
echo "$OUT"
