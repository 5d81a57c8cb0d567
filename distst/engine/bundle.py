"""What a worker trains on, split by what it is: the windows and the scaler
(:class:`DataBundle`) and the graph view its models get (:class:`GraphView`). Which nodes the
worker owns is its :class:`distst.layout.Ownership`; getting the dataset and the plan onto
the node is :mod:`distst.engine.provision`'s; GPA coarsening is :mod:`distst.graph.coarsening`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distst.config import DataConfig
from distst.data.network import SensorNetwork, load_network
from distst.data.scaler import Scaler, make_scaler, scaler_from_state_dict
from distst.data.windows import (WindowDataset, make_splits, time_features, train_end_step,
                                  weekly_coverage_notice)
from distst.errors import DiststError
from distst.graph.coarsening import GraphCoarsening
from distst.graph.partition.plan import PartData
from distst.layout import Ownership


@dataclass
class GraphView:
    """The graph as one worker's models get it (distst.nn.registry.DATA_KEYS): the local
    edges, and on a part of a plan the whole graph's numbers that a part cannot compute
    itself (degrees of the local nodes, spatial attributes, the Laplacian's eigenvalue)."""

    network: SensorNetwork
    #: the dataset's folder, as messages name it
    dataset_dir: str
    owned: Ownership
    #: a part: whole-graph out-/in-degrees of the local nodes (None: from the local edges)
    out_degree: np.ndarray | None = None
    in_degree: np.ndarray | None = None
    #: a part: whole-graph degrees of the local nodes in the symmetrised graph, per rule
    undirected_degree: dict | None = None
    #: standardised spatial attributes [N, A]; a part: the plan's whole-graph values,
    #: otherwise computed on first use (distst.graph.spatial)
    spatial_attrs: np.ndarray | None = None
    spatial_attrs_missing: bool = False
    #: how a directed graph is made undirected for models that need it (data.symmetrize)
    symmetrize: str = "max"
    #: data.allow_empty_graph: a graph model may run on a graph without edges
    allow_empty_graph: bool = False
    #: largest eigenvalue of the whole graph's normalised Laplacian (symmetrised); a part
    #: receives it from the driver, the whole graph computes it on first use
    lambda_max: float | None = None
    #: part of every node of a plan whose coarsening stays inside parts: a whole-graph
    #: view standing in for an exchange-mode run (ST-UNet's GPA then runs per part)
    coarsen_within: np.ndarray | None = None
    #: print one-time notices about the graph (the run's driver or single process only)
    notices: bool = False
    _said: set = field(default_factory=set)

    def spatial(self) -> np.ndarray | None:
        """The nodes' spatial attributes, or None when the dataset has none."""
        if self.spatial_attrs is None and not self.spatial_attrs_missing:
            if self.owned.partial:
                self.spatial_attrs_missing = True  # a part cannot measure whole-graph roads
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
            if self.owned.partial:
                raise DiststError(
                    "shard worker: lambda_max='exact' needs the WHOLE graph's Laplacian "
                    "eigenvalue, which the driver computes and passes (graph_constants); "
                    "this worker was started without it")
            from distst.graph.adjacency import laplacian_lambda_max

            self.lambda_max = laplacian_lambda_max(self.network.edge_index,
                                                   self.network.edge_weight,
                                                   self.network.num_nodes, self.symmetrize)
        return self.lambda_max

    def check_linked(self, name: str) -> None:
        """Refuse a graph model on a graph without an edge between two sensors (once, on the
        whole graph, unless data.allow_empty_graph)."""
        from distst.graph.adjacency import linked_edges

        if not self.notices or self.allow_empty_graph:
            return
        net = self.network
        if not linked_edges(net.edge_index, net.edge_weight):
            raise DiststError(
                f"dataset {self.dataset_dir}: the graph has no edge between two sensors "
                f"({net.num_edges} edges, all self-loops or weight 0), so {name} would be "
                "a per-node model; check the graph file, or set data.allow_empty_graph=true "
                "to train it anyway")

    def _undirected(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The symmetrised local edges and, on a part, their whole-graph degrees."""
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

    def model_kwargs(self, keys: set, graph: str | None = None, model: str = "model") -> dict:
        """The graph keys of a model constructor. Edge weights are always the raw local ones:
        models that read the graph normalise it themselves, on a part with the whole-graph
        ``out_degree`` / ``in_degree`` of the local nodes; the costly keys (spatial
        attributes) are computed only when ``keys`` asks for them."""
        ei, ew = self.network.edge_index, self.network.edge_weight
        degrees = {"out_degree": self.out_degree, "in_degree": self.in_degree}
        if graph == "undirected":
            ei, ew, udeg = self._undirected(model)
            degrees = {"out_degree": udeg, "in_degree": udeg}
        out = {"edge_index": torch.as_tensor(np.asarray(ei), dtype=torch.long),
               "edge_weight": torch.as_tensor(np.asarray(ew), dtype=torch.float32)}
        if "laplacian_lambda_max" in keys:  # a callable: only lambda_max='exact' solves
            out["laplacian_lambda_max"] = self.laplacian_lambda_max
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


@dataclass
class DataBundle:
    """The windows, the scaler and the graph view of one worker's data."""

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
    graph: GraphView
    _hashes: dict | None = None

    @property
    def owned(self) -> Ownership:
        """Which local nodes this worker owns (a part: inner first, then halo)."""
        return self.graph.owned

    @property
    def input_dim(self) -> int:
        return self.datasets["train"].input_dim

    @property
    def output_dim(self) -> int:
        return len(self.target_channels)

    @property
    def steps_per_day(self) -> int:
        return max(1, int(round(24 * 60 / self.network.step_minutes)))

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

        graph = model_graph(name)
        if graph:
            self.graph.check_linked(name)
        return self.model_data_kwargs(model_data_keys(name), graph=graph, model=name)

    def model_data_kwargs(self, keys=None, graph: str | None = None, model: str = "model") -> dict:
        """Sizes and graph for a model constructor (see distst.nn.registry.DATA_KEYS).

        ``keys``: the data keys the model declares (``model_data_keys(name)``)."""
        keys = set(keys) if keys is not None else {"num_nodes", "input_dim", "output_dim",
                                                   "input_len", "horizon", "edge_index",
                                                   "edge_weight"}
        train = self.datasets["train"]
        return {"num_nodes": self.network.num_nodes, "input_dim": self.input_dim,
                "output_dim": self.output_dim, "input_len": self.input_len,
                "horizon": self.horizon, "steps_per_day": self.steps_per_day,
                "time_of_day": train.add_time_of_day, "day_of_week": train.add_day_of_week,
                **self.graph.model_kwargs(keys, graph=graph, model=model)}

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
    whole = str(Path(dataset_dir).resolve())
    if part is not None:
        view = GraphView(net, whole, Ownership.of_part(part.nodes, part.num_inner,
                                                       part.num_global, part.halo_hops),
                         out_degree=part.deg, in_degree=part.in_deg,
                         undirected_degree=part.undirected_degree,
                         spatial_attrs=part.spatial_attrs)
    else:
        view = GraphView(net, whole, Ownership.whole(net.num_nodes))
    view.symmetrize, view.allow_empty_graph = data.symmetrize, data.allow_empty_graph
    view.lambda_max, view.notices = lambda_max, notices
    return DataBundle(net, splits, scaler, datasets, input_channels,
                      list(data.target_channels), data.input_len, data.horizon, whole,
                      excluded, view,
                      _hashes=(part.dataset_hashes or None) if part is not None else None)


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
