"""Synthetic city-grid crowd flows (inflow / outflow per region), TaxiBJ-like.

Built for HyperST-Net's "Flow prediction" task (Pan et al., AAAI 2019, Sec. "Evaluation"):
TaxiBJ splits Beijing into 32 x 32 regions and counts the hourly taxi inflow and outflow of each
(Zhang, Zheng, Qi 2017), with POI and road-network features as spatial attributes. Here the land
use of a region *causes* its daily flow profile, so a model that reads the attributes
(HyperST-CNN / HyperST-LSTM) has something to learn from them (the paper's Fig. 2: a business
area fills up in the morning, a residential area empties).

Grid and graph
    ``height x width`` regions numbered row-major (node ``r * width + c``), node id ``"r{r}c{c}"``,
    ``coords = (row, col)`` as float64 (HyperST-CNN reads its 3x3 neighbourhoods from them),
    edges between 4-neighbours in both directions with weight 1, so ``2 (2HW - H - W)`` directed
    edges.

Land use (spatially clustered) -> ``node_attrs``
    A city-centre density ``u`` (a main centre plus two sub-centres, in [0.08, 1]) and four
    smooth random fields (white noise blurred with a Gaussian of ~1/6 of the grid side): offices
    are pulled towards the centres, homes pushed to the periphery, retail follows the density,
    leisure (parks, venues) is patchy. A softmax over the four fields gives each region's
    land-use shares. Attributes (``attr_names``): POI densities ``poi_<use> = 100 u share
    * lognormal(0, 0.15)`` for residential, office, retail, leisure, and ``road_density``
    (follows ``u`` with noise).

Flows: channels ``inflow``, ``outflow`` (counts per step)
    ``rate[t, n, ch] = V_n * step/60 * day_t * sum_use share[n, use] * profile[use, ch](h - s_n,
    weekend_t) * exp(a[t, n, ch])``, then Poisson counts:

    * ``profile``: Gaussian bumps in the hour of day ``h`` (circular). Weekdays: residential
      regions send out at ~8h and receive at ~18:30; offices the opposite (in at ~8:45, out at
      ~18h); retail receives from midday to the evening and sends out later; leisure is an
      evening destination. Weekends: no commute (offices nearly empty, homes a late and flat
      morning), retail and leisure busy all afternoon.
    * per-region volume ``V_n = 20 + 300 u_n lognormal(0, 0.3)`` per hour and timing shift
      ``s_n ~ N(0, 0.3 h)``;
    * ``day_t``: a citywide day factor (weather, events), AR(1) over days, ~8 % std;
    * ``a``: log-anomalies, AR(1) in time (lag-1 autocorrelation 0.8 per hour) driven by
      spatially smooth noise (blurred over ~1.5 cells), ~15 % std. The inflow anomaly adds
      ``0.5 x`` the mean outflow anomaly of the 4 neighbours one step earlier: people who leave
      a region show up next door, which is what a graph/grid model can exploit;
    * Poisson sampling noise on top.

No missing values: every count is observed (TaxiBJ's gaps are whole missing time slots, which
distst would represent as NaN; this generator does not simulate them). Everything is vectorised
numpy; the output depends only on the arguments and ``seed``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from distst.data.network import SensorNetwork
from distst.errors import DiststError

#: bump when the generated series change, so cached grids (distst.engine.provision) are rebuilt
GENERATOR_VERSION = 1
LAND_USES = ("residential", "office", "retail", "leisure")
ATTR_NAMES = [f"poi_{u}" for u in LAND_USES] + ["road_density"]
CHANNELS = ["inflow", "outflow"]

# (centre hour, width h, height) bumps on a constant base, per land use: ((inflow), (outflow)).
_BASE = 0.2
_WEEKDAY = {
    "residential": ([(18.5, 1.5, 3.0), (13.0, 3.0, 0.6), (21.5, 1.5, 0.8)],
                    [(8.0, 1.2, 3.0), (13.0, 3.0, 0.6), (20.0, 2.0, 0.5)]),
    "office": ([(8.75, 1.0, 3.5), (13.5, 1.5, 0.6)],
               [(18.0, 1.3, 3.5), (12.0, 1.5, 0.6)]),
    "retail": ([(12.5, 1.5, 1.0), (19.0, 2.0, 2.0)],
               [(14.0, 1.5, 0.8), (21.0, 1.8, 2.0)]),
    "leisure": ([(19.0, 2.0, 1.5)],
                [(21.5, 1.5, 1.5)]),
}
_WEEKEND = {
    "residential": ([(17.0, 2.5, 1.2), (21.5, 1.5, 0.9)],
                    [(10.5, 2.5, 1.5), (19.0, 2.0, 0.6)]),
    "office": ([(10.0, 2.0, 0.5)],
               [(17.0, 2.0, 0.5)]),
    "retail": ([(14.0, 3.0, 2.5)],
               [(17.0, 3.0, 2.5)]),
    "leisure": ([(11.5, 2.5, 2.5)],
                [(16.5, 2.5, 2.5)]),
}
_SHIFT_STD_H = 0.3
_DAY_STD, _DAY_AR = 0.08, 0.5
_ANOM_STD, _ANOM_AR_HOURLY, _ANOM_BLUR = 0.15, 0.8, 1.5
_NEIGHBOUR_COUPLING = 0.5


def _fail(what: str, value, fix: str) -> DiststError:
    return DiststError(f"grid network: {what} = {value!r} is invalid; {fix}")


def _bumps(h: np.ndarray, spec) -> np.ndarray:
    """``_BASE + sum height * exp(-d^2 / 2 width^2)`` with d the circular distance in hours."""
    out = np.full(h.shape, _BASE)
    for centre, width, height in spec:
        d = (h - centre + 12.0) % 24.0 - 12.0
        out += height * np.exp(-0.5 * (d / width) ** 2)
    return out


def grid_edges(height: int, width: int) -> np.ndarray:
    """int64 ``[2, E]`` 4-neighbour edges of a row-major ``height x width`` grid, both ways."""
    idx = np.arange(height * width).reshape(height, width)
    horiz = np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()])  # (r, c) -> (r, c+1)
    vert = np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()])  # (r, c) -> (r+1, c)
    one_way = np.concatenate([horiz, vert], axis=1)
    return np.concatenate([one_way, one_way[::-1]], axis=1).astype(np.int64)


def _blur(a: np.ndarray, sigma: float, axes: tuple[int, int]) -> np.ndarray:
    for ax in axes:
        a = gaussian_filter1d(a, sigma, axis=ax, mode="nearest")
    return a


def _zscore(a: np.ndarray) -> np.ndarray:
    s = a.std()
    return (a - a.mean()) / (s if s > 0 else 1.0)


def _land_use(rng, height: int, width: int):
    """City density ``u [H, W]``, land-use shares ``[H, W, 4]``, attributes ``[H, W, 5]``."""
    rr, cc = np.meshgrid(np.arange(height, dtype=float), np.arange(width, dtype=float),
                         indexing="ij")
    side = max(height, width)
    centres = [((height - 1) / 2 + rng.normal(0, 0.05 * height),
                (width - 1) / 2 + rng.normal(0, 0.05 * width), 0.35 * side, 1.0)]
    for _ in range(2):  # sub-centres somewhere in the inner 80 %
        centres.append((rng.uniform(0.1, 0.9) * (height - 1), rng.uniform(0.1, 0.9) * (width - 1),
                        0.15 * side, rng.uniform(0.4, 0.7)))
    u = np.zeros((height, width))
    for r0, c0, s, a in centres:
        u += a * np.exp(-0.5 * ((rr - r0) ** 2 + (cc - c0) ** 2) / max(s, 0.5) ** 2)
    u = 0.08 + 0.92 * u / u.max()
    scale = max(1.0, side / 6.0)
    noise = [_zscore(_blur(rng.normal(size=(height, width)), scale, (0, 1))) for _ in LAND_USES]
    uz = _zscore(u)
    fields = np.stack([
        noise[0] - 0.8 * uz + 0.3,  # residential: the periphery, and the most common use
        noise[1] + 1.2 * uz - 0.4,  # office: the centres
        noise[2] + 0.5 * uz - 0.3,  # retail: follows density
        noise[3] - 0.5,  # leisure: patches anywhere
    ], axis=-1)
    share = np.exp(2.0 * fields)
    share /= share.sum(axis=-1, keepdims=True)  # [H, W, 4], rows sum to 1
    poi = 100.0 * u[..., None] * share * rng.lognormal(0.0, 0.15, size=share.shape)
    road = 10.0 * u * rng.lognormal(0.0, 0.2, size=u.shape)
    attrs = np.concatenate([poi, road[..., None]], axis=-1)
    return u, share, attrs


def _neighbour_mean(a: np.ndarray) -> np.ndarray:
    """Mean over the existing 4-neighbours of each cell of ``a [..., H, W]``."""
    s = np.zeros_like(a)
    cnt = np.zeros(a.shape[-2:])
    s[..., 1:, :] += a[..., :-1, :]
    cnt[1:, :] += 1
    s[..., :-1, :] += a[..., 1:, :]
    cnt[:-1, :] += 1
    s[..., :, 1:] += a[..., :, :-1]
    cnt[:, 1:] += 1
    s[..., :, :-1] += a[..., :, 1:]
    cnt[:, :-1] += 1
    return s / np.maximum(cnt, 1)


def generate_grid_network(
    height: int,
    width: int,
    days: float,
    seed: int = 0,
    step_minutes: int = 60,
    *,
    start: str = "2015-02-01",
    volume: float = 1.0,
    name: str | None = None,
) -> SensorNetwork:
    """A TaxiBJ-like ``height x width`` grid with inflow/outflow counts; see the module doc.

    ``days`` (may be fractional) times ``1440 / step_minutes`` steps from ``start`` (TaxiBJ's
    first day by default; 2015-02-01 is a Sunday). ``volume`` scales every flow (1.0: up to
    ~300 trips per hour in the densest regions, TaxiBJ's order of magnitude). Returns a
    validated in-memory :class:`SensorNetwork`; write it with
    :func:`distst.data.network.save_network`.
    """
    for key, val in (("height", height), ("width", width)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
            raise _fail(key, val, "give an integer >= 1 (TaxiBJ is 32 x 32)")
    if height * width < 2:
        raise _fail("height x width", f"{height} x {width}", "give a grid of >= 2 regions")
    if not isinstance(days, (int, float, np.number)) or not days > 0 or not math.isfinite(days):
        raise _fail("days", days, "give a positive number of days, e.g. 28")
    if not isinstance(step_minutes, (int, np.integer)) or not 1 <= step_minutes <= 1440:
        raise _fail("step_minutes", step_minutes,
                    "give an integer step in [1, 1440] minutes (TaxiBJ: 30, default 60)")
    if not volume > 0:
        raise _fail("volume", volume, "give a positive scale factor (1.0 = TaxiBJ-like)")
    num_steps = int(round(days * 1440 / step_minutes))
    if num_steps < 1:
        raise _fail("days", days, f"give at least one step ({step_minutes} min)")
    try:
        t0 = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise _fail("start", start, "give a date like 2015-02-01") from exc

    rng = np.random.default_rng(seed)
    n = height * width
    u, share, attrs = _land_use(rng, height, width)
    u, share, attrs = u.reshape(n), share.reshape(n, len(LAND_USES)), attrs.reshape(n, -1)
    vol = volume * (20.0 + 300.0 * u * rng.lognormal(0.0, 0.3, size=n))  # trips per hour
    shift = rng.normal(0.0, _SHIFT_STD_H, size=n)

    ts = t0 + pd.to_timedelta(np.arange(num_steps) * step_minutes, unit="min")
    hour = np.asarray(ts.hour + ts.minute / 60.0, dtype=np.float64)
    weekend = np.asarray(ts.day_of_week >= 5)
    # Profiles depend on (time of day, weekend) only: evaluate them on the distinct keys,
    # [K, N, 2], then gather per step.
    keys, inv = np.unique(np.stack([hour, weekend.astype(float)], axis=1), axis=0,
                          return_inverse=True)
    inv = inv.reshape(-1)
    hk = keys[:, 0][:, None] - shift[None, :]  # [K, N] local hour
    prof = np.zeros((len(keys), n, 2))
    for day_kind, table in ((0.0, _WEEKDAY), (1.0, _WEEKEND)):
        rows = keys[:, 1] == day_kind
        if not rows.any():
            continue
        for j, use in enumerate(LAND_USES):
            for ch in range(2):
                prof[rows, :, ch] += share[None, :, j] * _bumps(hk[rows], table[use][ch])

    day_index = np.asarray((ts - ts[0].normalize()).days)
    day_eps = rng.normal(0.0, _DAY_STD, size=day_index.max() + 1)
    day_log = np.zeros_like(day_eps)
    for d in range(len(day_eps)):  # AR(1) over days (a handful of iterations)
        prev = day_log[d - 1] if d else 0.0
        day_log[d] = _DAY_AR * prev + math.sqrt(1 - _DAY_AR**2) * day_eps[d]

    # Log-anomalies: spatially smooth innovations [T, 2, H, W], AR(1) in time.
    rho = _ANOM_AR_HOURLY ** (step_minutes / 60.0)
    eps = rng.normal(size=(num_steps, 2, height, width))
    eps = _blur(eps, _ANOM_BLUR, (2, 3))
    eps *= _ANOM_STD * math.sqrt(1 - rho**2) / max(eps.std(), 1e-12)
    anom = lfilter([1.0], [1.0, -rho], eps, axis=0)  # a_t = rho a_{t-1} + e_t
    # Outflow leaving the neighbours one step earlier arrives here (inflow channel 0).
    anom[1:, 0] += _NEIGHBOUR_COUPLING * _neighbour_mean(anom[:-1, 1])
    anom = anom.reshape(num_steps, 2, n).transpose(0, 2, 1)  # [T, N, 2]

    rate = (vol[None, :, None] * (step_minutes / 60.0) * prof[inv]
            * np.exp(day_log[day_index])[:, None, None] * np.exp(anom))
    values = rng.poisson(rate).astype(np.float32)  # [T, N, 2] counts, no NaN

    rr, cc = np.divmod(np.arange(n), width)
    edge_index = grid_edges(height, width)
    return SensorNetwork(
        name=name or f"grid{height}x{width}",
        values=values,
        timestamps=ts.as_unit("ns").asi8.astype(np.int64),
        node_ids=np.array([f"r{r}c{c}" for r, c in zip(rr, cc)]),
        edge_index=edge_index,
        edge_weight=np.ones(edge_index.shape[1], dtype=np.float32),
        channels=list(CHANNELS),
        coords=np.stack([rr, cc], axis=1).astype(np.float64),
        node_attrs=attrs.astype(np.float32),
        attr_names=list(ATTR_NAMES),
        source={"generator": "distst.data.grid", "height": height, "width": width,
                "days": days, "seed": seed, "step_minutes": step_minutes, "start": str(start),
                "volume": volume, "missing": "none"},
    )
