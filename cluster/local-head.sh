#!/usr/bin/env bash
# Start (or stop) a single-node Ray head on loopback, the same way the tests do, so that
# `ray job submit` can be tried on a laptop:  cluster/local-head.sh start | stop
#
# The head keeps its files in its own temp dir (RAY_HEAD_DIR, default /tmp/distst-head-PORT),
# and `stop` ends only the processes whose command line names that dir: `ray stop` would
# stop every Ray on the machine, other users' and other sessions' included.
set -euo pipefail
cmd="${1:-start}"
port="${RAY_PORT:-6379}"
dir="${RAY_HEAD_DIR:-/tmp/distst-head-$port}"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
case "$cmd" in
  start) mkdir -p "$dir"
         ray start --head --node-ip-address=127.0.0.1 --port="$port" \
           --dashboard-host=127.0.0.1 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" \
           --num-cpus="${RAY_NUM_CPUS:-$(nproc)}" --temp-dir="$dir" --disable-usage-stats ;;
  stop) if ! pgrep -f -- "$dir" >/dev/null; then
          echo "no Ray head of this script runs with $dir (port $port)" >&2; exit 0
        fi
        pkill -TERM -f -- "$dir" || true
        for _ in $(seq 30); do pgrep -f -- "$dir" >/dev/null || break; sleep 0.5; done
        pkill -KILL -f -- "$dir" || true
        echo "stopped the Ray head in $dir" ;;
  *) echo "usage: $0 start|stop   (env: RAY_PORT, RAY_DASHBOARD_PORT, RAY_NUM_CPUS, RAY_HEAD_DIR)" >&2
     exit 2 ;;
esac
