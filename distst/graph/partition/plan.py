"""The partition plan on disk: one folder per part that a sharded worker opens as a dataset.

``distst partition`` runs once, offline, and writes (atomically: a temp sibling, then rename)::

    PLAN_DIR/
      META.json          format, method, parts, halo hops, partition params, per-part sizes,
                         quality figures, notes, and hashes of the input dataset
      assignment.npy     int64 [N]: the part that owns each global node
      part_{i}/
        part.json        counts (inner, halo, local, edges), the sha256 of nodes.npy and of
                         every file of the part ("files"; META.json holds the sha256 of each
                         part.json, so a part fetched from remote storage is verified whole)
        nodes.npy        int64 [n_local]: global ids, inner first (ascending, or in reverse
                         Cuthill-McKee order: META.json "order"), then halo (ascending)
        edge_index.npy   int64 [2, E_local]: edges with BOTH ends local, in local positions
        edge_weight.npy  float32 [E_local]: their raw weights
        deg.npy          float64 [n_local]: whole-graph (out-)degrees of the local nodes
        in_deg.npy       float64 [n_local]: whole-graph in-degrees (random-walk diffusion)
        udeg_max.npy     float64 [n_local]: whole-graph degrees of the graph symmetrised with
                         max(w_ij, w_ji) (Chebyshev models, data.symmetrize=max; the "sum"
                         rule's degree is deg + in_deg)
        spatial_attrs.npy float32 [n_local, A]: distst.graph.spatial attributes computed on
                         the WHOLE graph (road distances reach past any halo), when the
                         dataset has any; names in META.json "spatial_attr_names"
        values.npy       float32 [T, n_local, C]: the series of just those nodes
        timestamps.npy, node_ids.npy (original string ids), coords.npy / node_attrs.npy
        meta.json        the dataset layout of distst.data.network

so ``load_network(PLAN_DIR/part_i)`` opens a part as an ordinary (memory-mapped) dataset and
a worker reuses every piece of dataset code on it. Node positions in a part are local; global
ids are ``nodes.npy``; the first ``num_inner`` local nodes are the ones the part owns (the loss
covers only those), the rest is the halo (:mod:`distst.graph.partition.halo`).

Normalisation with whole-graph degrees. A part keeps its raw edge weights and the WHOLE
graph's degrees of its nodes; graph operators normalise the local edges with those degrees
(``distst.nn.layers.graph.cheb_operator(..., degree=deg)``, as PyG's ``get_laplacian`` /
``ChebConv`` do: edge weights as float32, self loops removed, degree ``D_i`` = float64 sum of
the weights of node ``i``'s OUTGOING edges, ``edge_index[0]`` being the source). The part's
operator then equals the full-graph operator restricted to the local nodes, so every row of an
inner node whose in-neighbours are all local (always true with ``halo_hops >= 1``) is exactly
the full-graph row; the same holds for the random-walk variants with ``deg.npy`` and
``in_deg.npy``.

Determinism. Re-running with the same dataset, partition and hops gives byte-identical files:
no timestamps, no temp paths, JSON with sorted keys; timing figures (keys named ``seconds`` or
ending in ``_seconds``/``_s``/``time``) are left out of META.json for that reason (the CLI prints
them from the values :func:`make_plan` returns).

Input hashes. META.json records the sha256 of the dataset's ``meta.json``, ``edge_index.npy``,
``edge_weight.npy``, ``node_ids.npy``, ``timestamps.npy`` (and ``coords.npy``/``node_attrs.npy``
when present). ``values.npy`` can be many GB, so it is hashed fully only up to 64 MiB; above
that the hash covers its .npy header, its size and 64 blocks of 1 MiB at evenly spaced offsets
(first and last block included). A change that keeps the size and touches none of the sampled
blocks therefore goes unnoticed; :func:`verify_plan` is a guard against using a plan with the
wrong or a re-generated dataset, not a checksum of every byte.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distst.data.network import (
    SensorNetwork,
    check_output_dir,
    build_meta,
    load_network,
    write_meta,
    write_static_files,
)
from distst.errors import DiststError
from distst.storage import atomic_dir, fetch, location, write_atomic
from distst.graph.adjacency import undirected_degree
from distst.graph.partition.base import Partition
from distst.graph.partition.halo import halo_adjacency, k_hop_halo
from distst.graph.spatial import spatial_attributes

PLAN_FORMAT = "distst-partition-plan"
PLAN_VERSION = 5
META_NAME = "META.json"
PART_META = "part.json"
# values.npy hashing: files up to _FULL_HASH_LIMIT are hashed whole, larger ones sampled.
_SAMPLE_BLOCK = 1 << 20
_SAMPLE_BLOCKS = 64
_FULL_HASH_LIMIT = _SAMPLE_BLOCK * _SAMPLE_BLOCKS
# Bytes of the full series read per time chunk while writing the parts' values.
_CHUNK_BYTES = 1 << 26
_HASHED_FILES = ("meta.json", "edge_index.npy", "edge_weight.npy", "node_ids.npy",
                 "timestamps.npy")
_OPTIONAL_HASHED = ("coords.npy", "node_attrs.npy")


# -- data classes -------------------------------------------------------------------------
@dataclass
class PlanMeta:
    """The parsed META.json of a plan."""

    path: Path
    method: str
    num_parts: int
    halo_hops: int
    num_nodes: int
    num_edges: int
    params: dict
    sizes: list[dict]
    quality: dict | None
    notes: list[str]
    inputs: dict
    raw: dict = field(repr=False, default_factory=dict)
    #: the order of each part's owned nodes (:data:`ORDERS`; plans before it: ascending)
    order: str = "ascending"

    @property
    def dataset(self) -> Path:
        """The dataset directory the plan was made from."""
        return Path(self.inputs["dataset"])


@dataclass
class PartData:
    """One part of a plan, opened for a worker (the series stays memory-mapped).

    ``network`` is the part as a dataset over its ``n_local`` nodes (local positions); the
    first ``num_inner`` are owned by the part, the rest is the halo.
    """

    part: int
    path: Path
    nodes: np.ndarray  # int64 [n_local] global ids, inner first
    num_inner: int
    network: SensorNetwork
    deg: np.ndarray  # float64 [n_local]
    in_deg: np.ndarray | None = None  # float64 [n_local]
    udeg_max: np.ndarray | None = None  # float64 [n_local]
    spatial_attrs: np.ndarray | None = None  # float32 [n_local, A], whole-graph standardised
    num_global: int = 0  # nodes of the whole graph
    #: the plan's halo depth: every node within this many hops of the part (either way)
    halo_hops: int = 0
    #: the whole dataset's file hashes as the plan recorded them (checkpoints name the
    #: dataset by them; a shard worker on another node has no copy of the dataset to hash)
    dataset_hashes: dict = field(default_factory=dict)

    @property
    def undirected_degree(self) -> dict:
        """Whole-graph degrees of the local nodes in the symmetrised graph, per rule."""
        return {"max": self.udeg_max, "sum": self.deg + self.in_deg}

    @property
    def inner_global(self) -> np.ndarray:
        return self.nodes[: self.num_inner]

    @property
    def halo_global(self) -> np.ndarray:
        return self.nodes[self.num_inner :]

    @property
    def num_local(self) -> int:
        return int(self.nodes.size)

    @property
    def num_halo(self) -> int:
        return self.num_local - self.num_inner


# -- hashing ------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 22), b""):
            h.update(blk)
    return h.hexdigest()


def _npy_header(f) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of an open .npy file."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return shape, fortran, dtype, f.tell()


def values_hash(path: str | Path) -> dict:
    """Hash of a (possibly huge) values.npy: whole below 64 MiB, else header + size + samples."""
    path = Path(path)
    size = path.stat().st_size
    if size <= _FULL_HASH_LIMIT:
        return {"sha256": sha256_file(path), "size": size, "hashed": "full"}
    h = hashlib.sha256()
    with open(path, "rb") as f:
        _, _, _, offset = _npy_header(f)
        f.seek(0)
        h.update(f.read(offset))
        h.update(str(size).encode())
        span = size - offset - _SAMPLE_BLOCK
        for k in range(_SAMPLE_BLOCKS):
            f.seek(offset + (k * span) // (_SAMPLE_BLOCKS - 1))
            h.update(f.read(_SAMPLE_BLOCK))
    return {"sha256": h.hexdigest(), "size": size,
            "hashed": f"header+size+{_SAMPLE_BLOCKS}x{_SAMPLE_BLOCK}B evenly spaced blocks"}


def input_hashes(dataset_dir: str | Path) -> dict:
    """The hashes of a dataset's files that a plan depends on (see the module docstring)."""
    d = Path(dataset_dir)
    out = {name: sha256_file(d / name) for name in _HASHED_FILES}
    for name in _OPTIONAL_HASHED:
        if (d / name).exists():
            out[name] = sha256_file(d / name)
    out["values.npy"] = values_hash(d / "values.npy")
    return out


# -- graph helpers ------------------------------------------------------------------------
def sym_normalized_weights(
    edge_index: np.ndarray, edge_weight: np.ndarray, num_nodes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-graph ``(D^-1/2 A D^-1/2 per edge as float32 [E], degree float64 [N])``.

    The same arithmetic as ``distst.nn.layers.graph.cheb_operator_coo`` with ``"sym"`` (see the
    module docstring): float32 weights widened to float64, self loops removed, out-degree.
    """
    src, dst = np.asarray(edge_index[0], np.int64), np.asarray(edge_index[1], np.int64)
    w = np.asarray(edge_weight, dtype=np.float32).astype(np.float64)
    if w.size and (not np.isfinite(w).all() or w.min() < 0):
        raise DiststError(
            "partition plan: edge_weight must be finite and >= 0 (the normalisation takes square "
            "roots of degrees); fix the dataset's edge_weight.npy"
        )
    keep = src != dst
    deg = np.bincount(src[keep], weights=w[keep], minlength=num_nodes).astype(np.float64)
    with np.errstate(divide="ignore"):
        dinv = deg ** -0.5
    dinv[np.isinf(dinv)] = 0.0
    sym = np.where(keep, dinv[src] * w * dinv[dst], 0.0).astype(np.float32)
    return sym, deg


# -- writing ------------------------------------------------------------------------------
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def _is_timing_key(key: str) -> bool:
    k = str(key).lower()
    return k in ("seconds", "time", "elapsed") or k.endswith(("_seconds", "_s", "_time"))


def _drop_timings(x):
    """Timings differ run to run; they would break byte-identical re-runs of a plan."""
    if isinstance(x, dict):
        return {k: _drop_timings(v) for k, v in x.items() if not _is_timing_key(k)}
    if isinstance(x, list):
        return [_drop_timings(v) for v in x]
    return x


def _dump_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def _check_out_dir(out: Path, dataset: Path) -> None:
    check_output_dir(out, "partition plan", lambda p: (p / META_NAME).is_file(), [dataset],
                     kind=f"a partition plan (no {META_NAME})")


#: how a part's owned nodes are ordered in its files (and so in a worker's memory)
ORDERS = ("ascending", "rcm")


def check_order(order: str, what: str = "partition order") -> None:
    """Refuse an ``order`` that is not one of :data:`ORDERS` (``what`` names where it came
    from)."""
    if order not in ORDERS:
        raise DiststError(f"{what} {order!r} is not one of {list(ORDERS)}; 'rcm' keeps "
                          "neighbours close in memory, 'ascending' keeps global ids")


def inner_order(inner: np.ndarray, edge_index: np.ndarray, num_nodes: int,
                order: str) -> np.ndarray:
    """``inner`` (a part's owned global ids, ascending) in the plan's ``order``:
    ``"ascending"`` as given; ``"rcm"``: reverse Cuthill-McKee of the part's own subgraph
    (either direction), which keeps a node's neighbours close in memory, so that the graph
    products of a large part read rows near each other (a GCGRU step on a 32,000-sensor part
    of a generated network: about 10% less in 3 runs of 4; on whole random kNN graphs 13-14%
    at 16,000 sensors and 28% at 64,000; nothing at a few thousand: benchmarks/RESULTS.md)."""
    check_order(order)
    if order == "ascending" or inner.size < 3:
        return inner
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    local = np.full(num_nodes, -1, dtype=np.int64)
    local[inner] = np.arange(inner.size)
    s, d = local[edge_index[0]], local[edge_index[1]]
    keep = (s >= 0) & (d >= 0) & (s != d)
    a = sp.coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (s[keep], d[keep])),
                      shape=(inner.size, inner.size)).tocsr()
    perm = reverse_cuthill_mckee((a + a.T).tocsr(), symmetric_mode=True)
    return inner[np.asarray(perm, dtype=np.int64)]


def write_plan(
    dataset_dir: str | Path,
    partition: Partition,
    halo_hops: int,
    out_dir: str | Path,
    *,
    quality: dict | None = None,
    source: str | None = None,
    order: str = "ascending",
) -> Path:
    """Write the plan of ``partition`` of the dataset at ``dataset_dir`` to ``out_dir``
    (``source``: how META.json names the dataset when it is not ``dataset_dir``, e.g. the URI
    of a fetched copy).

    Atomic: everything is written into a temp sibling that replaces ``out_dir`` by rename at
    the end, so readers see the old plan or the new one, never a half-written one. The series
    is copied in time chunks of ~64 MB of the full series, one pass for all parts, so the
    memory stays bounded whatever the dataset size. ``order``: of each part's owned nodes
    (:func:`inner_order`). Returns ``out_dir``.
    """
    dataset = Path(dataset_dir)
    out = Path(out_dir)
    net = load_network(dataset, mmap=True)
    n, p = net.num_nodes, int(partition.num_parts)
    if partition.num_nodes != n:
        raise DiststError(
            f"partition plan: the partition covers {partition.num_nodes} nodes but dataset "
            f"{dataset} has {n}; partition this dataset's graph"
        )
    _check_out_dir(out, dataset)
    # Everything that can fail on bad input is computed before anything touches the disk.
    in_adj = halo_adjacency(net.edge_index, n)  # both directions: exact for every model
    _, deg = sym_normalized_weights(net.edge_index, net.edge_weight, n)
    ei = np.asarray(net.edge_index, dtype=np.int64)
    ew = np.asarray(net.edge_weight, dtype=np.float32)
    keep = ei[0] != ei[1]
    in_deg = np.bincount(ei[1][keep], weights=ew[keep].astype(np.float64),
                         minlength=n).astype(np.float64)
    udeg_max = undirected_degree(ei, ew, n, how="max")
    spatial = None
    if net.node_attrs is not None or net.coords is not None or ei.shape[1] > 0:
        spatial = spatial_attributes(net)
    sizes = partition.sizes()
    if (sizes == 0).any():
        empty = np.flatnonzero(sizes == 0).tolist()
        raise DiststError(
            f"partition plan: part(s) {empty} of {p} own no node ({partition.method}, {n} nodes); "
            "use fewer parts (--parts) so that every worker has nodes to train on"
        )
    parts = []
    local_of = np.full(n, -1, dtype=np.int64)  # global id -> local position, reset per part
    for i in range(p):
        inner = partition.inner_nodes(i)
        halo = k_hop_halo(None, n, inner, halo_hops, in_adj=in_adj)
        inner = inner_order(inner, ei, n, order)
        nodes = np.concatenate([inner, halo]).astype(np.int64)
        local_of[nodes] = np.arange(nodes.size, dtype=np.int64)
        ls, ld = local_of[ei[0]], local_of[ei[1]]
        # Edge ids (not a boolean mask) so memory grows with the local edges, not P x E.
        eids = np.flatnonzero((ls >= 0) & (ld >= 0))
        local_of[nodes] = -1
        parts.append({
            "nodes": nodes, "num_inner": int(inner.size), "eids": eids,
            "local_ei": np.stack([ls[eids], ld[eids]]),
        })
    hashes = input_hashes(dataset)

    with atomic_dir(out) as tmp:
        np.save(tmp / "assignment.npy", partition.assignment.astype(np.int64))
        for i, part in enumerate(parts):
            d = tmp / f"part_{i}"
            d.mkdir()
            nodes, eids = part["nodes"], part["eids"]
            np.save(d / "nodes.npy", nodes)
            np.save(d / "deg.npy", deg[nodes])
            np.save(d / "in_deg.npy", in_deg[nodes])
            np.save(d / "udeg_max.npy", udeg_max[nodes])
            if spatial is not None:
                np.save(d / "spatial_attrs.npy", spatial.values[nodes])
        _write_part_values(net, dataset / "values.npy", [pt["nodes"] for pt in parts], tmp)
        part_sizes, parts_sha256 = [], []
        for i, part in enumerate(parts):
            d = tmp / f"part_{i}"
            nodes, eids = part["nodes"], part["eids"]
            sub = SensorNetwork(
                name=f"{net.name}-part{i}",
                values=np.load(d / "values.npy", mmap_mode="r"),
                timestamps=net.timestamps,
                node_ids=np.asarray(net.node_ids)[nodes],
                edge_index=part["local_ei"],
                edge_weight=ew[eids],
                channels=list(net.channels),
                coords=None if net.coords is None else np.asarray(net.coords)[nodes],
                node_attrs=None if net.node_attrs is None else np.asarray(net.node_attrs)[nodes],
                attr_names=list(net.attr_names),
                source={
                    "parent": net.source,
                    "plan": {"part": i, "num_parts": p, "method": partition.method,
                             "halo_hops": int(halo_hops), "num_inner": part["num_inner"],
                             "num_halo": int(nodes.size) - part["num_inner"],
                             "parent_name": net.name},
                },
            )
            write_static_files(sub, d)
            write_meta(build_meta(sub), d / "meta.json")
            info = {
                "part": i,
                "num_inner": part["num_inner"],
                "num_halo": int(nodes.size) - part["num_inner"],
                "num_local": int(nodes.size),
                "num_local_edges": int(eids.size),
                "nodes_sha256": sha256_file(d / "nodes.npy"),
                "files": {str(f.relative_to(d)): sha256_file(f)
                          for f in sorted(d.rglob("*")) if f.is_file()},
            }
            _dump_json(info, d / PART_META)
            parts_sha256.append(sha256_file(d / PART_META))
            part_sizes.append({k: v for k, v in info.items()
                               if k not in ("nodes_sha256", "files")})
            del sub
        meta = {
            "format": PLAN_FORMAT,
            "format_version": PLAN_VERSION,
            "method": partition.method,
            "num_parts": p,
            "halo_hops": int(halo_hops),
            "order": order,
            "num_nodes": n,
            "num_edges": int(ei.shape[1]),
            "params": _drop_timings(_jsonable(partition.params)),
            "notes": list(partition.notes),
            "sizes": part_sizes,
            "quality": None if quality is None else _drop_timings(_jsonable(quality)),
            "assignment_sha256": sha256_file(tmp / "assignment.npy"),
            "parts_sha256": parts_sha256,
            "spatial_attr_names": None if spatial is None else spatial.names,
            "normalization": "raw local edge weights; deg/in_deg/udeg_max = whole-graph "
                             "degrees of the local nodes (self loops removed), with which "
                             "distst.nn.layers.graph normalises the local edges",
            "inputs": {"dataset": source or str(dataset.resolve()), "hashes": hashes},
        }
        _dump_json(meta, tmp / META_NAME)
    return out


def _write_part_values(net: SensorNetwork, values_path: Path, node_lists, tmp: Path) -> None:
    """One pass over the series in time chunks, appending each part's columns to its file.

    Reads with plain file reads rather than through the memmap, so the pages of the full
    series do not pile up as resident memory of this process.
    """
    t, n, c = net.values.shape
    rows = max(1, _CHUNK_BYTES // max(1, n * c * 4))
    files = []
    try:
        for i, nodes in enumerate(node_lists):
            f = open(tmp / f"part_{i}" / "values.npy", "wb")
            files.append(f)
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                      "fortran_order": False, "shape": (t, int(nodes.size), c)}
            np.lib.format.write_array_header_1_0(f, header)
        with open(values_path, "rb") as src:
            shape, fortran, dtype, offset = _npy_header(src)
            raw = not fortran and tuple(shape) == (t, n, c)
            for s in range(0, t, rows):
                e = min(t, s + rows)
                if raw:
                    src.seek(offset + s * n * c * dtype.itemsize)
                    block = np.fromfile(src, dtype=dtype, count=(e - s) * n * c)
                    block = block.reshape(e - s, n, c)  # [rows, N, C]
                else:  # Fortran-ordered file: let numpy's memmap do the strided read
                    block = np.asarray(net.values[s:e])
                for f, nodes in zip(files, node_lists):
                    # [rows, n_local, C] in C order == the part file's byte order
                    block.take(nodes, axis=1).astype("<f4", copy=False).tofile(f)
    finally:
        for f in files:
            f.close()


# -- reading ------------------------------------------------------------------------------
def _rerun_hint(meta: dict | None, plan: Path) -> str:
    if not meta:
        return ("re-run 'distst partition DATA_DIR --method ... --parts P --halo-hops K "
                f"--out {plan}'")
    ds = meta.get("inputs", {}).get("dataset", "DATA_DIR")
    return (f"re-run 'distst partition {ds} --method {meta.get('method')} --parts "
            f"{meta.get('num_parts')} --halo-hops {meta.get('halo_hops')} --out {plan}'")


def load_plan(plan_dir: str | Path) -> PlanMeta:
    """Parse ``plan_dir/META.json``; a missing or corrupt plan raises a DiststError."""
    plan = Path(plan_dir)
    if not plan.is_dir():
        raise DiststError(f"partition plan {plan} does not exist; {_rerun_hint(None, plan)}")
    mp = plan / META_NAME
    if not mp.is_file():
        raise DiststError(
            f"{plan} is not a partition plan (no {META_NAME}); {_rerun_hint(None, plan)}"
        )
    try:
        raw = json.loads(mp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: nested deeper than json can descend (a forged file)
        raise DiststError(f"{mp} is corrupt ({exc}); {_rerun_hint(None, plan)}") from None
    if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
        raise DiststError(f"{mp} is not a distst partition plan (format "
                          f"{raw.get('format') if isinstance(raw, dict) else None!r}); "
                          f"{_rerun_hint(None, plan)}")
    if raw.get("format_version") != PLAN_VERSION:
        raise DiststError(
            f"{mp}: plan format_version {raw.get('format_version')} but this distst reads "
            f"{PLAN_VERSION}; {_rerun_hint(raw, plan)}"
        )
    try:
        return PlanMeta(
            path=plan, method=raw["method"], num_parts=int(raw["num_parts"]),
            halo_hops=int(raw["halo_hops"]), num_nodes=int(raw["num_nodes"]),
            num_edges=int(raw["num_edges"]), params=dict(raw["params"]),
            sizes=list(raw["sizes"]), quality=raw.get("quality"), notes=list(raw["notes"]),
            inputs=dict(raw["inputs"]), raw=raw, order=str(raw.get("order", "ascending")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DiststError(f"{mp} is corrupt (missing or bad key {exc}); "
                          f"{_rerun_hint(raw, plan)}") from None


def open_part(plan_dir: str | Path, part: int) -> PartData:
    """Open part ``part`` of a plan: global ids, counts, its dataset (memory-mapped), weights."""
    meta = load_plan(plan_dir)
    plan = meta.path
    if isinstance(part, bool) or not isinstance(part, (int, np.integer)) or not (
        0 <= part < meta.num_parts
    ):
        raise DiststError(
            f"part {part!r} is out of range: plan {plan} has {meta.num_parts} parts "
            f"(valid 0..{meta.num_parts - 1})"
        )
    d = plan / f"part_{int(part)}"
    fix = _rerun_hint(meta.raw, plan)
    try:
        info = json.loads((d / PART_META).read_text())
        nodes = np.load(d / "nodes.npy")
        deg = np.load(d / "deg.npy")
        in_deg = np.load(d / "in_deg.npy")
        udeg_max = np.load(d / "udeg_max.npy")
        spatial = (np.load(d / "spatial_attrs.npy") if (d / "spatial_attrs.npy").exists()
                   else None)
    except (OSError, ValueError, RecursionError) as exc:
        raise DiststError(f"part {part} of plan {plan} is missing or corrupt ({exc}); {fix}") \
            from None
    if sha256_file(d / "nodes.npy") != info.get("nodes_sha256") or nodes.ndim != 1 \
            or nodes.size != info.get("num_local"):
        raise DiststError(f"{d / 'nodes.npy'} does not match {d / PART_META}; the plan is "
                          f"corrupt: {fix}")
    try:
        network = load_network(d, mmap=True)
    except DiststError as exc:
        raise DiststError(f"part {part} of plan {plan}: {exc} ({fix})") from None
    if network.num_nodes != nodes.size or deg.shape != (nodes.size,) or in_deg.shape != (nodes.size,) \
            or udeg_max.shape != (nodes.size,) \
            or (spatial is not None and spatial.shape[0] != nodes.size):
        raise DiststError(f"part {part} of plan {plan}: files disagree on the node/edge counts; "
                          f"the plan is corrupt: {fix}")
    return PartData(part=int(part), path=d, nodes=nodes.astype(np.int64),
                    num_inner=int(info["num_inner"]), network=network,
                    deg=deg, in_deg=in_deg, udeg_max=udeg_max, spatial_attrs=spatial,
                    num_global=meta.num_nodes, halo_hops=meta.halo_hops,
                    dataset_hashes=dict(meta.inputs.get("hashes", {})))


def verify_plan(plan_dir: str | Path, dataset_dir: str | Path | None = None) -> PlanMeta:
    """Refuse a plan whose recorded input hashes do not match ``dataset_dir`` (default: the
    dataset the plan was made from). Returns the plan's metadata when they match."""
    meta = load_plan(plan_dir)
    ds = Path(dataset_dir) if dataset_dir is not None else meta.dataset
    fix = _rerun_hint(meta.raw, meta.path).replace(str(meta.dataset), str(ds))
    if not (ds / "meta.json").is_file() or not (ds / "values.npy").is_file():
        raise DiststError(f"plan {meta.path}: dataset {ds} is missing or not a distst dataset; "
                          f"give the dataset the plan was made for, or {fix}")
    recorded = meta.inputs.get("hashes", {})
    try:
        now = input_hashes(ds)
    except OSError as exc:
        raise DiststError(f"plan {meta.path}: cannot hash dataset {ds} ({exc}); {fix}") from None
    changed = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    if changed:
        raise DiststError(
            f"plan {meta.path} was made for another dataset or the dataset {ds} changed "
            f"({', '.join(changed)} differ); {fix}"
        )
    return meta


# -- plans on remote storage ----------------------------------------------------------------
def plan_mirror(plan_uri: str, scratch: str | Path) -> Path:
    """A local folder holding the META.json of the plan at ``plan_uri`` (under ``scratch``,
    keyed by META.json's sha256), into which :func:`fetch_part` fetches parts. META.json is
    published last (:meth:`distst.storage.Location.put_dir`): a plan without it is refused."""
    src = location(plan_uri)
    try:
        raw = (src / META_NAME).read_bytes()
    except FileNotFoundError:
        raise DiststError(f"{src} is not a partition plan (no {META_NAME}: missing, or still "
                          f"being written); {_rerun_hint(None, src)}") from None
    mirror = Path(scratch) / "plans" / f"{src.name}-{hashlib.sha256(raw).hexdigest()[:16]}"
    if not (mirror / META_NAME).is_file():
        mirror.mkdir(parents=True, exist_ok=True)
        write_atomic(mirror / META_NAME, raw)
    return mirror


def fetch_part(plan_uri: str, part: int, scratch: str | Path) -> tuple[Path, int]:
    """Fetch only part ``part`` of the remote plan into its local mirror (once per node),
    verified against the hashes the plan records (META.json -> part.json -> every file).
    Returns (mirror folder for :func:`open_part`, bytes fetched by this call)."""
    mirror = plan_mirror(plan_uri, scratch)
    meta = load_plan(mirror)
    if isinstance(part, bool) or not 0 <= int(part) < meta.num_parts:
        raise DiststError(f"part {part!r} is out of range: plan {plan_uri} has "
                          f"{meta.num_parts} parts (valid 0..{meta.num_parts - 1})")
    src = location(plan_uri) / f"part_{int(part)}"
    fix = _rerun_hint(meta.raw, Path(str(plan_uri)))

    def verify(tmp: Path) -> None:
        if sha256_file(tmp / PART_META) != meta.raw["parts_sha256"][int(part)]:
            raise DiststError(f"{src}/{PART_META} does not match the plan's {META_NAME}; the "
                              f"plan in storage was changed or corrupted: {fix}")
        for name, digest in json.loads((tmp / PART_META).read_text())["files"].items():
            if not (tmp / name).is_file() or sha256_file(tmp / name) != digest:
                raise DiststError(f"{src}/{name} does not match the plan's hash (fetched "
                                  f"from {plan_uri}); the plan in storage was changed or "
                                  f"corrupted: {fix}")

    try:
        copied = fetch(src, mirror / f"part_{int(part)}", verify=verify)
    except FileNotFoundError as e:
        raise DiststError(f"part {part} of plan {plan_uri} is missing ({e}); {fix}") from None
    return mirror, copied


# -- one call: partition + write ----------------------------------------------------------
def make_plan(
    dataset_dir: str | Path,
    out_dir: str | Path,
    *,
    method: str = "metis",
    parts: int = 2,
    halo_hops: int = 1,
    seed: int = 0,
    source: str | None = None,
    order: str = "ascending",
    **options,
) -> tuple[Path, Partition, dict]:
    """Partition the dataset's graph with ``method`` and write the plan; returns
    ``(out_dir, partition, quality)`` (quality includes timings, which META.json leaves out)."""
    from distst.graph.partition import partition_graph, partition_quality

    k_hop_halo(None, 0, np.empty(0, np.int64), halo_hops)  # refuse bad hops before partitioning
    check_order(order)  # and a bad order
    net = load_network(dataset_dir, mmap=True)
    partition = partition_graph(method, net.edge_index, net.edge_weight, net.num_nodes, parts,
                                seed=seed, **options)
    quality = partition_quality(partition, net.edge_index, net.edge_weight, halo_hops)
    path = write_plan(dataset_dir, partition, halo_hops, out_dir, quality=quality, source=source,
                      order=order)
    return path, partition, quality
