"""Synthetic road-sensor networks with METR-LA-like speeds, written chunk by chunk.

The generator exists to test forecasting models. Graph models have to beat graph-free models
on its output, and models that read node attributes (HyperST-Net, Pan et al., IJCAI 2019)
should gain from the node types. Every part of the signal is built with that in mind.

Geometry (km-scale plane)
    Towns are Gaussian clusters of sensors around random centres. The sensors nearest a
    town centre are ``business`` and the rest ``residential``. ``highway`` sensors sit along
    corridors that join each town to its nearest towns (a spanning tree plus the 2 nearest,
    with 50 m lateral jitter). ``coords`` holds these planar x/y in km.

Graph (DCRNN convention, Li et al., ICLR 2018, Sec. 4.1)
    Candidate edges come from a symmetrised k-nearest-neighbour graph (``graph="knn"``) or
    a Delaunay triangulation (``graph="delaunay"``). The road distance is the Euclidean
    distance times a per-edge detour factor: U(1.02, 1.10) between two highway sensors,
    U(1.15, 1.50) otherwise. The weight is ``w = exp(-(d / sigma)^2)``, where sigma is the
    standard deviation of the candidate road distances, and weights below 0.1 are cut. On
    clustered points this cut alone leaves thousands of components (about 9.5k at 100k
    nodes). So the edges of the minimum spanning tree of the candidate graph (by road
    distance) are always kept, with their weight floored at the threshold. The candidate
    graph is made connected first by adding the Euclidean-MST (Delaunay) edges that kNN
    missed. The resulting graph is therefore always connected. Edges are stored in both
    directions with the same weight.

Signal: one channel ``speed`` in mph, like METR-LA / PEMS-BAY
    ``speed[t, i] = vfree_i * (1 - c[t, i]) + noise``, where the congestion
    ``c = profile + latent + jam`` is clipped to [-0.1, 0.95]:

    * ``profile``: daily and weekly cycle built from Gaussian bumps in time of day, whose
      shape depends on the node type. Residential sensors dip in the morning outbound peak,
      business sensors in the evening, highways in both, more sharply, from a higher
      free-flow speed. Weekends keep only 10-20 % of the rush hours plus a broad midday
      bump. Each node gets its own jitter of time, width and amplitude. Each day and town
      gets its own amplitude factor.
    * ``latent``: an advective AR process with a lagged upstream coupling,
      ``z_t = a_i z_{t-1} + b_i (P_up z_{t-L})_i + s_i(t) e_t``. Each edge is oriented by a
      flow potential, the sensor's distance to its town centre: j is *upstream* of i when it
      lies farther out (ties by index), so the upstream graph is acyclic and traffic flows
      inbound. P_up is the weight-normalised mean over the upstream neighbours only (an empty
      row for the ~20 % "root" sensors that have none), and L = ``latent_lag`` steps
      (default 3 = 15 min). Being nilpotent, P_up keeps the process stable for any b. The
      innovation scale is ``s_i(t) = h_i (0.5 + 5 profile_i(t))``: it grows in the rush
      hours, and h_i (lognormal, capped at 5x the mean) makes a few nodes (junctions,
      on-ramps) inject most of the variation. Coupling b is strongest on highways (a=0.2,
      b=0.75) and weakest in residential areas (a=0.5, b=0.45). This term adds about 1-3 mph
      of std.
    * ``jam``: congestion that *travels*. Sources are (1) traffic waves, started step by
      step at random sensors (Poisson; 1/1.5/3 per residential/business/highway sensor and
      weekday, times 6 at root sensors and 0.25 elsewhere, so most waves enter at the upstream
      edge of the network; intensity 1 in the weekday rush hours, 0.3 in the day, 0.05 at
      night) with a severity of 0.15-0.45 of the free-flow speed for 3-8 steps, and (2) rare
      incidents (a Poisson number per node, more on highways and in the daytime) with a
      severity of 0.25-0.6 lasting about 35 min. Both move downstream along the upstream
      edges only, ``J_i(t) = max(S_i(t), r J_i(t-1), max_{j upstream} g_ij J_j(t-delay_ij))``,
      where the per-hop delay is the road distance over a 4 km/h front speed, clipped to 1-4
      steps (sensors here are ~0.5 km apart; real ones 1-2 km apart with ~15 km/h fronts give
      the same steps), the per-hop decay is small (g = 0.95 between highways, 0.85
      elsewhere), and r = 0.5 makes a jam dissolve within a few steps. A sensor's next
      minutes are thus announced by its upstream neighbours' last steps, not by its own past.
    * sensor noise ``N(0, noise_std^2)`` mph; speeds are floored at 0.

    On 40 nodes, a pooled least-squares forecast of t+3 from 12 own lags loses ~7 % of its
    out-of-sample MSE when 12 lags of the weighted neighbour mean and of the slowest
    neighbour are added (tests/data/test_synth.py); being nonlinear (max) and directional,
    the waves are worth more to a graph model: with 4 epochs GCGRU's test MAE is 2-8 % below
    the per-node GRU's on seeds 0-4 (tests/engine/test_spatial.py).

Missing values (NaN)
    Half of ``missing_ratio`` (in the sense 1 - (1-p)^2) comes from random single-step
    dropouts and half from outage blocks (geometric length, mean 1 h, at most 1 day). One
    random step per sensor is never masked, so no sensor is entirely missing.

Memory and determinism
    The series is generated in time chunks, and only the recurrent state (the last L latent
    steps, the last 5 jam steps and the level and steps left of each sensor's wave source)
    is kept between chunks. The per-step random numbers come
    from ``SeedSequence([seed, 1, step])``, and everything static comes from
    ``SeedSequence([seed, 0])``. The output therefore depends only on the parameters and the
    seed, not on ``chunk_steps``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import Delaunay, cKDTree

from distst.data.network import (
    SensorNetwork,
    check_output_dir,
    build_meta,
    is_dataset_dir,
    regular_times,
    write_meta,
    write_static_files,
)
from distst.errors import DiststError
from distst.storage import atomic_dir

GENERATOR_VERSION = 2
TYPE_NAMES = ("residential", "business", "highway")
ATTR_NAMES = ["type_residential", "type_business", "type_highway", "speed_limit_mph"]
GRAPH_KINDS = ("knn", "delaunay")
WEIGHT_THRESHOLD = 0.1  # DCRNN's cut of the Gaussian-kernel weights
SPEED_UNITS = "mph"

# Geometry: overall sensor density (per km^2) sets the box side; town density sets town size.
_DENSITY = 0.6
_TOWN_DENSITY = 5.0
_NODES_PER_TOWN = 150
_HIGHWAY_FRACTION = 0.25
_BUSINESS_RADIUS = 0.85  # in town sigmas; r < 0.85 sigma holds ~30 % of a 2-D Gaussian

# Daily profile bumps: 0 morning rush, 1 midday, 2 evening rush, 3 weekend midday.
# Rows are node types (residential, business, highway). Hours, hours (std), congestion.
_BUMP_MU = np.array([[7.5, 12.5, 17.5, 13.5], [8.5, 12.5, 17.25, 14.0], [7.75, 13.0, 17.5, 13.5]])
_BUMP_WIDTH = np.array([[0.8, 2.0, 1.2, 2.5], [1.0, 1.5, 1.0, 2.5], [0.6, 2.0, 0.7, 2.0]])
_BUMP_AMP = np.array(
    [[0.30, 0.05, 0.12, 0.05], [0.12, 0.10, 0.35, 0.08], [0.40, 0.06, 0.45, 0.05]]
)
# Multiplier of each bump by day of week (Mon..Sun): Friday evening heavier, weekends light.
_DOW_BUMP = np.array(
    [
        [1.0, 1.0, 1.0, 0.0],
        [1.0, 1.0, 1.0, 0.0],
        [1.0, 1.0, 1.0, 0.0],
        [1.0, 1.0, 1.05, 0.0],
        [0.95, 1.05, 1.15, 0.0],
        [0.15, 0.0, 0.2, 1.0],
        [0.1, 0.0, 0.15, 0.8],
    ]
)
_FREE_FLOW_MPH = np.array([30.0, 35.0, 65.0])  # mean free-flow speed per type
# Latent AR: own persistence a and lagged neighbour coupling b per type.
_LAT_A = np.array([0.50, 0.35, 0.20])
_LAT_B = np.array([0.45, 0.60, 0.75])
_LAT_GAIN = 0.03  # congestion per unit of z
_LAT_BASE, _LAT_RUSH = 0.5, 5.0  # innovation scale = base + rush * profile
_LAT_HETERO, _LAT_HETERO_CAP = 1.5, 5.0  # lognormal sigma of the per-node scale; cap x mean
# Incidents per node per day by type; jam spread parameters.
_INCIDENT_RATE = np.array([0.05, 0.10, 0.25])
_INCIDENT_MINUTES = 35.0
# Congestion fronts move slowly against the sensor spacing here (median edge ~0.5 km), so
# 4 km/h gives the 1-4 steps per hop of real stop-and-go waves between 1-2 km apart sensors.
_WAVE_KMH = 4.0
_MAX_DELAY = 4
_JAM_SPREAD_HW, _JAM_SPREAD = 0.95, 0.85
_JAM_PERSIST = 0.5
_JAM_FLOOR = 0.01
# Travelling waves: starts per node per weekday by type, severity range, duration in steps.
_WAVE_RATE = np.array([1.0, 1.5, 3.0])
_WAVE_SEVERITY = (0.15, 0.45)
_WAVE_STEPS = (3, 8)
_WAVE_ROOT_BOOST, _WAVE_INNER = 6.0, 0.25
_WAVE_NIGHT, _WAVE_DAY = 0.05, 0.3  # start intensity outside the rush hours (rush = 1)
_OUTAGE_MINUTES = 60.0
_BURN_IN_STEPS = 288


def _fail(what: str, value, fix: str) -> DiststError:
    return DiststError(f"synthetic network: {what} = {value!r} is invalid; {fix}")


@dataclass(frozen=True)
class SynthParams:
    """Every parameter of the generator, checked on construction; recorded in meta.json.

    ``k`` (neighbours of the "knn" graph) defaults to min(6, num_nodes - 1). ``chunk_steps``
    (steps generated at a time) defaults to ~4M values per chunk; it changes the memory use,
    never the output. ``latent_lag`` is the delay, in steps, of the neighbour coupling;
    ``incident_rate`` scales the default incident rates per node and day. See the module
    docstring for the model.
    """

    num_nodes: int = 1026
    days: float = 14
    seed: int = 0
    graph: str = "knn"
    k: int | None = None
    start: str = "2024-01-01"
    step_minutes: float = 5
    missing_ratio: float = 0.05
    noise_std: float = 1.5
    chunk_steps: int | None = None
    latent_lag: int = 3
    incident_rate: float = 1.0
    name: str | None = None

    def __post_init__(self):
        num_nodes, days, graph, k = self.num_nodes, self.days, self.graph, self.k
        step_minutes, missing_ratio = self.step_minutes, self.missing_ratio
        noise_std, chunk_steps = self.noise_std, self.chunk_steps
        latent_lag, incident_rate = self.latent_lag, self.incident_rate
        if not isinstance(num_nodes, (int, np.integer)) or num_nodes < 2:
            raise _fail("num_nodes", num_nodes, "give an integer >= 2")
        if not isinstance(days, (int, float, np.number)) or not days > 0 or not math.isfinite(days):
            raise _fail("days", days, "give a positive number of days, e.g. 14")
        if graph not in GRAPH_KINDS:
            raise _fail("graph", graph, f"choose one of {list(GRAPH_KINDS)}")
        if k is not None and (not isinstance(k, (int, np.integer)) or not 1 <= k <= num_nodes - 1):
            raise _fail("k", k, f"give an integer neighbour count in [1, num_nodes-1={num_nodes - 1}]")
        if not step_minutes > 0 or step_minutes > 1440:
            raise _fail("step_minutes", step_minutes, "give a step in (0, 1440] minutes, e.g. 5")
        if not 0 <= missing_ratio < 1:
            raise _fail("missing_ratio", missing_ratio, "give a fraction in [0, 1), e.g. 0.05")
        if not noise_std >= 0:
            raise _fail("noise_std", noise_std, "give a standard deviation >= 0 (mph)")
        bad_chunk = not isinstance(chunk_steps, (int, np.integer)) or chunk_steps < 1
        if chunk_steps is not None and bad_chunk:
            raise _fail("chunk_steps", chunk_steps, "give a positive integer or leave it unset")
        if not isinstance(latent_lag, (int, np.integer)) or not 1 <= latent_lag <= 24:
            raise _fail("latent_lag", latent_lag, "give an integer lag in [1, 24] steps")
        if not incident_rate >= 0:
            raise _fail("incident_rate", incident_rate,
                        "give a scale factor >= 0 (1.0 = the default rates)")


class _Generator:
    """Static structure (graph, types, parameters, event lists) plus the chunked time loop."""

    def __init__(self, p: SynthParams):
        num_nodes, days, seed, graph, k = p.num_nodes, p.days, p.seed, p.graph, p.k
        start, step_minutes, name = p.start, p.step_minutes, p.name
        missing_ratio, noise_std = p.missing_ratio, p.noise_std
        latent_lag, incident_rate = p.latent_lag, p.incident_rate
        self.n = int(num_nodes)
        self.seed = int(seed)
        self.step_minutes = float(step_minutes)
        self.num_steps = max(1, int(round(days * 1440.0 / step_minutes)))
        self.missing_ratio = float(missing_ratio)
        self.noise_std = float(noise_std)
        self.latent_lag = int(latent_lag)
        self.graph_kind = graph
        self.k = int(k) if k is not None else min(6, self.n - 1)
        try:
            t0 = np.datetime64(start)  # not "ns": a start outside 1677-2262 wrapped around there
        except (ValueError, TypeError) as exc:
            raise _fail("start", start, "give an ISO date/time such as '2024-01-01'") from exc
        if np.isnat(t0):
            raise _fail("start", start, "give an ISO date/time such as '2024-01-01'")
        step_ns = int(round(self.step_minutes * 60e9))
        self.timestamps = regular_times(t0, self.num_steps, step_ns, "synthetic network: start",
                                        lead=_BURN_IN_STEPS)
        t0 = self.timestamps[0].astype("datetime64[ns]")
        self.name = name or f"synth-n{self.n}-d{days:g}-s{self.seed}"
        self.params = dict(
            format="synthetic", generator="distst.data.synth", generator_version=GENERATOR_VERSION,
            seed=self.seed, num_nodes=self.n, days=float(days), graph=graph, k=self.k,
            start=str(t0), step_minutes=self.step_minutes, missing_ratio=self.missing_ratio,
            noise_std=self.noise_std, latent_lag=self.latent_lag,
            incident_rate=float(incident_rate),
            units=SPEED_UNITS, weight_kernel="exp(-(d/sigma)^2), sigma = std of candidate road km",
            weight_threshold=WEIGHT_THRESHOLD, wave_kmh=_WAVE_KMH, max_hop_delay=_MAX_DELAY,
            jam_spread_highway=_JAM_SPREAD_HW, jam_spread=_JAM_SPREAD, jam_persist=_JAM_PERSIST,
            latent_a=_LAT_A.tolist(), latent_b=_LAT_B.tolist(), latent_gain=_LAT_GAIN,
            latent_hetero_sigma=_LAT_HETERO, latent_hetero_cap=_LAT_HETERO_CAP,
            incident_rate_per_day=(_INCIDENT_RATE * incident_rate).tolist(),
            wave_rate_per_weekday=(_WAVE_RATE * incident_rate).tolist(),
            wave_severity=list(_WAVE_SEVERITY), wave_steps=list(_WAVE_STEPS),
            free_flow_mph=_FREE_FLOW_MPH.tolist(), type_names=list(TYPE_NAMES),
        )
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 0])))
        self._build_geometry(rng)
        self._build_graph(rng)
        self._build_node_params(rng)
        self._build_events(rng, float(incident_rate))

    # -- static structure --------------------------------------------------------------
    def _build_geometry(self, rng):
        n = self.n
        side = math.sqrt(n / _DENSITY)
        n_hw = int(round(_HIGHWAY_FRACTION * n)) if n >= 4 else 1
        n_town = n - n_hw
        n_towns = max(1, int(round(n / _NODES_PER_TOWN)))
        centres = rng.uniform(0.1 * side, 0.9 * side, (n_towns, 2))
        sizes = rng.lognormal(0.0, 0.5, n_towns)
        town = rng.choice(n_towns, n_town, p=sizes / sizes.sum())
        counts = np.bincount(town, minlength=n_towns)
        sigma = np.sqrt(np.maximum(counts, 1) / (2 * np.pi * _TOWN_DENSITY))  # [towns] km
        offs = rng.standard_normal((n_town, 2)) * sigma[town, None]
        town_pts = centres[town] + offs
        r = np.linalg.norm(offs, axis=1) / sigma[town]
        town_type = np.where(r < _BUSINESS_RADIUS, 1, 0)
        # Corridors: town spanning tree plus each town's 2 nearest towns.
        if n_towns > 1:
            tree = cKDTree(centres)
            _, nn = tree.query(centres, k=min(3, n_towns))
            pairs = {(min(i, j), max(i, j)) for i in range(n_towns) for j in nn[i, 1:]}
            d = _complete_or_delaunay_edges(centres)
            mst = minimum_spanning_tree(
                sp.coo_matrix((d[2], (d[0], d[1])), shape=(n_towns, n_towns))
            ).tocoo()
            pairs |= {(min(i, j), max(i, j)) for i, j in zip(mst.row.tolist(), mst.col.tolist())}
            seg = np.array(sorted(pairs), dtype=np.int64)
            a, b = centres[seg[:, 0]], centres[seg[:, 1]]
        else:
            half = np.array([3.0 * sigma[0], 0.0])
            a, b = centres - half, centres + half
        length = np.linalg.norm(b - a, axis=1)
        s = rng.choice(len(a), n_hw, p=length / length.sum())
        u = rng.uniform(0.0, 1.0, n_hw)[:, None]
        normal = ((b - a) / length[:, None])[:, ::-1] * np.array([1.0, -1.0])
        hw_pts = a[s] + u * (b - a)[s] + normal[s] * rng.normal(0.0, 0.05, (n_hw, 1))
        pts = np.vstack([town_pts, hw_pts])
        types = np.concatenate([town_type, np.full(n_hw, 2)])
        # Highway sensors take the day-to-day factor of their nearest town.
        hw_town = cKDTree(centres).query(hw_pts)[1] if n_hw else np.zeros(0, np.int64)
        towns = np.concatenate([town, hw_town]).astype(np.int64)
        # Real sensor ids carry no spatial order; shuffle so that no model can exploit one.
        perm = rng.permutation(n)
        self.coords = pts[perm]
        self.types = types[perm].astype(np.int64)
        self.town = towns[perm]
        # Flow potential: distance to the own town centre. Congestion waves travel from higher
        # to lower potential, i.e. inbound, so the directed "upstream" graph is acyclic.
        self.potential = np.linalg.norm(self.coords - centres[self.town], axis=1)
        self.n_towns = n_towns
        self.params["num_towns"] = n_towns
        self.params["box_km"] = round(side, 3)

    def _build_graph(self, rng):
        n, pts = self.n, self.coords
        if self.graph_kind == "knn":
            _, idx = cKDTree(pts).query(pts, k=self.k + 1)  # [N, k+1], column 0 is the node
            rows = np.repeat(np.arange(n), self.k)
            cols = idx[:, 1:].reshape(-1)
            cand = np.stack([np.minimum(rows, cols), np.maximum(rows, cols)])
        else:
            e = _complete_or_delaunay_edges(pts)
            cand = np.stack([e[0], e[1]]).astype(np.int64)
        # Bridge kNN components with Euclidean-MST edges (the EMST is a Delaunay subgraph).
        ncomp = connected_components(
            sp.coo_matrix((np.ones(cand.shape[1]), (cand[0], cand[1])), shape=(n, n)),
            directed=False,
        )[0]
        if ncomp > 1:
            e = _complete_or_delaunay_edges(pts)
            emst = minimum_spanning_tree(sp.coo_matrix((e[2], (e[0], e[1])), shape=(n, n))).tocoo()
            extra = np.stack([np.minimum(emst.row, emst.col), np.maximum(emst.row, emst.col)])
            cand = np.concatenate([cand, extra.astype(np.int64)], axis=1)
        cand = np.unique(cand, axis=1)  # [2, E_u], undirected, i < j, sorted
        cand = cand[:, cand[0] != cand[1]]
        i, j = cand
        euclid = np.linalg.norm(pts[i] - pts[j], axis=1)
        both_hw = (self.types[i] == 2) & (self.types[j] == 2)
        detour = np.where(both_hw, rng.uniform(1.02, 1.10, len(i)), rng.uniform(1.15, 1.50, len(i)))
        road = euclid * detour  # km
        sigma = float(road.std()) if len(road) > 1 else float(road.mean())
        sigma = sigma if sigma > 0 else 1.0
        w = np.exp(-((road / sigma) ** 2))
        # Keep the road MST so the DCRNN cut cannot split the network; floor its weights.
        # Distances are > 0, so the sparse MST sees every candidate edge.
        mst = minimum_spanning_tree(sp.coo_matrix((road, (i, j)), shape=(n, n))).tocoo()
        in_mst = np.zeros(len(i), dtype=bool)
        key = i * n + j
        mkey = np.minimum(mst.row, mst.col).astype(np.int64) * n + np.maximum(mst.row, mst.col)
        in_mst[np.searchsorted(key, np.sort(mkey))] = True  # key is sorted by np.unique
        keep = (w >= WEIGHT_THRESHOLD) | in_mst
        floored = in_mst & (w < WEIGHT_THRESHOLD)
        w = np.where(floored, WEIGHT_THRESHOLD, w)
        i, j, w, road, both_hw = i[keep], j[keep], w[keep], road[keep], both_hw[keep]
        # Both directions, sorted by (source, target): CSR order for the propagation below.
        src = np.concatenate([i, j])
        dst = np.concatenate([j, i])
        order = np.lexsort((dst, src))
        self.edge_index = np.stack([src, dst])[:, order].astype(np.int64)
        self.edge_weight = np.concatenate([w, w])[order].astype(np.float32)
        self.edge_road_km = np.concatenate([road, road])[order]
        self.edge_both_hw = np.concatenate([both_hw, both_hw])[order]
        self.params.update(
            sigma_km=round(sigma, 6), candidate_edges=int(len(keep)), kept_edges=int(keep.sum()),
            mst_edges_floored=int(floored.sum()), mean_degree=round(2 * keep.sum() / n, 3),
        )

    def _build_node_params(self, rng):
        n, ty = self.n, self.types
        self.vfree = (_FREE_FLOW_MPH[ty] + rng.normal(0.0, 3.0, n)).astype(np.float32)
        town_shift = rng.normal(0.0, 0.3, self.n_towns)
        shift = np.where(ty == 2, 0.0, town_shift[self.town]) + rng.normal(0.0, 0.2, n)
        self.mu = (_BUMP_MU[ty] + shift[:, None]).T.astype(np.float32)  # [4, N] hours
        self.width = (_BUMP_WIDTH[ty] * rng.lognormal(0.0, 0.1, (n, 4))).T.astype(np.float32)
        self.amp = (_BUMP_AMP[ty] * rng.lognormal(0.0, 0.2, (n, 4))).T.astype(np.float32)
        a = np.clip(_LAT_A[ty] + rng.uniform(-0.03, 0.03, n), 0.0, 0.95)
        b = np.minimum(np.clip(_LAT_B[ty] + rng.uniform(-0.03, 0.03, n), 0.0, 0.95), 0.97 - a)
        self.lat_a, self.lat_b = a.astype(np.float32), b.astype(np.float32)
        # A few nodes (junctions, on-ramps) inject most of the variation, which then travels to
        # their neighbours, so the neighbours' past is worth more than with equal scales. The
        # cap keeps any single sensor from sitting at the congestion clip limits.
        hetero = rng.lognormal(0.0, _LAT_HETERO, n)
        self.lat_scale = np.minimum(hetero / hetero.mean(), _LAT_HETERO_CAP).astype(np.float32)
        # Day-to-day amplitude: one factor per day overall times one per (day, town).
        n_days = int(math.ceil(self.num_steps * self.step_minutes / 1440.0)) + 2
        self.day_factor = (
            rng.lognormal(0.0, 0.1, (n_days, 1)) * rng.lognormal(0.0, 0.1, (n_days, self.n_towns))
        ).astype(np.float32)  # [days, towns]
        # Upstream edges: (i <- j) with j farther from its town centre than i (ties by index), so
        # every directed path descends the potential and the upstream graph is a DAG.
        src, dst = self.edge_index  # src = receiving node i, dst = upstream candidate j
        pot = self.potential
        up = (pot[dst] > pot[src]) | ((pot[dst] == pot[src]) & (dst > src))
        # Advective latent operator: row-normalised weights over the upstream edges only; roots
        # (no upstream neighbour) get an empty row. Being nilpotent (DAG), it is stable for any b.
        wsum = np.bincount(src[up], weights=self.edge_weight[up], minlength=n)
        self.P = sp.csr_matrix(
            ((self.edge_weight[up] / wsum[src[up]]).astype(np.float32), (src[up], dst[up])),
            shape=(n, n),
        )
        # Wave propagation over the upstream edges in CSR order (sorted by receiving node), plus
        # one zero-gain self edge per root so that reduceat sees a non-empty row for every node.
        roots = np.flatnonzero(np.bincount(src[up], minlength=n) == 0)
        step_km = _WAVE_KMH * self.step_minutes / 60.0
        delay = np.clip(np.ceil(self.edge_road_km[up] / step_km), 1, _MAX_DELAY).astype(np.int64)
        gain = np.where(self.edge_both_hw[up], _JAM_SPREAD_HW, _JAM_SPREAD)
        self.params["wave_delay_steps"] = [int(delay.min()), int(delay.max())] if up.any() else []
        jsrc = np.concatenate([src[up], roots])
        jdst = np.concatenate([dst[up], roots])
        delay = np.concatenate([delay, np.ones(len(roots), np.int64)])
        gain = np.concatenate([gain, np.zeros(len(roots))])
        order = np.argsort(jsrc, kind="stable")
        jsrc, jdst, delay, gain = jsrc[order], jdst[order], delay[order], gain[order]
        self.ring = _MAX_DELAY + 1
        idx_dtype = np.int32 if self.ring * n < 2**31 else np.int64
        # idx[r, e]: flat position of J_{dst_e}(t - delay_e) in the [ring, N] buffer when
        # t % ring = r, so that one gather per step reads every delayed upstream value.
        self.jam_idx = (((np.arange(self.ring)[:, None] - delay[None]) % self.ring) * n
                        + jdst[None]).astype(idx_dtype)
        self.jam_gain = gain.astype(np.float32)
        self.jam_starts = np.searchsorted(jsrc, np.arange(n))  # every node has >= 1 entry
        self.params["upstream_roots"] = int(len(roots))
        self.is_root = np.zeros(n, dtype=bool)
        self.is_root[roots] = True
        # Spatial attributes: one-hot type plus the posted speed limit.
        onehot = np.eye(3, dtype=np.float32)[ty]
        limit = (np.round(self.vfree / 5.0) * 5.0).astype(np.float32)[:, None]
        self.node_attrs = np.concatenate([onehot, limit], axis=1)  # [N, 4]
        self.params["node_types"] = {t: int((ty == c).sum()) for c, t in enumerate(TYPE_NAMES)}

    def _build_events(self, rng, incident_rate):
        n, T, sm = self.n, self.num_steps, self.step_minutes
        days = T * sm / 1440.0
        # Incidents: Poisson per node, thinned towards daytime (06-21 h).
        lam = _INCIDENT_RATE[self.types] * incident_rate * days / 0.72
        cnt = rng.poisson(lam)
        node = np.repeat(np.arange(n), cnt)
        start = rng.integers(0, T, node.size)
        hour = self._minute_of_day(self.timestamps[start]) / 60.0
        accept = rng.random(node.size) < np.where((hour >= 6) & (hour < 21), 1.0, 0.25)
        node, start = node[accept], start[accept]
        mean_steps = max(1.0, _INCIDENT_MINUTES / sm)
        dur = np.maximum(1, np.round(rng.exponential(mean_steps, node.size))).astype(np.int64)
        dur = np.minimum(dur, int(6 * mean_steps) + 1)
        sev = rng.uniform(0.25, 0.6, node.size).astype(np.float32)
        order = np.argsort(start, kind="stable")
        self.incidents = (start[order], dur[order], node[order], sev[order])
        self.params["incidents"] = int(node.size)
        # Wave starts are drawn step by step in run(); this is the per-node weekday rate.
        boost = np.where(self.is_root, _WAVE_ROOT_BOOST, _WAVE_INNER)
        self.wave_rate = (_WAVE_RATE[self.types] * boost * incident_rate).astype(np.float64)
        # Missing values: 1 - (1 - p)^2 = missing_ratio, p for dropouts and p for outages.
        p = 1.0 - math.sqrt(1.0 - self.missing_ratio)
        self.p_drop = p
        mean_len = max(1.0, _OUTAGE_MINUTES / sm)
        max_len = max(1, int(round(1440.0 / sm)))
        rate = -math.log(1.0 - p) / mean_len if p > 0 else 0.0  # outage starts per step
        cnt = rng.poisson(rate * (T + mean_len), n)
        onode = np.repeat(np.arange(n), cnt)
        olen = np.minimum(rng.geometric(1.0 / mean_len, onode.size), max_len).astype(np.int64)
        ostart = rng.integers(-int(mean_len), T, onode.size)
        order = np.argsort(ostart, kind="stable")
        self.outages = (ostart[order], olen[order], onode[order])
        self.keep_step = rng.integers(0, T, n)  # never masked: no sensor is all-missing

    # -- time loop ---------------------------------------------------------------------
    @staticmethod
    def _minute_of_day(ts_ns):
        return ((ts_ns // 60_000_000_000) % 1440).astype(np.float64)

    def _wave_intensity(self, ts_ns):
        """Relative wave-start intensity per step, float64 [len(ts)]: 1 at the weekday rush."""
        day_ns = 86_400_000_000_000
        hour = self._minute_of_day(ts_ns) / 60.0
        dow = ((ts_ns // day_ns) + 3) % 7  # Monday = 0
        am = _DOW_BUMP[dow, 0] * np.exp(-0.5 * (hour - 7.75) ** 2)
        pm = _DOW_BUMP[dow, 2] * np.exp(-0.5 * (hour - 17.5) ** 2)
        base = np.where((hour >= 6) & (hour < 21), _WAVE_DAY, _WAVE_NIGHT)
        return np.maximum(np.maximum(am, pm), base)

    def _profile(self, ts_ns):
        """Daily/weekly congestion profile, float32 [len(ts), N]."""
        day_ns = 86_400_000_000_000
        hour = (self._minute_of_day(ts_ns) / 60.0).astype(np.float32)[:, None]  # [n, 1]
        dow = ((ts_ns // day_ns) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        day = np.clip((ts_ns - self.timestamps[0]) // day_ns, 0, len(self.day_factor) - 1)
        mult = _DOW_BUMP[dow].astype(np.float32)  # [n, 4]
        prof = np.zeros((len(ts_ns), self.n), dtype=np.float32)
        for b in range(4):
            if not mult[:, b].any():  # e.g. weekday-only chunk: no weekend bump
                continue
            x = (hour - self.mu[b][None]) / self.width[b][None]  # [n, N]
            prof += mult[:, b : b + 1] * self.amp[b][None] * np.exp(-0.5 * x * x)
        prof *= self.day_factor[day][:, self.town]  # [n, N] day-by-town amplitude
        return prof

    @staticmethod
    def _expand(starts, lens, c0, c1):
        """Steps [c0, c1) covered by intervals (start, len): (row in chunk, interval id)."""
        lo = np.maximum(starts, c0)
        hi = np.minimum(starts + lens, c1)
        ok = np.flatnonzero(hi > lo)
        span = hi[ok] - lo[ok]
        first = np.repeat(np.cumsum(span) - span, span)
        rows = np.repeat(lo[ok] - c0, span) + np.arange(first.size) - first
        return rows, np.repeat(ok, span)

    def _window(self, starts, max_len, c0, c1):
        """Index range of the (start-sorted) intervals that may overlap [c0, c1)."""
        return slice(np.searchsorted(starts, c0 - max_len), np.searchsorted(starts, c1))

    def _step_rng(self, g):
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 1, g])))

    def run(self, sink, chunk_steps):
        n, T, L = self.n, self.num_steps, self.latent_lag
        P, a, b = self.P, self.lat_a, self.lat_b
        lat_hist = np.zeros((L, n), dtype=np.float32)  # z[t-L..t-1] by t % L
        z = np.zeros(n, dtype=np.float32)
        # Burn-in brings the latent AR to its stationary state before the first step; the
        # profile is computed chunk by chunk like below so it never costs [288, N] at once.
        step_ns = int(round(self.step_minutes * 60e9))
        burn_ts = self.timestamps[0] - np.arange(_BURN_IN_STEPS, 0, -1) * step_ns
        for b0 in range(0, _BURN_IN_STEPS, chunk_steps):
            ts = burn_ts[b0 : b0 + chunk_steps]
            scale = (_LAT_BASE + _LAT_RUSH * self._profile(ts)) * self.lat_scale  # [m, N]
            for r in range(len(ts)):
                g = b0 + r
                e = self._step_rng(g).standard_normal(n, dtype=np.float32)
                z = a * z + b * (P @ lat_hist[g % L]) + scale[r] * e
                lat_hist[g % L] = z
        jam = np.zeros((self.ring, n), dtype=np.float32)
        jam_flat = jam.reshape(-1)  # view: [ring * N]
        # Wave sources: the level and the steps left of the wave started at each node. Starts
        # per step ~ Poisson(sum of node rates * intensity / weekday intensity total), placed on
        # nodes in proportion to their rate.
        wave_level = np.zeros(n, dtype=np.float32)
        wave_left = np.zeros(n, dtype=np.int32)
        monday = np.datetime64("2024-01-01", "ns").astype(np.int64)
        per_day = max(1, int(round(1440.0 / self.step_minutes)))
        weekday_total = float(self._wave_intensity(monday + np.arange(per_day) * step_ns).sum())
        wave_cdf = np.cumsum(self.wave_rate)
        wave_sum = float(wave_cdf[-1])
        wave_cdf = wave_cdf / max(wave_sum, 1e-300)
        last_jam = -self.ring  # last step with any jam; older slots are all zero
        i_start, i_dur, i_node, i_sev = self.incidents
        o_start, o_len, o_node = self.outages
        max_dur = int(i_dur.max()) if i_dur.size else 0
        max_out = int(o_len.max()) if o_len.size else 0
        for c0 in range(0, T, chunk_steps):
            c1 = min(T, c0 + chunk_steps)
            m = c1 - c0
            prof = self._profile(self.timestamps[c0:c1])  # [m, N]
            wave_lam = self._wave_intensity(self.timestamps[c0:c1]) * (wave_sum / weekday_total)
            src_jam = np.zeros((m, n), dtype=np.float32)  # incident severities S[t, i]
            w = self._window(i_start, max_dur, c0, c1)
            rows, ids = self._expand(i_start[w], i_dur[w], c0, c1)
            np.maximum.at(src_jam, (rows, i_node[w][ids]), i_sev[w][ids])
            out = np.empty((m, n), dtype=np.float32)
            drop = np.empty((m, n), dtype=bool)
            for r in range(m):
                t = c0 + r
                g = _BURN_IN_STEPS + t
                rng = self._step_rng(g)
                e = rng.standard_normal(n, dtype=np.float32)
                noise = rng.standard_normal(n, dtype=np.float32)
                drop[r] = rng.random(n, dtype=np.float32) < self.p_drop
                k = rng.poisson(wave_lam[r])
                if k:
                    at = np.minimum(np.searchsorted(wave_cdf, rng.random(k), side="right"), n - 1)
                    sev = rng.uniform(*_WAVE_SEVERITY, k).astype(np.float32)
                    np.maximum.at(wave_level, at, sev)
                    dur = rng.integers(_WAVE_STEPS[0], _WAVE_STEPS[1] + 1, k).astype(np.int32)
                    np.maximum.at(wave_left, at, dur)
                src_now = np.where(wave_left > 0, wave_level, np.float32(0.0))
                np.maximum(src_now, src_jam[r], out=src_now)
                np.subtract(wave_left, 1, out=wave_left, where=wave_left > 0)
                scale = (_LAT_BASE + _LAT_RUSH * prof[r]) * self.lat_scale
                z = a * z + b * (P @ lat_hist[g % L]) + scale * e
                lat_hist[g % L] = z
                slot = t % self.ring
                if t - last_jam < self.ring:
                    # max over incoming edges of g_ij * J_j(t - delay_ij), CSR row by row
                    vals = jam_flat[self.jam_idx[slot]] * self.jam_gain
                    nb = np.maximum.reduceat(vals, self.jam_starts)
                    cur = np.maximum(nb, _JAM_PERSIST * jam[(t - 1) % self.ring])
                    np.maximum(cur, src_now, out=cur)
                else:
                    cur = src_now
                cur[cur < _JAM_FLOOR] = 0.0
                jam[slot] = cur
                if cur.any():
                    last_jam = t
                c = np.clip(prof[r] + _LAT_GAIN * z + cur, -0.1, 0.95)
                out[r] = self.vfree * (1.0 - c) + self.noise_std * noise
            np.maximum(out, 0.0, out=out)
            w = self._window(o_start, max_out, c0, c1)
            rows, ids = self._expand(o_start[w], o_len[w], c0, c1)
            drop[rows, o_node[w][ids]] = True
            kept = np.flatnonzero((self.keep_step >= c0) & (self.keep_step < c1))
            drop[self.keep_step[kept] - c0, kept] = False
            out[drop] = np.nan
            sink(c0, out)

    def network(self, values) -> SensorNetwork:
        width = len(str(self.n - 1))
        return SensorNetwork(
            name=self.name,
            values=values,
            timestamps=self.timestamps,
            node_ids=np.array([f"S{i:0{width}d}" for i in range(self.n)]),
            edge_index=self.edge_index,
            edge_weight=self.edge_weight,
            channels=["speed"],
            coords=self.coords.astype(np.float64),
            node_attrs=self.node_attrs,
            attr_names=list(ATTR_NAMES),
            source=json.loads(json.dumps(self.params)),
        )


def _complete_or_delaunay_edges(pts):
    """Undirected edges (i, j, euclidean km) of the Delaunay graph; all pairs when N < 4."""
    n = len(pts)
    if n < 4:
        i, j = np.triu_indices(n, 1)
    else:
        tri = Delaunay(pts, qhull_options="QJ")
        s = tri.simplices
        e = np.concatenate([s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]]])
        e = np.unique(np.sort(e, axis=1), axis=0)
        i, j = e[:, 0], e[:, 1]
    d = np.linalg.norm(pts[i] - pts[j], axis=1)
    return i.astype(np.int64), j.astype(np.int64), np.maximum(d, 1e-9)


def _auto_chunk(n: int) -> int:
    # About 16 MiB per float32 [chunk, N] work array; the loop keeps ~6 of them.
    return max(1, (1 << 22) // n)


def _make(params: SynthParams):
    gen = _Generator(params)
    return gen, int(params.chunk_steps or _auto_chunk(gen.n))


#: the generator's memory per sensor, an upper bound: its static arrays (position, graph
#: rows, parameters, events) and a time chunk; measured 326 MiB peak at 100,000 sensors,
#: ~200 MiB of it imports (benchmarks/RESULTS.md, "Synthetic generator")
BYTES_PER_SENSOR = 4096


def check_room(params: SynthParams, out: Path) -> None:
    """Refuse a network this machine cannot make, before minutes of work end in a
    MemoryError or a full disk: the series (steps x sensors float32) goes to disk beside
    ``out``, the generator's state stays in memory."""
    import os
    import shutil

    steps = max(1, int(round(params.days * 1440.0 / params.step_minutes)))
    disk = steps * int(params.num_nodes) * 4
    where = out.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    size = f"{params.num_nodes:,} sensors x {steps:,} steps"
    if disk > free:
        raise DiststError(f"synthetic network of {size}: its values.npy would take "
                          f"{disk / 2**30:,.1f} GiB but {where} has {free / 2**30:,.1f} GiB "
                          "free; make fewer sensors or days, or write elsewhere")
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound known
        return
    need = BYTES_PER_SENSOR * int(params.num_nodes)
    if need > ram:
        raise DiststError(f"synthetic network of {size}: generating it needs about "
                          f"{need / 2**30:,.1f} GiB of memory and this machine has "
                          f"{ram / 2**30:,.1f} GiB; make fewer sensors")


def generate_network(out_dir: str | Path, params: SynthParams | None = None,
                     **overrides) -> Path:
    """Write a synthetic speed dataset (mph) at ``out_dir`` in the internal layout.

    ``params`` (default :class:`SynthParams`), with any field replaced by a keyword
    (``generate_network(out, num_nodes=207, days=10)``). values.npy is written sequentially
    one time chunk at a time, so the series is never held in memory whole. The directory
    appears atomically: it is filled in a temporary sibling and then renamed.
    """
    params = replace(params or SynthParams(), **overrides)
    out = Path(out_dir)
    check_output_dir(out, "synthetic network", is_dataset_dir)
    check_room(params, out)
    gen, chunk = _make(params)
    with atomic_dir(out) as tmp:
        path = tmp / "values.npy"
        with open(path, "wb") as f:
            # A plain sequential write, not a writable memmap: the mapped pages of a memmap
            # count as resident memory until they are flushed, so a 3 GB series would show a
            # 3 GB peak. The data is produced in file order anyway.
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                      "fortran_order": False, "shape": (gen.num_steps, gen.n, 1)}
            np.lib.format.write_array_header_1_0(f, header)

            def sink(c0, block):  # block [m, N] float32 == [m, N, 1] in C order
                f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())

            gen.run(sink, chunk)
        net = gen.network(np.load(path, mmap_mode="r"))
        write_static_files(net, tmp)
        write_meta(build_meta(net), tmp / "meta.json")
        del net
    return out


#: the in-memory generator's defaults: a network small enough for tests
SMALL = SynthParams(num_nodes=30, days=7)


def synth_network(params: SynthParams | None = None, **overrides) -> SensorNetwork:
    """The same generator as :func:`generate_network`, but in memory (for tests, small sizes;
    default :data:`SMALL`)."""
    gen, chunk = _make(replace(params or SMALL, **overrides))
    values = np.empty((gen.num_steps, gen.n, 1), dtype=np.float32)  # [T, N, C=1]

    def sink(c0, block):
        values[c0 : c0 + block.shape[0], :, 0] = block

    gen.run(sink, chunk)
    return gen.network(values)
