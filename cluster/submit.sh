#!/usr/bin/env bash
# Submit a distst command as a Ray job:
#
#   cluster/submit.sh [--install] [ADDRESS] -- python -m distst train CONFIG ...
#
# ADDRESS defaults to $RAY_ADDRESS or the local head's dashboard (http://127.0.0.1:8265).
# The repository is uploaded as the job's working directory (Ray puts it on every worker's
# sys.path, so the job runs this checkout's distst even where the image has another one).
# --install also has Ray pip-install distst's dependencies on every node (runtime environment
# of cluster/runtime_env.py), for a cluster whose image has Ray but not distst's packages.
# Ray 2.60 heads use token auth by default; the CLI reads the token when RAY_AUTH_MODE=token.
set -euo pipefail
install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
addr="${RAY_ADDRESS:-http://127.0.0.1:8265}"
if [ "${1:-}" != "--" ] && [ -n "${1:-}" ]; then addr="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
cd "$(dirname "$0")/.."
# the checkout's environment (scripts/install.sh), whose Ray is the pinned one; PATH otherwise
venv="${DISTST_VENV:-.venv}"
ray=ray; python=python
if [ -x "$venv/bin/ray" ]; then ray="$venv/bin/ray"; python="$venv/bin/python"; fi
if [ "$install" = 1 ]; then
  exec "$ray" job submit --address "$addr" --runtime-env-json "$("$python" cluster/runtime_env.py)" -- "$@"
fi
exec "$ray" job submit --address "$addr" --working-dir . -- "$@"
