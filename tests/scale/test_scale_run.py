"""`distst scale` end to end on a local 2-CPU Ray: timed Ray Train runs in order, runs.csv
(one row per run x worker, its figures recomputed here from the workers' step records),
summary.md with the scaling, breakdown, memory and model tables, resume that runs only what
is missing, and a grid the cluster cannot hold refused before anything runs."""

import csv
import json
import statistics

import pytest
import yaml

from distst.cli import main
from distst.engine.timing import PHASES
from distst.errors import DiststError
from distst.scale.config import load_study
from distst.scale.driver import run_study


def _study(tmp_path, grid, **extra):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "data": {"synth": {"nodes": 20, "days": 4},
                 "cache_dir": str(tmp_path.parent / "distst-cache")},
        "model": {"name": "gcgru", "params": {"K": 2, "hidden_size": 8, "num_layers": 1}},
        "train": {"batch_size": 16, "eval_batch_size": 64, "threads": 1},
        "runtime": {"mode": "replicate", "workers": 2, "cpus_per_worker": 0.9}}))
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump({"base": "base.yaml", "grid": grid, "warmup_steps": 1,
                                 "timed_steps": 3, "storage": str(tmp_path / "studies"),
                                 **extra}, sort_keys=False))
    return p


def test_strong_scaling_study_writes_tables_and_resumes(ray_session, tmp_path, capsys,
                                                        env_secret_in):
    p = _study(tmp_path, {"graph": [20, 40], "runtime.workers": [1, 2]}, name="strong")
    res = run_study(load_study(p))
    sdir = tmp_path / "studies" / "strong"
    # nothing of the environment's secrets (AWS_SECRET_ACCESS_KEY) in any file of the study
    assert env_secret_in(sdir) == []
    assert res.ran == ["r00-n20-w1", "r01-n20-w2", "r02-n40-w1", "r03-n40-w2"]
    with open(sdir / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["rank"]) for r in rows] == [
        ("r00-n20-w1", "0"), ("r01-n20-w2", "0"), ("r01-n20-w2", "1"),
        ("r02-n40-w1", "0"), ("r03-n40-w2", "0"), ("r03-n40-w2", "1")]
    # the csv's figures are the medians of the workers' own records after the warm-up step
    for row in rows:
        doc = json.loads((sdir / "runs" / row["run"] / "steps" / f"rank_{row['rank']}.json")
                         .read_text())
        timed = [s for s in doc["steps"] if s["step"] >= 1]
        assert len(timed) == 3 == int(row["timed_steps"])
        for ph in PHASES:
            assert float(row[f"{ph}_s"]) == pytest.approx(statistics.median(s[ph] for s in timed))
        assert float(row["step_s"]) == pytest.approx(
            statistics.median(sum(s[ph] for ph in PHASES) for s in timed))
        assert float(row["windows_per_s"]) == pytest.approx(16 / float(row["run_step_s"]))
        assert int(row["graph_nodes"]) == int(row["graph"])
        two = row["workers"] == "2"
        assert float(row["sent_bytes_per_step"]) == (4 * int(row["parameters"]) if two else 0)
        assert float(row["peak_rss_mb"]) > 50
    summary = (sdir / "summary.md").read_text()
    for title in ("## Strong scaling", "## Where a step's time goes",
                  "## Memory and partition per worker", "## Performance model"):
        assert title in summary
    assert "| r00-n20-w1 | 20 | replicate | 1 | 20 |" in summary
    assert "ns x node-windows per worker" in summary and "128 workers" in summary
    assert res.model is not None and set(res.model.fit) == set(res.ran)

    # the plots exist and show runs.csv's numbers
    assert set(res.plots) == {"scaling.png", "memory.png", "breakdown.png"}
    for name in res.plots:
        assert (sdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    step = {r["run"]: float(r["run_step_s"]) for r in rows}
    speed = res.plots["scaling.png"]["speedup"]
    assert speed["replicate, 20 sensors"] == ([1.0, 2.0], pytest.approx(
        [1.0, step["r00-n20-w1"] / step["r01-n20-w2"]]))
    assert speed["replicate, 40 sensors"][1] == pytest.approx(
        [1.0, step["r02-n40-w1"] / step["r03-n40-w2"]])
    eff = res.plots["scaling.png"]["efficiency"]["replicate, 40 sensors"][1]
    assert eff == pytest.approx([1.0, step["r02-n40-w1"] / step["r03-n40-w2"] / 2])
    mem = res.plots["memory.png"]["memory_mb"]["replicate, 20 sensors: host RSS"]
    assert mem[1] == pytest.approx([max(float(r["peak_rss_mb"]) for r in rows
                                        if r["run"] == run) for run in ("r00-n20-w1",
                                                                         "r01-n20-w2")])
    fwd = res.plots["breakdown.png"]["phases_ms"]["forward"][1]
    assert fwd[0] == pytest.approx(1000 * float(rows[0]["forward_s"]))  # r00: one worker
    assert fwd[1] == pytest.approx(1000 * statistics.median(
        [float(rows[1]["forward_s"]), float(rows[2]["forward_s"])]))

    # `distst plot STUDY_DIR` draws the same pictures again
    (sdir / "scaling.png").unlink()
    assert main(["plot", str(sdir)]) == 0
    assert (sdir / "scaling.png").read_bytes()[:4] == b"\x89PNG"

    # resume: a finished study runs nothing; a lost result runs that run alone
    (sdir / "results" / "r02-n40-w1.json").unlink()
    capsys.readouterr()
    assert main(["scale", "--resume", str(sdir)]) == 0
    out = capsys.readouterr().out
    assert "1 runs ran, 3 were already done" in out
    with open(sdir / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 6


def test_shard_study_reports_partition_figures(ray_session, tmp_path):
    p = _study(tmp_path, {"runtime.mode": ["shard"], "runtime.workers": [2]}, name="shard",
               **{"overrides": {"partition.halo_hops": 1}})
    res = run_study(load_study(p))
    (w0, w1) = res.rows
    assert w0["inner_nodes"] + w1["inner_nodes"] == 20
    assert 0 < w0["halo_share"] < 1 and 0 < w0["cut_fraction"] < 1 and w0["replication"] > 1
    assert w0["windows_per_step"] == 16  # every shard sees the whole global batch
    assert "halo share" in res.summary
    assert "## Cut against the real graphs at the same sensors per part" in res.summary


def test_a_run_the_cluster_cannot_hold_is_refused_before_anything_runs(ray_session, tmp_path):
    p = _study(tmp_path, {"runtime.workers": [1, 3]}, name="big",
               overrides={"runtime.cpus_per_worker": 1})
    with pytest.raises(DiststError, match=r"study run r01-w3 \(replicate mode, 3 workers\) needs 3 workers x "
                                          r"runtime.cpus_per_worker=1 = 3 CPUs but the Ray "
                                          r"cluster has 2"):
        run_study(load_study(p))
    assert not (tmp_path / "studies" / "big").exists()
