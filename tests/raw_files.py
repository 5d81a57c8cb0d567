"""Small raw files in the standard formats, written by tests (real full-length series cannot
be downloaded here)."""

import numpy as np
import pandas as pd


def write_los_loop(raw, nodes=16, steps=2 * 288, seed=0):
    """A small Los-loop-format dataset: daily speed profiles shared along a ring of sensors."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    base = 55 - 15 * np.exp(-((t % 288 - 100) / 20.0) ** 2)  # a morning dip
    series = base[:, None] + rng.normal(0, 1.5, (steps, nodes))
    adj = np.zeros((nodes, nodes))
    for i in range(nodes):
        adj[i, (i + 1) % nodes] = adj[(i + 1) % nodes, i] = 1.0
    raw.mkdir(parents=True)
    pd.DataFrame(series, columns=[f"s{i}" for i in range(nodes)]).to_csv(
        raw / "los_speed.csv", index=False)
    np.savetxt(raw / "los_adj.csv", adj, delimiter=",")
    return raw
