#!/usr/bin/env bash
# Install distst and everything it needs into ./.venv (idempotent; safe to re-run).
#
# torch goes in first and is then pinned by a constraints file: a bare "torch" requirement
# resolved by pip would pull the newest CUDA build (several GB). Set TORCH_SPEC to choose
# another build, e.g. TORCH_SPEC="torch==2.13.0" (default) or a CUDA wheel on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  $PIP install -q "$TORCH_SPEC"
fi
.venv/bin/python -c "import torch; print('torch==' + torch.__version__)" > .venv/constraints.txt
$PIP install -q -c .venv/constraints.txt -e ".[test]"
.venv/bin/python -c "import distst, torch, ray, torch_geometric, pymetis; print('distst', distst.__version__, '| torch', torch.__version__, '| ray', ray.__version__)"
