"""Provisioning: what a run needs on disk before any worker reads it. A dataset (fetched
from a URI once per node, or generated from the synthetic generator's parameters) and a
partition plan (the configured one, verified, or one made on the fly and cached), all
under the node-local cache ``data.cache_dir``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from distst.config import Config, DataConfig
from distst.data.network import is_dataset_dir
from distst.engine.parallelize import least_halo_hops, plan_halo_hops
from distst.errors import DiststError
from distst.layout import Layout
from distst.storage import fetch, file_lock, is_remote, location, resolved


def synth_cache_dir(data: DataConfig) -> Path:
    """Cache key: every generator parameter plus the generator's version, so a changed
    generator never serves a stale cached series."""
    from distst.data.synth import GENERATOR_VERSION

    s = data.synth
    root = cache_root(data)
    if s.graph == "grid":
        from distst.data.grid import GENERATOR_VERSION as GRID_VERSION

        h, w = s.grid
        return root / (f"synth-grid-v{GRID_VERSION}-{h}x{w}-d{s.days}-s{s.seed}-"
                       f"m{s.grid_step_minutes}")
    return root / f"synth-v{GENERATOR_VERSION}-n{s.nodes}-d{s.days}-s{s.seed}-{s.graph}"


def cache_root(data: DataConfig) -> Path:
    """Node-local cache: generated networks, plans made on the fly, fetched copies."""
    return resolved(os.path.expandvars(os.path.expanduser(data.cache_dir)),
                    "config key 'data.cache_dir':")


def fetch_dataset(data: DataConfig, quiet: bool = False) -> tuple[Path, int]:
    """A local copy of the dataset at URI ``data.path``, fetched once per node and kept
    under ``data.cache_dir/fetched`` keyed by the remote files' names, sizes and times (a
    re-prepared dataset is fetched anew). Returns (local folder, bytes fetched by this call)."""
    src = location(data.path)
    if not (src / "meta.json").is_file():
        raise DiststError(
            f"config key 'data.path': {src} is not a prepared dataset (no meta.json there); "
            f"write one with 'distst data prepare --format FORMAT --path RAW --out {src}'")
    listing = src.files()
    key = hashlib.sha256(json.dumps([src.uri, listing]).encode()).hexdigest()[:16]
    dest = cache_root(data) / "fetched" / f"{src.name}-{key}"
    copied = fetch(src, dest, names=[f[0] for f in listing])
    if not quiet:
        print(f"dataset {src}: " + (f"fetched {copied} bytes into {dest}" if copied
                                    else f"cached copy {dest}"), flush=True)
    return dest, copied


def ensure_dataset(data: DataConfig, quiet: bool = False) -> Path:
    """Return the prepared dataset directory (a local copy when ``data.path`` is a remote
    URI), generating the synthetic one on first use.

    Called on the driver before any worker starts, and by a worker on a node that lacks the
    driver's copy (a generated network is the same on every node: the generator is seeded).
    """
    if is_remote(data.path):
        return fetch_dataset(data, quiet)[0]
    if data.path:
        p = location(data.path).local
        if not is_dataset_dir(p):
            raise DiststError(
                f"config key 'data.path': {p} is not a prepared dataset; create it with "
                "'distst data prepare --format FORMAT --path RAW --out DIR' or leave "
                "data.path empty to use the synthetic network"
            )
        return p
    out = synth_cache_dir(data)
    if is_dataset_dir(out):
        return out
    with file_lock(out.parent / f".{out.name}.lock"):  # one generator per node
        _generate(data, out, quiet)
    return out


def _generate(data: DataConfig, out: Path, quiet: bool) -> None:
    if not is_dataset_dir(out) and data.synth.graph == "grid":
        from distst.data.grid import generate_grid_network
        from distst.data.network import save_network

        h, w = data.synth.grid
        if not quiet:
            print(f"generating synthetic {h} x {w} flow grid ({data.synth.days} days) into "
                  f"{out} ...", flush=True)
        save_network(generate_grid_network(h, w, data.synth.days, seed=data.synth.seed,
                                           step_minutes=data.synth.grid_step_minutes), out)
    if not is_dataset_dir(out):
        from distst.data.synth import generate_network

        if not quiet:
            print(f"generating synthetic network ({data.synth.nodes} nodes, "
                  f"{data.synth.days} days) into {out} ...", flush=True)
        generate_network(out, num_nodes=data.synth.nodes, days=data.synth.days,
                         seed=data.synth.seed, graph=data.synth.graph)


def ensure_plan(cfg: Config, dataset_dir: str | Path, hops: int | None = None) -> str:
    """The partition plan for shard mode: the configured one (verified against the dataset;
    of a remote plan only META.json is read here, the workers fetch their parts) or one made
    on the fly and cached beside the synthetic datasets. Returns what the workers open: an
    absolute path or a URI. ``hops``: the boundary depth (default: what ``cfg``'s run reads,
    :func:`distst.engine.parallelize.plan_halo_hops`; a sweep plans each depth its trials read)."""
    from distst.graph.partition.plan import load_plan, make_plan, plan_mirror, verify_plan

    pc = cfg.partition
    if pc.plan:
        src = location(pc.plan)
        local = src.local if src.is_local else plan_mirror(pc.plan, cache_root(cfg.data) /
                                                           "fetched")
        verify_plan(local, dataset_dir)
        meta = load_plan(local)
        if meta.num_parts != pc.parts:
            raise DiststError(
                f"partition.plan {pc.plan} has {meta.num_parts} parts but partition.parts="
                f"{pc.parts}; set partition.parts={meta.num_parts} or make a new plan"
            )
        need = least_halo_hops(cfg) if hops is None else hops
        if Layout.of(cfg).exact_parts and meta.halo_hops < need:
            what = ("has no boundary" if meta.halo_hops < 1 else
                    f"has a {meta.halo_hops}-hop boundary, and {cfg.model.name} reads {need} hops")
            raise DiststError(
                f"partition.plan {pc.plan} {what} (halo_hops={meta.halo_hops}); exchange mode "
                f"needs each part's {need}-hop boundary: make the plan again with distst "
                f"partition ... --halo-hops {need}, or leave partition.plan empty")
        # workers do not share the driver's working directory
        return str(src)
    root = cache_root(cfg.data) / "plans"
    hops = plan_halo_hops(cfg) if hops is None else hops
    out = root / (f"{Path(dataset_dir).name}-{pc.method}-p{pc.parts}-h{hops}-s{pc.seed}"
                  + ("" if pc.order == "ascending" else f"-{pc.order}"))
    # one planner per node: two runs started at once wait for one plan rather than the
    # second being refused by the first one's claim on the folder
    with file_lock(root / f".{out.name}.lock"):
        if out.exists():
            try:
                verify_plan(out, dataset_dir)
                return str(out)
            except DiststError:
                pass  # the dataset changed since: plan again below
        print(f"partitioning {dataset_dir} with {pc.method} into {pc.parts} parts "
              f"(halo {hops} hops) -> {out}", flush=True)
        make_plan(dataset_dir, out, method=pc.method, parts=pc.parts, halo_hops=hops,
                  seed=pc.seed, order=pc.order)
    return str(out)


def plan_parts(cfg: Config, dataset_dir: str | Path) -> np.ndarray:
    """The part of every node in the plan ``cfg``'s partitioned run opens (for a one-process
    stand-in of an exchange-mode run: :attr:`DataBundle.coarsen_within`)."""
    from distst.graph.partition.plan import plan_mirror

    plan = location(ensure_plan(cfg, dataset_dir))
    local = plan.local if plan.is_local else plan_mirror(str(plan), cache_root(cfg.data) /
                                                         "fetched")
    return np.load(Path(local) / "assignment.npy")
