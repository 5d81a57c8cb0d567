"""Bad inputs and faults a user (or an attacker) can hand distst, each through the CLI: a
one-line error naming the culprit and the fix (exit 2), nothing lost, nothing run.

Each case is a function that builds its input under ``tmp_path`` and returns the CLI argv
(plus, optionally, a check of what must still be true afterwards). The table of cases and the
messages they get is ``tests/BAD_INPUTS.md``; regenerate it with
``DISTST_BAD_INPUTS_TABLE=tests/BAD_INPUTS.md pytest tests/test_bad_inputs.py`` and
``test_table_lists_every_case`` keeps the two in step.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sys

from distst.cli import main

sys.path.insert(0, str(Path(__file__).with_name("data")))
from test_formats import write_dcrnn, write_generic, write_pems  # noqa: E402  (the formats' tiny writers)
from test_largest import write_largest  # noqa: E402

TABLE = Path(__file__).with_name("BAD_INPUTS.md")
MESSAGES: dict[str, str] = {}


class _Payload:
    """Unpickling this creates a file: a harmless stand-in for code a crafted file runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _los(d: Path, n=6, t=400, ids=None, series=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    v = rng.uniform(20, 70, size=(t, n)).round(2) if series is None else series
    pd.DataFrame(v, columns=ids or [f"s{i}" for i in range(n)]).to_csv(d / "los_speed.csv",
                                                                          index=False)
    a = np.zeros((n, n))
    for i in range(n - 1):
        a[i, i + 1] = a[i + 1, i] = 1.0
    np.savetxt(d / "los_adj.csv", a, delimiter=",")
    return d


def _prepare(src: Path, out: Path, fmt="los-loop") -> list[str]:
    return ["data", "prepare", "--format", fmt, "--path", str(src), "--out", str(out)]


def _dataset(tmp_path: Path, name="ds") -> Path:
    out = tmp_path / name
    assert main(_prepare(_los(tmp_path / f"raw-{name}"), out)) == 0
    return out


def _train(tmp_path: Path, *sets: str, data=None, config="configs/quickstart.yaml") -> list[str]:
    base = [f"runtime.storage={tmp_path / 'runs'}", "train.epochs=1", "train.progress=false",
            "model.params.hidden_size=8", "train.batch_size=16", "train.threads=1"]
    if data is not None:
        base.append(f"data.path={data}")
    else:
        base += [f"data.cache_dir={tmp_path / 'cache'}", "data.synth.nodes=12",
                 "data.synth.days=3"]
    argv = ["train", config, "--local"]
    for s in base + list(sets):
        argv += ["--set", s]
    return argv


def _trained_run(tmp_path: Path, *sets: str, data=None) -> Path:
    assert main(_train(tmp_path, *sets, data=data)) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    return runs[-1]


# -- the cases: name -> (description, builder(tmp_path) -> (argv, after-check or None)) ----
def prepare_out_is_input(tmp_path):
    src = _los(tmp_path / "raw")
    return _prepare(src, src), lambda: (src / "los_speed.csv").is_file()


def prepare_out_contains_input(tmp_path):
    src = _los(tmp_path / "data" / "raw")
    return _prepare(src, tmp_path / "data"), lambda: (src / "los_speed.csv").is_file()


def prepare_out_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    return (_prepare(_los(tmp_path / "raw"), out),
            lambda: (out / "notes.txt").read_text() == "keep me")


def prepare_read_only_out(tmp_path, monkeypatch):
    import tempfile

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)  # root ignores chmod: simulate it
    return _prepare(_los(tmp_path / "raw"), tmp_path / "ro" / "out"), None


def series_with_inf(tmp_path):
    v = np.full((400, 6), 50.0)
    v[37, 4] = np.inf
    return _prepare(_los(tmp_path / "raw", series=v), tmp_path / "out"), \
        lambda: not (tmp_path / "out").exists()


def series_cut_mid_row(tmp_path):
    src = _los(tmp_path / "raw")
    text = (src / "los_speed.csv").read_text()
    (src / "los_speed.csv").write_text(text[: text.rindex(",", 0, len(text) - 20)])
    return _prepare(src, tmp_path / "out"), None


def series_duplicate_sensor_id(tmp_path):
    src = _los(tmp_path / "raw", ids=["a", "b", "c", "b", "e", "f"])
    return _prepare(src, tmp_path / "out"), None


def series_binary_junk(tmp_path):
    src = _los(tmp_path / "raw")
    (src / "los_speed.csv").write_bytes(bytes(range(256)) * 40)
    return _prepare(src, tmp_path / "out"), None


def h5_object_column(tmp_path):
    src = tmp_path / "raw"
    write_dcrnn(src)
    df = pd.read_hdf(src / "metr-la.h5")
    df[df.columns[0]] = [{"x": 1}] * len(df)
    df.to_hdf(src / "metr-la.h5", key="df")
    return _prepare(src, tmp_path / "out", fmt="metr-la"), None


def h5_pickled_attribute(tmp_path):
    import tables

    src = tmp_path / "raw"
    write_dcrnn(src)
    marker = tmp_path / "code-ran"
    with tables.open_file(str(src / "metr-la.h5"), "a") as h5:
        h5.get_node("/df/axis1")._v_attrs.freq = _Payload(marker)
    # the read succeeds (the frequency is dropped) and the payload never runs
    return _prepare(src, tmp_path / "out", fmt="metr-la"), lambda: not marker.exists()


def h5_corrupt(tmp_path):
    src = tmp_path / "raw"
    write_dcrnn(src)
    (src / "metr-la.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 200)
    return _prepare(src, tmp_path / "out", fmt="metr-la"), None


def npz_truncated(tmp_path):
    src = tmp_path / "raw"
    write_pems(src, "pems08")
    data = (src / "PEMS08.npz").read_bytes()
    (src / "PEMS08.npz").write_bytes(data[: len(data) // 2])
    return _prepare(src, tmp_path / "out", fmt="pems08"), None


def edge_weight_not_numeric(tmp_path):
    src = tmp_path / "raw"
    write_pems(src, "pems08", crlf=False)
    (src / "PEMS08.csv").write_text("from,to,cost\n0,1,310.6\n1,2,far\n")
    return _prepare(src, tmp_path / "out", fmt="pems08"), None


def dataset_values_truncated(tmp_path):
    d = _dataset(tmp_path)
    data = (d / "values.npy").read_bytes()
    (d / "values.npy").write_bytes(data[: len(data) // 2])
    return ["data", "info", str(d)], None


def dataset_meta_corrupt(tmp_path):
    d = _dataset(tmp_path)
    (d / "meta.json").write_text('{"layout_version": 1, "name": ')
    return ["data", "info", str(d)], None


def dataset_edge_index_missing(tmp_path):
    d = _dataset(tmp_path)
    (d / "edge_index.npy").unlink()
    return ["data", "info", str(d)], None


def dataset_duplicate_ids(tmp_path):
    d = _dataset(tmp_path)
    ids = np.load(d / "node_ids.npy")
    ids[4] = ids[1]
    np.save(d / "node_ids.npy", ids)
    return ["data", "info", str(d)], None


def dataset_inf_values(tmp_path):
    d = _dataset(tmp_path)
    v = np.load(d / "values.npy")
    v[100, 2, 0] = -np.inf
    np.save(d / "values.npy", v)
    return _train(tmp_path, data=d), lambda: not (tmp_path / "runs").exists() or not any(
        (tmp_path / "runs").iterdir())


def graph_without_edges(tmp_path):
    src = _los(tmp_path / "raw")
    np.savetxt(src / "los_adj.csv", np.eye(6), delimiter=",")  # self-loops only
    assert main(_prepare(src, tmp_path / "ds")) == 0  # warned, not refused
    return _train(tmp_path, data=tmp_path / "ds"), None


def lr_nan(tmp_path):
    return _train(tmp_path, "train.lr=.nan"), None


def lr_inf(tmp_path):
    return _train(tmp_path, "train.lr=.inf"), None


def lr_negative(tmp_path):
    return _train(tmp_path, "train.lr=-0.01"), None


def patience_zero(tmp_path):
    return _train(tmp_path, "train.patience=0"), None


def cpus_per_worker_zero(tmp_path):
    return ["train", "configs/quickstart.yaml", "--set", "runtime.cpus_per_worker=0"], None


def run_name_escapes_storage(tmp_path):
    return _train(tmp_path, "runtime.name=../../x"), lambda: not (tmp_path.parent / "x").exists()


def storage_read_only(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    return _train(tmp_path, f"runtime.storage={blocker}/runs"), None


def checkpoint_with_code(tmp_path):
    import torch

    run = _trained_run(tmp_path)
    ckpt = sorted(run.glob("checkpoint_*"))[-1] / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    marker = tmp_path / "code-ran"
    payload["extra"] = {"x": _Payload(marker)}
    torch.save(payload, ckpt)
    return ["evaluate", str(run)], lambda: not marker.exists()


def checkpoint_other_sizes(tmp_path):
    run = _trained_run(tmp_path)
    return (_train(tmp_path, "model.params.hidden_size=12") + ["--resume", str(run)],
            lambda: (run / "test_metrics.json").is_file())


def resume_other_model(tmp_path):
    run = _trained_run(tmp_path)
    before = (run / "test_metrics.json").read_text()
    return (_train(tmp_path, "model.name=gru", "model.params={hidden_size: 8}")
            + ["--resume", str(run)],
            lambda: (run / "test_metrics.json").read_text() == before)


def resume_other_dataset(tmp_path):
    d1, d2 = _dataset(tmp_path, "one"), _dataset(tmp_path, "two")
    v = np.load(d2 / "values.npy")
    np.save(d2 / "values.npy", v + 1)
    run = _trained_run(tmp_path, data=d1)
    before = (run / "test_metrics.json").read_text()
    return (_train(tmp_path, data=d2) + ["--resume", str(run)],
            lambda: (run / "test_metrics.json").read_text() == before)


def tune_resume_foreign_folder(tmp_path):
    sdir = tmp_path / "sweep"
    sdir.mkdir()
    (sdir / "sweep.yaml").write_text("sweep: {}\nbase: {}\n")
    marker = tmp_path / "code-ran"
    (sdir / "tuner.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    return ["tune", "--resume", str(sdir)], lambda: not marker.exists()


def address_nothing_listening(tmp_path):
    argv = _train(tmp_path)
    argv.remove("--local")
    return argv + ["--address", "127.0.0.1:1"], None


UNREACHABLE_S3 = ('runtime.storage_options={endpoint_override: "http://127.0.0.1:9", '
                  'scheme: http, region: us-east-1, connect_timeout: 1, request_timeout: 1}')


def storage_uri_unreachable(tmp_path):
    return _train(tmp_path, "runtime.storage=s3://distst-runs/team", UNREACHABLE_S3), None


def data_uri_unreachable(tmp_path):
    return _train(tmp_path, UNREACHABLE_S3, data="s3://distst-data/pems04"), None


def storage_secret_in_config(tmp_path):
    return _train(tmp_path, "runtime.storage_options={secret_key: abc123}"), None


def max_failures_negative(tmp_path):
    return _train(tmp_path, "runtime.max_failures=-1"), None


def largest_meta_missing_column(tmp_path):
    src, *_ = write_largest(tmp_path / "sd", drop_column="Lanes")
    out = tmp_path / "out"
    return _prepare(src, out, fmt="largest"), lambda: not out.exists()


def node_wait_negative(tmp_path):
    return _train(tmp_path, "runtime.node_wait_s=-5"), None


def unknown_logger(tmp_path):
    return _train(tmp_path, "runtime.loggers=[wandb]"), None


def mlflow_file_store_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    runs = tmp_path / "runs"
    return (_train(tmp_path, "runtime.loggers=[mlflow]",
                   f"runtime.mlflow.tracking_uri={(tmp_path / 'mlruns').as_uri()}"),
            lambda: not runs.exists() or not any(runs.iterdir()))


def _ray_train(tmp_path, *sets):
    """A Ray run's argv: these inputs are refused before Ray starts."""
    argv = _train(tmp_path, *sets)
    argv.remove("--local")
    return argv


def exchange_model_without_path(tmp_path):
    return _ray_train(tmp_path, "runtime.mode=exchange", "model.name=hyperst_cnn",
                      "model.params={}"), None


def exchange_himnet_dense_graph(tmp_path):
    return _ray_train(tmp_path, "runtime.mode=exchange", "model.name=himnet",
                      "model.params={}"), None


def replicas_zero(tmp_path):
    return _ray_train(tmp_path, "runtime.mode=exchange", "runtime.replicas=0"), None


def replicas_in_replicate_mode(tmp_path):
    return _ray_train(tmp_path, "runtime.mode=replicate", "runtime.replicas=2"), None


def exchange_plan_without_boundary(tmp_path):
    from distst.config import load_config
    from distst.engine.provision import ensure_dataset
    from distst.graph.partition.plan import make_plan

    argv = _ray_train(tmp_path, "runtime.mode=exchange")
    sets = [a for a in argv if "=" in a and not a.startswith("-")]
    data = ensure_dataset(load_config("configs/quickstart.yaml", sets).data, quiet=True)
    make_plan(data, tmp_path / "plan0", method="metis", parts=2, halo_hops=0)
    return argv + ["--set", f"partition.plan={tmp_path / 'plan0'}"], None


def precision_unknown(tmp_path):
    return _train(tmp_path, "train.precision=fp16"), None


def recompute_without_recurrence(tmp_path):
    return _ray_train(tmp_path, "train.recompute=step", "model.name=stgcn",
                      "model.params={}"), None


def plot_unknown_sensor(tmp_path):
    run_dir = _trained_run(tmp_path, "train.max_batches_per_epoch=1", "data.synth.days=6")
    return ["plot", str(run_dir), "--sensors", "S01,S999"], \
        lambda: not (run_dir / "forecast.png").exists()


# -- issue 30: graphs that came out wrong without a word ----------------------------------
def weight_matrix_one_inf(tmp_path):
    """One inf in a 0/1 adjacency: "auto" read the whole matrix as distances (on the real
    Los-loop file 40,789 edges instead of 2,626)."""
    src = _los(tmp_path / "raw")
    a = np.loadtxt(src / "los_adj.csv", delimiter=",")
    a[2, 4] = np.inf
    np.savetxt(src / "los_adj.csv", a, delimiter=",")
    return _prepare(src, tmp_path / "out"), lambda: not (tmp_path / "out").exists()


def pickled_adjacency_one_nan(tmp_path):
    src = tmp_path / "raw"
    write_dcrnn(src)
    with open(src / "adj_mx.pkl", "rb") as f:
        ids, pos, adj = pickle.load(f)
    adj[3, 1] = np.nan
    with open(src / "adj_mx.pkl", "wb") as f:
        pickle.dump([ids, pos, adj], f, protocol=2)
    return _prepare(src, tmp_path / "out", fmt="metr-la"), None


def _generic_edges_with(tmp_path, value, column="weight"):
    src = tmp_path / "raw"
    write_generic(src, ext="csv")
    edges = pd.read_csv(src / "edges.csv")
    if column != "weight":
        edges = edges.rename(columns={"weight": column})
        edges[column] = [120.0, 300.0, 45.0]
    edges.loc[1, column] = value
    edges.to_csv(src / "edges.csv", index=False)
    return _prepare(src, tmp_path / "out", fmt="generic"), None


def edge_table_nan_weight(tmp_path):
    return _generic_edges_with(tmp_path, np.nan)


def edge_table_inf_distance(tmp_path):
    return _generic_edges_with(tmp_path, np.inf, column="distance")


def locations_nan_latitude(tmp_path):
    src = tmp_path / "raw"
    write_dcrnn(src)
    loc = pd.read_csv(src / "graph_sensor_locations.csv")
    loc.loc[2, "latitude"] = np.nan
    loc.to_csv(src / "graph_sensor_locations.csv", index=False)
    return _prepare(src, tmp_path / "out", fmt="metr-la"), None


def generic_nodes_latitude_out_of_range(tmp_path):
    src = tmp_path / "raw"
    write_generic(src, ext="csv")
    nodes = pd.read_csv(src / "nodes.csv").rename(columns={"x": "lat", "y": "lon"})
    nodes.loc[3, "lat"] = 340.5
    nodes.to_csv(src / "nodes.csv", index=False)
    return _prepare(src, tmp_path / "out", fmt="generic"), None


# -- issue 30: configs ----------------------------------------------------------------------
def _config(tmp_path, text: str, name="run.yaml") -> Path:
    f = tmp_path / name
    f.write_text("include: " + str(Path(__file__).resolve().parents[1] / "configs"
                                   / "quickstart.yaml") + "\n" + text)
    return f


def _train_file(tmp_path, f: Path) -> tuple[list[str], object]:
    runs = tmp_path / "runs"
    return (["train", str(f), "--local", "--set", f"runtime.storage={runs}"],
            lambda: not runs.exists() or not any(runs.iterdir()))


def config_key_twice(tmp_path):
    return _train_file(tmp_path, _config(tmp_path, "train:\n  epochs: 5\n  lr: 0.01\n"
                                                   "  epochs: 1\n"))


def config_section_twice(tmp_path):
    return _train_file(tmp_path, _config(tmp_path, "train:\n  epochs: 5\n  progress: false\n"
                                                   "data:\n  synth: {nodes: 12, days: 3}\n"
                                                   "train:\n  epochs: 1\n"))


def config_alias_bomb(tmp_path):
    """A few hundred bytes whose aliases expand to 10^9 values: the loader hung, and `train`
    left an empty run folder behind."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    # under model.params, the one free-form mapping: writing the run's config.yaml expanded it
    return _train_file(tmp_path, _config(tmp_path, "model:\n  params:\n" + "\n".join(
        "    " + ln for ln in lines) + "\n"))


def config_include_chain_too_deep(tmp_path):
    for i in range(12):
        (tmp_path / f"c{i}.yaml").write_text(f"include: c{i + 1}.yaml\n" if i < 11 else
                                             "train: {epochs: 1}\n")
    return _train_file(tmp_path, tmp_path / "c0.yaml")


def config_binary_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_bytes(bytes(range(256)) * 4)
    return _train_file(tmp_path, f)


def config_include_not_a_name(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("include: [42]\n")
    return _train_file(tmp_path, f)


def config_include_a_folder(tmp_path):
    (tmp_path / "models").mkdir()
    f = tmp_path / "run.yaml"
    f.write_text("include: [models]\n")
    return _train_file(tmp_path, f)


def config_symlink_loop(tmp_path):
    f = tmp_path / "run.yaml"
    os.symlink(f, f)  # points at itself
    return _train_file(tmp_path, f)


def plot_sweep_yaml_not_a_sweep(tmp_path):
    sdir = tmp_path / "sweep"
    sdir.mkdir()
    (sdir / "sweep.yaml").write_text("sweep: 5\n")
    return ["plot", str(sdir)], None


def tune_resume_sweep_yaml_empty(tmp_path):
    sdir = tmp_path / "sweep"
    sdir.mkdir()
    (sdir / "sweep.yaml").write_text("{}\n")
    return ["tune", "--resume", str(sdir)], None


# -- issue 30: secrets, names, keys ----------------------------------------------------
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


def _no_secret(name):
    return lambda: SECRET not in MESSAGES[name]


def storage_uri_with_credentials(tmp_path):
    runs = tmp_path / "runs"
    argv = _train(tmp_path, f"runtime.storage=s3://AKIAEXAMPLE:{SECRET}@bucket/runs")
    return argv, lambda: _no_secret("storage_uri_with_credentials")() and not runs.exists()


def mlflow_uri_with_password(tmp_path):
    return (_train(tmp_path, "runtime.loggers=[mlflow]",
                   f"runtime.mlflow.tracking_uri=http://me:{SECRET}@127.0.0.1:1"),
            _no_secret("mlflow_uri_with_password"))


def prepare_out_uri_with_credentials(tmp_path):
    return (_prepare(_los(tmp_path / "raw"), f"s3://AKIAEXAMPLE:{SECRET}@bucket/data"),
            _no_secret("prepare_out_uri_with_credentials"))


def presigned_data_uri(tmp_path):
    return (["data", "info", f"s3://bucket/data?X-Amz-Signature={SECRET}"],
            _no_secret("presigned_data_uri"))


def _sweep_or_study(tmp_path, kind: str, name: str) -> Path:
    f = tmp_path / f"{kind}.yaml"
    base = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    extra = ("search_space: {train.lr: {choice: [0.01]}}\n" if kind == "sweep" else
             "grid: {runtime.workers: [1]}\n")
    f.write_text(f"base: {base}\nname: {name!r}\nstorage: {tmp_path / 'out'}\n" + extra)
    return f


def sweep_name_escapes_storage(tmp_path):
    f = _sweep_or_study(tmp_path, "sweep", "../../escaped")
    return ["tune", str(f)], lambda: not (tmp_path.parent / "escaped").exists()


def study_name_escapes_storage(tmp_path):
    f = _sweep_or_study(tmp_path, "study", "../../escaped")
    return ["scale", str(f), "--dry-run"], lambda: not (tmp_path.parent / "escaped").exists()


def sweep_key_weak(tmp_path, monkeypatch):
    """A one-byte key file: anyone can compute the manifest's HMAC, so a planted tuner.pkl
    verified and --resume went on to unpickle it."""
    import hashlib
    import json

    from distst.sweep import manifest

    key = tmp_path / "weak.key"
    key.write_bytes(b"k")
    key.chmod(0o600)
    monkeypatch.setenv("DISTST_KEY_FILE", str(key))
    sdir = tmp_path / "sweep"
    sdir.mkdir()
    (sdir / "sweep.yaml").write_text("sweep: {}\nbase: {}\n")
    marker = tmp_path / "code-ran"
    (sdir / "tuner.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    files = {n: hashlib.sha256((sdir / n).read_bytes()).hexdigest()
             for n in ("sweep.yaml", "tuner.pkl")}
    (sdir / manifest.MANIFEST).write_text(json.dumps(
        {"format": manifest._FORMAT, "files": files, "hmac": manifest._mac(b"k", files)}))
    return ["tune", "--resume", str(sdir)], lambda: not marker.exists()


def _study(tmp_path, grid: str) -> list[str]:
    f = tmp_path / "study.yaml"
    base = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    f.write_text(f"base: {base}\nname: s\nstorage: {tmp_path / 'out'}\ngrid: {grid}\n")
    return ["scale", str(f), "--dry-run"]


def scale_graph_negative(tmp_path):
    return _study(tmp_path, "{graph: [-5]}"), None


def scale_grid_too_large(tmp_path):
    """707,281 runs: the dry run built every config before printing and hung."""
    lrs = ", ".join(str(0.001 * (i + 1)) for i in range(29))
    ints = ", ".join(str(64 + i) for i in range(29))
    return _study(tmp_path, f"{{train.lr: [{lrs}], train.batch_size: [{ints}], "
                            f"train.eval_batch_size: [{ints}], train.seed: [{ints}]}}"), None


def synth_billion_nodes(tmp_path):
    """MemoryError after 18 s before: the generator's state is estimated first."""
    out = tmp_path / "big"
    return (["data", "synth", "--nodes", "1000000000", "--out", str(out)],
            lambda: not out.exists() and not list(tmp_path.glob(".big*")))


def start_past_2262(tmp_path):
    """The series began in 2262 and ended in 1677 (int64 nanoseconds wrapped)."""
    out = tmp_path / "ds"
    return _prepare(_los(tmp_path / "raw"), out) + ["--start", "2262-04-11"], \
        lambda: not out.exists()


def start_before_1677(tmp_path):
    return _prepare(_los(tmp_path / "raw"), tmp_path / "ds") + ["--start", "1600-01-01"], None




def _generic_times(tmp_path, shift) -> list[str]:
    """A wide generic series (15-minute steps) whose timestamps ``shift`` edits."""
    src = tmp_path / "raw"
    write_generic(src, layout="wide", ext="csv", t=12)
    df = pd.read_csv(src / "series.csv", parse_dates=["timestamp"])
    df["timestamp"] = shift(df["timestamp"])
    df.to_csv(src / "series.csv", index=False)
    return _prepare(src, tmp_path / "out", fmt="generic")


def generic_step_off_grid(tmp_path):
    """One 22-minute step among 15-minute ones: stored as 15-minute steps without a word."""
    out = tmp_path / "out"
    return _generic_times(tmp_path, lambda t: t.where(t.index < 6,
                                                      t + pd.Timedelta(minutes=7))), \
        lambda: not out.exists()


def generic_timestamp_year_typo(tmp_path):
    """The last row a year late: filled with a year of missing steps, or read as adjacent."""
    return _generic_times(tmp_path, lambda t: t.where(t.index < 11,
                                                      t + pd.Timedelta(days=365))), None



def plot_truncated_test_metrics(tmp_path):
    run = _trained_run(tmp_path)
    tm = run / "test_metrics.json"
    tm.write_text(tm.read_text()[:40])
    return ["plot", str(run)], None



def prepare_out_being_written(tmp_path):
    """Two prepares into one new --out at once: both printed "wrote", one replaced the other.
    The first one's claim is stood in for by pid 1 (always running) on this host."""
    import socket

    out = tmp_path / "ds"
    (tmp_path / ".ds.writing").write_text(json.dumps(
        {"pid": 1, "host": socket.gethostname(), "since": "2026-12-07 10:00:00"}))
    return _prepare(_los(tmp_path / "raw"), out), lambda: not out.exists()



def _loop(tmp_path) -> Path:
    link = tmp_path / "loop"
    link.symlink_to(link)
    return link


def info_symlink_loop(tmp_path):
    return ["data", "info", str(_loop(tmp_path))], None


def prepare_out_symlink_loop(tmp_path):
    return _prepare(_los(tmp_path / "raw"), _loop(tmp_path)), \
        lambda: sorted(p.name for p in tmp_path.iterdir()) == ["loop", "raw"]


def storage_symlink_loop(tmp_path):
    return _train(tmp_path, f"runtime.storage={_loop(tmp_path)}"), None



def _disk_full(path):
    import errno

    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _nothing_left(tmp_path, out: Path):
    return lambda: not out.exists() and not list(tmp_path.glob(f".{out.name}*"))


def prepare_disk_full(tmp_path, monkeypatch):
    """The disk fills while values.npy is written: a traceback before."""
    real = np.save

    def save(path, arr, *a, **k):
        if str(path).endswith("values.npy"):
            Path(path).write_bytes(b"\x93NUMPY" + b"\0" * 100)  # what fit
            raise _disk_full(path)
        return real(path, arr, *a, **k)

    monkeypatch.setattr(np, "save", save)
    out = tmp_path / "ds"
    return _prepare(_los(tmp_path / "raw"), out), _nothing_left(tmp_path, out)


def synth_disk_full(tmp_path, monkeypatch):
    import distst.data.synth as synth

    def full(net, d):
        raise _disk_full(Path(d) / "edge_index.npy")

    monkeypatch.setattr(synth, "write_static_files", full)
    out = tmp_path / "s"
    return (["data", "synth", "--nodes", "12", "--days", "1", "--out", str(out)],
            _nothing_left(tmp_path, out))



def _adj_pickle(tmp_path, build):
    """A METR-LA folder whose adj_mx.pkl is ``build(ids, pos, adj)`` pickled."""
    src = tmp_path / "raw"
    write_dcrnn(src)
    with open(src / "adj_mx.pkl", "rb") as f:
        ids, pos, adj = pickle.load(f)
    with open(src / "adj_mx.pkl", "wb") as f:
        pickle.dump(build(ids, pos, adj), f, protocol=2)
    return _prepare(src, tmp_path / "out", fmt="metr-la"), None


def pickle_billion_laughs(tmp_path):
    """A 500-byte pickle of shared references, 10^9 values once expanded: hung prepare."""
    def laughs(ids, pos, adj):
        x = ["lol"]
        for _ in range(9):
            x = [x] * 10
        return [ids, {"x": x}, adj]

    return _adj_pickle(tmp_path, laughs)


class _HugeArray:
    def __reduce__(self):
        return (np.ndarray, ((10**6, 10**6), "<f4"))


def pickle_declares_huge_array(tmp_path):
    """A few hundred bytes calling numpy.ndarray((10^6, 10^6)): MemoryError (3.6 TiB)."""
    return _adj_pickle(tmp_path, lambda ids, pos, adj: [ids, pos, _HugeArray()])


def pickle_object_matrix(tmp_path):
    return _adj_pickle(tmp_path, lambda ids, pos, adj: [ids, pos, np.full(adj.shape, "x",
                                                                          dtype=object)])



def _npy_declaring(shape) -> bytes:
    """A .npy header declaring ``shape`` float64, followed by 64 bytes of data."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + b"\0" * 64


def pems_npz_declares_huge_array(tmp_path):
    """A 200-byte PEMS08.npz declaring 10^6 x 10^5 x 3 floats: MemoryError (2.2 TiB)."""
    import zipfile

    src = tmp_path / "raw"
    write_pems(src, "pems08")
    with zipfile.ZipFile(src / "PEMS08.npz", "w") as z:
        z.writestr("data.npy", _npy_declaring((10**6, 10**5, 3)))
    return _prepare(src, tmp_path / "out", fmt="pems08"), None


def largest_adjacency_declares_huge_array(tmp_path):
    src, *_ = write_largest(tmp_path / "sd")
    (src / "sd_rn_adj.npy").write_bytes(_npy_declaring((10**6, 10**6)))
    return _prepare(src, tmp_path / "out", fmt="largest"), None


def meta_json_nested_deep(tmp_path):
    """meta.json of arrays nested 100,000 deep: a RecursionError traceback in data info."""
    d = _dataset(tmp_path)
    (d / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    return ["data", "info", str(d)], None


# -- cases where the command goes on, saying once what it found ----------------------------
def prepare_implausible_values(tmp_path):
    """1e30 in a speed file passed without a word."""
    v = np.random.default_rng(0).uniform(20, 70, size=(400, 6)).round(2)
    v[7, 3] = 1e30
    return _prepare(_los(tmp_path / "raw", series=v), tmp_path / "ds"), \
        lambda: (tmp_path / "ds" / "meta.json").is_file()


def generic_missing_rows(tmp_path):
    """Two rows absent from a 15-minute series were read as adjacent steps."""
    src = tmp_path / "raw"
    write_generic(src, layout="wide", ext="csv", t=12)
    df = pd.read_csv(src / "series.csv")
    df.drop(index=[4, 5]).to_csv(src / "series.csv", index=False)
    return _prepare(src, tmp_path / "out", fmt="generic"), \
        lambda: json.loads((tmp_path / "out" / "meta.json").read_text())["num_steps"] == 12


def plot_metrics_log_cut_short(tmp_path):
    """kill -9 mid-append: plot was a JSONDecodeError."""
    run = _trained_run(tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_lo')
    return ["plot", str(run)], lambda: (run / "plots" / "curves.png").is_file() or \
        any(run.rglob("curves.png"))


def evaluate_checkpoint_cut_short(tmp_path):
    """The newest checkpoint.pt cut short: "[Errno 22]" instead of the one before."""
    run = _trained_run(tmp_path)
    newest = sorted(run.glob("checkpoint_*"))[-1] / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    return ["evaluate", str(run)], None


def mlflow_closed_port(tmp_path):
    """MLflow's retries held the run 250 s on a closed port, then refused it."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return (_train(tmp_path, "runtime.loggers=[mlflow]",
                   f"runtime.mlflow.tracking_uri=http://127.0.0.1:{port}"),
            lambda: any((tmp_path / "runs").glob("*/test_metrics.json")))


def predict_other_sensors(tmp_path):
    """New data for `distst predict` whose sensors are not the run's."""
    run = _trained_run(tmp_path, data=_dataset(tmp_path))
    other = tmp_path / "other"
    assert main(_prepare(_los(tmp_path / "raw-other", ids=[f"s{i}" for i in range(5)] + ["z9"]),
                         other)) == 0
    out = tmp_path / "forecasts.parquet"
    return (["predict", str(run), "--data", str(other), "--last", "--out", str(out)],
            lambda: not out.exists())


def export_over_foreign_folder(tmp_path):
    """`distst export --out` a folder of the user's own files."""
    run = _trained_run(tmp_path)
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    return (["export", str(run), "--out", str(mine)],
            lambda: (mine / "todo.txt").read_text() == "keep me"
            and not (mine / "model.ts").exists())


def serve_missing_run(tmp_path):
    """`distst serve` of a run folder that holds no checkpoint: said before any Ray starts."""
    empty = tmp_path / "runs" / "nothing"
    empty.mkdir(parents=True)
    return ["serve", str(empty), "--port", "8765"], None


#: cases whose command succeeds with one warning (or note) line: what it says is the message
GOES_ON = {"prepare_implausible_values", "generic_missing_rows", "plot_metrics_log_cut_short",
           "evaluate_checkpoint_cut_short", "mlflow_closed_port"}



CASES = {
    "prepare_out_is_input": ("`data prepare --out` = `--path` (raw files)", prepare_out_is_input),
    "prepare_out_contains_input": ("`data prepare --out` = the folder holding `--path`",
                                   prepare_out_contains_input),
    "prepare_out_foreign_folder": ("`data prepare --out` = a folder with a user's notes.txt",
                                   prepare_out_foreign_folder),
    "prepare_read_only_out": ("`data prepare --out` in a folder that cannot be written",
                              prepare_read_only_out),
    "series_with_inf": ("a series CSV holding `inf`", series_with_inf),
    "series_cut_mid_row": ("a series CSV cut in the middle of its last row",
                           series_cut_mid_row),
    "series_duplicate_sensor_id": ("a Los-loop header naming one sensor twice",
                                   series_duplicate_sensor_id),
    "series_binary_junk": ("binary junk where the series CSV should be", series_binary_junk),
    "h5_object_column": ("a METR-LA .h5 whose frame holds a pickled object column",
                         h5_object_column),
    "h5_pickled_attribute": ("a METR-LA .h5 with a code-running pickle in an index attribute "
                             "(read succeeds, payload never runs)", h5_pickled_attribute),
    "h5_corrupt": ("a corrupt .h5 (HDF5 signature, then zeros)", h5_corrupt),
    "npz_truncated": ("a PEMS .npz cut in half", npz_truncated),
    "edge_weight_not_numeric": ("a PEMS edge list with a non-numeric cost",
                                edge_weight_not_numeric),
    "dataset_values_truncated": ("a prepared dataset whose values.npy is cut in half",
                                 dataset_values_truncated),
    "dataset_meta_corrupt": ("a prepared dataset whose meta.json is cut short",
                             dataset_meta_corrupt),
    "dataset_edge_index_missing": ("a prepared dataset without edge_index.npy",
                                   dataset_edge_index_missing),
    "dataset_duplicate_ids": ("a prepared dataset whose node_ids.npy repeats an id",
                              dataset_duplicate_ids),
    "dataset_inf_values": ("a prepared dataset edited to hold -inf, then trained",
                           dataset_inf_values),
    "graph_without_edges": ("a graph of self-loops only, then a graph model trained on it",
                            graph_without_edges),
    "lr_nan": ("`train.lr=.nan`", lr_nan),
    "lr_inf": ("`train.lr=.inf`", lr_inf),
    "lr_negative": ("`train.lr=-0.01`", lr_negative),
    "patience_zero": ("`train.patience=0`", patience_zero),
    "cpus_per_worker_zero": ("`runtime.cpus_per_worker=0`", cpus_per_worker_zero),
    "run_name_escapes_storage": ("`runtime.name=../../x`", run_name_escapes_storage),
    "storage_read_only": ("`runtime.storage` below a file (cannot be created)",
                          storage_read_only),
    "checkpoint_with_code": ("`distst evaluate` on a checkpoint carrying a pickled payload",
                             checkpoint_with_code),
    "checkpoint_other_sizes": ("`--resume` with a config of other model sizes",
                               checkpoint_other_sizes),
    "resume_other_model": ("`--resume` with another model", resume_other_model),
    "resume_other_dataset": ("`--resume` on another dataset", resume_other_dataset),
    "tune_resume_foreign_folder": ("`tune --resume` on a folder distst did not write (pickled "
                                   "tuner.pkl)", tune_resume_foreign_folder),
    "address_nothing_listening": ("`--address 127.0.0.1:1` (nothing listening), fails in "
                                  "seconds", address_nothing_listening),
    "storage_uri_unreachable": ("`runtime.storage` an s3:// URI whose endpoint does not answer",
                                storage_uri_unreachable),
    "data_uri_unreachable": ("`data.path` an s3:// URI whose endpoint does not answer",
                             data_uri_unreachable),
    "storage_secret_in_config": ("a credential in `runtime.storage_options` (saved with every "
                                 "run)", storage_secret_in_config),
    "max_failures_negative": ("`runtime.max_failures=-1`", max_failures_negative),
    "node_wait_negative": ("`runtime.node_wait_s=-5`", node_wait_negative),
    "largest_meta_missing_column": ("a LargeST `*_meta.csv` without its `Lanes` column",
                                    largest_meta_missing_column),
    "unknown_logger": ("`runtime.loggers=[wandb]`", unknown_logger),
    "mlflow_file_store_refused": ("`runtime.loggers=[mlflow]` at a `file://` tracking URI that "
                                  "MLflow 3 refuses", mlflow_file_store_refused),
    "plot_unknown_sensor": ("`distst plot RUN --sensors S01,S999` (no such sensor)",
                            plot_unknown_sensor),
    "exchange_model_without_path": ("`runtime.mode=exchange` with HyperST-CNN (no exchange "
                                    "path)", exchange_model_without_path),
    "exchange_himnet_dense_graph": ("`runtime.mode=exchange` with HimNet's dense N x N "
                                    "adaptive graph", exchange_himnet_dense_graph),
    "replicas_zero": ("`runtime.replicas=0`", replicas_zero),
    "precision_unknown": ("`train.precision=fp16`", precision_unknown),
    "recompute_without_recurrence": ("`train.recompute=step` with STGCN (no recurrent steps)",
                                     recompute_without_recurrence),
    "replicas_in_replicate_mode": ("`runtime.replicas=2` in replicate mode",
                                   replicas_in_replicate_mode),
    "exchange_plan_without_boundary": ("`runtime.mode=exchange` with a plan made with "
                                       "`--halo-hops 0`", exchange_plan_without_boundary),
    "weight_matrix_one_inf": ("a 0/1 Los-loop adjacency with one `inf` cell (was read as "
                              "distances)", weight_matrix_one_inf),
    "pickled_adjacency_one_nan": ("a METR-LA `adj_mx.pkl` with one NaN weight",
                                  pickled_adjacency_one_nan),
    "edge_table_nan_weight": ("a generic edge table with a NaN weight (was dropped)",
                              edge_table_nan_weight),
    "edge_table_inf_distance": ("a generic edge table with an `inf` distance",
                                edge_table_inf_distance),
    "locations_nan_latitude": ("a METR-LA locations file with a NaN latitude",
                               locations_nan_latitude),
    "generic_nodes_latitude_out_of_range": ("a generic node table with latitude 340.5",
                                            generic_nodes_latitude_out_of_range),
    "config_key_twice": ("a config giving `train.epochs` twice (the last won silently)",
                         config_key_twice),
    "config_section_twice": ("a config with two `train:` sections", config_section_twice),
    "config_alias_bomb": ("a 400-byte config whose YAML aliases expand to 10^9 values (hung, "
                          "left an empty run folder)", config_alias_bomb),
    "config_include_chain_too_deep": ("a chain of 12 configs, each including the next",
                                      config_include_chain_too_deep),
    "config_binary_file": ("binary bytes as the config file", config_binary_file),
    "config_include_not_a_name": ("`include: [42]`", config_include_not_a_name),
    "config_include_a_folder": ("`include:` naming a folder", config_include_a_folder),
    "config_symlink_loop": ("a config path that is a symlink to itself", config_symlink_loop),
    "plot_sweep_yaml_not_a_sweep": ("`distst plot` on a folder whose sweep.yaml is `sweep: 5`",
                                    plot_sweep_yaml_not_a_sweep),
    "tune_resume_sweep_yaml_empty": ("`tune --resume` on a folder whose sweep.yaml is `{}`",
                                     tune_resume_sweep_yaml_empty),
    "storage_uri_with_credentials": ("`runtime.storage=s3://KEY:SECRET@bucket/runs` (was saved "
                                     "in config.yaml and echoed)", storage_uri_with_credentials),
    "mlflow_uri_with_password": ("an MLflow tracking URI with `user:password@`",
                                 mlflow_uri_with_password),
    "prepare_out_uri_with_credentials": ("`data prepare --out s3://KEY:SECRET@bucket/data`",
                                         prepare_out_uri_with_credentials),
    "presigned_data_uri": ("`data info` on a pre-signed URL (`?X-Amz-Signature=...`)",
                           presigned_data_uri),
    "sweep_name_escapes_storage": ("a sweep file with `name: ../../escaped`",
                                   sweep_name_escapes_storage),
    "study_name_escapes_storage": ("a study file with `name: ../../escaped`",
                                   study_name_escapes_storage),
    "sweep_key_weak": ("`tune --resume` with a one-byte sweep key and a manifest forged with "
                       "it (the planted pickle was about to be loaded)", sweep_key_weak),
    "scale_graph_negative": ("`distst scale --dry-run` with `graph: [-5]` (printed negative "
                             "sensors and megabytes)", scale_graph_negative),
    "scale_grid_too_large": ("a study grid of 29^4 = 707,281 runs (the dry run hung)",
                             scale_grid_too_large),
    "start_past_2262": ("`data prepare --start 2262-04-11` (the last steps wrapped to 1677)",
                        start_past_2262),
    "start_before_1677": ("`data prepare --start 1600-01-01` (a traceback)", start_before_1677),
    "generic_step_off_grid": ("a generic series with one 22-minute step among 15-minute ones "
                              "(recorded as 15 minutes)", generic_step_off_grid),
    "generic_timestamp_year_typo": ("a generic series whose last row is a year late (the gap "
                                    "was one step)", generic_timestamp_year_typo),
    "plot_truncated_test_metrics": ("`distst plot` on a run whose test_metrics.json is cut "
                                    "short", plot_truncated_test_metrics),
    "prepare_out_being_written": ("`data prepare` into an --out another prepare is writing",
                                  prepare_out_being_written),
    "info_symlink_loop": ("`data info` on a symlink that points at itself", info_symlink_loop),
    "prepare_out_symlink_loop": ("`data prepare --out` a symlink loop",
                                 prepare_out_symlink_loop),
    "storage_symlink_loop": ("`runtime.storage` a symlink loop", storage_symlink_loop),
    "prepare_disk_full": ("the disk fills during `data prepare`", prepare_disk_full),
    "synth_disk_full": ("the disk fills during `data synth`", synth_disk_full),
    "pickle_billion_laughs": ("an adj_mx.pkl whose shared references expand to 10^9 values "
                              "(hung)", pickle_billion_laughs),
    "pickle_declares_huge_array": ("an adj_mx.pkl that declares a 10^6 x 10^6 array "
                                   "(MemoryError)", pickle_declares_huge_array),
    "pickle_object_matrix": ("an adj_mx.pkl holding an object matrix of strings (a traceback)",
                             pickle_object_matrix),
    "pems_npz_declares_huge_array": ("a PEMS08.npz whose header declares a 2.2 TiB array "
                                     "(MemoryError)", pems_npz_declares_huge_array),
    "largest_adjacency_declares_huge_array": ("a LargeST `*_rn_adj.npy` whose header declares "
                                              "a 10^6 x 10^6 matrix",
                                              largest_adjacency_declares_huge_array),
    "meta_json_nested_deep": ("`data info` on a dataset whose meta.json nests 100,000 deep",
                              meta_json_nested_deep),
    "prepare_implausible_values": ("a speed file with one 1e30 (passed without a word)",
                                   prepare_implausible_values),
    "generic_missing_rows": ("a generic series with two rows absent (read as adjacent steps)",
                             generic_missing_rows),
    "plot_metrics_log_cut_short": ("`distst plot` on a run whose metrics.jsonl ends in half a "
                                   "line (JSONDecodeError)", plot_metrics_log_cut_short),
    "evaluate_checkpoint_cut_short": ("`distst evaluate` on a run whose newest checkpoint is "
                                      "cut short ([Errno 22])", evaluate_checkpoint_cut_short),
    "mlflow_closed_port": ("`runtime.loggers=[mlflow]` at a closed port (250 s, then refused)",
                           mlflow_closed_port),
    "synth_billion_nodes": ("`data synth --nodes 1000000000` (MemoryError after 18 s)",
                            synth_billion_nodes),
    "predict_other_sensors": ("`distst predict --data` of another network's sensors",
                              predict_other_sensors),
    "export_over_foreign_folder": ("`distst export --out` a folder of the user's own files",
                                   export_over_foreign_folder),
    "serve_missing_run": ("`distst serve` of a folder without a checkpoint", serve_missing_run),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_line(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    build = CASES[name][1]
    args = (tmp_path, monkeypatch) if build.__code__.co_argcount == 2 else (tmp_path,)
    argv, after = build(*args)
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if name == "h5_pickled_attribute":  # nothing to refuse: the file is read, safely
        assert rc == 0, err
        MESSAGES[name] = "(prepared; the attribute is dropped, the payload never runs)"
    elif name in GOES_ON:
        assert rc == 0, (out, err)
        said = [ln for ln in lines if ln.lower().startswith(("warning:", "note:"))]
        assert len(said) == 1, err
        MESSAGES[name] = "(goes on) " + said[0].replace(str(tmp_path), "TMP")
    else:
        assert rc == 2, (out, err)
        assert lines and lines[-1].startswith("error: "), err
        errors = [ln for ln in lines if ln.startswith("error: ")]
        assert len(errors) == 1, err
        MESSAGES[name] = errors[0][len("error: "):].replace(str(tmp_path), "TMP")
    if after is not None:
        assert after(), f"{name}: the after-check failed"


def test_table_lists_every_case():
    text = TABLE.read_text()
    missing = [n for n in CASES if f"`{n}`" not in text]
    assert not missing, f"tests/BAD_INPUTS.md lacks {missing}; regenerate it (module docstring)"


@pytest.fixture(scope="module", autouse=True)
def _write_table():
    yield
    out = os.environ.get("DISTST_BAD_INPUTS_TABLE")
    if not out or len(MESSAGES) < len(CASES):
        return
    rows = ["# Bad inputs the test suite covers", "",
            "Generated by `DISTST_BAD_INPUTS_TABLE=tests/BAD_INPUTS.md pytest "
            "tests/test_bad_inputs.py`; every row is a case of `tests/test_bad_inputs.py`, run "
            "through the CLI (exit code 2, one `error:` line, nothing lost or executed; the "
            "rows marked (goes on) succeed with the one warning or note shown). "
            "Paths under the test's temporary folder are shown as TMP. Failures during a Ray "
            "run are covered by `tests/runtime/test_cli_ray_failures.py` (a worker's error "
            "is the last line; a lost worker and Ctrl-C name the run folder and the "
            "`--resume` command), `tests/test_cli.py::test_ctrl_c_says_interrupted_and_how_"
            "to_resume` (local runs), `tests/engine/test_trainer.py` (a loss that turns NaN "
            "stops with the epoch and step and keeps the last good checkpoint), "
            "`tests/sweep/test_manifest.py` (forged or tampered sweep folders) and "
            "`tests/runtime/test_loopback.py` (nothing listens beyond loopback).", "",
            f"{len(CASES)} cases.", "",
            "| case | input | message |", "|---|---|---|"]
    for name, (desc, _) in CASES.items():
        msg = MESSAGES[name].replace("|", "\\|")
        rows.append(f"| `{name}` | {desc} | {msg} |")
    Path(out).write_text("\n".join(rows) + "\n")
