"""The study plots drawn from per-run records: files are PNGs and show the records' values
(weak scaling, accuracy against halo depth; strong scaling is checked against a real study's
runs.csv in test_scale_run.py)."""

import pytest

from distst.engine.timing import PHASES
from distst.plots.study import plot_study
from distst.storage import location


def _rec(run, workers, step, **kw):
    return {"run": run, "mode": "shard", "graph_nodes": 64 * workers, "workers": workers,
            "run_step_s": step, "peak_rss_mb": 400.0 + workers, "cuda_max_allocated_mb": "",
            **{f"{p}_s": step / len(PHASES) for p in PHASES}, "test_mae": "",
            "best_val_mae": "", **kw}


def test_weak_scaling_plot(tmp_path):
    runs = [_rec("a", 1, 1.0), _rec("b", 2, 1.25), _rec("c", 4, 1.5)]
    drawn = plot_study(location(tmp_path), runs, ["nodes_per_worker", "runtime.workers"], True)
    assert set(drawn) == {"weak_scaling.png", "memory.png", "breakdown.png"}
    assert drawn["weak_scaling.png"]["step_ms"]["shard, growing sensors"] == (
        [1.0, 2.0, 4.0], pytest.approx([1000.0, 1250.0, 1500.0]))
    assert (tmp_path / "weak_scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_accuracy_against_halo_plot(tmp_path):
    runs = [_rec(f"h{h}", 8, 1.0, **{"partition.halo_hops": h, "test_mae": 4.0 - 0.1 * h,
                                     "best_val_mae": 3.9 - 0.1 * h}) for h in (2, 0, 1)]
    for r in runs:
        r["graph_nodes"] = 1026
    drawn = plot_study(location(tmp_path), runs, ["partition.halo_hops"], False)
    mae = drawn["accuracy.png"]["mae"]
    assert mae["shard, 1026 sensors, P=8: test"] == ([0.0, 1.0, 2.0],
                                                     pytest.approx([4.0, 3.9, 3.8]))
    assert mae["shard, 1026 sensors, P=8: best val"][1] == pytest.approx([3.9, 3.8, 3.7])
    assert "scaling.png" not in drawn  # one worker count: nothing to scale
