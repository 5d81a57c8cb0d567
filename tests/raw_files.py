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


def trained_los_run(d, name, nodes=12, seed=0):
    """A dataset prepared from :func:`write_los_loop` files (3 days) in ``d/data`` and a
    one-epoch local GCGRU run on it at ``d/runs/NAME``, through the CLI; returns the run."""
    from distst.cli import main

    raw = write_los_loop(d / "raw", nodes=nodes, steps=3 * 288, seed=seed)
    assert main(["data", "prepare", "--format", "los-loop", "--path", str(raw),
                 "--out", str(d / "data")]) == 0
    sets = [f"data.path={d / 'data'}", f"runtime.storage={d / 'runs'}", f"runtime.name={name}",
            "model.params={K: 2, hidden_size: 8, num_layers: 1}", "train.epochs=1",
            "train.batch_size=32", "train.threads=1", "train.progress=false"]
    assert main(["train", "configs/quickstart.yaml", "--local",
                 *[a for kv in sets for a in ("--set", kv)]]) == 0
    return d / "runs" / name
