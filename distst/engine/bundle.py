"""From a DataConfig to windows, scaler and the model's data-derived sizes."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distst.config import Config, DataConfig
from distst.data.network import SensorNetwork, is_dataset_dir, load_network
from distst.data.scaler import Scaler, make_scaler, scaler_from_state_dict
from distst.data.windows import (WindowDataset, make_splits, time_features, train_end_step,
                                  weekly_coverage_notice)
from distst.errors import DiststError
from distst.graph.partition.plan import PartData
from distst.nn.registry import plan_halo_hops
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
    :func:`distst.nn.registry.plan_halo_hops`; a sweep plans each depth its trials read)."""
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
        need = plan_halo_hops(cfg) if hops is None else hops
        if cfg.runtime.mode == "exchange" and meta.halo_hops < need:
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
    out = root / f"{Path(dataset_dir).name}-{pc.method}-p{pc.parts}-h{hops}-s{pc.seed}"
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
                  seed=pc.seed)
    return str(out)


def plan_parts(cfg: Config, dataset_dir: str | Path) -> np.ndarray:
    """The part of every node in the plan ``cfg``'s partitioned run opens (for a one-process
    stand-in of an exchange-mode run: :attr:`DataBundle.coarsen_within`)."""
    from distst.graph.partition.plan import plan_mirror

    plan = location(ensure_plan(cfg, dataset_dir))
    local = plan.local if plan.is_local else plan_mirror(str(plan), cache_root(cfg.data) /
                                                         "fetched")
    return np.load(Path(local) / "assignment.npy")


def local_coarsening(edge_index, edge_weight, num_nodes: int, levels: int) -> list[tuple]:
    """GPA coarsening of a (local) graph for pooling models, one tuple per level l = 1..levels:
    ``(parent LongTensor [N_{l-1}], edge_index LongTensor [2, E_l], edge_weight [E_l], N_l)``."""
    from distst.graph.partition.gpa import gpa_hierarchy

    hier = gpa_hierarchy(np.asarray(edge_index), np.asarray(edge_weight), int(num_nodes), levels)
    out, prev = [], np.arange(int(num_nodes), dtype=np.int64)
    for assign, (ei, ew, n_l) in zip(hier.levels, hier.graphs):
        # assign: level-l super-node of each ORIGINAL node; parent: of each level-(l-1) node
        parent = np.zeros(int(prev.max()) + 1, dtype=np.int64)
        parent[prev] = assign
        out.append((torch.as_tensor(parent), torch.as_tensor(ei, dtype=torch.long),
                    torch.as_tensor(ew, dtype=torch.float32), int(n_l)))
        prev = assign
    return out


class GraphCoarsening:
    """The ``coarsening`` data key of pooling models (ST-UNet): GPA (Algorithm 1) on the
    model's graph. ``coarsening(levels)`` gives one ``(parent, edge_index, edge_weight,
    num_nodes)`` per level (:func:`local_coarsening`).

    Exchange mode needs two more things from it. ``coarsening(levels, owned=k)`` coarsens the
    subgraph of the first ``k`` (owned) nodes only: what a worker can coarsen alone, so that
    super-nodes never span parts. :meth:`undirected` is the graph as GPA reads it (both
    directions, max rule), whose edges between parts the model contracts with the owners'
    numbering. :meth:`within` (``parts [N]``) gives the one-process equivalent: GPA on each
    part's subgraph, super-nodes numbered part by part, every edge of the graph contracted."""

    def __init__(self, edge_index, edge_weight, num_nodes: int, parts=None):
        self.edge_index = np.asarray(edge_index, dtype=np.int64)
        self.edge_weight = np.asarray(edge_weight, dtype=np.float64)
        self.num_nodes = int(num_nodes)
        self.parts = None if parts is None else np.asarray(parts, dtype=np.int64)
        if self.parts is not None and self.parts.shape != (self.num_nodes,):
            raise DiststError(f"coarsening: parts has shape {list(self.parts.shape)}, expected "
                              f"one part per node ([{self.num_nodes}])")

    def __call__(self, levels: int, owned: int | None = None) -> list[tuple]:
        if self.parts is not None:
            return self._within_parts(levels)
        ei, ew, n = self.edge_index, self.edge_weight, self.num_nodes
        if owned is not None:
            keep = (ei[0] < owned) & (ei[1] < owned)
            ei, ew, n = ei[:, keep], ew[keep], int(owned)
        return local_coarsening(ei, ew, n, levels)

    def within(self, parts) -> "GraphCoarsening":
        return GraphCoarsening(self.edge_index, self.edge_weight, self.num_nodes, parts)

    def undirected(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(edge_index LongTensor [2, E], edge_weight float64 [E])``: both directions of
        every edge, weight the larger one, self loops dropped (what GPA contracts)."""
        from distst.graph.adjacency import undirected_csr

        coo = undirected_csr(self.edge_index, self.edge_weight, self.num_nodes).tocoo()
        return (torch.as_tensor(np.stack([coo.row, coo.col]).astype(np.int64)),
                torch.as_tensor(coo.data, dtype=torch.float64))

    def _within_parts(self, levels: int) -> list[tuple]:
        import scipy.sparse as sp

        from distst.graph.adjacency import undirected_csr
        from distst.graph.partition.gpa import gpa_hierarchy

        n = self.num_nodes
        adj = undirected_csr(self.edge_index, self.edge_weight, n)
        assign = [np.empty(n, dtype=np.int64) for _ in range(levels)]
        counts = [0] * levels
        for j in np.unique(self.parts):  # part by part: ids offset by the parts before
            nodes = np.flatnonzero(self.parts == j)
            sub = adj[nodes][:, nodes].tocoo()
            hier = gpa_hierarchy(np.stack([sub.row, sub.col]), sub.data, len(nodes), levels)
            for lvl in range(levels):
                assign[lvl][nodes] = counts[lvl] + hier.levels[lvl]
                counts[lvl] += int(hier.graphs[lvl][2])
        row = np.repeat(np.arange(n, dtype=np.int64), np.diff(adj.indptr))
        out, prev = [], np.arange(n, dtype=np.int64)
        for lvl in range(levels):
            parent = np.zeros(int(prev.max()) + 1 if n else 0, dtype=np.int64)
            parent[prev] = assign[lvl]
            r, c = assign[lvl][row], assign[lvl][adj.indices]
            keep = r != c  # edges inside a super-node vanish, parallel ones add up
            m = counts[lvl]
            coarse = sp.coo_matrix((adj.data[keep], (r[keep], c[keep])), shape=(m, m)).tocsr()
            coarse.sum_duplicates()
            coarse = coarse.tocoo()
            out.append((torch.as_tensor(parent),
                        torch.as_tensor(np.stack([coarse.row, coarse.col]).astype(np.int64)),
                        torch.as_tensor(coarse.data, dtype=torch.float32), m))
            prev = assign[lvl]
        return out


@dataclass
class DataBundle:
    network: SensorNetwork
    splits: dict[str, np.ndarray]
    scaler: Scaler
    datasets: dict[str, WindowDataset]
    input_channels: list[int]
    target_channels: list[int]
    input_len: int
    horizon: int
    dataset_dir: str
    #: windows per split left out because they straddle a gap in the timestamps
    excluded_windows: dict[str, int]
    #: shard mode: nodes [0, num_inner) are owned, the rest is halo (None = all owned)
    num_inner: int | None = None
    #: global id of every local node (shard: inner then halo; otherwise 0..N-1)
    global_ids: np.ndarray | None = None
    #: node count of the whole graph (shard: more than the part holds)
    num_global_nodes: int | None = None
    #: shard mode: whole-graph out-/in-degrees of the local nodes (None: from the local edges)
    out_degree: np.ndarray | None = None
    in_degree: np.ndarray | None = None
    #: standardised spatial attributes [N, A]; shard mode: the plan's whole-graph values,
    #: otherwise computed on first use (distst.graph.spatial)
    spatial_attrs: np.ndarray | None = None
    spatial_attrs_missing: bool = False
    #: how a directed graph is made undirected for models that need it (data.symmetrize)
    symmetrize: str = "max"
    #: shard mode: whole-graph degrees of the local nodes in the symmetrised graph, per rule
    undirected_degree: dict | None = None
    #: data.allow_empty_graph: a graph model may run on a graph without edges
    allow_empty_graph: bool = False
    _hashes: dict | None = None
    #: largest eigenvalue of the whole graph's normalised Laplacian (symmetrised); shard
    #: workers receive it from the driver, a whole-graph bundle computes it on first use
    lambda_max: float | None = None
    #: part of every node of a plan whose coarsening stays inside parts: a whole-graph
    #: bundle standing in for an exchange-mode run (ST-UNet's GPA then runs per part)
    coarsen_within: np.ndarray | None = None
    #: print one-time notices about the data (the run's driver or single process only)
    notices: bool = False
    _said: set = field(default_factory=set)

    @property
    def input_dim(self) -> int:
        return self.datasets["train"].input_dim

    @property
    def output_dim(self) -> int:
        return len(self.target_channels)

    @property
    def steps_per_day(self) -> int:
        return max(1, int(round(24 * 60 / self.network.step_minutes)))

    def spatial(self) -> np.ndarray | None:
        """The nodes' spatial attributes, or None when the dataset has none."""
        if self.spatial_attrs is None and not self.spatial_attrs_missing:
            if self.num_inner is not None:
                self.spatial_attrs_missing = True  # a shard cannot measure whole-graph roads
            else:
                from distst.graph.spatial import spatial_attributes

                try:
                    self.spatial_attrs = spatial_attributes(self.network).values
                except DiststError:
                    self.spatial_attrs_missing = True  # the model says what it needs
        return self.spatial_attrs

    def laplacian_lambda_max(self) -> float:
        """``lambda_max`` of the whole graph's normalised Laplacian (symmetrised graph)."""
        if self.lambda_max is None:
            if self.num_inner is not None:
                raise DiststError(
                    "shard worker: lambda_max='exact' needs the WHOLE graph's Laplacian "
                    "eigenvalue, which the driver computes and passes (graph_constants); "
                    "this worker was started without it")
            from distst.graph.adjacency import laplacian_lambda_max

            self.lambda_max = laplacian_lambda_max(self.network.edge_index,
                                                   self.network.edge_weight,
                                                   self.network.num_nodes, self.symmetrize)
        return self.lambda_max

    def graph_constants(self) -> dict:
        """Whole-graph numbers a shard worker cannot compute from its part (driver side)."""
        return {"lambda_max": self.laplacian_lambda_max()}

    def dataset_hashes(self) -> dict:
        """The dataset's file hashes (as a partition plan records them), computed once."""
        if self._hashes is None:
            from distst.graph.partition.plan import input_hashes

            self._hashes = input_hashes(self.dataset_dir)
        return self._hashes

    def kwargs_for_model(self, name: str) -> dict:
        """:meth:`model_data_kwargs` for registered model ``name``: the keys it declares and the
        graph it states it needs (``GRAPH``, distst.nn.registry.model_graph)."""
        from distst.nn.registry import model_data_keys, model_graph

        from distst.graph.adjacency import linked_edges

        graph = model_graph(name)
        if graph and self.notices and not self.allow_empty_graph:  # once, on the whole graph
            net = self.network
            if not linked_edges(net.edge_index, net.edge_weight):
                raise DiststError(
                    f"dataset {self.dataset_dir}: the graph has no edge between two sensors "
                    f"({net.num_edges} edges, all self-loops or weight 0), so {name} would be "
                    "a per-node model; check the graph file, or set data.allow_empty_graph=true "
                    "to train it anyway")
        return self.model_data_kwargs(model_data_keys(name), graph=graph, model=name)

    def _undirected(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The symmetrised local edges and, in shard mode, their whole-graph degrees."""
        from distst.graph.adjacency import symmetrize, symmetrize_notice

        net = self.network
        if self.notices and "symmetrize" not in self._said:
            self._said.add("symmetrize")
            note = symmetrize_notice(net.edge_index, net.edge_weight, net.num_nodes,
                                     self.symmetrize)
            if note:
                print(f"graph: {model} needs an undirected graph; {note}", flush=True)
        ei, ew = symmetrize(net.edge_index, net.edge_weight, self.symmetrize, net.num_nodes)
        deg = None
        if self.undirected_degree is not None:
            deg = self.undirected_degree[self.symmetrize]
        return ei, ew, deg

    def model_data_kwargs(self, keys=None, graph: str | None = None, model: str = "model") -> dict:
        """Sizes and graph for a model constructor (see distst.nn.registry.DATA_KEYS).

        ``keys``: the data keys the model declares (``model_data_keys(name)``); the costly
        ones (spatial attributes) are computed only when asked for. Edge weights are always the
        raw local ones: models that read the graph normalise it themselves, in shard mode with
        the whole-graph ``out_degree`` / ``in_degree`` of the local nodes.
        """
        keys = set(keys) if keys is not None else {"num_nodes", "input_dim", "output_dim",
                                                   "input_len", "horizon", "edge_index",
                                                   "edge_weight"}
        ei, ew = self.network.edge_index, self.network.edge_weight
        degrees = {"out_degree": self.out_degree, "in_degree": self.in_degree}
        if graph == "undirected":
            ei, ew, udeg = self._undirected(model)
            degrees = {"out_degree": udeg, "in_degree": udeg}
        out = {
            "num_nodes": self.network.num_nodes,
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "input_len": self.input_len,
            "horizon": self.horizon,
            "edge_index": torch.as_tensor(np.asarray(ei), dtype=torch.long),
            "edge_weight": torch.as_tensor(np.asarray(ew), dtype=torch.float32),
        }
        if "laplacian_lambda_max" in keys:  # a callable: only lambda_max='exact' solves
            out["laplacian_lambda_max"] = self.laplacian_lambda_max
        train = self.datasets["train"]
        out.update(steps_per_day=self.steps_per_day, time_of_day=train.add_time_of_day,
                   day_of_week=train.add_day_of_week)
        if "coarsening" in keys:
            out["coarsening"] = GraphCoarsening(ei, ew, self.network.num_nodes,
                                                parts=self.coarsen_within)
        if "coords" in keys:
            c = self.network.coords
            out["coords"] = None if c is None else torch.as_tensor(np.asarray(c),
                                                                   dtype=torch.float64)
        for key, arr in degrees.items():
            if key in keys:
                out[key] = None if arr is None else torch.as_tensor(arr, dtype=torch.float64)
        if "spatial_attrs" in keys:
            sa = self.spatial()
            out["spatial_attrs"] = None if sa is None else torch.as_tensor(sa,
                                                                           dtype=torch.float32)
        return out

    def target_scale(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the target channels, broadcastable to ``[B, H, N, C_t]``."""
        mean, std = self.scaler.params(channels=self.target_channels)
        # offset/scale: [C_t] (global) or [N, C_t] (per node): both broadcast over [B, H, N, C_t]
        return (torch.as_tensor(mean, dtype=torch.float32, device=device),
                torch.as_tensor(std, dtype=torch.float32, device=device))


def dataset_input_channels(net: SensorNetwork) -> list[int]:
    """The input channels used when ``data.input_channels`` is empty: the default that
    ``distst data prepare`` recorded in ``meta.json`` (``source.default_input_channels``; a
    shard plan's part keeps it under ``source.parent``), e.g. flow only for PEMS03/04/07/08 as
    the literature feeds them, else every channel."""
    src = net.source or {}
    default = src.get("default_input_channels", (src.get("parent") or {}).get(
        "default_input_channels"))
    if default:
        chans = [int(ch) for ch in default if 0 <= int(ch) < net.num_channels]
        if chans:
            return chans
    return list(range(net.num_channels))


def build_bundle(data: DataConfig, dataset_dir: str | Path, scaler_state: dict | None = None,
                 notices: bool | None = None, part: PartData | None = None,
                 lambda_max: float | None = None) -> DataBundle:
    """Open the dataset, split it, fit (or restore) the scaler and build the window datasets.

    ``part`` (shard mode): a part of a partition plan (:func:`distst.graph.partition.plan.open_part`);
    the bundle then holds the part's nodes (inner first, then halo) with the whole graph's
    degrees and spatial attributes, while ``dataset_dir`` stays the whole dataset's, the one
    checkpoints name. ``lambda_max``: the whole graph's Laplacian eigenvalue, which a part
    cannot compute (the driver's :func:`distst.engine.entry.graph_constants`).
    ``notices``: print warnings about the data (weekdays the training split misses); default:
    when the scaler is fitted here, i.e. once per run, on the driver or the one local process
    (workers and re-evaluations receive a fitted scaler's state and stay quiet).
    """
    source = part.path if part is not None else dataset_dir
    net = load_network(source)
    c = net.num_channels
    input_channels = list(data.input_channels) or dataset_input_channels(net)
    for key, chans in (("data.input_channels", input_channels),
                       ("data.target_channels", data.target_channels)):
        bad = [ch for ch in chans if not 0 <= ch < c]
        if bad:
            raise DiststError(
                f"config key '{key}': channel {bad[0]} does not exist; dataset "
                f"{source} has channels 0..{c - 1} ({', '.join(net.channels)})"
            )
    splits = make_splits(net.num_steps, input_len=data.input_len, horizon=data.horizon,
                         ratios=tuple(data.split))
    splits, excluded = drop_gap_windows(splits, net.timestamps, data.input_len + data.horizon)
    notices = bool(scaler_state is None if notices is None else notices)
    if notices and data.day_of_week:
        steps_per_day = max(1, int(round(24 * 60 / net.step_minutes)))  # DataBundle's rule
        note = weekly_coverage_notice(net.timestamps, splits, data.input_len, data.horizon,
                                      steps_per_day)
        if note:
            print(note, flush=True)
    if scaler_state is not None:
        scaler = scaler_from_state_dict(scaler_state)
    else:
        # once per run (driver or local process): the workers get this run's scaler state
        net.check_finite(f"dataset {source}")
        scaler = make_scaler(data.scaler, per_node=False)
        scaler.fit(net.values, end_step=train_end_step(splits, data.input_len))
    datasets = {
        name: WindowDataset(
            net.values, net.timestamps, starts, input_len=data.input_len, horizon=data.horizon,
            scaler=scaler, input_channels=input_channels,
            target_channels=list(data.target_channels), add_time_of_day=data.time_of_day,
            add_day_of_week=data.day_of_week,
        )
        for name, starts in splits.items()
    }
    shard = {}
    if part is not None:
        shard = dict(num_inner=part.num_inner,
                     global_ids=np.asarray(part.nodes, dtype=np.int64),
                     num_global_nodes=part.num_global, out_degree=part.deg,
                     in_degree=part.in_deg, undirected_degree=part.undirected_degree,
                     spatial_attrs=part.spatial_attrs, _hashes=part.dataset_hashes or None)
    return DataBundle(net, splits, scaler, datasets, input_channels,
                      list(data.target_channels), data.input_len, data.horizon,
                      str(Path(dataset_dir).resolve()), excluded, symmetrize=data.symmetrize,
                      allow_empty_graph=data.allow_empty_graph, lambda_max=lambda_max,
                      notices=notices, **shard)


def drop_gap_windows(splits: dict[str, np.ndarray], timestamps: np.ndarray,
                     length: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Keep only windows whose ``length`` steps are evenly spaced in time.

    Series with calendar gaps (PeMSD7 holds weekdays only) would otherwise produce windows
    that jump from Friday night to Monday. The steps themselves are all kept; only windows
    that straddle a gap are left out, and the counts are returned so that the run says so.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.size < 2:
        return splits, {k: 0 for k in splits}
    diffs = np.diff(ts)
    step = np.median(diffs)
    if np.all(diffs == step):
        return splits, {k: 0 for k in splits}
    # irregular[i] = 1 where the gap between step i and i+1 is not the usual step
    irregular = np.concatenate([[0], np.cumsum(diffs != step)])
    out, excluded = {}, {}
    for name, starts in splits.items():
        ok = irregular[starts + length - 1] == irregular[starts]
        out[name], excluded[name] = starts[ok], int((~ok).sum())
        if not ok.any():
            raise DiststError(
                f"every {name} window of {length} steps straddles a gap in the timestamps; "
                "use shorter windows (data.input_len, data.horizon) or a gap-free series"
            )
    return out, excluded


def history_for_ha(bundle: DataBundle) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scaled training-range target series with time features, to fit the HA table.

    Only the steps that training windows cover (inputs and targets) are used, so HA sees
    no validation or test data.
    """
    starts = bundle.splits["train"]
    end = int(starts[-1]) + bundle.input_len + bundle.horizon
    vals = np.asarray(bundle.network.values[:end][..., bundle.target_channels], dtype=np.float32)
    scaled = bundle.scaler.transform(vals, channels=bundle.target_channels)
    tod, dow = time_features(bundle.network.timestamps[:end])
    return torch.from_numpy(np.ascontiguousarray(scaled)), torch.from_numpy(tod), torch.from_numpy(dow)
