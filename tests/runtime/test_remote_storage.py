"""Datasets, plans and runs behind URIs: prepare -> partition -> 2-worker shard training ->
evaluate -> resume, all on s3:// (a moto server on loopback) and on file://.

Each worker fetches only its own part into node-local scratch (its fetch record says which
part and how many bytes); what the run writes lands under runtime.storage, not on disk.
"""

import json

import pytest
from raw_files import write_los_loop

from distst.cli import main
from distst.config import load_config
from distst.engine.entry import evaluate_checkpoint, read_test_metrics
from distst.errors import DiststError
from distst.runtime.ray_train import train_ray
from distst.storage import location


@pytest.fixture(params=["s3", "file"])
def storage_root(request, tmp_path):
    """(base URI, storage options) of an empty bucket or folder."""
    if request.param == "s3":
        return request.getfixturevalue("s3")
    return f"file://{tmp_path / 'store'}", {}


def _cfg(tmp_path, base, options, *extra):
    return load_config(None, [
        f"data.path={base}/data", f"data.cache_dir={tmp_path / 'node-cache'}",
        f"partition.plan={base}/plan", "partition.parts=2", "runtime.mode=shard",
        f"runtime.storage={base}/runs", "runtime.name=r1",
        "runtime.storage_options=" + json.dumps(options),
        "model.name=gcgru", "model.params={K: 2, hidden_size: 8, num_layers: 1}",
        "train.batch_size=16", "train.eval_batch_size=64", "train.cl_decay_steps=20",
        "train.max_batches_per_epoch=4", "train.max_val_batches=1",
        "train.threads=1", "train.progress=false", "runtime.cpus_per_worker=0.9", *extra])


def test_prepare_partition_train_evaluate_resume_on_uris(ray_session, storage_root, tmp_path,
                                                         capsys):
    base, options = storage_root
    raw = write_los_loop(tmp_path / "raw")
    assert main(["data", "prepare", "--format", "los-loop", "--path", str(raw),
                 "--out", f"{base}/data"]) == 0
    capsys.readouterr()
    assert main(["data", "info", f"{base}/data", "--json",
                 "--cache-dir", str(tmp_path / "info-cache")]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"] == 16
    # halo of 50 hops: each part reaches the whole ring, so the sharded run's metrics are the
    # whole graph's and evaluating its checkpoint in one process must give them back
    assert main(["partition", f"{base}/data", "--method", "metis", "--parts", "2",
                 "--halo-hops", "50", "--out", f"{base}/plan"]) == 0
    out = capsys.readouterr().out
    assert f"plan written to {base}/plan" in out
    plan = location(f"{base}/plan")
    assert (plan / "META.json").is_file() and (plan / "part_1" / "values.npy").is_file()

    cfg = _cfg(tmp_path, base, options, "train.epochs=2")
    run_dir, final = train_ray(cfg)
    assert str(run_dir) == f"{base}/runs/r1".replace("file://", "")
    run = location(f"{base}/runs/r1")
    # everything the run writes is under runtime.storage
    names = {f[0].split("/")[0] for f in run.files()}
    assert {"config.yaml", "metrics.jsonl", "test_metrics.json", "fetch", "tensorboard"} <= names
    assert [f for f in run.files() if f[0].startswith("tensorboard/events.out.tfevents")]
    assert any(n.startswith("checkpoint_") for n in names)
    assert read_test_metrics(run)["test"]["avg"]["mae"] == pytest.approx(
        final["test"]["avg"]["mae"])
    # each worker read only its own part, fetched when the plan is remote
    records = [json.loads((run / "fetch" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert [r["source"] for r in records] == [f"{plan}/part_0", f"{plan}/part_1"]
    fetched = tmp_path / "node-cache" / "fetched" / "plans"
    if base.startswith("s3://"):
        assert all(r["bytes"] > 0 for r in records)
        (mirror,) = fetched.iterdir()
        assert sorted(p.name for p in mirror.iterdir() if not p.name.startswith(".")) == [
            "META.json", "part_0", "part_1"]
        part0 = sum(f[1] for f in plan.files() if f[0].startswith("part_0/"))
        assert records[0]["bytes"] == part0
    else:  # file:// is shared storage read in place, as a mounted folder is
        assert all(r["bytes"] == 0 for r in records) and not fetched.exists()

    again = evaluate_checkpoint(f"{base}/runs/r1")
    assert again["test"]["avg"]["mae"] == pytest.approx(final["test"]["avg"]["mae"], rel=1e-4)

    more = _cfg(tmp_path, base, options, "train.epochs=3")
    run_dir_b, _ = train_ray(more, resume_from=f"{base}/runs/r1")
    assert str(run_dir_b) == str(run_dir)
    epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_replicate_workers_fetch_the_dataset_once_per_node(ray_session, s3, tmp_path):
    base, options = s3
    raw = write_los_loop(tmp_path / "raw")
    assert main(["data", "prepare", "--format", "los-loop", "--path", str(raw),
                 "--out", f"{base}/data"]) == 0
    cfg = _cfg(tmp_path, base, options, "train.epochs=1", "runtime.mode=replicate",
               "partition.plan=", "runtime.workers=2")
    train_ray(cfg)
    run = location(f"{base}/runs/r1")
    records = [json.loads((run / "fetch" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    # the driver fetched it first on this (one) node: the workers found it in the node's cache
    assert [r["bytes"] for r in records] == [0, 0]
    assert [r["source"] for r in records] == [f"{base}/data"] * 2
    (copy,) = (tmp_path / "node-cache" / "fetched").glob("data-*")
    assert (copy / "values.npy").is_file()


def test_remote_plan_without_meta_or_with_a_changed_part_is_refused(ray_session, s3, tmp_path):
    base, options = s3
    raw = write_los_loop(tmp_path / "raw")
    main(["data", "prepare", "--format", "los-loop", "--path", str(raw), "--out", f"{base}/data"])
    main(["partition", f"{base}/data", "--parts", "2", "--halo-hops", "1",
          "--out", f"{base}/plan"])
    plan = location(f"{base}/plan")
    # a part changed in storage after the plan was written: its hash no longer matches
    (plan / "part_1" / "deg.npy").write_bytes(b"tampered")
    cfg = _cfg(tmp_path, base, options, "train.epochs=1")
    with pytest.raises(DiststError, match="part_1.*does not match the plan's hash"):
        train_ray(cfg)
    # nothing that failed verification stays in the node's cache
    assert not list((tmp_path / "node-cache" / "fetched" / "plans").glob("*/part_1"))
    # a plan being written (or half-written) has no META.json yet
    plan.fs.delete_file((plan / "META.json").path)
    with pytest.raises(DiststError, match="no META.json"):
        train_ray(cfg)


def test_local_mode_run_on_s3_storage_checkpoints_and_resumes(s3, tiny):
    from distst.engine.entry import train_local

    base, options = s3
    extra = (f"runtime.storage={base}/runs", "runtime.name=local1", "runtime.mode=local",
             "runtime.storage_options=" + json.dumps(options))
    run_dir, first = train_local(tiny("train.epochs=1", *extra))
    assert str(run_dir) == f"{base}/runs/local1"
    run = location(str(run_dir))
    assert [c.name for c in run.glob("checkpoint_*")] == ["checkpoint_000000", "checkpoint_000001"]
    assert (run / "checkpoint_000000" / "metrics.json").is_file()
    _, again = train_local(tiny("train.epochs=2", *extra), resume_from=str(run_dir))
    epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert read_test_metrics(run)["test"]["avg"]["mae"] == pytest.approx(again["test"]["avg"]["mae"])
