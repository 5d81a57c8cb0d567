"""Shared fixtures and the suite's tiers.

Tiers (markers registered in pyproject.toml):

- no marker: no Ray at all (the inner loop, ``pytest -m "not ray and not cluster"``);
- ``ray``: the test uses the one local Ray of the session (:func:`ray_session`); every test
  that depends on that fixture, directly or through another fixture, is marked by itself;
- ``cluster``: the test starts Ray clusters or heads of its own (simulated multi-node, job
  submission, a CLI that starts and stops its own local Ray); it stops only what it started.

The session's tests run in that order: modules without Ray, modules on the session Ray, then
modules with clusters of their own, before which the session Ray is stopped (on 2 cores, an
idle Ray's helper processes would slow everything beside them). A test without a Ray marker
that starts Ray anyway fails, naming the marker it needs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

# Must be set before Ray starts: loopback only, and a fast Train controller poll so that
# ray.train.report does not wait 2 s per call.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# sweep manifests are signed with a per-user key; tests (and the drivers they spawn) use a
# throw-away one instead of creating ~/.config/distst/sweep.key
os.environ.setdefault("DISTST_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="distst-key-"),
                                                      "sweep.key"))

# S3 tests talk to a moto server on loopback: dummy credentials for every process, Ray
# workers included (they inherit this environment), and never a real account's
#: a secret in the environment of every process: no file a run, sweep or study writes may
#: hold it (env_secret_in)
ENV_SECRET = "distst-test-secret-5d1c0e9a"
for _key, _val in (("AWS_ACCESS_KEY_ID", "distst-test"), ("AWS_SECRET_ACCESS_KEY", ENV_SECRET),
                   ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
    os.environ[_key] = _val
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)

import pytest  # noqa: E402

# tests/test_tiers.py runs small suites of its own under this conftest
pytest_plugins = ["pytester"]

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def env_secret_in():
    """env_secret_in(*folders) -> the files under them (TensorBoard events, MLflow stores,
    pickles, logs) whose bytes hold the secret every test process has in its environment."""
    from pathlib import Path

    def find(*folders) -> list[str]:
        hits = []
        for folder in folders:
            for f in Path(folder).rglob("*"):
                if f.is_file() and ENV_SECRET.encode() in f.read_bytes():
                    hits.append(str(f))
        return hits

    return find


@pytest.fixture(scope="session")
def shared_data() -> str:
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.fail(f"real data folder {path} is missing: tests expect ../shared/data beside the repo")
    return path


class _SessionRay:
    """The session's local Ray: loopback only, 2 CPUs, its dashboard (Train's placement-group
    cleaner needs the state API, or a Tune trial stopped early keeps its workers' CPUs), in a
    temp dir of its own. Started by the first test that needs it; stopped at the end of the
    session, before the first ``cluster`` test, and after a test that leaked resources."""

    def __init__(self):
        self.temp_dir: str | None = None

    @property
    def running(self) -> bool:
        ray = sys.modules.get("ray")
        return self.temp_dir is not None and ray is not None and ray.is_initialized()

    def ensure(self):
        import ray

        if self.running:
            return ray
        if ray.is_initialized():
            # a test attached this process to a Ray of its own and left it attached
            ray.shutdown()
        from distst.runtime.ray_train import start_local

        # short: Ray's unix socket paths live under it (108 bytes at most)
        self.temp_dir = tempfile.mkdtemp(prefix="distst-ray-", dir="/tmp")
        start_local(2, log_to_driver=False, _temp_dir=self.temp_dir)
        return ray

    def stop(self) -> None:
        if self.temp_dir is None:
            return
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()  # this process started it: this stops its processes, nothing else
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir = None

    def leaked(self, timeout_s: float = 60.0) -> str:
        """'' once every CPU of the session Ray is free again (Train releases its placement
        group a moment after a run returns); otherwise what is still held."""
        import ray

        total = ray.cluster_resources().get("CPU", 0.0)
        deadline = time.monotonic() + timeout_s
        while True:
            free = ray.available_resources().get("CPU", 0.0)
            if free >= total - 1e-6:
                return ""
            if time.monotonic() > deadline:
                return f"{total - free:g} of {total:g} CPUs still reserved {timeout_s:g} s after the test"
            time.sleep(0.2)


_SESSION_RAY = _SessionRay()


@pytest.fixture(scope="module")
def ray_session():
    """The one local Ray of the test session (see :class:`_SessionRay`); yields the ``ray``
    module. Module-scoped so that module fixtures can train on it; it is started once, not per
    module, and never stopped by a test that uses it."""
    yield _SESSION_RAY.ensure()


def _tier(item) -> int:
    if item.get_closest_marker("cluster"):
        return 2
    return 1 if item.get_closest_marker("ray") else 0


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark the tests on the session Ray (before ``-m`` selects), then order modules by their
    heaviest tier, keeping each module's tests together and in their own order."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
                "cluster"):
            item.add_marker(pytest.mark.ray)
    # within the cluster tier, the modules on the shared job head come last: the head then
    # idles beside no other test (it stops at the end of the session)
    module_rank: dict[str, tuple[int, bool]] = {}
    for item in items:
        key = str(item.path)
        rank = (_tier(item), "job_head" in getattr(item, "fixturenames", ()))
        module_rank[key] = max(module_rank.get(key, rank), rank)
    items.sort(key=lambda it: module_rank[str(it.path)])


@pytest.fixture(autouse=True)
def _ray_tiers(request):
    """Hold each test to its tier: a ``cluster`` test starts with no session Ray beside it; a
    ``ray`` test gives back every CPU it reserved; an unmarked test starts no Ray."""
    tier = _tier(request.node)
    ray_mod = sys.modules.get("ray")
    was_up = ray_mod is not None and ray_mod.is_initialized()
    if tier == 2:
        _SESSION_RAY.stop()
    yield
    ray_mod = sys.modules.get("ray")
    if tier == 0 and not was_up and ray_mod is not None and ray_mod.is_initialized():
        ray_mod.shutdown()
        pytest.fail("this test started Ray in its process but is not marked: use the "
                    "ray_session fixture (marks it `ray`) or mark it `cluster`", pytrace=False)
    if tier == 1 and _SESSION_RAY.running:
        leak = _SESSION_RAY.leaked()
        if leak:
            _SESSION_RAY.stop()  # so that the tests after this one do not wait for ever
            pytest.fail(f"the session Ray was left with {leak}: a run's workers or placement "
                        "group outlived it; the session Ray was restarted", pytrace=False)


@pytest.fixture(scope="session")
def job_head():
    """A head started with ``ray start --head`` (loopback, 2 CPUs, dashboard and job API,
    token auth) for the tests that submit jobs to it, shared by them: it is a ``cluster``
    fixture, stopped at the end of the session by its temp dir, never by ``ray stop``.
    Yields a :class:`ray_heads.Head` whose job agent has already run a job."""
    from ray_heads import start_head, wait_for_job_agent

    head = start_head("distst-jobs", num_cpus=2)
    try:
        wait_for_job_agent(head.dashboard, head.env)
        yield head
    finally:
        head.stop()


def pytest_sessionfinish(session, exitstatus):
    _SESSION_RAY.stop()


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
