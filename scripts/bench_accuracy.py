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
        [--seeds 0 1 2] [--jobs 2 --threads 1] [--set key=value ...] [--out FILE]

Each (model, seed) result is cached under ``--workdir/results/`` (keyed by its exact command),
so a study can be extended with more seeds or models without re-training what exists. Cells
are the mean over seeds ± the sample standard deviation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
    """``NAME`` or ``LABEL@NAME:key=value,...`` -> (label, model name, --set overrides).

    A key without a dot is a model parameter (``levels=0`` -> ``model.params.levels=0``); a
    key with a dot is passed as is (``train.loss_scale=original``)."""
    if "@" not in entry:
        return entry, entry, []
    label, _, rest = entry.partition("@")
    model, _, spec = rest.partition(":")
    sets = [kv if "." in kv.partition("=")[0] else f"model.params.{kv}"
            for kv in (kv.strip() for kv in spec.split(",")) if kv]
    return label, model, sets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["los-loop", "synth"], default="los-loop")
    ap.add_argument("--nodes", type=int, default=207, help="synth only")
    ap.add_argument("--days", type=int, default=14, help="synth only")
    ap.add_argument("--models", nargs="*", default=None,
                    help="default: every registered trainable model; a variant is "
                         "LABEL@MODEL:key=value,key=value (model.params overrides), e.g. "
                         "plain@stunet:levels=0,dilation=1; dotted keys are passed as "
                         "is: old@stunet:train.loss_scale=original")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--cl-decay", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1,
                    help="training runs at once (give each --threads cores)")
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
    # One job per (model variant, seed); each result is cached as JSON in the work directory so
    # that an interrupted or extended study (more seeds, more models) reruns only what is new.
    jobs = []
    for entry in models:
        name, model, variant = parse_model(entry)
        cfg = work / f"{name}.yaml"
        cfg.write_text(f"include:\n  - {base}\n  - {ROOT / 'configs' / 'models' / model}.yaml\n")
        sized = [f"model.params.{k}={json.dumps(v)}"
                 for k, v in (SMALL.get(model, {}) if args.size == "small" else {}).items()]
        for seed in args.seeds:
            cmd = [py, "-m", "distst.cli", "train", str(cfg), "--local"]
            for o in data_over + budget + sized + variant + [f"train.seed={seed}"] + args.set:
                cmd += ["--set", o]
            key = hashlib.sha256(json.dumps(cmd[3:]).encode()).hexdigest()[:12]
            jobs.append((name, seed, cmd, work / "results" / f"{name}-s{seed}-{key}.json"))
    (work / "results").mkdir(exist_ok=True)

    def one(job) -> dict | None:
        name, seed, cmd, cache = job
        if cache.exists():
            rec = json.loads(cache.read_text())
        else:
            t0 = time.perf_counter()
            try:
                out = run(cmd)
            except RuntimeError as exc:
                print(f"{name} seed {seed}: {exc}", file=sys.stderr, flush=True)
                return None
            run_dir = Path(out.strip().splitlines()[-1].split("run directory: ")[1])
            final = json.loads((run_dir / "test_metrics.json").read_text())
            rec = {"test": final["test"], "ha": final.get("ha"),
                   "secs": time.perf_counter() - t0}
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(rec))
            tmp.rename(cache)
        print(f"{name} seed {seed}: avg MAE {rec['test']['avg']['mae']:.3f} "
              f"({rec['secs']:.0f} s)", flush=True)
        return rec

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        recs = list(pool.map(one, jobs))
    results: dict[str, list[dict]] = {}
    secs: dict[str, list[float]] = {}
    ha = None
    for (name, _seed, _cmd, _cache), rec in zip(jobs, recs):
        if rec is None:
            continue
        results.setdefault(name, []).append(rec["test"])
        secs.setdefault(name, []).append(rec["secs"])
        ha = rec["ha"] or ha

    def cell(tests: list[dict], h: str, m: str) -> str:
        vals = [t[h][m] for t in tests if h in t]
        if not vals:
            return "-"
        fmt = "{:.2f}" if m == "mape" else "{:.3f}"  # MAPE is reported in percent already
        text = fmt.format(statistics.mean(vals))
        if len(vals) > 1:  # sample standard deviation over seeds
            text += " ± " + fmt.format(statistics.stdev(vals))
        return text

    cols = [*HORIZONS, "avg"]
    head = ("| model | seeds | " + " | ".join(f"MAE / RMSE / MAPE% {h}" for h in cols)
            + " | train s |\n|---|---:|" + "---|" * len(cols) + "---:|")
    rows = []
    for name, tests in results.items():
        rows.append(f"| {name} | {len(tests)} | " + " | ".join(
            f"{cell(tests, h, 'mae')} / {cell(tests, h, 'rmse')} / {cell(tests, h, 'mape')}"
            for h in cols) + f" | {statistics.mean(secs[name]):.0f} |")
    if ha:
        rows.append("| HA | - | " + " | ".join(
            f"{cell([ha], h, 'mae')} / {cell([ha], h, 'rmse')} / {cell([ha], h, 'mape')}"
            for h in cols) + " | - |")
    what = ("Los-loop (207 sensors, 1 week)" if args.dataset == "los-loop"
            else f"synthetic {args.nodes} sensors x {args.days} days")
    text = "\n".join([
        f"{what}; budget: {args.epochs} epochs, Adam lr {args.lr} (x0.3 at epoch {milestone}), "
        f"batch 64, scheduled sampling decay {args.cl_decay} batches, clip 5, best-val "
        f"checkpoint; seeds {args.seeds} (mean ± sample std over seeds); sizes: "
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
