"""A model trains one epoch in shard mode with 2 Ray workers on a small plan: HyperST-CNN on a
4 x 5 synthetic flow grid, the model whose data and graph differ most from the road models'.
It refuses to build without spatial attributes, so its run also shows that the plan handed
each Ray worker its whole-graph attributes.

Every other model trains in shard mode on 2 workers in tests/engine/test_worker_group.py, in
plain processes that run what Ray's workers run (bit for bit: tests/runtime/test_shard.py):
one Ray run per model would cost the suite about 15 s each (scripts/bench_ray_fit.py).
"""

import json
import math

import yaml

from distst.runtime.ray_train import train_ray
from tiny_models import TINY


def test_one_shard_epoch_of_a_grid_model_on_two_ray_workers(ray_session, tiny):
    name = "hyperst_cnn"
    extra = ["runtime.mode=shard", "partition.parts=2", "partition.halo_hops=1",
             "train.epochs=1", f"model.params={yaml.safe_dump(TINY[name], default_flow_style=True).strip()}",
             "data.synth.graph=grid", "data.synth.grid=[4, 5]", "data.synth.days=4"]
    run_dir, final = train_ray(tiny(*extra, model=name))
    hist = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1]
    assert math.isfinite(hist[0]["train_loss"]) and math.isfinite(hist[0]["val_mae"])
    for h, m in final["test"].items():
        assert math.isfinite(m["mae"]), (name, h, m)
    fetched = [json.loads((run_dir / "fetch" / f"rank_{r}.json").read_text())["source"]
               for r in (0, 1)]
    assert [f.rsplit("/", 1)[1] for f in fetched] == ["part_0", "part_1"]
