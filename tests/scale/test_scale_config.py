"""Study files: strict keys, the grid's runs in order, shard workers = parts, the step budget
and thread split of each run, and one-line errors for what cannot run."""

from pathlib import Path

import pytest
import yaml

from distst.errors import DiststError
from distst.scale.config import load_study
from distst.scale.driver import dry_run_table

REPO = Path(__file__).resolve().parents[2]


def _study(tmp_path, grid, **extra):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "data": {"synth": {"nodes": 20, "days": 4}, "cache_dir": str(tmp_path / "cache")},
        "model": {"name": "gcgru", "params": {"K": 2, "hidden_size": 8, "num_layers": 1}},
        "train": {"batch_size": 16, "threads": 1},
        "runtime": {"mode": "replicate", "workers": 2}}))
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump({"base": "base.yaml", "grid": grid, **extra}, sort_keys=False))
    return p


def test_grid_is_the_product_in_order_with_step_budget_and_threads(tmp_path):
    p = _study(tmp_path, {"graph": [24, 48], "runtime.mode": ["replicate", "shard"],
                          "runtime.workers": [1, 2]},
               warmup_steps=2, timed_steps=5, threads=4)
    study = load_study(p)
    names = [r.name for r in study.runs]
    assert names[:3] == ["r00-n24-replicate-w1", "r01-n24-replicate-w2", "r02-n24-shard-w1"]
    assert len(names) == 8 and len(set(names)) == 8
    for r in study.runs:
        tc = r.cfg.train
        assert tc.step_timing and not tc.progress
        assert tc.epochs == 1 and tc.max_batches_per_epoch == 7
        assert tc.max_test_batches == 1 and tc.max_val_batches == 1
        assert tc.threads == 4 // r.workers
        assert r.cfg.data.synth.nodes == r.values["graph"]
        if r.cfg.runtime.mode == "shard":  # one worker per part
            assert r.cfg.partition.parts == r.workers == r.values["runtime.workers"]


def test_epochs_keep_accuracy_and_nodes_per_worker_grows_the_graph(tmp_path):
    p = _study(tmp_path, {"nodes_per_worker": [16], "runtime.mode": ["shard"],
                          "runtime.workers": [1, 2, 3]}, epochs=2)
    study = load_study(p, ["train.batch_size=8"])
    assert [r.cfg.data.synth.nodes for r in study.runs] == [16, 32, 48]
    for r in study.runs:
        tc = r.cfg.train
        assert tc.epochs == 2 and tc.max_test_batches == 0 and tc.batch_size == 8


def test_set_reaches_the_grid_and_the_study(tmp_path):
    p = _study(tmp_path, {"runtime.workers": [1, 2]})
    study = load_study(p, ["grid.runtime.workers=[1,2,3]", "timed_steps=4"])
    assert [r.workers for r in study.runs] == [1, 2, 3]
    assert study.runs[0].cfg.train.max_batches_per_epoch == 3 + 4


def test_a_dataset_graph_and_the_dry_run_table(tmp_path):
    p = _study(tmp_path, {"graph": [20, str(tmp_path / "data" / "metr")],
                          "runtime.workers": [2]})
    study = load_study(p)
    assert study.runs[1].cfg.data.path.endswith("metr") and study.runs[1].name.endswith("metr-w2")
    table = dry_run_table(study)
    assert "| r00-n20-w2 | 20 | 2 | 2 | 2 | 0 | 1 | 20 |" in table
    rows = [ln for ln in table.splitlines() if ln.startswith("| r0")]
    # planned before the data: said so, not a traceback and not silently "dataset"
    assert rows[1].endswith("| not prepared yet | not prepared yet | not prepared yet |")
    assert "est. peak" in table.splitlines()[-1]
    (tmp_path / "data" / "metr").mkdir(parents=True)
    (tmp_path / "data" / "metr" / "meta.json").write_text("{}")
    rows = [ln for ln in dry_run_table(study).splitlines() if ln.startswith("| r0")]
    assert rows[1].endswith("| dataset | dataset | dataset |")


def test_partitioned_runs_are_parts_times_replicas(tmp_path):
    p = _study(tmp_path, {"runtime.mode": ["exchange"], "runtime.workers": [2, 4]})
    study = load_study(p, ["runtime.replicas=2", "runtime.mode=exchange"])
    assert [(r.cfg.partition.parts, r.cfg.runtime.workers) for r in study.runs] == [(1, 2),
                                                                                 (2, 4)]
    bad = _study(tmp_path, {"runtime.mode": ["exchange"], "runtime.workers": [3]})
    with pytest.raises(DiststError, match=r"runtime.workers=3 is not a multiple of "
                                          r"runtime.replicas=2"):
        load_study(bad, ["runtime.replicas=2", "runtime.mode=exchange"])


@pytest.mark.parametrize("grid,extra,match", [
    ({"runtime.mode": ["shard"], "runtime.workers": [2], "partition.parts": [3]}, {},
     r"run r00-shard-w2-p3: shard mode runs one worker per part and replica, but "
     r"runtime.workers=2, partition.parts=3 and runtime.replicas=1; give workers or parts"),
    ({"runtime.workers": [1]}, {"timed_step": 3}, r"timed_step"),
    ({}, {}, r"grid is empty"),
    ({"runtime.workers": 2}, {}, r"grid key 'runtime.workers' must be a non-empty list"),
    ({"train.batch_sise": [8]}, {}, r"run r00-8: .*batch_sise"),
    ({"graph": [20], "nodes_per_worker": [10]}, {}, r"both size the graph"),
    ({"runtime.mode": ["local"]}, {}, r"runtime.mode=local runs no workers"),
    ({"runtime.workers": [1]}, {"timed_steps": 0}, r"'timed_steps' must be >= 1"),
])
def test_bad_study_files_get_one_line(tmp_path, grid, extra, match):
    with pytest.raises(DiststError, match=match):
        load_study(_study(tmp_path, grid, **extra))


def test_example_studies_load(tmp_path):
    for f in sorted((REPO / "configs" / "studies").glob("*.yaml")):
        study = load_study(f)
        assert study.runs and all(r.cfg.train.step_timing for r in study.runs), f


def test_keys_a_mode_ignores_do_not_multiply_its_runs(tmp_path):
    # the accuracy study's grid: halo depth matters to shard runs only
    p = _study(tmp_path, {"runtime.mode": ["replicate", "exchange", "shard"],
                          "partition.halo_hops": [0, 2], "train.seed": [0, 1],
                          "runtime.workers": [2]})
    study = load_study(p)
    names = [r.name for r in study.runs]
    assert names == ["r00-replicate-s0-w2", "r01-replicate-s1-w2", "r02-exchange-s0-w2",
                     "r03-exchange-s1-w2", "r04-shard-h0-s0-w2", "r05-shard-h0-s1-w2",
                     "r06-shard-h2-s0-w2", "r07-shard-h2-s1-w2"]
    assert [r.cfg.train.seed for r in study.runs] == [0, 1] * 4
    assert [r.cfg.partition.halo_hops for r in study.runs[4:]] == [0, 0, 2, 2]
    assert "partition.halo_hops" not in study.runs[2].values
    table = dry_run_table(study)
    assert "| r02-exchange-s0-w2 | exchange | - | 0 | 2 |" in table


def test_accuracy_over_seeds_is_mean_and_spread_per_setting():
    from distst.scale.driver import seed_table
    recs = [{"mode": m, "workers": 2, "partition.halo_hops": h, "train.seed": s,
             "halo_share": share, "best_val_mae": v, "test_mae": t}
            for m, h, share, s, v, t in [
                ("exchange", None, 0.1, 0, 3.0, 4.0), ("exchange", None, 0.1, 1, 3.2, 4.2),
                ("shard", 1, 0.3, 0, 3.5, 5.0), ("shard", 1, 0.3, 1, 3.5, "")]]
    table = "\n".join(seed_table(recs, ["partition.halo_hops", "train.seed"]))
    assert "| exchange | 2 | - | 10.0% | 2 | 3.100 ± 0.141 | 4.100 ± 0.141 |" in table
    # a seed that did not finish is not averaged in
    assert "| shard | 2 | 1 | 30.0% | 1 | 3.500 | 5.000 |" in table
    assert seed_table(recs, ["partition.halo_hops"]) == []


def test_the_dry_run_says_its_estimate_is_a_lower_bound_with_recompute_on_cpu(tmp_path):
    p = _study(tmp_path, {"graph": [20], "runtime.workers": [1]})
    assert "lower bound" not in dry_run_table(load_study(p))
    study = load_study(p, ["train.recompute=step", "train.micro_batches=4"])
    table = dry_run_table(study)
    assert table.splitlines()[-1].startswith("train.recompute=step on CPU: a lower bound")
    row = next(ln for ln in table.splitlines() if ln.startswith("| r0"))
    # the batch in 4 micro-batches: a quarter of its windows held at once
    assert f"| 20 | {study.runs[0].cfg.train.batch_size // 4} |" in row
