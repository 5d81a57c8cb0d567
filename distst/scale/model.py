"""A performance model fitted from a study's measured runs, and what it predicts.

The step time of a data- or partition-parallel run is modelled as

    t(W) = a * c(W) + b * s(W) + g

``c``: node-windows one worker processes per step (its windows x its sensors, halo included;
compute), ``s``: bytes one worker sends per step (ring all-reduce of the gradients:
2 (W - 1) / W x the gradient bytes; communication), ``g``: a fixed per-step overhead
(launches, Python, the optimiser's per-tensor work). ``a``, ``b``, ``g`` >= 0 are fitted by
non-negative least squares on the runs' step times (the slowest worker's), so a study needs
at least three runs that differ in ``c`` and ``s`` (e.g. 1 and 2 workers on two graphs).

For W workers of a measured configuration: replicate mode gives each worker
``windows / W`` windows of all N sensors; shard mode all windows of ``N / W`` sensors plus
the halo, whose share is taken from the largest measured run (halos grow with W: the
prediction is optimistic there). ``b`` is also replaced by the time per byte of a given
interconnect (10 and 100 Gbit/s) to show what a cluster's network would change; the
measured ``b`` of a single machine (shared memory) is far smaller than a network's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distst.config import PARTITIONED_MODES

#: worker counts the summary predicts
PREDICT_AT = (8, 16, 64, 128)
#: interconnects the summary prices (Gbit/s)
LINKS_GBPS = (10.0, 100.0)


@dataclass
class PerfModel:
    a_s_per_node_window: float
    b_s_per_byte: float
    g_s: float
    #: run -> (measured, fitted) step seconds
    fit: dict = field(default_factory=dict)

    def step_s(self, c: float, s: float, b: float | None = None) -> float:
        return self.a_s_per_node_window * c + (self.b_s_per_byte if b is None else b) * s \
            + self.g_s


def _features(rec: dict) -> tuple[float, float]:
    return float(rec["worker_node_windows_per_step"]), float(rec["sent_bytes_per_step"])


def fit_model(runs: list[dict]) -> PerfModel | None:
    """Fit on per-run records (``distst.scale.driver.per_run``); None when the runs cannot
    separate the three terms."""
    from scipy.optimize import nnls

    if len(runs) < 3:
        return None
    x = np.array([[*_features(r), 1.0] for r in runs])
    y = np.array([float(r["run_step_s"]) for r in runs])
    if np.linalg.matrix_rank(x / np.maximum(x.max(axis=0), 1e-30)) < 3:
        return None
    # scale columns so that bytes (1e6) and node-windows (1e4) weigh alike in the solver
    scale = np.maximum(np.abs(x).max(axis=0), 1e-30)
    coef, _ = nnls(x / scale, y)
    a, b, g = coef / scale
    model = PerfModel(float(a), float(b), float(g))
    model.fit = {r["run"]: (float(r["run_step_s"]), model.step_s(*_features(r))) for r in runs}
    return model


def predict(model: PerfModel, rec: dict, workers: int, b: float | None = None) -> float:
    """Step seconds of ``rec``'s configuration on ``workers`` workers."""
    n, windows = float(rec["graph_nodes"]), float(rec["windows_per_step"])
    payload = float(rec["payload_bytes_per_step"]) if rec.get("payload_bytes_per_step") \
        else float(rec["parameters"]) * 4
    if rec["mode"] in PARTITIONED_MODES:
        local = n / workers / max(1.0 - float(rec["halo_share"]), 1e-6)
        c = windows * local
    else:
        c = windows / workers * n
    s = 2 * (workers - 1) / workers * payload if workers > 1 else 0.0
    return model.step_s(c, s, b)


def model_table(model: PerfModel | None, runs: list[dict]) -> list[str]:
    """Markdown lines: the fitted terms, the fit per run, predictions for more workers."""
    if model is None:
        return ["Not enough runs to fit the model: it needs at least three runs that differ "
                "in per-worker work and bytes sent (e.g. 1 and 2 workers on two graphs)."]
    out = [f"t = {model.a_s_per_node_window * 1e9:.3g} ns x node-windows per worker + "
           f"{model.b_s_per_byte * 1e9:.3g} ns x bytes sent per worker + "
           f"{model.g_s * 1000:.3g} ms (fitted on {len(model.fit)} runs)", "",
           "| run | measured step ms | model ms | error |", "|---|---|---|---|"]
    for name, (meas, fitted) in model.fit.items():
        out.append(f"| {name} | {1000 * meas:.1f} | {1000 * fitted:.1f} | "
                   f"{100 * (fitted - meas) / meas:+.0f}% |")
    # one prediction row per configuration: its largest measured run
    best: dict[tuple, dict] = {}
    for r in runs:
        key = (r["mode"], r["graph_nodes"], r["windows_per_step"], r["parameters"])
        if key not in best or r["workers"] > best[key]["workers"]:
            best[key] = r
    base_cols = " | ".join(f"{w} workers" for w in PREDICT_AT)
    out += ["", "Predicted step ms (efficiency against the configuration's fewest measured "
            "workers) for more workers, with the measured per-byte cost and with "
            + " and ".join(f"{g:g} Gbit/s" for g in LINKS_GBPS) + " links:", "",
            f"| configuration | link | {base_cols} |", "|---" * (2 + len(PREDICT_AT)) + "|"]
    for (mode, n, windows, _), rec in best.items():
        w0 = min(r["workers"] for r in runs if (r["mode"], r["graph_nodes"],
                                                r["windows_per_step"]) == (mode, n, windows))
        for label, b in [("measured", None)] + [(f"{g:g} Gbit/s", 8 / (g * 1e9))
                                                  for g in LINKS_GBPS]:
            t0 = predict(model, rec, w0, b)
            cells = []
            for w in PREDICT_AT:
                t = predict(model, rec, w, b)
                cells.append(f"{1000 * t:.1f} ({100 * t0 * w0 / (t * w):.0f}%)")
            out.append(f"| {mode}, {n} sensors, {windows} windows | {label} | "
                       + " | ".join(cells) + " |")
    return out


__all__ = ["PerfModel", "fit_model", "predict", "model_table", "PREDICT_AT", "LINKS_GBPS"]
