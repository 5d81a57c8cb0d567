"""What a study run will need per worker before it runs (``distst scale --dry-run``).

Peak host memory of a training worker is, to first order,

    peak = base + series + 16 x parameters + k x activations

* base: a worker process with torch and Ray loaded (:data:`BASE_BYTES`);
* series: the float32 values of the sensors the worker holds (the whole graph in replicate
  mode; in shard mode its part and halo, from the plan when it is cached, else the halo share
  the real graphs have at that part size, ``cut_reference.json``);
* 16 bytes per parameter: weights, gradients and Adam's two moments;
* activations: the bytes autograd keeps for backward, measured by a probe (a forward pass of
  the run's model on two small generated graphs, 32 and 64 sensors, under the run's
  ``train.recompute`` and ``train.precision``; fitted linearly in the sensors, so per-node
  parameters and activations scale) times the worker's sensors and the windows of one
  micro-batch (``train.micro_batches`` splits a worker's share of the batch); ``k`` (:data:`ALLOCATOR_FACTOR`) is what the allocator and the backward pass's
  transient buffers add on top, calibrated on the measured studies in benchmarks/RESULTS.md.

It is an estimate for choosing batch sizes and worker counts, not a promise: the summary of
a study that ran prints the measured peak beside it.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from distst.config import Config
from distst.layout import Layout

#: RSS of a Ray Train worker with torch imported, before any data (measured on cpu2)
BASE_BYTES = 450 * 2**20
#: peak RSS above base and series, over the saved activations: 2.35-2.69 on the five GCGRU
#: runs of the strong-scaling studies in benchmarks/RESULTS.md (1,026 and 100,000 sensors)
ALLOCATOR_FACTOR = 2.5
PROBE_NODES = (32, 64)
PROBE_BATCH = 4


def _probe_key(cfg: Config) -> tuple:
    d = cfg.data
    return (cfg.model.name, repr(sorted(cfg.model.params.items())), d.input_len, d.horizon,
            d.time_of_day, d.day_of_week, d.synth.graph if not d.path else "knn",
            tuple(d.input_channels), tuple(d.target_channels), cfg.train.recompute,
            cfg.train.precision)


@lru_cache(maxsize=32)
def _probe(key: tuple, cfg_yaml: str) -> dict:
    """Parameters and saved-activation bytes per window at each of :data:`PROBE_NODES`."""
    import torch

    from distst.config import config_from_dict
    from distst.data.synth import generate_network
    from distst.engine.bundle import build_bundle
    from distst.nn.registry import build_model
    from distst.config import load_yaml

    cfg = config_from_dict(load_yaml(cfg_yaml, "the probe's config"))
    out = {}
    with tempfile.TemporaryDirectory(prefix="distst-probe-") as tmp:
        for n in PROBE_NODES:
            ddir = Path(tmp) / f"n{n}"
            generate_network(ddir, num_nodes=n, days=2, seed=0,
                             graph=key[6] if key[6] in ("knn", "delaunay") else "knn")
            data = replace(cfg.data, path=str(ddir), input_channels=[], split=[0.7, 0.1, 0.2])
            bundle = build_bundle(data, ddir, notices=False)
            torch.manual_seed(0)
            model = build_model(cfg.model.name, bundle.kwargs_for_model(cfg.model.name),
                                dict(cfg.model.params))
            params = sum(p.numel() for p in model.parameters())
            x, y = bundle.datasets["train"].batch(list(range(PROBE_BATCH)))
            weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
            seen: dict[int, int] = {}

            def pack(t):
                s = t.untyped_storage()
                if s.data_ptr() not in weights:  # parameters are counted in model_state
                    seen[s.data_ptr()] = s.nbytes()
                return t

            model.train()
            # what the run's worker keeps: recomputed steps keep their inputs only, bf16
            # keeps half-width activations (distst.engine.trainer.Trainer.forecast)
            model.recompute = cfg.train.recompute == "step"
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(
                    "cpu", dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16"):
                pred = model(x, targets=torch.nan_to_num(y), teacher_forcing=0.0)
            out[n] = {"params": params,
                      "act_per_window": (sum(seen.values()) + pred.nbytes) / PROBE_BATCH}
    return out


def _linear(points: dict, key: str, n: float) -> float:
    (n0, a), (n1, b) = sorted((k, v[key]) for k, v in points.items())
    slope = (b - a) / (n1 - n0)
    return max(0.0, a + slope * (n - n0))


def worker_memory(cfg: Config, total_nodes: int, local_nodes: float, steps: int,
                  channels: int = 1) -> dict:
    """Estimated peak bytes of one worker of ``cfg`` holding ``local_nodes`` of
    ``total_nodes`` sensors over ``steps`` time steps; each term and the ``total``."""
    probe = _probe(_probe_key(cfg), cfg.to_yaml())
    params = _linear(probe, "params", total_nodes)
    per_window = _linear(probe, "act_per_window", local_nodes)
    # the windows whose activations one worker holds at once: the replicas split the global
    # batch, and micro-batches split a worker's share (one piece's forward and backward at a
    # time; the gradients they add into are in model_state)
    share = math.ceil(cfg.train.batch_size / Layout.of(cfg).replicas)
    batch = math.ceil(share / max(1, min(cfg.train.micro_batches, share)))
    parts = {"base": BASE_BYTES, "series": local_nodes * steps * channels * 4,
             "model_state": 16 * params, "activations": ALLOCATOR_FACTOR * per_window * batch}
    return {**parts, "total": sum(parts.values()), "params": params, "batch": batch}


def local_nodes(run_cfg: Config) -> tuple[int, float, int, str] | None:
    """(sensors of the graph, the most sensors one worker holds, time steps, how the halo
    was found) for a generated graph; None for a dataset (sizes known once it is read)."""
    from distst.engine.provision import cache_root, synth_cache_dir
    from distst.engine.parallelize import plan_halo_hops
    from distst.scale.driver import real_cuts_at

    cfg = run_cfg
    if cfg.data.path or cfg.data.synth.graph == "grid":
        return None
    n, steps = cfg.data.synth.nodes, cfg.data.synth.days * 288
    pc = cfg.partition
    if not cfg.runtime.partitioned or pc.parts == 1:
        return n, float(n), steps, "whole graph"
    plan = (cache_root(cfg.data) / "plans" / f"{synth_cache_dir(cfg.data).name}-{pc.method}"
            f"-p{pc.parts}-h{plan_halo_hops(cfg)}-s{pc.seed}" / "META.json")
    if plan.is_file():
        import json

        sizes = json.loads(plan.read_text())["sizes"]
        return n, float(max(s["num_local"] for s in sizes)), steps, "plan"
    real = real_cuts_at(n / pc.parts, plan_halo_hops(cfg))
    share = sorted(r["halo_share"] for r in real)[len(real) // 2] if real else 0.0
    # halo share = halo / (inner + halo): inner / (1 - share) sensors in all
    return n, min(float(n), n / pc.parts * 1.03 / (1 - share)), steps, "real graphs' halo"
