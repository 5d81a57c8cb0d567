"""The CLI as a user meets it: verbs that work, and one-line errors with exit code 2."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from distst.cli import main

LOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "los-loop"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


def write_los(d: Path, series: np.ndarray, adj: np.ndarray, ids=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    ids = ids or [f"s{i}" for i in range(series.shape[1])]
    pd.DataFrame(series, columns=ids).to_csv(d / "los_speed.csv", index=False)
    np.savetxt(d / "los_adj.csv", adj, delimiter=",")
    return d


def test_prepare_real_los_loop_then_info(capsys, tmp_path):
    out_dir = tmp_path / "los"
    rc, out, err = run(capsys, "data", "prepare", "--format", "los-loop", "--path", str(LOS),
                       "--out", str(out_dir))
    assert rc == 0, err
    assert "207 nodes x 2016 steps" in out
    rc, out, _ = run(capsys, "data", "info", str(out_dir), "--json")
    info = json.loads(out)
    assert info["nodes"] == 207 and info["steps"] == 2016
    assert info["start"].startswith("2012-03-01") and info["missing_ratio"] == 0.0
    assert info["min"] == [1.0] and info["max"] == [70.0]
    assert info["one_way_edges"] == 0  # los_adj.csv is symmetric


def test_info_counts_one_way_edges_of_a_directed_graph(capsys, tmp_path):
    from distst.data.network import save_network
    from distst.data.synth import synth_network

    net = synth_network(num_nodes=12, days=1, seed=0)
    net.edge_index = np.concatenate([net.edge_index[:, :0], np.array([[0, 1, 1, 3], [1, 0, 2, 4]])],
                                    axis=1)
    net.edge_weight = np.ones(4, dtype=np.float32)
    d = save_network(net, tmp_path / "d")
    rc, out, _ = run(capsys, "data", "info", str(d), "--json")
    assert rc == 0 and json.loads(out)["one_way_edges"] == 2


def test_implausible_values_are_reported_by_prepare_and_info(capsys, tmp_path):
    """1e30 and float32's 3e38 in a speed file, and one negative speed, passed without a word."""
    series = np.random.default_rng(0).uniform(20, 70, size=(300, 6)).round(2)
    series[40, 2], series[41, 2], series[90, 4] = 1e30, 3e38, -12.5
    adj = np.eye(6, k=1) + np.eye(6, k=-1)
    src = write_los(tmp_path / "raw", series, adj)
    rc, out, err = run(capsys, "data", "prepare", "--format", "los-loop", "--path", str(src),
                       "--out", str(tmp_path / "ds"))
    assert rc == 0, err
    for text in (err, run(capsys, "data", "info", str(tmp_path / "ds"))[2]):
        lines = [ln for ln in text.splitlines() if ln.startswith("WARNING: implausible")]
        assert len(lines) == 2, text
        assert "2 value(s) of magnitude >= 1e+09, the first at data row 41" in lines[0]
        assert "sensor 's2': 1e+30" in lines[0]
        assert "1 negative value(s)" in lines[1] and "data row 91" in lines[1] \
            and "sensor 's4': -12.5" in lines[1]
    info = json.loads(run(capsys, "data", "info", str(tmp_path / "ds"), "--json")[1])
    assert len(info["implausible"]) == 2
    # a clean file says nothing; a signed channel (many negatives) is not a glitch
    series2 = np.random.default_rng(1).normal(0, 5, size=(300, 6)).round(2)
    src2 = write_los(tmp_path / "raw2", series2, adj)
    rc, out, err = run(capsys, "data", "prepare", "--format", "los-loop", "--path", str(src2),
                       "--out", str(tmp_path / "ds2"))
    assert rc == 0 and "implausible" not in err, err


def test_info_channel_without_observations_has_no_range(capsys, tmp_path):
    """A hand-edited dataset whose one channel is all missing printed min inf / max -inf."""
    from distst.data.network import save_network
    from distst.data.synth import synth_network

    net = synth_network(num_nodes=12, days=1, seed=0)
    net.values = np.concatenate([net.values, np.full_like(net.values, np.nan)], axis=2)
    net.channels = ["speed", "blank"]
    d = save_network(net, tmp_path / "d")
    rc, out, err = run(capsys, "data", "info", str(d))
    assert rc == 0 and "inf" not in out, out
    assert "(no observed value)" in out
    assert json.loads(run(capsys, "data", "info", str(d), "--json")[1])["min"][1] is None


def test_synth_and_info(capsys, tmp_path):
    rc, out, err = run(capsys, "data", "synth", "--nodes", "12", "--days", "2", "--out", str(tmp_path / "s"))
    assert rc == 0, err
    rc, out, _ = run(capsys, "data", "info", str(tmp_path / "s"))
    assert rc == 0
    assert "nodes" in out and "12" in out and "missing_ratio" in out and "576" in out


def test_train_local_evaluate(capsys, tmp_path):
    base = ["--set", f"data.cache_dir={tmp_path}/c", "--set", "data.synth.nodes=15",
            "--set", "data.synth.days=3", "--set", f"runtime.storage={tmp_path}/runs",
            "--set", "train.epochs=1", "--set", "model.params.hidden_size=8",
            "--set", "train.progress=false"]
    rc, out, err = run(capsys, "train", "configs/quickstart.yaml", "--local", *base)
    assert rc == 0, err
    assert "| 15min |" in out and "| 60min |" in out and "| avg |" in out and "HA MAE" in out
    run_dir = out.strip().splitlines()[-1].split("run directory: ")[1]
    rc, out2, err = run(capsys, "evaluate", run_dir, "--json")
    assert rc == 0, err
    res = json.loads(out2)
    assert set(res["test"]) == {"15min", "30min", "60min", "avg"}


# -- bad input: each a one-line error naming the culprit and the fix ---------------------
def test_wrong_format_name(capsys, tmp_path):
    rc, _, err = run(capsys, "data", "prepare", "--format", "metrla", "--path", str(tmp_path),
                     "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err, "metrla", "metr-la", "los-loop")


def test_missing_file(capsys, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    rc, _, err = run(capsys, "data", "prepare", "--format", "los-loop", "--path", str(d),
                     "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err, "los_speed.csv")
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_node_count_mismatch(capsys, tmp_path):
    d = write_los(tmp_path / "raw", np.ones((30, 3)), np.eye(4))
    rc, _, err = run(capsys, "data", "prepare", "--format", "los-loop", "--path", str(d),
                     "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err, "3", "4")


def test_non_square_and_negative_distance_matrix(capsys, tmp_path):
    d = tmp_path / "p7"
    d.mkdir()
    np.savetxt(d / "V_3.csv", np.ones((288, 3)), delimiter=",")
    np.savetxt(d / "W_3.csv", np.ones((3, 4)), delimiter=",")
    rc, _, err = run(capsys, "data", "prepare", "--format", "pemsd7", "--path", str(d),
                     "--out", str(tmp_path / "o"), "--opt", "calendar=consecutive")
    assert_one_line_error(rc, err, "W_3.csv", "square")
    w = np.array([[0, 1, 2], [1, 0, -3], [2, -3, 0]], dtype=float)
    np.savetxt(d / "W_3.csv", w, delimiter=",")
    rc, _, err = run(capsys, "data", "prepare", "--format", "pemsd7", "--path", str(d),
                     "--out", str(tmp_path / "o"), "--opt", "calendar=consecutive")
    assert_one_line_error(rc, err, "W_3.csv", "negative")


def test_all_missing_sensor(capsys, tmp_path):
    series = np.ones((30, 3))
    series[:, 1] = np.nan
    d = write_los(tmp_path / "raw", series, np.ones((3, 3)) - np.eye(3))
    rc, _, err = run(capsys, "data", "prepare", "--format", "los-loop", "--path", str(d),
                     "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err, "s1", "no observed value")


def test_non_increasing_timestamps(capsys, tmp_path):
    d = tmp_path / "gen"
    d.mkdir()
    ts = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:10", "2024-01-01 00:05"])
    pd.DataFrame({"timestamp": ts, "a": [1.0, 2, 3], "b": [1.0, 2, 3]}).to_parquet(d / "series.parquet")
    pd.DataFrame({"from": ["a"], "to": ["b"], "weight": [1.0]}).to_parquet(d / "edges.parquet")
    rc, _, err = run(capsys, "data", "prepare", "--format", "generic", "--path", str(d),
                     "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err, "increasing")


def test_window_longer_than_series(capsys, tmp_path):
    rc, _, err = run(capsys, "train", "configs/quickstart.yaml", "--local",
                     "--set", f"data.cache_dir={tmp_path}/c", "--set", "data.synth.nodes=10",
                     "--set", "data.synth.days=1", "--set", "data.input_len=300",
                     "--set", f"runtime.storage={tmp_path}/runs")
    assert_one_line_error(rc, err, "input_len", "288")


def test_unknown_config_key_and_missing_config(capsys, tmp_path):
    rc, _, err = run(capsys, "train", "configs/quickstart.yaml", "--set", "train.epoch=1")
    assert_one_line_error(rc, err, "train.epoch", "valid keys")
    rc, _, err = run(capsys, "train", str(tmp_path / "nope.yaml"))
    assert_one_line_error(rc, err, "nope.yaml", "does not exist")


def test_evaluate_not_a_checkpoint(capsys, tmp_path):
    rc, _, err = run(capsys, "evaluate", str(tmp_path))
    assert_one_line_error(rc, err, "not a distst checkpoint")


def test_data_info_not_a_dataset(capsys, tmp_path):
    rc, _, err = run(capsys, "data", "info", str(tmp_path))
    assert_one_line_error(rc, err, "not a prepared distst dataset", "distst data prepare")


def test_partition_verb_and_its_errors(capsys, tmp_path):
    data = tmp_path / "s"
    assert main(["data", "synth", "--nodes", "30", "--days", "1", "--out", str(data)]) == 0
    capsys.readouterr()
    rc, out, err = run(capsys, "partition", str(data), "--method", "gpa", "--parts", "3",
                       "--halo-hops", "1", "--out", str(tmp_path / "plan"))
    assert rc == 0, err
    assert "| parts | 3 |" in out and "edge cut (count)" in out and "plan written to" in out
    meta = json.loads((tmp_path / "plan" / "META.json").read_text())
    assert meta["num_parts"] == 3 and meta["halo_hops"] == 1 and meta["order"] == "ascending"
    rc, _, err = run(capsys, "partition", str(data), "--parts", "2", "--order", "rcm",
                     "--out", str(tmp_path / "rcm"))
    assert rc == 0, err
    assert json.loads((tmp_path / "rcm" / "META.json").read_text())["order"] == "rcm"
    rc, _, err = run(capsys, "partition", str(data), "--parts", "2", "--order", "bfs",
                     "--out", str(tmp_path / "p4"))
    assert_one_line_error(rc, err, "bfs", "rcm")
    assert not (tmp_path / "p4").exists()
    rc, _, err = run(capsys, "partition", str(data), "--parts", "31", "--out", str(tmp_path / "p2"))
    assert_one_line_error(rc, err, "31", "30")
    rc, _, err = run(capsys, "partition", str(data), "--parts", "2", "--halo-hops", "-1",
                     "--out", str(tmp_path / "p3"))
    assert_one_line_error(rc, err, "-1")
    assert not (tmp_path / "p2").exists() and not (tmp_path / "p3").exists()
    rc, _, err = run(capsys, "partition", str(data), "--method", "kmeans", "--parts", "2",
                     "--out", str(tmp_path / "p4"))
    assert_one_line_error(rc, err, "kmeans", "metis", "gpa")


def test_ctrl_c_says_interrupted_and_how_to_resume(capsys, tmp_path, monkeypatch):
    from distst.engine.trainer import Trainer

    epoch = Trainer.train_epoch

    def stopped_in_epoch_two(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return epoch(self)

    monkeypatch.setattr(Trainer, "train_epoch", stopped_in_epoch_two)
    base = ["--set", f"data.cache_dir={tmp_path}/c", "--set", "data.synth.nodes=12",
            "--set", "data.synth.days=3", "--set", f"runtime.storage={tmp_path}/runs",
            "--set", "train.epochs=3", "--set", "model.params.hidden_size=8",
            "--set", "train.progress=false"]
    rc, out, err = run(capsys, "train", "configs/quickstart.yaml", "--local", *base)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert rc == 130
    assert err.strip().splitlines()[-1] == (
        f"interrupted; the run's checkpoints are in {run_dir}; continue it with: distst train "
        f"CONFIG --resume {run_dir}")
    # interrupted in the first epoch: nothing to resume, and no folder left behind
    monkeypatch.setattr(Trainer, "train_epoch", lambda self: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    rc, out, err = run(capsys, "train", "configs/quickstart.yaml", "--local", *base)
    assert rc == 130 and "nothing to resume" in err.strip().splitlines()[-1]
    assert list((tmp_path / "runs").iterdir()) == [run_dir]


def test_python_dash_m_distst_is_the_cli(tmp_path):
    # Ray workers and containers without console scripts call distst this way
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "distst", "--help"], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "train" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "distst", "train", str(tmp_path / "no.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no.yaml" in bad.stderr, bad.stderr


def test_prepare_help_lists_every_registered_format(capsys):
    """The list was written by hand once and left out ``largest``."""
    import pytest

    from distst.data.formats import FORMATS

    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " | ".join(FORMATS) in text and "largest" in FORMATS
