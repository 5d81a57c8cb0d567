#!/usr/bin/env bash
# The GPU path in one run of at most 10 minutes on one GPU, a Markdown table per step written
# to ${OUT:-benchmarks}/gpu_check.md:
#   1. every registered model, one training step on CUDA against CPU in fp32, bf16 and with
#      train.recompute: step: loss and every gradient within a stated tolerance
#      (scripts/gpu_check.py);
#   2. Ray Train on the GPU: one worker with the whole GPU (NCCL beside gloo for CPU tensors),
#      then 2 workers sharing it (runtime.gpus_per_worker=0.5, which NCCL refuses: the layout
#      runs them on gloo) in shard and in exchange mode;
#   3. step time and peak memory (torch.cuda.max_memory_allocated) per model at N = 1,026,
#      batch 64, in fp32, bf16 and recompute (scripts/bench_models.py --device cuda).
# Run from the repository with the venv of scripts/install.sh and a CUDA torch:
#   bash scripts/gpu_check.sh
# GPU_CHECK_DEVICE=cpu rehearses it on CPU (models against themselves, the Ray runs without
# GPUs on a tiny graph, no step 3): what tests/test_gpu_check.py runs, so that a broken
# script never costs a GPU session.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
out="${OUT:-benchmarks}"
device="${GPU_CHECK_DEVICE:-cuda}"
mkdir -p "$out"
md="$out/gpu_check.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
if [ "$device" = cuda ]; then
  gpu=(--set runtime.use_gpu=true)
  size=(--set data.synth.nodes=207 --set data.synth.days=7 --set train.epochs=1)
else
  gpu=(--set runtime.use_gpu=false)
  size=(--set data.synth.nodes=30 --set data.synth.days=3 --set train.epochs=1
        --set train.max_batches_per_epoch=2 --set train.max_val_batches=1
        --set train.max_test_batches=1 --set train.batch_size=8 --set model.params.hidden_size=8)
fi

# one Ray Train run: mode, workers, GPUs per worker; a table row
train() {
  local mode=$1 workers=$2 per=$3 name="gpu-$1-$2" t0 backend
  t0=$(date +%s)
  backend=$("$py" -c "from distst.config import load_config; from distst.layout import Layout
lay = Layout.of(load_config(None, ['runtime.mode=$mode', 'runtime.workers=$workers',
    'partition.parts=$workers', 'runtime.use_gpu=$([ "$device" = cuda ] && echo true || echo false)',
    'runtime.gpus_per_worker=$per']))
print(lay.compute_backend)")
  if "$py" -m distst train configs/quickstart.yaml --workers "$workers" \
      --set runtime.mode="$mode" --set partition.parts="$workers" "${gpu[@]}" \
      --set runtime.gpus_per_worker="$per" "${size[@]}" --set train.progress=false \
      --set runtime.name="$name" --set runtime.storage="$work/runs" \
      --set data.cache_dir="$work/cache" > "$work/$name.log" 2>&1; then
    mae=$(grep -m1 '^| avg ' "$work/$name.log" | awk -F'|' '{print $3}' | tr -d ' ')
    echo "| $mode | $workers | $per | $backend | test avg MAE $mae | $(( $(date +%s) - t0 )) |"
  else
    status=1
    echo "| $mode | $workers | $per | $backend | FAILED: $(grep -m1 '^error:' "$work/$name.log" \
      || tail -1 "$work/$name.log") | $(( $(date +%s) - t0 )) |"
  fi
}

exec > >(tee "$md")   # live output, and the same Markdown in the file
{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ), device $device)"
  echo
  if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/device: /'
  fi
  "$py" -c "import torch, ray; print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), Ray {ray.__version__}')"
  echo
  echo "## 1. One training step of every model on $device against CPU"
  echo
  DISTST_CHECK_DEVICE="$device" "$py" scripts/gpu_check.py || status=1
  echo
  echo "## 2. Ray Train: one worker per GPU, then 2 workers sharing one"
  echo
  echo "| mode | workers | GPU per worker | collectives | result | seconds |"
  echo "|---|---:|---:|---|---|---:|"
  train replicate 1 1
  train shard 2 0.5
  train exchange 2 0.5
  echo
  if [ "$device" = cuda ]; then
    echo "## 3. Step time and peak memory per model, N = 1,026, batch 64: fp32, bf16, recompute"
    echo
    "$py" scripts/bench_models.py --device cuda --nodes 1026 --batch 64 --warmup 2 --steps 5 \
        --variants fp32 bf16 recompute --out "$work/models.md" > "$work/models.log" 2>&1 || status=1
    cat "$work/models.md" 2>/dev/null || tail -5 "$work/models.log"
  fi
}
exit $status
