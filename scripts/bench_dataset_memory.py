#!/usr/bin/env python
"""Memory of index-based WindowDatasets vs. materialised windows, and batch() gather time.

Builds a random series of N nodes x days x steps/day x C channels (default PeMSD7(L)-sized:
1026 nodes x 14 days x 288 steps x 1 channel), writes it to a .npy and opens it as a read-only
memmap (the real path of ``distst``), fits the scaler, creates train/val/test WindowDatasets and
touches every window through ``batch()``. Resident memory (RSS) is measured before/after, and
compared with the ``[S, input_len, N, C]`` + ``[S, horizon, N, C]`` arrays that DCRNN-style
pipelines build (computed, and measured unless ``--no-materialise``).

    .venv/bin/python scripts/bench_dataset_memory.py [--nodes 1026 --days 14] [--out FILE]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distst.data.scaler import StandardScaler
from distst.data.windows import WindowDataset, iterate_batches, make_splits, train_end_step

MIB = 2**20


def rss_bytes() -> int:
    """Resident set size of this process (file-backed memmap pages included)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil comes with ray
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settle() -> int:
    """RSS after freeing what Python and glibc can give back (so temporaries do not count)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    return rss_bytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1026)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--steps-per-day", type=int, default=288)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--input-len", type=int, default=12)
    ap.add_argument("--horizon", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=200, help="timed batch() calls")
    ap.add_argument("--workdir", default=None, help="where values.npy goes (default: a temp dir)")
    ap.add_argument("--no-materialise", action="store_true",
                    help="only compute the materialised size instead of allocating it")
    ap.add_argument("--out", default=None, help="append the markdown tables to this file")
    args = ap.parse_args(argv)

    t, n, c = args.days * args.steps_per_day, args.nodes, args.channels
    li, h, bs = args.input_len, args.horizon, args.batch_size
    work = Path(args.workdir or tempfile.mkdtemp(prefix="distst-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "values.npy"
    try:
        # Write the series in chunks through a memmap so this process never holds it whole.
        rng = np.random.default_rng(0)
        w = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(t, n, c))
        for s in range(0, t, 512):
            blk = rng.normal(60, 10, size=w[s : s + 512].shape).astype(np.float32)
            blk[rng.random(blk.shape) < 0.02] = np.nan
            w[s : s + 512] = blk
        w.flush()
        del w, blk
        raw = t * n * c * 4
        ts = np.datetime64("2012-05-01", "ns").astype(np.int64) + np.arange(t) * 300 * 10**9

        base = settle()
        values = np.load(path, mmap_mode="r")
        splits = make_splits(t, li, h)
        scaler = StandardScaler().fit(values, train_end_step(splits, li))
        dsets = {
            k: WindowDataset(values, ts, splits[k], input_len=li, horizon=h, scaler=scaler)
            for k in ("train", "val", "test")
        }
        # Touch every window of every split once (an epoch each), as training/eval would.
        for k, ds in dsets.items():
            for _x, _y in iterate_batches(ds, bs, shuffle=(k == "train"), seed=0):
                pass
        del _x, _y
        ds_rss = settle() - base
        own = sum(ds.starts.nbytes + ds.tod.nbytes + ds.dow.nbytes for ds in dsets.values())
        s_total = sum(len(ds) for ds in dsets.values())
        mat_bytes = s_total * (li + h) * n * c * 4

        mat_rss = None
        if not args.no_materialise:
            before = settle()
            steps = np.arange(li + h)
            mats = []
            for ds in dsets.values():
                rows = ds.starts[:, None] + steps  # [S, L]
                mats.append((np.asarray(values[rows[:, :li]]), np.asarray(values[rows[:, li:]])))
            mat_rss = settle() - before
            # gather time from materialised arrays, for reference
            xm, ym = mats[0]
            idxs = [rng.integers(0, len(xm), bs) for _ in range(args.repeats)]
            tm = []
            for idx in idxs:
                t0 = time.perf_counter()
                _ = (xm[idx], ym[idx])
                tm.append(time.perf_counter() - t0)
            del mats, xm, ym, _

        # batch() timing: random windows of the training split (shuffled epoch order).
        timings = {}
        rows_sel = {"all nodes": None, "half the nodes (shard)": np.arange(0, n, 2)}
        for label, nodes in rows_sel.items():
            ds = WindowDataset(values, ts, splits["train"], input_len=li, horizon=h,
                               scaler=scaler, nodes=nodes)
            idxs = [rng.integers(0, len(ds), bs) for _ in range(args.repeats)]
            for idx in idxs[:5]:
                ds.batch(idx)
            dt = []
            for idx in idxs:
                t0 = time.perf_counter()
                x, y = ds.batch(idx)
                dt.append(time.perf_counter() - t0)
            timings[label] = (np.array(dt) * 1e3, tuple(x.shape), tuple(y.shape))

        lines = [
            f"### Dataset memory: T={t} (= {args.days} d x {args.steps_per_day}), N={n}, C={c}, "
            f"{li}+{h} steps, S={s_total} windows (train/val/test "
            f"{'/'.join(str(len(d)) for d in dsets.values())})",
            "",
            f"Machine: {platform.machine()} {os.cpu_count()} CPUs, "
            f"Python {sys.version.split()[0]}, numpy {np.__version__}",
            "",
            "| what | MiB | x raw series |",
            "|---|---:|---:|",
            f"| raw series values.npy (float32) | {raw / MIB:.1f} | 1.00 |",
            f"| 3 WindowDatasets, RSS growth after an epoch over each (memmap pages incl.) "
            f"| {ds_rss / MIB:.1f} | {ds_rss / raw:.2f} |",
            f"| ... of which the datasets' own arrays (starts, tod, dow) | {own / MIB:.2f} "
            f"| {own / raw:.3f} |",
            f"| materialised x/y windows [S,{li},N,C]+[S,{h},N,C] (computed) "
            f"| {mat_bytes / MIB:.1f} | {mat_bytes / raw:.1f} |",
        ]
        if mat_rss is not None:
            lines.append(
                f"| materialised x/y windows, RSS growth (measured) | {mat_rss / MIB:.1f} "
                f"| {mat_rss / raw:.1f} |"
            )
        lines += [
            "",
            f"### batch() gather time, B={bs}, {args.repeats} random batches of the train split",
            "",
            "| source | x shape | y shape | median ms | p90 ms |",
            "|---|---|---|---:|---:|",
        ]
        for label, (ms, xs, ys) in timings.items():
            lines.append(
                f"| WindowDataset.batch(), {label} | {list(xs)} | {list(ys)} "
                f"| {np.median(ms):.2f} | {np.percentile(ms, 90):.2f} |"
            )
        if mat_rss is not None:
            ms = np.array(tm) * 1e3
            lines.append(
                f"| materialised arrays x[idx], y[idx] (unscaled, no time features) | "
                f"[{bs}, {li}, {n}, {c}] | [{bs}, {h}, {n}, {c}] "
                f"| {np.median(ms):.2f} | {np.percentile(ms, 90):.2f} |"
            )
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text + "\n")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
