"""Shared fixtures: one local Ray instance per test session, tiny synthetic datasets."""

from __future__ import annotations

import os

# Must be set before Ray starts: loopback only, and a fast Train controller poll so that
# ray.train.report does not wait 2 s per call.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def shared_data() -> str:
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.fail(f"real data folder {path} is missing: tests expect ../shared/data beside the repo")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with 2 CPUs for the whole session; shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    yield ray
    ray.shutdown()
