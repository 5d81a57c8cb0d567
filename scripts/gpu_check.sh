#!/usr/bin/env bash
# The GPU path in one run (< 5 minutes on one GPU), written as Markdown to ${OUT:-benchmarks}/gpu_check.md:
#   1. every registered model on CUDA against CPU (forward and gradient, scripts/gpu_check.py);
#   2. a 1-GPU Ray Train run in replicate and in shard mode, 2 workers sharing the GPU
#      (runtime.gpus_per_worker=0.5, NCCL between them);
#   3. step time and peak memory (torch.cuda.max_memory_allocated) per model at N = 1,026,
#      batch 64, in fp32, bf16 (train.precision: bf16) and with train.recompute: step
#      (scripts/bench_models.py --device cuda --variants ...).
# Run from the repository with the venv of scripts/install.sh and a CUDA torch:
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
out="${OUT:-benchmarks}"
mkdir -p "$out"
md="$out/gpu_check.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
exec > >(tee "$md")   # live output, and the same Markdown in the file
{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/device: /'
  "$py" -c "import torch, ray; print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), Ray {ray.__version__}')"
  echo
  echo "## 1. Models on CUDA against CPU"
  echo
  "$py" scripts/gpu_check.py || status=1
  echo
  echo "## 2. Ray Train on one GPU, 2 workers sharing it"
  echo
  echo "| mode | result | seconds |"
  echo "|---|---|---:|"
  for mode in replicate shard; do
    t0=$(date +%s)
    if "$py" -m distst train configs/quickstart.yaml --workers 2 \
        --set runtime.mode=$mode --set runtime.use_gpu=true --set runtime.gpus_per_worker=0.5 \
        --set partition.parts=2 --set data.synth.nodes=207 --set data.synth.days=7 \
        --set train.epochs=1 --set train.progress=false --set runtime.name=gpu-$mode \
        --set runtime.storage="$work/runs" --set data.cache_dir="$work/cache" \
        > "$work/$mode.log" 2>&1; then
      mae=$(grep -m1 '^| avg ' "$work/$mode.log" | awk -F'|' '{print $3}' | tr -d ' ')
      echo "| $mode | test avg MAE $mae | $(( $(date +%s) - t0 )) |"
    else
      status=1
      echo "| $mode | FAILED: $(grep -m1 '^error:' "$work/$mode.log" || tail -1 "$work/$mode.log") | $(( $(date +%s) - t0 )) |"
    fi
  done
  echo
  echo "## 3. Step time and peak memory per model, N = 1,026, batch 64: fp32, bf16, recompute"
  echo
  "$py" scripts/bench_models.py --device cuda --nodes 1026 --batch 64 --warmup 2 --steps 5 \
      --variants fp32 bf16 recompute --out "$work/models.md" > "$work/models.log" 2>&1 || status=1
  cat "$work/models.md" 2>/dev/null || tail -5 "$work/models.log"
}
exit $status
