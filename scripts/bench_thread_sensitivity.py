#!/usr/bin/env python
"""How far does float32 roundoff carry a training run? The same run at 1 and at 2 torch
threads (the only change: the order of float sums) on a tiny synthetic network.

A model whose two runs agree to ~1e-6 after an epoch can be compared across modes
(exchange against one process) run for run; one whose runs drift apart by percents cannot,
and its single-seed results carry that spread on top of the seed's. Prints a Markdown table.

    .venv/bin/python scripts/bench_thread_sensitivity.py [--model stunet]
        [--params '{K: 2, hidden_size: 8, levels: 1, dilation: 2}']
        [--variant model.params.layer_norm=false ...] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="stunet")
    ap.add_argument("--params", default="{K: 2, hidden_size: 8, levels: 1, dilation: 2}")
    ap.add_argument("--variant", nargs="*", default=["", "model.params.layer_norm=false"],
                    help="one extra override per variant ('' = none)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=20)
    args = ap.parse_args()

    from distst.config import load_config
    from distst.engine.entry import train_local

    root = Path(tempfile.mkdtemp(prefix="threads-"))
    print("| variant | threads | " + " | ".join(
        f"epoch {e} train loss | epoch {e} val MAE" for e in range(1, args.epochs + 1)) + " |")
    print("|---|---|" + "---|---|" * args.epochs)
    for variant in args.variant:
        for threads in (1, 2):
            sets = [f"data.cache_dir={root / 'cache'}", f"data.synth.nodes={args.nodes}",
                    "data.synth.days=4", f"runtime.storage={root / 'runs'}",
                    f"model.name={args.model}", f"model.params={args.params}",
                    f"train.epochs={args.epochs}", "train.batch_size=32",
                    "train.eval_batch_size=64", "train.cl_decay_steps=0",
                    f"train.threads={threads}", "train.progress=false", "runtime.mode=local"]
            if variant:
                sets.append(variant)
            run_dir, _ = train_local(load_config(None, sets))
            hist = [json.loads(line) for line in
                    (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
            cells = " | ".join(f"{h['train_loss']:.6f} | {h['val_mae']:.6f}" for h in hist)
            print(f"| {variant or 'as given'} | {threads} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
