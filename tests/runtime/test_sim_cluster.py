"""The cluster guide (README "Running on a cluster") followed on a simulated cluster that is
closer to a real one than ``ray.cluster_utils.Cluster`` (tests/sim_cluster.py): the head runs
nothing and no worker node exists until Ray's autoscaler launches one, every node has its
own home and cache, S3 (moto) is the only storage they share, and token auth is on.

A submitter with its own home puts the data and the plan into S3, submits a train, a sweep
and a study with ``cluster/submit.sh`` (``ray job submit``), and takes results out of S3
with ``distst plot``: the train run waits for the autoscaler, each worker reads only its
part into its own node's cache, and a node lost mid-run is replaced by a new one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from raw_files import write_los_loop
from sim_cluster import start_sim_cluster, wait_for

pytestmark = pytest.mark.cluster  # a cluster of its own, grown by its own autoscaler

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.params={K: 2, hidden_size: 8, num_layers: 1}", "train.threads=1",
        "train.progress=false", "train.max_val_batches=1", "train.max_test_batches=2"]


@pytest.fixture(scope="module")
def cloud(s3_server):
    """A bucket, the environment that reaches it (every node's, as an instance role
    gives), and the storage of this test process pointed at it."""
    import uuid

    import pyarrow.fs as pafs

    from distst import storage

    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "sim",
           "AWS_SECRET_ACCESS_KEY": "sim-secret", "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1"}
    options = {"endpoint_override": s3_server, "scheme": "http", "region": "us-east-1"}
    bucket = f"sim-{uuid.uuid4().hex[:10]}"
    pafs.S3FileSystem(allow_bucket_creation=True, **options).create_dir(bucket)
    storage.configure(options)
    try:
        yield f"s3://{bucket}", env
    finally:
        storage.configure(None)


@pytest.fixture(scope="module")
def sim(cloud):
    import ray

    ray.shutdown()  # this module runs on its own cluster, not the session's local Ray
    # nodes of 2 CPUs; at most 3 (a shard run needs 2, the third replaces a lost one)
    c = start_sim_cluster({"CPU": 2}, max_nodes=3, cloud_env=cloud[1])
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def laptop(sim, cloud, tmp_path_factory):
    """The submitter: another machine's home holding the token, the data and a plan
    uploaded to the bucket as the guide's step 3 says."""
    home = tmp_path_factory.mktemp("laptop")
    env = sim.submitter_env(home, **cloud[1])
    base = cloud[0]
    raw = write_los_loop(home / "raw")
    for argv in (["data", "prepare", "--format", "los-loop", "--path", str(raw), "--out",
                  f"{base}/data/los"],
                 ["partition", f"{base}/data/los", "--parts", "2", "--halo-hops", "1",
                  "--out", f"{base}/plans/los-p2"]):
        res = subprocess.run([str(Path(env["PATH"].split(os.pathsep)[0]) / "distst"), *argv],
                             env=env, cwd=home, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return home, env


def _sets(pairs):
    return [a for kv in pairs for a in ("--set", kv)]


def _submit(env, *command, timeout=900):
    """``cluster/submit.sh -- COMMAND`` from the submitter; returns (rc, log)."""
    res = subprocess.run(["bash", "cluster/submit.sh", "--", *command], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def _read(uri: str) -> str:
    from distst.storage import location

    return location(uri).read_text()


def test_a_train_job_waits_for_the_autoscaler_reads_parts_per_node_and_survives_a_lost_node(
        sim, cloud, laptop):
    base, _ = cloud
    home, env = laptop
    assert sim.node_homes() == []  # nothing but the head
    run = f"{base}/runs/sim-train"
    cmd = ["python", "-m", "distst", "train", "configs/quickstart.yaml", *_sets([
        f"data.path={base}/data/los", f"partition.plan={base}/plans/los-p2",
        f"runtime.storage={base}/runs", "runtime.name=sim-train", "runtime.workers=2",
        "partition.parts=2", "partition.halo_hops=1", "runtime.cpus_per_worker=2",
        "runtime.max_failures=1", "runtime.node_wait_s=300", "train.epochs=3",
        "train.batch_size=16", "train.max_batches_per_epoch=6",
        "train.checkpoint_every_steps=2", *TINY])]
    proc = subprocess.Popen(["bash", "cluster/submit.sh", "--", *cmd], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    from distst.storage import location

    lost = {}
    try:
        def checkpointed():
            if proc.poll() is not None:  # the job ended before its first checkpoint
                raise AssertionError(proc.stdout.read()[-4000:])
            try:
                d = location(run)
                if any(c.name.startswith("checkpoint_") for c in d.iterdir()):
                    return json.loads((d / "fetch" / "rank_1.json").read_text())
            except (FileNotFoundError, OSError, ValueError):
                return None

        lost["record"] = wait_for(checkpointed, 600, "the run's first checkpoint")
        lost["home"] = sim.home_of(lost["record"]["node"])
        sim.lose(lost["home"])
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-4000:]
    said = [ln for ln in out.splitlines() if "asked the autoscaler" in ln]
    assert len(said) == 1 and "2 x {'CPU': 2.0}" in said[0], out[-4000:]
    assert "| avg |" in out
    # two nodes launched for the run and a third in place of the lost one
    assert len(sim.node_homes()) == 3, sim.node_homes()
    recs = [json.loads(_read(f"{run}/fetch/rank_{r}.json")) for r in (0, 1)]
    assert recs[0]["node"] != recs[1]["node"] != lost["record"]["node"]
    assert [r["source"] for r in recs] == [f"{base}/plans/los-p2/part_0",
                                           f"{base}/plans/los-p2/part_1"]
    # each worker cached its part on its own node (a restart may deal the ranks anew, so a
    # surviving node may hold both); the lost node, which ran rank 1 only, holds part_1 only;
    # no node fetched the whole dataset, and the head no part
    def cached(home):
        return {p.name for p in (home / ".cache" / "distst").rglob("part_*")}

    for rec in recs:
        assert Path(rec["source"]).name in cached(sim.home_of(rec["node"]))
    assert cached(lost["home"]) == {"part_1"}
    for h in sim.node_homes():
        assert {p.name for p in (h / ".cache" / "distst" / "fetched").iterdir()} == {"plans"}
    assert not cached(sim.head_home)
    epochs = [json.loads(ln)["epoch"] for ln in _read(f"{run}/metrics.jsonl").splitlines()]
    assert epochs == [1, 2, 3]
    # results come off the bucket: the plots of the finished run on the submitter's disk
    res = subprocess.run(["distst", "plot", run, "--out", str(home / "plots")], env=env,
                         cwd=home, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    for png in ("curves.png", "horizon.png", "forecast.png"):
        assert (home / "plots" / png).read_bytes()[:4] == b"\x89PNG", png
    # forecasts of the shard run come from its own parts, one worker per node, as one table
    table = f"{base}/forecasts/sim-train.parquet"
    rc, log = _submit(env, "python", "-m", "distst", "predict", run, "--split", "test",
                      "--out", table)
    assert rc == 0, log[-4000:]
    assert "forecasting through the run's layout: shard mode, 2 parts x 1 replicas" in log
    import io

    import pandas as pd
    from distst.storage import location as loc

    df = pd.read_parquet(io.BytesIO(loc(table).read_bytes()))
    sensors = df["sensor_id"].unique()
    assert len(sensors) == 16 and len(df) == df["forecast_time"].nunique() * 12 * 16
    assert df.groupby(["forecast_time", "horizon_step"]).size().eq(16).all()


def test_a_sweep_and_a_study_submitted_as_jobs_keep_everything_in_the_bucket(sim, cloud,
                                                                            laptop):
    base, _ = cloud
    home, env = laptop
    data = [f"data.path={base}/data/los", *TINY, "train.batch_size=16",
            "train.max_batches_per_epoch=3"]
    rc, log = _submit(env, "python", "-m", "distst", "tune", "configs/sweeps/gcgru.yaml",
                      "--no-progress", *_sets([
                          f"storage={base}/sweeps", "name=sim-sweep", "num_samples=2",
                          "workers_per_trial=1", "scheduler=fifo", "train.epochs=1",
                          "search_space={train.lr: {choice: [0.01, 0.02]}}", *data]))
    assert rc == 0, log[-4000:]
    assert "2 trials (0 stopped early, 0 failed)" in log, log[-4000:]
    assert _read(f"{base}/sweeps/sim-sweep/trials.csv").count("\n") == 3
    assert "model:" in _read(f"{base}/sweeps/sim-sweep/best_config.yaml")
    # signed with the key in the head's home: a later driver there could resume it
    keys = list(sim.root.rglob("sweep.key"))
    assert keys == [sim.head_home / ".config" / "distst" / "sweep.key"], keys
    assert keys[0].stat().st_mode & 0o077 == 0

    rc, log = _submit(env, "python", "-m", "distst", "scale", "configs/studies/strong-1026.yaml",
                      *_sets([f"storage={base}/studies", "name=sim-study",
                              f"grid.graph=[{base}/data/los]", "grid.runtime.mode=[replicate]",
                              "grid.runtime.workers=[1, 2]", "warmup_steps=1", "timed_steps=2",
                              *data]))
    assert rc == 0, log[-4000:]
    study = f"{base}/studies/sim-study"
    assert "## Strong scaling" in _read(f"{study}/summary.md")
    assert _read(f"{study}/runs.csv").count("\n") == 4  # header + 1 + 2 workers
    # the submitter redraws the study's plots from the bucket
    res = subprocess.run(["distst", "plot", study], env=env, cwd=home, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    from distst.storage import location

    assert (location(study) / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_the_cluster_can_never_hold_is_refused_at_once(sim, cloud, laptop):
    """The autoscaler's config on the head (what ``ray up`` leaves there) allows 3 nodes of 2
    CPUs: 4 workers of 2 CPUs can never start, so the job stops without waiting."""
    base, _ = cloud
    _, env = laptop
    t0 = time.monotonic()
    rc, log = _submit(env, "python", "-m", "distst", "train", "configs/quickstart.yaml",
                      *_sets([f"data.path={base}/data/los", f"runtime.storage={base}/runs",
                              "runtime.mode=replicate", "runtime.workers=4",
                              "runtime.cpus_per_worker=2", "runtime.node_wait_s=600", *TINY]))
    assert rc != 0
    errors = sorted({ln for ln in log.splitlines() if ln.startswith("error: ")})
    assert len(errors) == 1 and "needs 4 workers x runtime.cpus_per_worker=2 = 8 CPUs" in \
        errors[0], log[-3000:]
    assert "asked the autoscaler" not in log
    assert time.monotonic() - t0 < 120
