#!/usr/bin/env bash
# Instructions per frame for each benchmark scenario, counted by callgrind.
# Each scenario runs at N and 2N iterations; the difference divided by the
# frames of N iterations cancels setup (pcap loading, priming) out.
# Usage: benches/instructions.sh [N]   (default N=20)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
cargo build --release -q -p podswitch-benches --bin instr
bin=target/release/instr
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install -y valgrind)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # scenario iterations -> total instructions (Ir)
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$1" "$2" >"$tmp/stdout" 2>"$tmp/stderr"
  grep -E '^(summary|totals):' "$tmp/out" | head -1 | awk '{print $2}'
}
printf '%-12s %14s %12s\n' scenario frames instr/frame
for s in parse_64b parse_mixed l2_64b l2_mixed l3_64b l3_mixed vxlan_encap_64b vxlan_decap_64b; do
  a=$(count "$s" "$n")
  frames=$(sed -n 's/.*frames_per_iteration=\([0-9]*\).*/\1/p' "$tmp/stdout")
  b=$(count "$s" $((2 * n)))
  awk -v s="$s" -v a="$a" -v b="$b" -v f="$frames" -v n="$n" \
    'BEGIN { printf "%-12s %14d %12.1f\n", s, f * n, (b - a) / (f * n) }'
done
