#!/usr/bin/env python
"""Write a PEMS0x-format series (``PEMS0x.npz``, key ``data`` [T, N, 3]: flow, occupancy, speed)
on a REAL directed PEMS edge list, for accuracy studies while the real series cannot be had.

The full-length PEMS03/04/07/08 series are not obtainable on these machines (see
../shared/data/README.md); their graphs are. This script simulates 5-minute traffic on such a
graph so that the edge directions matter:

* each sensor has a daily flow profile (morning and evening peaks of random size and timing,
  quieter weekends) scaled by a per-sensor capacity;
* congestion (queues) starts at random sensors (incidents, rush-hour breakdowns) and spills
  back UPSTREAM, against the edges ``from -> to``, while demand pulses travel DOWNSTREAM along
  them, both with a delay of ``--lag`` steps and decaying on the way, so a sensor's near future
  depends on its neighbours on both sides, each side carrying a different signal;
* flow drops and occupancy rises with congestion, speed falls; measurement noise on top;
  about ``--missing`` of the readings are 0 (PEMS's missing-value convention).

    .venv/bin/python scripts/make_pems_series.py --graph ../shared/data/pems08/PEMS08.csv \\
        --name PEMS08 --days 14 --out /tmp/pems08-sim

writes ``/tmp/pems08-sim/PEMS08.npz`` and a copy of the edge list, ready for
``distst data prepare --format pems08 --path /tmp/pems08-sim --out DIR``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

STEPS_PER_DAY = 288


def simulate(src: np.ndarray, dst: np.ndarray, n: int, days: int, seed: int, lag: int,
             missing: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t_total = days * STEPS_PER_DAY
    hours = (np.arange(t_total) % STEPS_PER_DAY) / 12.0
    weekday = (np.arange(t_total) // STEPS_PER_DAY) % 7  # day 0 = the file's first day
    capacity = rng.uniform(150, 600, n)
    am = rng.uniform(7.0, 9.0, n)
    pm = rng.uniform(16.5, 18.5, n)
    am_h, pm_h = rng.uniform(0.4, 1.0, n), rng.uniform(0.4, 1.0, n)
    weekend = np.isin(weekday, (5, 6))[:, None]
    base = (0.25 + am_h * np.exp(-0.5 * ((hours[:, None] - am) / 1.2) ** 2)
            + pm_h * np.exp(-0.5 * ((hours[:, None] - pm) / 1.5) ** 2))
    base = np.where(weekend, 0.3 + 0.6 * (base - 0.25), base) * capacity  # [T, N]
    # Two latent fields, as on real freeways: a queue (congestion c) spills back UPSTREAM, from
    # a sensor to the ones feeding it (against the edge direction), while demand pulses (d)
    # travel DOWNSTREAM with the traffic (along it); each with a delay of `lag` steps.
    indeg = np.bincount(dst, minlength=n).astype(float)
    outdeg = np.bincount(src, minlength=n).astype(float)
    c = np.zeros((t_total, n))
    d = np.zeros((t_total, n))
    rush = np.exp(-0.5 * ((hours - 8.0) / 1.0) ** 2) + np.exp(-0.5 * ((hours - 17.5) / 1.2) ** 2)

    def spread(field, frm, to, deg):
        acc = np.zeros(n)
        np.add.at(acc, to, field[frm])
        return np.divide(acc, deg, out=np.zeros(n), where=deg > 0)

    for t in range(t_total):
        back = spread(c[t - lag], dst, src, outdeg) if t >= lag and src.size else np.zeros(n)
        fwd = spread(d[t - lag], src, dst, indeg) if t >= lag and src.size else np.zeros(n)
        quiet = 0.4 if weekend[t, 0] else 1.0
        jam = rng.random(n) < 0.0015 * (0.3 + rush[t]) * quiet
        pulse = rng.random(n) < 0.004 * (0.3 + rush[t]) * quiet
        c[t] = np.clip(np.maximum(0.85 * c[t - 1] if t else 0.0, 0.9 * back)
                       + jam * rng.uniform(0.5, 1.0, n), 0, 1)
        d[t] = np.clip(np.maximum(0.7 * d[t - 1] if t else 0.0, 0.9 * fwd)
                       + pulse * rng.uniform(0.5, 1.0, n), 0, 1)
    flow = base * (1.0 + 0.4 * d) * (1.0 - 0.55 * c) + rng.normal(0, 8.0, (t_total, n))
    occ = np.clip(0.02 + 0.05 * base / capacity + 0.25 * c + rng.normal(0, 0.005, (t_total, n)),
                  0.001, 1.0)
    speed = np.clip(66 - 40 * c - 4 * base / capacity + rng.normal(0, 1.5, (t_total, n)), 3, 80)
    data = np.stack([np.clip(flow, 1, None), occ, speed], axis=-1).astype(np.float32)
    data[rng.random((t_total, n)) < missing] = 0.0  # PEMS marks missing readings with 0
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", required=True, help="a PEMS0x edge csv (from,to,cost)")
    ap.add_argument("--name", required=True, help="file stem, e.g. PEMS08")
    ap.add_argument("--ids", default=None, help="PEMS03.txt: the sensor id list")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lag", type=int, default=2)
    ap.add_argument("--missing", type=float, default=0.01)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    edges = pd.read_csv(args.graph)
    src_col, dst_col = edges.columns[0], edges.columns[1]
    if args.ids:
        ids = [int(x) for x in Path(args.ids).read_text().split()]
        pos = {v: i for i, v in enumerate(ids)}
        src = edges[src_col].map(pos).to_numpy(np.int64)
        dst = edges[dst_col].map(pos).to_numpy(np.int64)
        n = len(ids)
    else:
        src, dst = edges[src_col].to_numpy(np.int64), edges[dst_col].to_numpy(np.int64)
        n = int(max(src.max(), dst.max())) + 1
    keep = src != dst
    data = simulate(src[keep], dst[keep], n, args.days, args.seed, args.lag, args.missing)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{args.name}.npz.tmp.npz"
    np.savez_compressed(tmp, data=data)
    tmp.rename(out / f"{args.name}.npz")
    shutil.copy(args.graph, out / f"{args.name}.csv")
    if args.ids:
        shutil.copy(args.ids, out / Path(args.ids).name)
    print(f"{out / (args.name + '.npz')}: data {list(data.shape)} on {n} sensors, "
          f"{int(keep.sum())} directed edges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
