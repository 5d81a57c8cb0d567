#!/usr/bin/env bash
# Start (or stop) a single-node Ray head on loopback, the same way the tests do, so that
# `ray job submit` can be tried on a laptop:  cluster/local-head.sh start | stop
set -euo pipefail
cmd="${1:-start}"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
case "$cmd" in
  start) ray start --head --node-ip-address=127.0.0.1 --port="${RAY_PORT:-6379}" \
           --dashboard-host=127.0.0.1 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" \
           --num-cpus="${RAY_NUM_CPUS:-$(nproc)}" --disable-usage-stats ;;
  stop) ray stop --force ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
