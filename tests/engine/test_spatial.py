"""The synthetic generator's travelling congestion must reward a graph model.

GCGRU (graph convolution in the GRU gates) and the per-node GRU are trained with the same
small budget on one synthetic network (distst.data.synth: waves that move from sensor to
sensor along the oriented upstream edges). The graph model must forecast clearly better,
and both must beat the historical average.
"""

from __future__ import annotations

import pytest

from distst.config import load_config
from distst.data.synth import generate_network
from distst.engine.run import train_local

# Measured on this network (45 nodes, 7 days, seed 0; 4 epochs, hidden 16): gcgru 4.13,
# gru 4.50, HA 6.75 mph test MAE, i.e. gcgru 8 % below gru. The margin is kept well inside.
MARGIN = 0.05


@pytest.fixture(scope="module")
def maes(tmp_path_factory):
    root = tmp_path_factory.mktemp("spatial")
    data = generate_network(root / "net", num_nodes=45, days=7, seed=0)
    out = {}
    for model, params in (("gcgru", "{K: 2, hidden_size: 16, num_layers: 1}"),
                          ("gru", "{hidden_size: 16, num_layers: 1}")):
        cfg = load_config(None, [
            f"data.path={data}", f"data.cache_dir={root / 'cache'}",
            f"runtime.storage={root / 'runs'}", "runtime.mode=local",
            f"model.name={model}", f"model.params={params}",
            "train.epochs=4", "train.batch_size=32", "train.cl_decay_steps=50",
            "train.threads=1", "train.progress=false",
        ])
        _, final = train_local(cfg)
        out[model] = final["test"]["avg"]["mae"]
        out["ha"] = final["ha"]["avg"]["mae"]
    return out


def test_graph_model_beats_graph_free_model(maes):
    assert maes["gcgru"] <= (1 - MARGIN) * maes["gru"], maes


def test_both_models_beat_historical_average(maes):
    assert maes["gcgru"] < 0.8 * maes["ha"], maes
    assert maes["gru"] < 0.8 * maes["ha"], maes
