"""Sweep files: search-space grammar, checks against the base config, trial resources.
No Ray here: every check must happen before anything is scheduled."""

from pathlib import Path

import pytest
import yaml

from distst.errors import DiststError
from distst.sweep.config import (
    load_sweep,
    partition_combos,
    plan_resources,
    split_overrides,
    trial_config,
)

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path, search_space, **extra) -> Path:
    base = {"data": {"synth": {"nodes": 20, "days": 4}, "cache_dir": str(tmp_path / "cache")},
            "model": {"name": "gcgru", "params": {"K": 2, "hidden_size": 8, "num_layers": 1}},
            "train": {"epochs": 3, "batch_size": 32},
            "runtime": {"mode": "replicate", "workers": 2}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {"base": "base.yaml", "search_space": search_space, **extra}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(sweep))
    return p


def test_grammar_and_trial_config(tmp_path):
    p = _write(tmp_path, {"model.params.hidden_size": {"choice": [8, 16]},
                          "train.lr": {"loguniform": [1e-4, 1e-2]},
                          "train.weight_decay": {"uniform": [0, 0.1]},
                          "model.params.K": {"randint": [1, 3]},
                          "train.batch_size": {"grid": [16, 32]}},
               overrides={"train.epochs": 4}, num_samples=3)
    sw = load_sweep(p, ["train.seed=7", "num_samples=5"])
    assert sw.cfg.num_samples == 5
    assert sw.base.train.epochs == 4 and sw.base.train.seed == 7
    assert {d.key: d.kind for d in sw.domains} == {
        "model.params.hidden_size": "choice", "train.lr": "loguniform",
        "train.weight_decay": "uniform", "model.params.K": "randint", "train.batch_size": "grid"}
    # randint includes both ends in a sweep file
    assert next(d for d in sw.domains if d.key == "model.params.K").candidates() == [1, 2, 3]
    cfg = trial_config(sw.base_raw, {"model.params.hidden_size": 16, "train.lr": 0.003,
                            "train.batch_size": 16})
    assert cfg.model.params == {"K": 2, "hidden_size": 16, "num_layers": 1}
    assert cfg.train.lr == 0.003 and cfg.train.batch_size == 16 and cfg.train.epochs == 4


def test_set_routes_keys_to_sweep_or_base():
    sweep, base = split_overrides(["num_samples=2", "train.epochs=1", "partition.parts=3",
                                   "search_space.train.lr={choice: [0.1]}"])
    assert sweep == ["num_samples=2", "search_space.train.lr={choice: [0.1]}"]
    assert base == ["train.epochs=1", "partition.parts=3"]


@pytest.mark.parametrize("space, match", [
    ({"model.hiden": {"choice": [1]}}, "unknown config key 'model.hiden'.*valid keys: name, params"),
    ({"train.lrr": {"uniform": [0.1, 0.2]}}, "unknown config key 'train.lrr'"),
    ({"model.params.hiden_size": {"choice": [8]}}, "no hyperparameter 'hiden_size'.*hidden_size"),
    ({"model.params.hidden_size": {"choice": []}}, "choice list is empty"),
    ({"train.batch_size": {"grid": []}}, "grid list is empty"),
    ({"train.lr": {"uniform": [0.2, 0.1]}}, "lower bound 0.2 is above the upper bound 0.1"),
    ({"model.params.K": {"randint": [4, 2]}}, "lower bound 4 is above the upper bound 2"),
    ({"train.lr": {"loguniform": [0, 0.1]}}, "loguniform needs a lower bound > 0"),
    ({"train.lr": [0.1, 0.2]}, "is not a search domain"),
    ({"train.lr": {"normal": [0, 1]}}, "is not a search domain"),
    ({"train.epochs": {"uniform": [1, 5]}}, "integer but uniform samples floats"),
    ({"model.params.hidden_size": {"uniform": [8, 16]}}, "uniform samples floats"),
    ({"model.params.hidden_size": {"choice": [8, "big"]}}, "value 'big' does not fit"),
    ({"train.batch_size": {"choice": [32, 0]}}, "value 0:.*train.batch_size"),
    ({"partition.parts": {"choice": [2, 4]}}, "only matter in runtime.mode=shard"),
])
def test_bad_search_space_is_one_clear_error(tmp_path, space, match):
    with pytest.raises(DiststError, match=match) as e:
        load_sweep(_write(tmp_path, space))
    assert "\n" not in str(e.value)
    assert str(tmp_path / "sweep.yaml") in str(e.value)  # names the file


@pytest.mark.parametrize("extra, match", [
    ({"num_sample": 3}, "unknown key 'num_sample'.*valid keys: base, overrides"),
    ({"scheduler": "hyperband"}, "'scheduler' is 'hyperband'; choose one of asha, fifo"),
    ({"searcher": "bohb"}, "choose one of random, optuna"),
    ({"mode": "lowest"}, "choose one of min, max"),
    ({"searcher": "optuna", "search_space": {"train.batch_size": {"grid": [16, 32]}}},
     "optuna searcher cannot sample"),
    ({"overrides": {"runtime.mode": "local"}}, "runtime.mode=local"),
    ({"search_space": {}}, "search_space is empty"),
    ({"grace_period": 4}, r"grace_period=4 is beyond the last epoch \(train.epochs=3\)"),
    ({"grace_period": 2, "max_t": 1}, "grace_period=2 is beyond max_t=1"),
])
def test_bad_sweep_settings(tmp_path, extra, match):
    space = extra.pop("search_space", {"train.lr": {"choice": [0.01]}})
    with pytest.raises(DiststError, match=match):
        load_sweep(_write(tmp_path, space, **extra))


def test_resources_fit_two_cpus_without_deadlock(tmp_path):
    sw = load_sweep(_write(tmp_path, {"train.lr": {"choice": [0.01]}},
                           workers_per_trial=2, max_concurrent_trials=2))
    r = plan_resources(sw, 2)
    # two trials of (driver + 2 workers) must fit 2 CPUs, drivers included
    assert r.max_concurrent_trials == 2 and r.workers == 2
    assert r.max_concurrent_trials * r.per_trial <= 2 + 1e-9
    assert 0 < r.driver_cpus < r.cpus_per_worker
    auto = plan_resources(load_sweep(_write(tmp_path, {"train.lr": {"choice": [0.01]}})), 2)
    assert auto.max_concurrent_trials == 1 and auto.per_trial <= 2
    big = plan_resources(load_sweep(_write(tmp_path, {"train.lr": {"choice": [0.01]}})), 16)
    assert big.cpus_per_worker == 1.0 and big.max_concurrent_trials == 7


def test_more_workers_than_cluster_cpus_is_refused(tmp_path):
    sw = load_sweep(_write(tmp_path, {"train.lr": {"choice": [0.01]}}, workers_per_trial=3))
    with pytest.raises(DiststError, match="workers_per_trial=3 .* the Ray cluster has 2"):
        plan_resources(sw, 2)
    sw = load_sweep(_write(tmp_path, {"train.lr": {"choice": [0.01]}}, workers_per_trial=2,
                           cpus_per_worker=0.5, max_concurrent_trials=3))
    with pytest.raises(DiststError, match="max_concurrent_trials=3 x 1.1 CPUs"):
        plan_resources(sw, 2)


def test_shard_sweep_plans_every_partition_once(tmp_path):
    sw = load_sweep(_write(tmp_path, {"partition.halo_hops": {"grid": [1, 2]},
                                      "partition.parts": {"choice": [1, 2]},
                                      "model.params.hidden_size": {"choice": [8, 16]}},
                           overrides={"runtime.mode": "shard"}))
    combos = partition_combos(sw)
    assert len(combos) == 4 and {(c["parts"], c["halo_hops"]) for c in combos} == {
        (1, 1), (1, 2), (2, 1), (2, 2)}
    assert plan_resources(sw, 2).workers == 2  # the largest partition decides
    # exchange mode plans the boundary the model reads, whatever halo_hops says
    sw = load_sweep(_write(tmp_path, {"partition.halo_hops": {"grid": [1, 2]},
                                      "partition.parts": {"choice": [1, 2]}},
                           overrides={"runtime.mode": "exchange"}))
    assert sorted((c["parts"], c["halo_hops"]) for c in partition_combos(sw)) == [(1, 1), (2, 1)]
    # ... and one plan per reach its searched model params give (HimNet's graph_hops)
    sweep = yaml.safe_load(_write(tmp_path, {}).read_text())
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["model"] = {"name": "himnet", "params": {"graph": "sparse", "hidden_size": 8}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep.update(search_space={"model.params.graph_hops": {"grid": [1, 3]},
                               "model.params.hidden_size": {"choice": [8, 16]},
                               "partition.parts": {"choice": [2]}},
                 overrides={"runtime.mode": "exchange"})
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    sw = load_sweep(tmp_path / "sweep.yaml")
    assert sorted((c["parts"], c["halo_hops"]) for c in partition_combos(sw)) == [(2, 1), (2, 3)]
    with pytest.raises(DiststError, match="partition.seed.*uniform samples floats"):
        load_sweep(_write(tmp_path, {"partition.seed": {"uniform": [0, 3]}},
                          overrides={"runtime.mode": "shard"}))


@pytest.mark.parametrize("name", ["gcgru", "hyperst_gcgru", "himnet"])
def test_example_sweeps_load(name):
    sw = load_sweep(REPO / "configs" / "sweeps" / f"{name}.yaml")
    assert sw.base.model.name == name
    assert sw.cfg.num_samples >= 4 and sw.domains
    r = plan_resources(sw, 2)
    assert r.max_concurrent_trials * r.per_trial <= 2 + 1e-9


def test_gpu_trials_at_once_fit_the_gpus_and_set_cpus_per_worker_are_kept(tmp_path):
    """A GPU sweep once planned 7 concurrent trials where 1 fits (CPUs only), and replaced the
    base config's runtime.cpus_per_worker=4 by 1.0."""
    base = {"data": {"synth": {"nodes": 20, "days": 4}, "cache_dir": str(tmp_path / "cache")},
            "model": {"name": "gcgru", "params": {"K": 2, "hidden_size": 8, "num_layers": 1}},
            "train": {"epochs": 3, "batch_size": 32},
            "runtime": {"mode": "replicate", "workers": 2, "use_gpu": True,
                        "cpus_per_worker": 4}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(
        {"base": "base.yaml", "search_space": {"train.lr": {"choice": [0.01]}}}))
    sw = load_sweep(tmp_path / "sweep.yaml")
    r = plan_resources(sw, 32, 2)  # 32 CPUs hold 3 trials, 2 GPUs one
    assert (r.workers, r.cpus_per_worker, r.gpus_per_worker, r.max_concurrent_trials) == (
        2, 4.0, 1.0, 1)
    assert plan_resources(sw, 32, 4).max_concurrent_trials == 2
    assert plan_resources(sw, 5, 2).cpus_per_worker == 2.45  # fewer only where 4 do not fit
    with pytest.raises(DiststError, match=r"2 workers x runtime.gpus_per_worker 1 = 2 GPUs but "
                       r"the Ray cluster has 1"):
        plan_resources(sw, 32, 1)


def test_the_summary_names_each_trials_own_run_folder(tmp_path):
    """A trial restored by --resume whose run had started before the driver died gets a Tune
    folder with a suffix (its name was taken by the run): the summary still points at the
    run's folder, trials/<trial_id> (seen in CI: trials/b06d1_00001_91a3 named a folder that
    does not exist)."""
    from types import SimpleNamespace

    from distst.storage import location
    from distst.sweep.driver import summarise

    sweep = load_sweep(_write(tmp_path, {"train.lr": {"choice": [0.01, 0.001]}}))
    sdir = tmp_path / "sweeps" / "s"
    (sdir / "trials").mkdir(parents=True)
    grid = [SimpleNamespace(path=str(sdir / "trials" / name), metrics_dataframe=None,
                            metrics=metrics, error=RuntimeError("failed"), config={})
            for name, metrics in (("b06d1_00000", {"trial_id": "b06d1_00000"}),
                                  ("b06d1_00001_91a3", {"trial_id": "b06d1_00001"}),
                                  ("b06d1_00002", None))]  # failed before any report
    res = summarise(sweep, location(str(sdir)), grid)
    assert [r["trial"] for r in res.rows] == ["b06d1_00000", "b06d1_00001", "b06d1_00002"]
    assert [Path(r["run_dir"]).name for r in res.rows] == [r["trial"] for r in res.rows]
