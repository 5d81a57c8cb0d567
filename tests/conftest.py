"""Shared fixtures: one local Ray instance per test session, tiny synthetic datasets."""

from __future__ import annotations

import os

# Must be set before Ray starts: loopback only, and a fast Train controller poll so that
# ray.train.report does not wait 2 s per call.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# sweep manifests are signed with a per-user key; tests (and the drivers they spawn) use a
# throw-away one instead of creating ~/.config/distst/sweep.key
import tempfile  # noqa: E402

os.environ.setdefault("DISTST_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="distst-key-"),
                                                      "sweep.key"))

# S3 tests talk to a moto server on loopback: dummy credentials for every process, Ray
# workers included (they inherit this environment), and never a real account's
for _key, _val in (("AWS_ACCESS_KEY_ID", "distst-test"), ("AWS_SECRET_ACCESS_KEY", "distst-test"),
                   ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
    os.environ[_key] = _val
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)

import pytest  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def shared_data() -> str:
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.fail(f"real data folder {path} is missing: tests expect ../shared/data beside the repo")
    return path


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs per test module, shut down after it (so that the job-submit
    test can run its own head without a second cluster competing for the 2 cores)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    yield ray
    ray.shutdown()


def tiny_overrides(tmp_path, *extra: str, nodes: int = 20, days: int = 4, model: str = "gcgru") -> list[str]:
    """Overrides that make any config a seconds-long run on a tiny cached synthetic network."""
    base = [
        f"data.cache_dir={tmp_path.parent / 'distst-cache'}",
        f"data.synth.nodes={nodes}", f"data.synth.days={days}",
        f"runtime.storage={tmp_path / 'runs'}",
        f"model.name={model}",
        "model.params=" + {"gcgru": "{K: 2, hidden_size: 8, num_layers: 1}",
                           "gru": "{hidden_size: 8, num_layers: 1}"}.get(model, "{}"),
        "train.epochs=2", "train.batch_size=32", "train.eval_batch_size=64",
        "train.cl_decay_steps=20", "train.threads=1", "train.progress=false",
    ]
    return base + list(extra)


@pytest.fixture
def tiny(tmp_path):
    """Factory: tiny(*overrides, nodes=.., days=.., model=..) -> Config."""
    from distst.config import load_config

    def make(*extra: str, **kw):
        return load_config(None, tiny_overrides(tmp_path, *extra, **kw))

    return make


@pytest.fixture(scope="session")
def overrides_for():
    """The tiny_overrides function, for module-scoped fixtures that cannot use ``tiny``."""
    return tiny_overrides


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server (moto) on 127.0.0.1 for the session, stopped whatever happens;
    yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, request):
    """A fresh bucket on the test server: yields ``(base URI, storage options)``; the options
    point distst's filesystem at the server and are restored afterwards."""
    import uuid

    import pyarrow.fs as pafs

    from distst import storage

    options = {"endpoint_override": s3_server, "scheme": "http", "region": "us-east-1"}
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(allow_bucket_creation=True, **options).create_dir(bucket)
    storage.configure(options)
    try:
        yield f"s3://{bucket}", options
    finally:
        storage.configure(None)
