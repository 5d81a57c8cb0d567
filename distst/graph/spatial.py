"""Spatial attributes of sensors, the input of HyperST-Net's spatial module.

HyperST-Net (Pan et al. 2019, "Traffic prediction") describes each METR-LA sensor by "its GPS
coordinates and the road network distance from its k-nearest neighbors (k = 4) to itself".
:func:`spatial_attributes` builds that, plus whatever the dataset itself provides
(``node_attrs``, e.g. the synthetic generator's road-type and profile attributes), as one
standardised float32 matrix ``[N, A]`` computed on the WHOLE graph -- a shard slices it, since
road distances reach beyond any halo.

Road-network distance. Edges are road links; their length is, in this order of preference:

* the geographic distance between the two sensors when the dataset has coordinates
  (haversine km for lat/lon, Euclidean for planar x/y: the generator's and grids'), or
* ``sqrt(-ln w)`` for Gaussian-kernel weights ``w = exp(-d^2 / sigma^2)`` in (0, 1) (the
  DCRNN/STGCN readers' weights), i.e. the distance in units of sigma, or
* one per link when all weights are equal (a 0/1 adjacency): hop counts.

The distance of neighbour ``v`` to ``i`` is the shortest directed path ``v -> i``; the k
nearest (self excluded) are sorted ascending. A sensor with fewer than k nodes that reach it
gets twice the largest finite distance in the graph for the missing entries (a "far away"
value, not a silent zero) and :func:`spatial_attributes` reports how many such sensors exist.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from distst.data.network import SensorNetwork
from distst.errors import DiststError


@dataclass
class SpatialAttributes:
    values: np.ndarray  # float32 [N, A], every column standardised over the whole graph
    names: list[str]
    #: sensors with fewer than k reachable neighbours (their missing distances are "far")
    short_of_neighbours: int


def _find(d, key):
    """``key`` anywhere in a nested source dict (a plan part nests its parent's source)."""
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def is_latlon(net: SensorNetwork, coords: np.ndarray) -> bool:
    """Readers record ``coords_kind`` ("latlon" or "xy"); the generator's coords are planar
    km. Only datasets that say neither fall back to a range check."""
    kind = _find(net.source, "coords_kind")
    if kind is not None:
        return kind == "latlon"
    if _find(net.source, "generator") is not None:
        return False
    lat, lon = coords[:, 0], coords[:, 1]
    return bool(np.all(np.abs(lat) <= 90) and np.all(np.abs(lon) <= 180)
                and np.ptp(lat) < 10 and np.ptp(lon) < 10)


def edge_lengths(net: SensorNetwork) -> np.ndarray:
    """Length of every edge of ``net`` (float64 [E]) by the rule in the module docstring."""
    src, dst = np.asarray(net.edge_index[0]), np.asarray(net.edge_index[1])
    w = np.asarray(net.edge_weight, dtype=np.float64)
    if net.coords is not None:
        c = np.asarray(net.coords, dtype=np.float64)
        if is_latlon(net, c):
            lat1, lon1 = np.radians(c[src, 0]), np.radians(c[src, 1])
            lat2, lon2 = np.radians(c[dst, 0]), np.radians(c[dst, 1])
            a = (np.sin((lat2 - lat1) / 2) ** 2
                 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
            return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
        return np.hypot(c[src, 0] - c[dst, 0], c[src, 1] - c[dst, 1])
    if w.size and np.all(w == w[0]):
        return np.ones_like(w)
    if w.size and np.all((w > 0) & (w <= 1)):
        return np.sqrt(-np.log(w))
    # other affinities: stronger link = shorter road
    return 1.0 / np.maximum(w, np.finfo(np.float64).tiny)


def knn_road_distances(num_nodes: int, edge_index: np.ndarray, lengths: np.ndarray,
                       k: int = 4) -> tuple[np.ndarray, int]:
    """``[N, k]`` shortest-path distances from each node's k nearest sources, ascending.

    One bounded Dijkstra per node on the reversed graph (stops after k settled nodes), so the
    cost is O(N * k * degree * log) -- linear in N for road-like graphs.
    """
    if k < 1:
        raise DiststError(f"spatial attributes: k={k} must be >= 1 (HyperST-Net uses 4)")
    src, dst = np.asarray(edge_index[0]), np.asarray(edge_index[1])
    keep = src != dst
    # reversed graph as CSR, row i = the sources j of edges j -> i; parallel links keep their
    # shortest length (a CSR constructor would add them up)
    order = np.lexsort((lengths[keep], src[keep], dst[keep]))
    d_s, s_s, l_s = dst[keep][order], src[keep][order], lengths[keep][order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (d_s[1:] != d_s[:-1]) | (s_s[1:] != s_s[:-1])
    rev = sp.csr_matrix((l_s[first], (d_s[first], s_s[first])), shape=(num_nodes, num_nodes))
    indptr, indices, data = rev.indptr, rev.indices, rev.data
    out = np.full((num_nodes, k), np.inf)
    for i in range(num_nodes):
        dist = {i: 0.0}
        done: set[int] = set()
        heap = [(0.0, i)]
        found = 0
        while heap and found < k:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if u != i:
                out[i, found] = d
                found += 1
            for p in range(indptr[u], indptr[u + 1]):
                v = int(indices[p])
                nd = d + data[p]
                if nd < dist.get(v, np.inf):
                    dist[v] = nd
                    heapq.heappush(heap, (nd, v))
    missing = ~np.isfinite(out)
    short = int(missing.any(axis=1).sum())
    if missing.any():
        finite = out[~missing]
        out[missing] = 2.0 * (finite.max() if finite.size else 1.0)
    return out, short


def _standardise(cols: np.ndarray) -> np.ndarray:
    mean = cols.mean(axis=0)
    std = cols.std(axis=0)
    # a constant column carries no information: it becomes 0, not NaN
    return ((cols - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def spatial_attributes(net: SensorNetwork, k: int = 4) -> SpatialAttributes:
    """The dataset's node attributes, coordinates and k-NN road distances, standardised.

    A network with neither attributes nor coordinates nor edges has no spatial information:
    that is an error, because a constant stand-in would silently turn a HyperST model into its
    plain counterpart.
    """
    n = net.num_nodes
    cols, names = [], []
    if net.node_attrs is not None:
        cols.append(np.asarray(net.node_attrs, dtype=np.float64))
        names += list(net.attr_names)
    if net.coords is not None:
        cols.append(np.asarray(net.coords, dtype=np.float64))
        names += ["coord_0", "coord_1"]
    short = 0
    if np.asarray(net.edge_index).shape[1] > 0:
        dist, short = knn_road_distances(n, np.asarray(net.edge_index), edge_lengths(net), k)
        cols.append(dist)
        names += [f"road_dist_nn{j + 1}" for j in range(k)]
    if not cols:
        raise DiststError(
            f"dataset {net.name!r}: no spatial attributes (no node_attrs, no coords, no edges); "
            "HyperST models need them -- add coordinates or node attributes to the dataset")
    values = np.concatenate(cols, axis=1)
    if not np.all(np.isfinite(values)):
        bad = np.where(~np.isfinite(values).all(axis=0))[0].tolist()
        raise DiststError(f"dataset {net.name!r}: spatial attributes {[names[j] for j in bad]} "
                          "contain NaN/inf; fill them in node_attrs.npy / coords.npy")
    return SpatialAttributes(_standardise(values), names, short)
