"""Timed steps (train.step_timing): the phases of every step per worker, the bytes the
gradient all-reduce moves, and the same training as untimed steps (DDP's reduce taken apart
is the same average)."""

import json

import pytest

from distst.engine.entry import train_local
from distst.engine.timing import PHASES, ring_bytes_sent
from distst.runtime.ray_train import train_ray
from process_group import train_group


def _records(run_dir, world):
    return [json.loads((run_dir / "steps" / f"rank_{r}.json").read_text()) for r in range(world)]


def test_ring_bytes():
    assert ring_bytes_sent(1000, 1) == 0
    assert ring_bytes_sent(1000, 2) == 1000
    assert ring_bytes_sent(1000, 4) == 1500


def test_local_run_records_every_step(tiny):
    cfg = tiny("train.step_timing=true", "train.max_batches_per_epoch=3")
    run_dir, _ = train_local(cfg)
    (doc,) = _records(run_dir, 1)
    assert doc["world_size"] == 1 and doc["phases"] == list(PHASES)
    assert [s["step"] for s in doc["steps"]] == list(range(6))  # 2 epochs x 3 steps
    for s in doc["steps"]:
        assert all(s[p] >= 0 for p in PHASES) and s["forward"] > 0 and s["backward"] > 0
        assert s["payload_bytes"] == 0 and s["sent_bytes"] == 0  # one process: no reduce
    assert doc["peak_rss_bytes"] > 50e6 and doc["cuda_max_allocated_bytes"] is None
    assert doc["windows_per_step"] == 32 and doc["inner_nodes"] == doc["global_nodes"] == 20


MODES = ("replicate", "shard")


def _timing_overrides(mode: str) -> list[str]:
    return [f"runtime.mode={mode}", "runtime.workers=2", "partition.parts=2",
            "runtime.cpus_per_worker=0.9", "train.max_batches_per_epoch=3",
            "train.max_val_batches=2"]


@pytest.fixture(scope="module")
def untimed(tmp_path_factory, overrides_for):
    """mode -> (run directory, final metrics) of the untimed runs, in plain processes (one
    spawn for both), which train bit for bit what Ray's workers train
    (tests/runtime/test_shard.py, test_ray_train.py)."""
    from distst.config import load_config

    root = tmp_path_factory.mktemp("untimed")
    cfgs = [load_config(None, overrides_for(root / mode, *_timing_overrides(mode),
                                            "runtime.name=plain")) for mode in MODES]
    return dict(zip(MODES, train_group(cfgs)))


@pytest.mark.parametrize("mode", MODES)
def test_timed_ray_run_trains_as_an_untimed_one(ray_session, tiny, untimed, mode):
    extra = _timing_overrides(mode)
    plain_dir, plain = untimed[mode]
    timed_dir, timed = train_ray(tiny(*extra, "runtime.name=timed", "train.step_timing=true"))
    for h in plain["test"]:
        for m in ("mae", "rmse"):
            assert timed["test"][h][m] == pytest.approx(plain["test"][h][m], rel=1e-5)
    docs = _records(timed_dir, 2)
    assert not (plain_dir / "steps").exists()
    params = docs[0]["parameters"]
    for doc in docs:
        assert len(doc["steps"]) == 6
        for s in doc["steps"]:
            # every parameter's float32 gradient, all-reduced once (GCGRU has no per-node
            # parameters, so shard mode moves the same bytes)
            assert s["payload_bytes"] == 4 * params
            assert s["sent_bytes"] == 4 * params  # ring, 2 workers: 2 (W-1)/W = 1
    if mode == "shard":
        assert docs[0]["inner_nodes"] + docs[1]["inner_nodes"] == 20
        assert docs[0]["windows_per_step"] == 32
    else:
        assert docs[0]["windows_per_step"] == 32 and docs[0]["worker_windows_per_step"] == 16
