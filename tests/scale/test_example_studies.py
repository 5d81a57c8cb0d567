"""The example studies in configs/studies load, and cut their graphs where the boundary
matters: every part of every shard run holds a halo share of at least 5% (issue 14), checked
on the generated graphs up to a few thousand sensors (the 100k example is documented in
benchmarks/RESULTS.md: generating it takes minutes) and on the real graph of a study over a
prepared dataset (Los-loop, from ../shared/data)."""

from pathlib import Path

import numpy as np
import pytest

from distst.engine.parallelize import plan_halo_hops
from distst.scale.config import load_study

STUDIES = sorted((Path(__file__).resolve().parents[2] / "configs" / "studies").glob("*.yaml"))


#: prepared-dataset paths of the example studies -> the raw files ``distst data prepare``
#: reads (format, folder under ../shared/data)
REAL = {"los-loop": ("los-loop", "los-loop")}


def _graph(cfg, shared_data):
    """(edge_index, edge_weight, sensors) of a run's graph: generated, or the real one."""
    if cfg.data.path:
        from distst.data.formats import read_dataset

        fmt, folder = REAL[Path(cfg.data.path).name]
        net = read_dataset(fmt, Path(shared_data) / folder)
    else:
        from distst.data.synth import synth_network

        s = cfg.data.synth
        net = synth_network(num_nodes=s.nodes, days=1, seed=s.seed, graph=s.graph)
    return net.edge_index, net.edge_weight, net.num_nodes


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_example_study_parts_have_a_real_boundary(path, shared_data):
    from distst.graph.partition import partition_graph
    from distst.graph.partition.halo import halo_adjacency, k_hop_halo

    study = load_study(path)
    assert study.runs
    checked = 0
    for run in study.runs:
        cfg, pc = run.cfg, run.cfg.partition
        if cfg.runtime.mode != "shard" or pc.parts < 2 or (not cfg.data.path
                                                           and cfg.data.synth.nodes > 5000):
            continue
        ei, ew, n = _graph(cfg, shared_data)
        part = partition_graph(pc.method, ei, ew, n, pc.parts, seed=pc.seed)
        adj = halo_adjacency(ei, n)
        shares = []
        for p in range(pc.parts):
            inner = np.flatnonzero(part.assignment == p)
            hops = plan_halo_hops(cfg)
            halo = k_hop_halo(None, n, inner, hops, in_adj=adj)
            shares.append(len(halo) / (len(inner) + len(halo)))
        # accuracy against halo depth starts at no halo at all, on purpose
        if hops >= 2:
            assert min(shares) >= 0.05, (run.name, [round(x, 3) for x in shares])
        checked += 1
    # the large examples (generated graphs beyond 5,000 sensors; ca-8600 runs exchange mode,
    # exact at any boundary) are documented in benchmarks/RESULTS.md instead
    if path.stem not in ("strong-100k", "ca-8600"):
        assert checked, f"{path.name} has no multi-part shard run to check"
