"""The synthetic generator's travelling congestion must reward a graph model.

GCGRU (graph convolution in the GRU gates) and the per-node GRU are trained with the same
small budget on synthetic networks (distst.data.synth: waves that move from sensor to sensor
along the oriented upstream edges). Over three seeds (network and training seed together) the
graph model must forecast better on average, and both must beat the historical average at
every seed. One seed is not evidence: at this budget single seeds range from -2.5% to +10%.
"""

from __future__ import annotations

import pytest

from distst.config import load_config
from distst.data.synth import generate_network
from distst.engine.entry import train_local

# Measured (issue 10) on 45 nodes x 7 days, 4 epochs, hidden 16, seeds 0-5: GCGRU below GRU by
# 8.2, 3.6, 6.3, 10.1, -2.5, 5.4 % of test MAE (mean 5.2 %; seeds 0-2 here: 6.0 %). The smallest
# mean over any 3 of those 6 seeds is 2.15 %, so the bar sits below it.
SEEDS = (0, 1, 2)
MEAN_MARGIN = 0.02


MODELS = (("gcgru", "{K: 2, hidden_size: 16, num_layers: 1}"),
          ("gru", "{hidden_size: 16, num_layers: 1}"))


def _train(job: tuple) -> tuple[float, float]:
    """(test MAE, HA's test MAE) of one model on one seed's network (in a worker process)."""
    root, data, seed, model, params = job
    cfg = load_config(None, [
        f"data.path={data}", f"data.cache_dir={root / 'cache'}",
        f"runtime.storage={root / 'runs'}", "runtime.mode=local",
        f"model.name={model}", f"model.params={params}",
        "train.epochs=4", "train.batch_size=32", "train.cl_decay_steps=50",
        "train.threads=1", "train.progress=false", f"train.seed={seed}",
    ])
    _, final = train_local(cfg)
    return final["test"]["avg"]["mae"], final["ha"]["avg"]["mae"]


@pytest.fixture(scope="module")
def maes(tmp_path_factory):
    """Every (seed, model) run, two at a time: each trains on one thread (its numbers do not
    depend on what runs beside it), so the two cores halve the wait."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    root = tmp_path_factory.mktemp("spatial")
    jobs = []
    for seed in SEEDS:
        data = generate_network(root / f"net{seed}", num_nodes=45, days=7, seed=seed)
        jobs += [(root, data, seed, model, params) for model, params in MODELS]
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(_train, jobs))
    out = {}
    for (_, _, seed, model, _), (mae, ha) in zip(jobs, results):
        out[(seed, model)] = mae
        out[(seed, "ha")] = ha
    return out


@pytest.mark.slow  # trains both models over several seeds
def test_graph_model_beats_graph_free_model_on_average_over_seeds(maes):
    gains = [1 - maes[(s, "gcgru")] / maes[(s, "gru")] for s in SEEDS]
    assert sum(gains) / len(gains) >= MEAN_MARGIN, (gains, maes)


def test_both_models_beat_historical_average(maes):
    # measured model/HA ratios: seed 0 0.61 (gcgru) / 0.67 (gru), seed 1 0.79 / 0.82
    for model in ("gcgru", "gru"):
        ratios = [maes[(s, model)] / maes[(s, "ha")] for s in SEEDS]
        assert max(ratios) < 0.9 and sum(ratios) / len(ratios) < 0.8, (model, ratios, maes)
