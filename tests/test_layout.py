"""The parallel layout: one place for workers, ranks, backends and resources."""

import numpy as np
import pytest

from distst.config import load_config
from distst.errors import DiststError
from distst.layout import Layout, Ownership
from distst.sweep.config import SweepConfig, max_workers, workers_of


def _cfg(*overrides):
    return load_config(None, list(overrides))


@pytest.mark.parametrize("overrides, world, parts, replicas", [
    (["runtime.mode=replicate", "runtime.workers=3"], 3, 1, 3),
    (["runtime.mode=shard", "partition.parts=3", "runtime.workers=7"], 3, 3, 1),
    (["runtime.mode=exchange", "partition.parts=2", "runtime.replicas=2"], 4, 2, 2),
    (["runtime.mode=local", "runtime.workers=5"], 1, 1, 1),
])
def test_workers_are_parts_times_replicas_in_every_mode(overrides, world, parts, replicas):
    lay = Layout.of(_cfg(*overrides))
    assert (lay.world_size, lay.parts, lay.replicas) == (world, parts, replicas)
    assert lay.fit(_cfg(*overrides)).runtime.workers == (world if lay.mode != "local" else 5)


def test_rank_to_part_and_replica_and_the_window_split():
    lay = Layout.of(_cfg("runtime.mode=shard", "partition.parts=3", "runtime.replicas=2",
                         "train.batch_size=10"))
    assert [(lay.part(r), lay.replica(r)) for r in range(6)] == [
        (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    # the parts of one replica take the same windows; the replicas split them
    assert {lay.window_split(r) for r in range(3)} == {(0, 2)}
    assert lay.replica_ranks(1) == [3, 4, 5]
    assert (lay.worker_batch(10), lay.global_batch(10)) == (5, 10)
    rep = Layout.of(_cfg("runtime.mode=replicate", "runtime.workers=4"))
    assert [rep.window_split(r) for r in range(4)] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert rep.worker_batch(10) == 2 and rep.global_batch(10) == 8
    with pytest.raises(DiststError, match="rank 6 outside the 6 workers"):
        lay.part(6)


def test_backends_serve_cpu_beside_nccl_and_shared_gpus_run_on_gloo():
    cpu = Layout.of(_cfg("runtime.mode=replicate"))
    assert (cpu.compute_backend, cpu.torch_backend, cpu.device_type) == ("gloo", "gloo", "cpu")
    own = Layout.of(_cfg("runtime.mode=shard", "runtime.use_gpu=true"))
    assert (own.compute_backend, own.torch_backend) == ("nccl", "cpu:gloo,cuda:nccl")
    assert own.resources_per_worker == {"CPU": 1.0, "GPU": 1.0} and own.notices() == []
    shared = Layout.of(_cfg("runtime.mode=exchange", "runtime.use_gpu=true",
                            "runtime.gpus_per_worker=0.5"))
    assert shared.shares_gpus and (shared.compute_backend, shared.torch_backend) == ("gloo",
                                                                                      "gloo")
    assert "NCCL refuses" in shared.notices()[0]
    assert shared.total_resources == {"CPU": 2.0, "GPU": 1.0}
    # one worker alone on half a GPU shares it with nobody: NCCL
    alone = Layout.of(_cfg("runtime.mode=replicate", "runtime.workers=1", "runtime.use_gpu=true",
                           "runtime.gpus_per_worker=0.5"))
    assert alone.compute_backend == "nccl"


def test_a_layout_the_cluster_cannot_hold_names_what_it_needs():
    lay = Layout.of(_cfg("runtime.mode=exchange", "partition.parts=2", "runtime.replicas=2"))
    lay.check_fits({"CPU": 4})
    with pytest.raises(DiststError, match=r"exchange mode, 2 parts x 2 replicas = 4 workers\) "
                       r"needs 4 workers x runtime.cpus_per_worker=1 = 4 CPUs but the Ray "
                       r"cluster has 3"):
        lay.check_fits({"CPU": 3})


def test_a_sweep_with_replicas_plans_parts_times_replicas_workers(tmp_path):
    """The sweep once planned resources for 2 workers per trial and started 4."""
    base = _cfg("runtime.mode=shard", "partition.parts=2", "runtime.replicas=2")
    assert workers_of(base, SweepConfig()) == 4

    class _Sweep:  # what max_workers reads of a loaded sweep
        cfg = SweepConfig()
        domains = []

    _Sweep.base = base
    assert max_workers(_Sweep) == 4


def test_ownership_of_a_part_and_of_the_whole_graph():
    whole = Ownership.whole(5)
    assert (whole.num_inner, whole.num_local, whole.partial) == (5, 5, False)
    part = Ownership.of_part([3, 4, 0], 2, 5)
    assert (part.num_inner, part.num_local, part.partial) == (2, 3, True)
    np.testing.assert_array_equal(part.global_ids, [3, 4, 0])
    with pytest.raises(DiststError, match="3 owned of 2 local nodes"):
        Ownership.of_part([1, 2], 3, 5)
