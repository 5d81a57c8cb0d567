"""Every trainable model trains one epoch in shard mode with 2 Ray workers on a small plan.

Road models run on a 20-sensor synthetic network (METIS, 2 parts, 1 halo hop); HyperST-CNN on
a 4 x 5 synthetic flow grid. Each run must finish, report finite test metrics for the whole
graph; HyperST models refuse to build without spatial attributes, so their runs also show
that the plan handed each worker its whole-graph attributes.
"""

import json
import math

import pytest
import yaml

from distst.nn.registry import MODELS
from distst.runtime.ray_train import train_ray
from tiny_models import TINY

TRAINABLE = [m for m in MODELS if m != "ha"]


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_shard_epoch_on_two_workers(ray_local, tiny, name):
    extra = ["runtime.mode=shard", "partition.parts=2", "partition.halo_hops=1",
             "train.epochs=1", f"model.params={yaml.safe_dump(TINY.get(name, {}), default_flow_style=True).strip()}"]
    if name == "hyperst_cnn":
        extra += ["data.synth.graph=grid", "data.synth.grid=[4, 5]", "data.synth.days=4"]
    cfg = tiny(*extra, model=name)
    run_dir, final = train_ray(cfg)
    hist = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1]
    assert math.isfinite(hist[0]["train_loss"]) and math.isfinite(hist[0]["val_mae"])
    for h, m in final["test"].items():
        assert math.isfinite(m["mae"]), (name, h, m)
