#!/usr/bin/env bash
# Submit a distst command as a Ray job:
#
#   cluster/submit.sh [--install] [ADDRESS] -- python -m distst train CONFIG ...
#
# ADDRESS defaults to $RAY_ADDRESS or the local head's dashboard (http://127.0.0.1:8265).
# The job's runtime environment comes from cluster/runtime_env.py: the repository is uploaded
# as the job's working directory (Ray puts it on every worker's sys.path, so the job runs this
# checkout's distst even where the image has another one), and the submitter's MLFLOW_*
# settings go with it, credentials withheld (said on stderr: the cluster holds those).
# --install also has Ray pip-install distst's dependencies on every node, for a cluster whose
# image has Ray but not distst's packages.
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
flags=()
if [ "$install" = 1 ]; then flags=(--install); fi
env_json="$("$python" cluster/runtime_env.py ${flags[@]+"${flags[@]}"})"
exec "$ray" job submit --address "$addr" --runtime-env-json "$env_json" -- "$@"
