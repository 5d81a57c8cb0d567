#!/usr/bin/env python
"""Parameters, time per training batch and peak memory of every registered model (issue 4).

Graphs: N = 207 is the real METR-LA graph (../shared/data/metr-la, with its GPS coordinates, so
HyperST models get GPS + road distances to the 4 nearest sensors); N = 1,026 is the synthetic
PeMS-L-sized network of the quickstart (sensor types, coordinates, road distances). HyperST-CNN
needs a grid and gets one of about the same size (16 x 13 = 208 and 32 x 32 = 1,024 regions,
4-neighbour edges). Each (model, N) runs in a fresh subprocess: batch ``--batch`` (64) of 12
input and 12 output steps with 3 input channels (value, time of day, day of week), Adam
(HA, a lookup table with no training step, is left out);
``--warmup`` untimed steps, then the median of ``--steps`` timed forward + backward + step.
Memory: on CPU the peak RSS of the subprocess minus its RSS after building the model and data
(activations, gradients, optimizer state); on CUDA ``torch.cuda.max_memory_allocated``.
Every model runs at its paper preset (``configs/models/<name>.yaml`` params); override with
``--set name.key=value``.

``--variants`` (issue 16) runs each (model, N) once per training setting: ``fp32``, ``bf16``
(``train.precision: bf16``: autocast around the forward, as the trainer does), ``recompute``
(``train.recompute: step``) and ``bf16+recompute``; ``microK`` (``micro4``,
``recompute+micro4``...: ``train.micro_batches: K``, the batch in K pieces, one forward and
backward each, gradients added; issue 34); ``+trim`` adds ``train.heap_slack_mib``
(``--heap-slack-mib``, the trainer's hook at every recurrent step and after every step).
Besides the RSS peak the table gives the bytes autograd saved for the backward pass (each storage once, parameters left out: the
tensors' own size, measured in one more forward after the timed steps), so that the
allocator's share of the RSS shows.

    .venv/bin/python scripts/bench_models.py [--nodes 207 1026] [--models gcgru dcrnn ...]
        [--device cpu|cuda] [--batch 64] [--threads 2] [--variants fp32 bf16 recompute]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MIB = 2**20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def grid_graph(h: int, w: int):
    import numpy as np

    src, dst = [], []
    for r in range(h):
        for c in range(w):
            i = r * w + c
            for dr, dc in ((0, 1), (1, 0)):
                if r + dr < h and c + dc < w:
                    j = (r + dr) * w + c + dc
                    src += [i, j]
                    dst += [j, i]
    coords = np.array([[r, c] for r in range(h) for c in range(w)], dtype=np.float64)
    return np.array([src, dst]), np.ones(len(src), np.float32), coords


def graph_for(name: str, n: int):
    """(edge_index, edge_weight, coords, spatial_attrs) of the benchmark graph of size n."""
    import numpy as np

    from distst.data.network import SensorNetwork
    from distst.graph.adjacency import symmetrize
    from distst.graph.spatial import spatial_attributes
    from distst.nn.registry import model_graph

    if name == "hyperst_cnn":
        h, w = (16, 13) if n <= 300 else (32, 32)
        ei, ew, coords = grid_graph(h, w)
        rng = np.random.default_rng(0)
        attrs = rng.normal(size=(h * w, 6)).astype(np.float32)
        return ei, ew, coords, attrs
    if n == 207:
        from distst.data.formats import read_graph

        g = read_graph("metr-la", DATA / "metr-la")
        net = SensorNetwork(name="metr-la", values=np.zeros((1, g.num_nodes, 1), np.float32),
                            timestamps=np.array(["2012-03-01"], dtype="datetime64[ns]"),
                            node_ids=g.node_ids, edge_index=g.edge_index,
                            edge_weight=g.edge_weight, channels=["speed"], coords=g.coords,
                            source=dict(g.source))
    else:
        from distst.data.synth import synth_network

        net = synth_network(num_nodes=n, days=1, seed=0)
    sa = spatial_attributes(net)
    ei, ew = np.asarray(net.edge_index), np.asarray(net.edge_weight, np.float32)
    if model_graph(name) == "undirected":  # as `distst train` does (data.symmetrize=max)
        ei, ew = symmetrize(ei, ew, "max", net.num_nodes)
    return ei, ew, net.coords, sa.values


def preset(name: str) -> dict:
    import yaml

    p = ROOT / "configs" / "models" / f"{name}.yaml"
    if not p.exists():
        return {}
    return dict((yaml.safe_load(p.read_text()) or {}).get("model", {}).get("params") or {})


def build(name: str, n: int, params: dict):
    """(model, number of nodes) of ``name`` on the benchmark graph of size ``n``, 3 input
    channels and 12 -> 12 steps; ``params`` are the model's keyword arguments."""
    import torch

    from distst.graph.coarsening import local_coarsening
    from distst.nn.registry import build_model

    ei, ew, coords, attrs = graph_for(name, n)
    n = attrs.shape[0]
    data = dict(num_nodes=n, input_dim=3, output_dim=1, input_len=12, horizon=12,
                edge_index=torch.as_tensor(ei), edge_weight=torch.as_tensor(ew),
                spatial_attrs=torch.as_tensor(attrs),
                coords=None if coords is None else torch.as_tensor(coords),
                out_degree=None, in_degree=None, steps_per_day=288, time_of_day=True,
                day_of_week=True,
                coarsening=functools.partial(local_coarsening, ei, ew, n))
    return build_model(name, data, params), n


def child(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    params = preset(args.model)
    params.update(json.loads(args.params))
    model, n = build(args.model, args.n, params)
    model = model.to(dev)
    model.recompute = "recompute" in args.variant
    bf16 = "bf16" in args.variant
    import re

    # microK: the batch in K pieces, one forward and backward each (train.micro_batches)
    micro = int(re.search(r"micro(\d+)", args.variant).group(1)) if "micro" in args.variant else 1
    trim = None
    if "trim" in args.variant:
        from distst.engine.memory import HeapTrimmer

        trim = model.step_hook = HeapTrimmer(args.heap_slack_mib)
    nparams = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, 12, n, 3, device=dev)
    # channels 1-2 are time of day and day of week / 7, as distst's windows make them
    x[..., 1] = torch.rand(args.batch, 1, 1, device=dev)
    x[..., 2] = torch.randint(0, 7, (args.batch, 1, 1), device=dev) / 7
    y = torch.randn(args.batch, 12, n, 1, device=dev)
    trainable = any(p.requires_grad for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3) if trainable else None
    base = rss()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def forward(xs=None):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return model(x if xs is None else xs).float()

    def step():
        if opt is None:
            with torch.no_grad():
                forward()
            return
        opt.zero_grad(set_to_none=True)
        for xs, ys in zip(torch.tensor_split(x, micro), torch.tensor_split(y, micro)):
            loss = (forward(xs) - ys).abs().sum() / y.numel()
            loss.backward()
        opt.step()
        if trim is not None:
            trim()

    sampler = LivePeak() if args.live_peak else None
    times = []
    for i in range(args.warmup + args.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        mem = torch.cuda.max_memory_allocated() / MIB
    else:
        mem = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / MIB
    live = sampler.stop() / MIB if sampler is not None else None
    piece = torch.tensor_split(x, micro)[0]
    saved = saved_bytes(model, lambda: forward(piece)) / MIB if opt is not None else 0.0
    if args.profile:
        profile_step(step, args.profile, f"{args.model} N={n} {args.variant}")
    print(json.dumps({"params": nparams, "seconds": statistics.median(times), "mem_mib": mem,
                      "saved_mib": saved, "nodes": n,
                      "trims": None if trim is None else trim.trims, "live_mib": live}))
    return 0


class LivePeak:
    """Peak of glibc's live allocations (``mallinfo2``: in-use heap plus mmapped blocks)
    above their value at the start, sampled every 5 ms by a thread: what the process holds
    in tensors, against RSS, which also counts the freed memory the allocator keeps."""

    def __init__(self):
        import threading

        from distst.engine import memory

        libc, why = memory._glibc()
        if libc is None:
            raise SystemExit(f"--live-peak: {why}")
        self.info = libc.mallinfo2
        self.base = self.live()
        self.peak = self.base
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def live(self) -> int:
        m = self.info()
        return m.uordblks + m.hblkhd

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.live())

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak - self.base


def profile_step(step, top: int, label: str) -> None:
    """One more step under torch.profiler: its ``top`` ops by self CPU time, as a Markdown
    table on stderr (stdout carries the child's JSON)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    print(f"\nTop {top} ops of one step, {label} (self CPU time):\n\n"
          "| op | calls | self ms | share |\n|---|---:|---:|---:|", file=sys.stderr)
    for e in rows[:top]:
        print(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1000:.0f} | "
              f"{100 * e.self_cpu_time_total / total:.1f}% |", file=sys.stderr)


def saved_bytes(model, forward) -> int:
    """Bytes autograd keeps for the backward pass of one forward: every storage once,
    parameters (and their bf16 casts' sources) left out."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.layout != torch.strided:  # a sparse graph operator: data, not an activation
            return t
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return sum(seen.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[207, 1026])
    ap.add_argument("--models", nargs="*", default=None, help="default: every registered model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["fp32"],
                    choices=["fp32", "bf16", "recompute", "bf16+recompute", "fp32+trim",
                             "recompute+trim", "bf16+recompute+trim", "micro2", "micro4",
                             "micro8", "recompute+micro4", "recompute+micro8",
                             "recompute+trim+micro4"])
    ap.add_argument("--heap-slack-mib", type=int, default=1024,
                    help="the +trim variants' train.heap_slack_mib (default 1024)")
    ap.add_argument("--live-peak", action="store_true",
                    help="also sample glibc's live allocations every 5 ms (their peak goes "
                         "into the variant's label; the sampling thread costs some time)")
    ap.add_argument("--variant", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--profile", type=int, default=0, metavar="TOP",
                    help="also profile one step and print its TOP ops (stderr of the child)")
    ap.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    import yaml

    from distst.nn.registry import MODELS

    # HA has no training step (a lookup table fitted once), so it is not timed here
    models = args.models or [m for m in MODELS if m != "ha"]
    extra: dict[str, dict] = {}
    for item in args.set:
        key, _, val = item.partition("=")
        m, _, k = key.partition(".")
        extra.setdefault(m, {})[k] = yaml.safe_load(val)
    rows = []
    from distst.nn.registry import model_class

    for name, n, variant in ((m, n, v) for m in models for n in args.nodes
                             for v in args.variants):
        if "recompute" in variant and not getattr(model_class(name), "RECURRENT", False):
            continue  # no recurrent steps: the run would repeat the fp32 one
        cmd = [sys.executable, __file__, "--child", "--model", name, "--n", str(n),
               "--variant", variant,
               "--device", args.device, "--batch", str(args.batch),
               "--threads", str(args.threads), "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--params", json.dumps(extra.get(name, {})),
               "--profile", str(args.profile), "--heap-slack-mib", str(args.heap_slack_mib),
               *(["--live-peak"] if args.live_peak else [])]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if args.profile and res.returncode == 0:
            print(res.stderr[res.stderr.find("\nTop "):], flush=True)
        if res.returncode != 0:
            err = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "?"
            if res.returncode in (-9, 137):  # SIGKILL: the kernel's OOM killer
                err = f"killed (out of memory: {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB machine)"
            row = f"| {name} | {n} | {variant} | - | failed: {err[:120]} | - | - |"
        else:
            r = json.loads(res.stdout.strip().splitlines()[-1])
            notes = [f"{r['trims']} trims"] if r.get("trims") is not None else []
            if r.get("live_mib") is not None:
                notes.append(f"live peak {r['live_mib']:.0f} MiB")
            label = f"{variant} ({', '.join(notes)})" if notes else variant
            row = (f"| {name} | {r['nodes']} | {label} | {r['params']:,} | "
                   f"{r['seconds'] * 1000:.0f} | {r['mem_mib']:.0f} | "
                   f"{r['saved_mib']:.0f} |")
        rows.append(row)
        print(row, flush=True)
    dev = args.device
    text = "\n".join([
        f"Batch {args.batch}, 12 -> 12 steps, {args.threads} threads, device {dev}, "
        f"{platform.machine()} {os.cpu_count()} CPUs; median of {args.steps} steps after "
        f"{args.warmup} warm-up. ms = forward + backward + Adam step.",
        "",
        "| model | N | variant | parameters | ms / batch | peak MiB (" +
        ("max allocated" if dev.startswith("cuda") else "RSS above model+data") +
        ") | saved for backward MiB |",
        "|---|---:|---|---:|---:|---:|---:|",
        *rows,
    ]) + "\n"
    print("\n" + text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
