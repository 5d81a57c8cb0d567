#!/usr/bin/env bash
# Start (or stop) a single-node Ray head on loopback, the same way the tests do, so that
# `ray job submit` can be tried on a laptop:  cluster/local-head.sh start | stop
#
# The head keeps its files in its own temp dir (RAY_HEAD_DIR, default /tmp/distst-head-PORT),
# and `stop` ends only the processes whose command line names that dir, with their
# descendants: `ray stop` would stop every Ray of this user on the machine, other sessions'
# included. cluster/slurm.sbatch stops each node's Ray of its job the same way.
set -euo pipefail
cmd="${1:-start}"
port="${RAY_PORT:-6379}"
dir="${RAY_HEAD_DIR:-/tmp/distst-head-$port}"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
case "$cmd" in
  start) mkdir -p "$dir"
         # the job agent on a free port: Ray's default (52365) is every Ray's on the machine,
         # and with it taken the head has no job agent ("No available agent to submit job")
         agent_port="${RAY_AGENT_PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
         ray start --head --node-ip-address=127.0.0.1 --port="$port" \
           --dashboard-host=127.0.0.1 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" \
           --dashboard-agent-listen-port="$agent_port" \
           --num-cpus="${RAY_NUM_CPUS:-$(nproc)}" --temp-dir="$dir" --disable-usage-stats ;;
  stop) # the head's processes name the dir, its Ray client server only the GCS address; the
        # agents its raylet starts rename themselves (ray::DashboardAgent): its descendants
        tree() { local p; for p in "$@"; do echo "$p"; tree $(pgrep -P "$p" || true); done; }
        pids=$(tree $(pgrep -f -- "$dir" || true) \
                    $(pgrep -f -- "--address=[^ ]+:${port}( |\$)" || true))
        if [ -z "$pids" ]; then
          echo "no Ray head of this script runs with $dir (port $port)" >&2; exit 0
        fi
        alive() { local p; for p in $pids; do if kill -0 "$p" 2>/dev/null; then echo "$p"; fi; done; }
        # GCS, raylet and monitor outlive SIGTERM for seconds: 5 s of grace, then SIGKILL,
        # and return only when every one of them is gone
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 10); do [ -z "$(alive)" ] && break; sleep 0.5; done
        left=$(alive); [ -n "$left" ] && kill -KILL $left 2>/dev/null || true
        for _ in $(seq 20); do [ -z "$(alive)" ] && break; sleep 0.25; done
        echo "stopped the Ray head in $dir" ;;
  *) echo "usage: $0 start|stop   (env: RAY_PORT, RAY_DASHBOARD_PORT, RAY_NUM_CPUS, RAY_HEAD_DIR)" >&2
     exit 2 ;;
esac
