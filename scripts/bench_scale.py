#!/usr/bin/env python
"""Does the study's performance model predict runs it was not fitted on? (issue 14)

Reads a finished study (``distst scale ...``), fits ``distst.scale.model`` on the runs with
``--fit-workers`` workers only (default 1 and 2) and compares its prediction for every other
run with the measured step time; the target is within 25%. Prints a Markdown table.

    .venv/bin/python scripts/bench_scale.py STUDY_DIR [--fit-workers 1 2] [--limit 0.25]

On a machine with fewer cores than a run's workers the run oversubscribes the cores: its
step time measures contention, which the model (compute per worker + bytes + overhead) does
not describe. The script says so for such runs rather than hide them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from distst.scale.driver import per_run
from distst.scale.model import fit_model, predict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_dir")
    ap.add_argument("--fit-workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--limit", type=float, default=0.25)
    args = ap.parse_args()
    sdir = Path(args.study_dir)
    rows = []
    for f in sorted((sdir / "results").glob("*.json")):
        rows += json.loads(f.read_text())["rows"]
    runs = per_run(rows)
    fit_on = [r for r in runs if r["workers"] in args.fit_workers]
    model = fit_model(fit_on)
    if model is None:
        print(f"cannot fit: {len(fit_on)} runs with {args.fit_workers} workers do not separate "
              "compute, bytes and overhead")
        return 2
    print(f"fitted on {', '.join(r['run'] for r in fit_on)}: a = "
          f"{model.a_s_per_node_window * 1e9:.3g} ns/node-window, b = "
          f"{model.b_s_per_byte * 1e9:.3g} ns/byte, g = {model.g_s * 1000:.3g} ms\n")
    cores = os.cpu_count() or 1
    print("| run | workers | threads x workers | measured step ms | predicted ms | error | "
          "within limit |\n|---|---|---|---|---|---|---|")
    ok = True
    for r in runs:
        pred = predict(model, r, r["workers"])
        err = (pred - r["run_step_s"]) / r["run_step_s"]
        within = abs(err) <= args.limit
        over = r["threads"] * r["workers"] > cores
        fitted = r in fit_on
        if not fitted:
            ok &= within
        print(f"| {r['run']} | {r['workers']} | {r['threads']} x {r['workers']} | "
              f"{1000 * r['run_step_s']:.1f} | {1000 * pred:.1f} | {100 * err:+.0f}% | "
              f"{'fitted' if fitted else ('yes' if within else 'NO')}"
              f"{' (oversubscribed: ' + str(r['threads'] * r['workers']) + ' threads on ' + str(cores) + ' cores)' if over else ''} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
