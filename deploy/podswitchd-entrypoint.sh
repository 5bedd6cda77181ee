#!/bin/sh
# The DaemonSet's podswitchd container: runs PROGRAM with ARGS, and makes a
# rolling update a takeover (issue 24).
#
#   podswitchd-entrypoint.sh PROGRAM run [ARGS...]
#
# - If <run dir>/takeover.sock exists (the run dir is the hostPath both the
#   old and the new pod of a surge update mount; --run-dir, default
#   /run/podswitch), a podswitchd may be running on this node: PROGRAM runs
#   with --takeover and takes the node over from it without a forwarding
#   gap. A socket a killed daemon left behind is harmless: with no daemon
#   answering, `run --takeover` starts as usual.
# - SIGTERM and SIGINT are passed on to PROGRAM (this script is the
#   container's first process).
# - When PROGRAM exits 0 without being told to stop while the socket is
#   there, a newer pod took the node over: this container then stays,
#   idle, until it is stopped (the DaemonSet deletes the old pod once the
#   new one is ready). Exiting would make the kubelet restart it, and the
#   restarted container would take the node back.
set -u
[ $# -ge 2 ] || { echo "usage: $0 PROGRAM run [ARGS...]" >&2; exit 2; }
program=$1
shift
run_dir=/run/podswitch
prev=
for a in "$@"; do
  case "$prev" in --run-dir) run_dir=$a ;; esac
  case "$a" in --run-dir=*) run_dir=${a#--run-dir=} ;; esac
  prev=$a
done
say() { echo "podswitchd-entrypoint: $*" >&2; }
if [ "$1" = run ] && [ -S "$run_dir/takeover.sock" ]; then
  say "$run_dir/takeover.sock exists: starting with --takeover"
  set -- "$@" --takeover
fi
told=
pid=
trap 'told=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT
"$program" "$@" &
pid=$!
status=0
# `wait` returns early when a trapped signal arrives: wait until it is gone.
while :; do
  wait "$pid"
  status=$?
  kill -0 "$pid" 2>/dev/null || break
done
pid=
if [ -z "$told" ] && [ "$status" = 0 ] && [ -S "$run_dir/takeover.sock" ]; then
  say "handed the node over to a newer podswitchd; idle until stopped"
  while [ -z "$told" ]; do
    sleep 1 &
    wait $! 2>/dev/null
  done
  exit 0
fi
exit "$status"
