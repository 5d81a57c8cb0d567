#!/usr/bin/env bash
# Submit a distst command as a Ray job:  cluster/submit.sh [ADDRESS] -- distst train CONFIG ...
# ADDRESS defaults to $RAY_ADDRESS or the local head's dashboard (http://127.0.0.1:8265).
# Ray 2.60 heads use token auth by default; the CLI reads the token when RAY_AUTH_MODE=token.
set -euo pipefail
addr="${RAY_ADDRESS:-http://127.0.0.1:8265}"
if [ "${1:-}" != "--" ] && [ -n "${1:-}" ]; then addr="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
cd "$(dirname "$0")/.."
exec ray job submit --address "$addr" --working-dir . -- "$@"
