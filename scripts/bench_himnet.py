#!/usr/bin/env python
"""HimNet side by side with the authors' code, and dense vs sparse adaptive graphs (issue 5).

The reference is the authors' ``model/HimNet.py`` (github.com/XDZhelheim/HimNet), fetched by the
user and passed with ``--ref``; it is imported from there and never part of distst.

1. Equivalence (issue 10): the reference's weights are copied into distst's dense HimNet (same
   parameter names and shapes) and both forecast the same windows, each side fed its own
   encoding of the same timestamps: the reference the authors' data pipeline's (Torch-MTS
   ``generate_training_data.py``: time of day as a fraction of the day, day of week an integer,
   Monday = 0 for their METR-LA / PEMS-BAY h5 files, the file's first day = 0 for their PEMS0x
   npz files), distst its windows' (``time_features``: weekday / 7, Monday = 0). Windows on all
   seven weekdays, one crossing midnight and one crossing the week's end (Sunday -> Monday),
   in both conventions (npz: a file starting on Friday 2016-07-01 as PEMS08,
   ``dow_origin=4``); the largest absolute difference per window is printed.
2. Speed and memory: each (implementation, N, batch) runs in a fresh subprocess: ``--warmup``
   untimed steps, then the median of ``--steps`` timed forward + backward + Adam steps with
   teacher forcing off. Memory on CPU: peak RSS of the subprocess minus its RSS after building
   the model and the batch. Graphs: the synthetic kNN road network of distst's generator.
   A configuration whose estimated memory exceeds ``--mem-limit-gib`` is reported as not
   runnable instead of being started (the dense N x N graphs at 100k nodes: 40 GB each).

    .venv/bin/python scripts/bench_himnet.py --ref /path/to/HimNet/model/HimNet.py \\
        [--sizes 307:16 2000:4 100000:1] [--impls ref dense sparse] [--out FILE]
    .venv/bin/python scripts/bench_himnet.py --ref /path/to/HimNet/model/HimNet.py \\
        --equivalence-only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

MIB = 2**20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_reference(path: str):
    spec = importlib.util.spec_from_file_location("himnet_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.HimNet


def graph(n: int):
    import torch

    from distst.data.synth import synth_network

    return torch.as_tensor(synth_network(num_nodes=n, days=1, seed=0).edge_index)


def batch(b: int, n: int, slot: int = 100):
    """(x_distst, x_ref, y_cov_ref, y): a Monday window, value + time of day + day of week."""
    import torch

    g = torch.Generator().manual_seed(0)
    val = torch.randn(b, 12, n, 1, generator=g)
    steps = slot + torch.arange(24)
    tod = (steps / 288.0)[None, :, None, None].expand(b, 24, n, 1)
    dow = torch.zeros(b, 24, n, 1)  # Monday: reference's integer 0 == distst's 0 / 7
    x = torch.cat([val, tod[:, :12], dow[:, :12]], dim=-1)
    y_cov = torch.cat([tod[:, 12:], dow[:, 12:]], dim=-1)
    y = torch.randn(b, 12, n, 1, generator=g)
    return x, x.clone(), y_cov, y


def build(impl: str, n: int, ref_path: str | None, hops: int):
    from distst.nn.himnet import HimNet

    if impl == "ref":
        model = load_reference(ref_path)(num_nodes=n)
        model.use_teacher_forcing = False
        return model
    return HimNet(num_nodes=n, input_dim=3, output_dim=1, edge_index=graph(n),
                  graph="dense" if impl == "dense" else "sparse", graph_hops=hops)


def estimate_gib(impl: str, n: int, b: int) -> float:
    """Rough peak: the adaptive graphs (and for the reference its [B, N, I, O] decoder weights
    kept for every step, and its N x N identity matrices) dominate at large N."""
    f = 4 / 2**30
    if impl == "sparse":
        return 0.0
    graphs = (3 * n * n + 3 * b * n * n) * f  # support + softmax + grads, encoder and decoder
    if impl == "ref":
        return graphs + 12 * b * n * 134 * 192 * f + 12 * 4 * n * n * f
    return graphs


def child(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.impl, args.n, args.ref, args.hops)
    x, xr, ycov, y = batch(args.batch, args.n)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    nparams = sum(p.numel() for p in model.parameters())
    base = rss()

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(xr, ycov) if args.impl == "ref" else model(x)
        (out - y).abs().mean().backward()
        opt.step()

    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    mem = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / MIB
    print(json.dumps({"params": nparams, "seconds": statistics.median(times), "mem_mib": mem}))
    return 0


def paired_models(ref_path: str, n: int, dow_origin: int = 0):
    """The reference HimNet and distst's dense HimNet holding the same (reference) weights."""
    import torch

    from distst.nn.himnet import HimNet

    torch.manual_seed(0)
    ref = load_reference(ref_path)(num_nodes=n)
    ours = HimNet(num_nodes=n, input_dim=3, output_dim=1, dow_origin=dow_origin)
    own = dict(ours.named_parameters())
    with torch.no_grad():
        for name, p in ref.named_parameters():
            # reference: encoder_s.cells.0.gate.weights_pool; distst: encoder_s.0.gate.weight_pool
            key = name.replace(".cells.", ".").replace("weights_pool", "weight_pool")
            key = key.replace(".weights", ".weight")
            own[key].copy_(p)
    ref.eval()
    ours.eval()
    return ref, ours


def window_pair(stamps, step0: int | None, n: int, seed: int = 0):
    """Inputs for B windows of 12 + 12 steps (``stamps`` [B, 24] datetime64): distst's
    ``x`` [B, 12, N, 3] from its ``time_features``, and the reference's ``x`` [B, 12, N, 3] and
    ``y_cov`` [B, 12, N, 2] as the authors' pipeline encodes them: h5 files (``step0`` None)
    tod = (t - midnight) / 1 day, dow = pandas day_of_week; npz files (``step0`` [B], the
    windows' first step counted from the file's first midnight) tod = (i % 288) / 288,
    dow = (i // 288) % 7. Both then as float32, as their loader casts them."""
    import numpy as np
    import pandas as pd
    import torch

    from distst.data.windows import time_features

    stamps = np.asarray(stamps, dtype="datetime64[ns]")
    b = stamps.shape[0]
    g = torch.Generator().manual_seed(seed)
    val = torch.randn(b, 12, n, 1, generator=g)
    tod, dow = time_features(stamps.reshape(-1).astype(np.int64))
    ours = torch.from_numpy(np.stack([tod, dow], -1).reshape(b, 24, 1, 2)).expand(b, 24, n, 2)
    if step0 is None:
        idx = pd.DatetimeIndex(stamps.reshape(-1))
        r_tod = ((idx - idx.normalize()) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
        r_dow = np.asarray(idx.day_of_week, dtype=np.float64)
    else:
        i = (np.asarray(step0)[:, None] + np.arange(24)).reshape(-1)
        r_tod = np.array([k % 288 / 288 for k in i])
        r_dow = np.array([(k // 288) % 7 for k in i], dtype=np.float64)
    ref = torch.from_numpy(np.stack([r_tod, r_dow], -1).astype(np.float32).reshape(b, 24, 1, 2))
    ref = ref.expand(b, 24, n, 2)
    x = torch.cat([val, ours[:, :12]], dim=-1)
    xr = torch.cat([val, ref[:, :12]], dim=-1)
    return x, xr, ref[:, 12:].contiguous()


def equivalence_windows(ref_path: str, n: int = 307, b: int = 4) -> list[tuple[str, str, float]]:
    """(convention, window, max |difference|) for every checked window; each window is a batch
    of ``b`` windows whose starts are 5 minutes apart."""
    import numpy as np
    import torch

    five = np.timedelta64(5, "m")
    out = []
    for conv, first, origin, npz in (
            ("h5 (METR-LA/PEMS-BAY: Monday = 0)", "2012-03-01", 0, False),
            ("npz (PEMS0x: first day = 0, Fri 2016-07-01)", "2016-07-01", 4, True)):
        ref, ours = paired_models(ref_path, n, dow_origin=origin)
        day0 = np.datetime64(first, "ns")
        wd = int((day0.astype("datetime64[D]").astype(np.int64) + 3) % 7)  # Monday = 0
        monday = day0 + np.timedelta64((7 - wd) % 7, "D")  # the file's first Monday
        cases = []
        for d, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")):
            cases.append((f"{name} 08:00-09:55", monday + np.timedelta64(d, "D")
                          + np.timedelta64(8, "h")))
        cases.append(("across midnight Wed 23:00-Thu 00:55",
                      monday + np.timedelta64(2, "D") + np.timedelta64(23, "h")))
        cases.append(("across the week's end Sun 23:10-Mon 01:05",
                      monday + np.timedelta64(6, "D") + np.timedelta64(23 * 60 + 10, "m")))
        for label, start in cases:
            starts = start + np.arange(b) * five
            stamps = starts[:, None] + np.arange(24) * five
            step0 = ((starts - day0) // five).astype(np.int64) if npz else None
            x, xr, ycov = window_pair(stamps, step0, n)
            with torch.no_grad():
                out.append((conv, label, float((ref(xr, ycov) - ours(x)).abs().max())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=None, help="path to the authors' model/HimNet.py")
    ap.add_argument("--sizes", nargs="+", default=["307:16", "1000:4", "2000:4", "4000:4",
                                                    "100000:1"], help="N:batch pairs")
    ap.add_argument("--impls", nargs="+", default=["ref", "dense", "sparse"])
    ap.add_argument("--hops", type=int, default=2, help="sparse form: neighbourhood hops")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--mem-limit-gib", type=float, default=18.0)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--out", default=None)
    ap.add_argument("--equivalence-only", action="store_true",
                    help="run only the side-by-side check against --ref")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="dense", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=307, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=16, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    impls = [i for i in args.impls if i != "ref" or args.ref]
    lines = []
    if args.ref:
        lines += ["equivalence at N=307, batch 4 per window (reference weights copied into "
                  "distst's dense HimNet), max |difference| per window:", "",
                  "| authors' day numbering | window (input 12 steps + horizon 12) | max abs diff |",
                  "|---|---|---:|"]
        for conv, label, diff in equivalence_windows(args.ref):
            lines.append(f"| {conv} | {label} | {diff:.2e} |")
            print(lines[-1], flush=True)
    if args.equivalence_only:
        if not args.ref:
            ap.error("--equivalence-only needs --ref")
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text)
        return 0
    rows = ["| implementation | N | batch | parameters | s / batch | peak MiB |",
            "|---|---:|---:|---:|---:|---:|"]
    for spec in args.sizes:
        n, b = (int(v) for v in spec.split(":"))
        for impl in impls:
            need = estimate_gib(impl, n, b)
            label = {"ref": "authors' code", "dense": "distst dense",
                     "sparse": f"distst sparse ({args.hops}-hop)"}[impl]
            if need > args.mem_limit_gib:
                rows.append(f"| {label} | {n:,} | {b} | - | cannot run | needs ~{need:,.0f} GiB |")
                print(rows[-1], flush=True)
                continue
            cmd = [sys.executable, __file__, "--child", "--impl", impl, "--n", str(n),
                   "--batch", str(b), "--threads", str(args.threads), "--warmup",
                   str(args.warmup), "--steps", str(args.steps), "--hops", str(args.hops)]
            if args.ref:
                cmd += ["--ref", args.ref]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                rows.append(f"| {label} | {n:,} | {b} | - | > {args.timeout} s | - |")
                print(rows[-1], flush=True)
                continue
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append(f"| {label} | {n:,} | {b} | - | failed: {tail[:80]} | - |")
            else:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(f"| {label} | {n:,} | {b} | {r['params']:,} | {r['seconds']:.2f} | "
                            f"{r['mem_mib']:,.0f} |")
            print(rows[-1], flush=True)
    head = (f"bench_himnet: {platform.machine()} CPU, {os.cpu_count()} cores, torch threads "
            f"{args.threads}, warmup {args.warmup}, median of {args.steps} steps, 12 -> 12 steps, "
            "paper defaults (hidden 64, cheb_k 2, embeddings 8/8/16/16), teacher forcing off")
    text = "\n".join([head, *lines, "", *rows]) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
