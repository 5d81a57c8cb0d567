#!/usr/bin/env python
"""Test accuracy of every model under one training budget, next to HA (issue 4).

Datasets:

* ``los-loop``: the real Los-loop series in ../shared/data/los-loop (207 METR-LA sensors, one
  week of 5-minute speeds), prepared into the work directory; 12 -> 12 steps, 7:1:2 split.
* ``synth``: a synthetic road network (``--nodes``, ``--days``) whose sensor types drive the
  daily profiles -- the effect HyperST-Net claims to exploit.

Every model trains in one process (``distst train --local``) from its paper preset
(``configs/models/<name>.yaml``) with the SAME budget for all: ``--epochs`` epochs, Adam at
``--lr`` decayed x0.3 at 2/3 of the epochs, batch 64, scheduled sampling decaying within
``--cl-decay`` batches (the presets' 2000-batch schedule assumes 100-epoch runs), gradient
norm clipped at 5, the checkpoint with the best validation MAE evaluated on the test split.
Prints MAE / RMSE / MAPE at 15 / 30 / 60 min and their average per model, and HA's.

    .venv/bin/python scripts/bench_accuracy.py --dataset los-loop --epochs 20 [--models ...]
        [--seeds 0 1] [--set key=value ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HORIZONS = ("15min", "30min", "60min")
# --size small: one layer of 32 units (HyperST-LSTM-G keeps its small preset) -- a budget that
# fits a 2-core CPU; the presets (--size preset) are the papers' sizes.
SMALL = {
    "gru": {"hidden_size": 32, "num_layers": 1},
    "lstm": {"hidden_size": 32, "num_layers": 1},
    "gcgru": {"hidden_size": 32, "num_layers": 1},
    "dcrnn": {"hidden_size": 32, "num_layers": 1},
    "hyperst_gcgru": {"hidden_size": 32, "num_layers": 1},
    "hyperst_dcgru": {"hidden_size": 32, "num_layers": 1},
    "hyperst_lstm_d": {"hidden_sizes": [32]},
    "hyperst_lstm_g": {"hidden_sizes": [16]},
    "stgcn": {"channels": [32, 8, 32]},
    "himnet": {"hidden_size": 32},
    "stunet": {"hidden_size": 32},
}


def run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2500:]}")
    return res.stdout


def parse_model(entry: str) -> tuple[str, str, list[str]]:
    """``NAME`` or ``LABEL@NAME:key=value,...`` -> (label, model name, --set overrides)."""
    if "@" not in entry:
        return entry, entry, []
    label, _, rest = entry.partition("@")
    model, _, spec = rest.partition(":")
    sets = [f"model.params.{kv.strip()}" for kv in spec.split(",") if kv.strip()]
    return label, model, sets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["los-loop", "synth"], default="los-loop")
    ap.add_argument("--nodes", type=int, default=207, help="synth only")
    ap.add_argument("--days", type=int, default=14, help="synth only")
    ap.add_argument("--models", nargs="*", default=None,
                    help="default: every registered trainable model; a variant is "
                         "LABEL@MODEL:key=value,key=value (model.params overrides), e.g. "
                         "plain@stunet:levels=0,dilation=1")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--cl-decay", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--size", choices=["preset", "small"], default="preset")
    ap.add_argument("--set", action="append", default=[], help="override for every run")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="append the markdown table to this file")
    args = ap.parse_args(argv)

    from distst.nn.registry import MODELS

    models = args.models or [m for m in MODELS if m not in ("ha", "hyperst_cnn")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="distst-acc-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    if args.dataset == "los-loop":
        data_dir = work / "los-loop"
        if not data_dir.exists():
            run([py, "-m", "distst.cli", "data", "prepare", "--format", "los-loop", "--path",
                 str(SHARED / "los-loop"), "--out", str(data_dir)])
        data_over = [f"data.path={data_dir}"]
        base = ROOT / "configs" / "datasets" / "los-loop.yaml"
    else:
        data_over = [f"data.synth.nodes={args.nodes}", f"data.synth.days={args.days}",
                     f"data.cache_dir={work / 'cache'}"]
        base = ROOT / "configs" / "datasets" / "synth-pems-l.yaml"
    milestone = max(1, round(args.epochs * 2 / 3))
    budget = [f"train.epochs={args.epochs}", f"train.lr={args.lr}",
              f"train.lr_milestones=[{milestone}]", "train.lr_gamma=0.3",
              "train.batch_size=64", f"train.cl_decay_steps={args.cl_decay}",
              "train.grad_clip=5.0", f"train.patience={args.epochs}",
              f"train.threads={args.threads}", "train.progress=false",
              f"runtime.storage={work / 'runs'}"]
    results: dict[str, list[dict]] = {}
    ha = None
    secs: dict[str, list[float]] = {}
    for entry in models:
        name, model, variant = parse_model(entry)
        for seed in args.seeds:
            cfg = work / f"{name}.yaml"
            cfg.write_text(f"include:\n  - {base}\n  - {ROOT / 'configs' / 'models' / model}.yaml\n")
            cmd = [py, "-m", "distst.cli", "train", str(cfg), "--local"]
            sized = [f"model.params.{k}={json.dumps(v)}"
                     for k, v in (SMALL.get(model, {}) if args.size == "small" else {}).items()]
            for o in data_over + budget + sized + variant + [f"train.seed={seed}"] + args.set:
                cmd += ["--set", o]
            t0 = time.perf_counter()
            try:
                out = run(cmd)
            except RuntimeError as exc:
                print(f"{name} seed {seed}: {exc}", file=sys.stderr, flush=True)
                continue
            secs.setdefault(name, []).append(time.perf_counter() - t0)
            run_dir = Path(out.strip().splitlines()[-1].split("run directory: ")[1])
            final = json.loads((run_dir / "test_metrics.json").read_text())
            results.setdefault(name, []).append(final["test"])
            ha = final.get("ha") or ha
            t = final["test"]
            print(f"{name} seed {seed}: avg MAE {t['avg']['mae']:.3f} "
                  f"({secs[name][-1]:.0f} s)", flush=True)

    def cell(tests: list[dict], h: str, m: str) -> str:
        vals = [t[h][m] for t in tests if h in t]
        if not vals:
            return "-"
        mean = statistics.mean(vals)  # MAPE is reported in percent already
        return f"{mean:.2f}" if m == "mape" else f"{mean:.3f}"

    cols = [*HORIZONS, "avg"]
    head = ("| model | " + " | ".join(f"MAE / RMSE / MAPE% {h}" for h in cols)
            + " | train s |\n|---|" + "---|" * len(cols) + "---:|")
    rows = []
    for name, tests in results.items():
        rows.append(f"| {name} | " + " | ".join(
            f"{cell(tests, h, 'mae')} / {cell(tests, h, 'rmse')} / {cell(tests, h, 'mape')}"
            for h in cols) + f" | {statistics.mean(secs[name]):.0f} |")
    if ha:
        rows.append("| HA | " + " | ".join(
            f"{cell([ha], h, 'mae')} / {cell([ha], h, 'rmse')} / {cell([ha], h, 'mape')}"
            for h in cols) + " | - |")
    what = ("Los-loop (207 sensors, 1 week)" if args.dataset == "los-loop"
            else f"synthetic {args.nodes} sensors x {args.days} days")
    text = "\n".join([
        f"{what}; budget: {args.epochs} epochs, Adam lr {args.lr} (x0.3 at epoch {milestone}), "
        f"batch 64, scheduled sampling decay {args.cl_decay} batches, clip 5, best-val "
        f"checkpoint; seeds {args.seeds} (mean); sizes: "
        f"{'paper presets' if args.size == 'preset' else 'small (scripts/bench_accuracy.py SMALL)'}; "
        f"{platform.machine()} {os.cpu_count()} CPUs, {args.threads} threads; extra: "
        f"{args.set or 'none'}",
        "", head, *rows]) + "\n"
    print("\n" + text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
