"""The partition plan on disk: layout, whole-graph normalisation, determinism, atomicity, hashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from distst.data.network import load_network, save_network
from distst.data.synth import synth_network
from distst.errors import DiststError
from distst.graph.partition import plan as plan_mod
from distst.graph.partition.base import Partition
from distst.graph.partition.halo import k_hop_halo
from distst.graph.partition.plan import (
    load_plan,
    open_part,
    sym_normalized_weights,
    values_hash,
    verify_plan,
    write_plan,
)
from distst.nn.layers.graph import cheb_operator

N = 30
P = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    net = synth_network(num_nodes=N, days=2, seed=3)
    return save_network(net, tmp_path_factory.mktemp("plan") / "ds")


@pytest.fixture(scope="module")
def partition() -> Partition:
    # scattered (not contiguous) ownership so that the local re-indexing is really exercised
    assignment = np.random.default_rng(1).permutation(np.arange(N) % P)
    return Partition(assignment, P, "hand", params={"seed": 0})


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def no_temp_left(parent: Path) -> bool:
    return not [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("hops", [0, 1, 2])
def test_layout_and_contents(dataset, partition, tmp_path, hops):
    out = write_plan(dataset, partition, hops, tmp_path / "plan", quality={"edge_cut": 7})
    net = load_network(dataset)
    ei, ew = net.edge_index, net.edge_weight
    assert len({tuple(e) for e in ei.T}) == ei.shape[1]  # unique edges: entries map 1:1
    full_op = cheb_operator(ei, ew, N, "sym").to_dense().double()  # [N, N], row = target
    _, full_deg = sym_normalized_weights(ei, ew, N)
    meta = load_plan(out)
    assert (meta.method, meta.num_parts, meta.halo_hops, meta.num_nodes) == ("hand", P, hops, N)
    assert meta.quality == {"edge_cut": 7} and meta.params == {"seed": 0}
    assert np.array_equal(np.load(out / "assignment.npy"), partition.assignment)
    owner_count = np.zeros(N, dtype=int)
    for i in range(P):
        part = open_part(out, i)
        inner = np.flatnonzero(partition.assignment == i)
        halo = k_hop_halo(ei, N, inner, hops)
        assert part.inner_global.tolist() == inner.tolist()  # inner first, ascending
        assert part.halo_global.tolist() == halo.tolist()  # then the halo, ascending
        assert meta.sizes[i]["num_inner"] == inner.size and meta.sizes[i]["num_halo"] == halo.size
        owner_count[part.inner_global] += 1
        nodes = part.nodes
        sub = part.network
        # local edges == induced subgraph of the local nodes, weights carried along
        local = np.isin(ei[0], nodes) & np.isin(ei[1], nodes)
        got = {(int(nodes[s]), int(nodes[d]), float(w))
               for s, d, w in zip(*sub.edge_index, sub.edge_weight)}
        want = {(int(s), int(d), float(w)) for s, d, w in zip(*ei[:, local], ew[local])}
        assert got == want and sub.num_edges == int(local.sum())
        # normalised with whole-graph degrees, every local edge's entry is the full
        # operator's -L~[dst, src] for the same edge
        np.testing.assert_allclose(part.deg, full_deg[nodes])
        part_op = cheb_operator(sub.edge_index, sub.edge_weight, nodes.size, "sym",
                                degree=part.deg).to_dense().double()
        ls, ld = sub.edge_index
        gs, gd = nodes[ls], nodes[ld]
        np.testing.assert_allclose(part_op[ld, ls].numpy(), full_op[gd, gs].numpy(), rtol=1e-6)
        if hops >= 1:  # inner rows of the part operator are exactly the full-graph rows
            ni = part.num_inner
            np.testing.assert_allclose(part_op[:ni].numpy(), full_op[inner][:, nodes].numpy(),
                                       rtol=1e-6, atol=1e-7)
            assert torch.all(full_op[inner][:, np.setdiff1d(np.arange(N), nodes)] == 0)
        # the series and static attributes of just those nodes; the part is a dataset
        np.testing.assert_array_equal(np.asarray(sub.values), np.asarray(net.values)[:, nodes])
        assert isinstance(sub.values, np.memmap)
        np.testing.assert_array_equal(sub.timestamps, net.timestamps)
        assert sub.node_ids.tolist() == net.node_ids[nodes].tolist()
        np.testing.assert_array_equal(sub.coords, net.coords[nodes])
        np.testing.assert_array_equal(sub.node_attrs, net.node_attrs[nodes])
        assert sub.attr_names == net.attr_names and sub.channels == net.channels
        again = load_network(out / f"part_{i}")
        assert again.num_nodes == nodes.size and again.name == f"{net.name}-part{i}"
        info = json.loads((out / f"part_{i}" / "part.json").read_text())
        assert info["num_inner"] == inner.size and info["num_local"] == nodes.size
    assert (owner_count == 1).all()  # every node is inner in exactly one part


def test_rerun_is_byte_identical_and_replaces_atomically(dataset, partition, tmp_path):
    a = write_plan(dataset, partition, 1, tmp_path / "a", quality={"cut": 3, "seconds": 0.123})
    b = write_plan(dataset, partition, 1, tmp_path / "b", quality={"cut": 3, "seconds": 9.9})
    fa, fb = all_files(a), all_files(b)
    # per part: 14 files (edge_weight_sym.npy, which training never read, is gone since issue 12)
    assert len(fa) == 1 + 1 + P * 14 and fa.keys() == fb.keys()
    assert all(fa[k] == fb[k] for k in fa), [k for k in fa if fa[k] != fb[k]]
    assert "seconds" not in json.loads(fa["META.json"])["quality"]  # timings kept out
    # an existing plan is replaced as a whole; nothing temporary stays behind
    write_plan(dataset, partition, 2, a)
    assert load_plan(a).halo_hops == 2 and no_temp_left(tmp_path)
    write_plan(dataset, partition, 1, a, quality={"cut": 3})
    assert all_files(a) == fa and no_temp_left(tmp_path)


def test_failed_write_keeps_old_plan(dataset, partition, tmp_path, monkeypatch):
    out = write_plan(dataset, partition, 1, tmp_path / "plan")
    before = all_files(out)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plan_mod, "_write_part_values", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_plan(dataset, partition, 2, out)
    assert all_files(out) == before and no_temp_left(tmp_path)


def test_values_copied_in_many_chunks_and_from_fortran_order(dataset, partition, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(plan_mod, "_CHUNK_BYTES", N * 4 * 7)  # 7 steps per chunk
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    net = load_network(ds, mmap=False)
    ref = write_plan(ds, partition, 1, tmp_path / "c")
    np.save(ds / "values.npy", np.asfortranarray(net.values))  # same array, Fortran order
    fort = write_plan(ds, partition, 1, tmp_path / "f")
    for i in range(P):
        nodes = np.load(ref / f"part_{i}" / "nodes.npy")
        want = net.values[:, nodes]
        for plan in (ref, fort):
            np.testing.assert_array_equal(np.load(plan / f"part_{i}" / "values.npy"), want)


def test_hash_mismatch_refused(dataset, partition, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    out = write_plan(ds, partition, 1, tmp_path / "plan")
    assert verify_plan(out).num_parts == P  # default: the recorded dataset
    assert verify_plan(out, ds).halo_hops == 1
    # a different dataset of the same size
    other = save_network(synth_network(num_nodes=N, days=2, seed=4), tmp_path / "other")
    with pytest.raises(DiststError, match=r"made for another dataset.*values\.npy.*re-run "
                                          r"'distst partition .*other --method hand --parts 3"):
        verify_plan(out, other)
    # values changed in place (same size)
    v = np.load(ds / "values.npy")
    v[5, 3, 0] += 1.0
    np.save(ds / "values.npy", v)
    with pytest.raises(DiststError, match=r"dataset .* changed \(values\.npy differ\)"):
        verify_plan(out, ds)
    np.save(ds / "values.npy", np.load(dataset / "values.npy"))
    verify_plan(out, ds)
    w = np.load(ds / "edge_weight.npy")
    np.save(ds / "edge_weight.npy", w * 2)
    with pytest.raises(DiststError, match=r"edge_weight\.npy differ"):
        verify_plan(out, ds)
    shutil.rmtree(ds)
    with pytest.raises(DiststError, match="missing or not a distst dataset"):
        verify_plan(out)


def test_sampled_values_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "_SAMPLE_BLOCK", 64)
    monkeypatch.setattr(plan_mod, "_SAMPLE_BLOCKS", 4)
    monkeypatch.setattr(plan_mod, "_FULL_HASH_LIMIT", 256)
    arr = np.arange(4000, dtype=np.float32).reshape(100, 40, 1)
    path = tmp_path / "values.npy"
    np.save(path, arr)
    h = values_hash(path)
    assert h["hashed"].startswith("header+size+4x64B") and values_hash(path) == h
    arr[0, 0, 0] = -1  # first block is always sampled
    np.save(path, arr)
    assert values_hash(path)["sha256"] != h["sha256"]
    np.save(path, arr.reshape(100, 20, 2))  # same bytes, other shape: the header differs
    assert values_hash(path)["sha256"] != h["sha256"]


def test_bad_plans_and_parts(dataset, partition, tmp_path):
    with pytest.raises(DiststError, match="does not exist.*distst partition"):
        load_plan(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiststError, match="not a partition plan"):
        load_plan(tmp_path / "empty")
    out = write_plan(dataset, partition, 1, tmp_path / "plan")
    for bad in (-1, P, "0"):
        with pytest.raises(DiststError, match=rf"out of range.*{P} parts \(valid 0\.\.{P - 1}\)"):
            open_part(out, bad)
    np.save(out / "part_1" / "nodes.npy", np.arange(3))
    with pytest.raises(DiststError, match="nodes.npy does not match.*corrupt"):
        open_part(out, 1)
    (out / "part_2" / "values.npy").unlink()
    with pytest.raises(DiststError, match="part 2 of plan"):
        open_part(out, 2)
    # JSON nested deeper than json can descend: a RecursionError traceback before
    (out / "part_0" / "part.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DiststError, match="part 0 of plan"):
        open_part(out, 0)
    (out / "META.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DiststError, match="META.json is corrupt"):
        load_plan(out)
    (out / "META.json").write_text("{not json")
    with pytest.raises(DiststError, match="META.json is corrupt"):
        load_plan(out)


def test_bad_inputs_write_nothing(dataset, partition, tmp_path):
    with pytest.raises(DiststError, match=r"hops=-1"):
        write_plan(dataset, partition, -1, tmp_path / "p")
    with pytest.raises(DiststError, match=f"covers 10 nodes but dataset .* has {N}"):
        write_plan(dataset, Partition(np.zeros(10), 1, "hand"), 1, tmp_path / "p")
    with pytest.raises(DiststError, match=r"part\(s\) \[2\] of 3 own no node.*fewer parts"):
        write_plan(dataset, Partition(np.arange(N) % 2, 3, "hand"), 1, tmp_path / "p")
    with pytest.raises(DiststError, match="is the input .*would delete the input"):
        write_plan(dataset, partition, 1, dataset)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(DiststError, match="exists and is not a partition plan"):
        write_plan(dataset, partition, 1, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


@pytest.mark.parametrize("method", ["metis", "gpa"])
def test_make_plan_end_to_end(dataset, tmp_path, method):
    from distst.graph.partition.plan import make_plan

    out, part, quality = make_plan(dataset, tmp_path / "plan", method=method, parts=2,
                                   halo_hops=1, seed=0)
    meta = verify_plan(out, dataset)
    assert (meta.method, meta.num_parts, meta.halo_hops) == (method, 2, 1)
    assert np.array_equal(np.load(out / "assignment.npy"), part.assignment)
    assert part.sizes().min() > 0 and sum(s["num_inner"] for s in meta.sizes) == N
    assert "partition_seconds" in quality and "partition_seconds" not in meta.quality
    assert meta.quality["cut_edges"] == quality["cut_edges"]
    for i in range(2):
        assert meta.sizes[i]["num_halo"] == open_part(out, i).num_halo
    # same seed, same inputs: the same bytes
    again, _, _ = make_plan(dataset, tmp_path / "again", method=method, parts=2, halo_hops=1,
                            seed=0)
    assert all_files(out) == all_files(again)
    with pytest.raises(DiststError, match="hops=-2"):
        make_plan(dataset, tmp_path / "neg", method=method, parts=2, halo_hops=-2)
    assert not (tmp_path / "neg").exists()


def _bandwidth(part) -> float:
    """Median |i - j| over a part's edges between owned nodes, in local positions."""
    ei = np.asarray(part.network.edge_index)
    own = (ei[0] < part.num_inner) & (ei[1] < part.num_inner)
    return float(np.median(np.abs(ei[0][own] - ei[1][own])))


def test_an_rcm_plan_orders_each_parts_owned_nodes_near_their_neighbours(tmp_path):
    """order="rcm": each part owns the same nodes as in the ascending plan, in reverse
    Cuthill-McKee order (edges between owned nodes span fewer positions), with the same halo,
    local edges and series columns by global id; META.json says so."""
    from distst.graph.partition.plan import make_plan

    n = 400
    ds = save_network(synth_network(num_nodes=n, days=1, seed=5), tmp_path / "ds")
    make_plan(ds, tmp_path / "asc", method="metis", parts=2, halo_hops=1)
    make_plan(ds, tmp_path / "rcm", method="metis", parts=2, halo_hops=1, order="rcm")
    assert (load_plan(tmp_path / "asc").order, load_plan(tmp_path / "rcm").order) == \
        ("ascending", "rcm")
    for i in range(2):
        a, r = open_part(tmp_path / "asc", i), open_part(tmp_path / "rcm", i)
        assert r.inner_global.tolist() != a.inner_global.tolist()
        assert sorted(r.inner_global.tolist()) == a.inner_global.tolist()
        assert r.halo_global.tolist() == a.halo_global.tolist()
        assert _bandwidth(r) < 0.5 * _bandwidth(a)
        # the same columns and edges, found by global id
        pos = {g: k for k, g in enumerate(r.nodes.tolist())}
        at = [pos[g] for g in a.nodes.tolist()]
        assert np.array_equal(np.asarray(r.network.values)[:, at], np.asarray(a.network.values),
                              equal_nan=True)
        assert np.array_equal(r.deg[at], a.deg)
        edges = {(int(a.nodes[s]), int(a.nodes[d])) for s, d in np.asarray(a.network.edge_index).T}
        assert edges == {(int(r.nodes[s]), int(r.nodes[d]))
                         for s, d in np.asarray(r.network.edge_index).T}


def test_an_unknown_order_is_refused_before_anything_is_written(dataset, tmp_path):
    from distst.graph.partition.plan import make_plan

    with pytest.raises(DiststError, match="order 'bfs'.*ascending.*rcm"):
        make_plan(dataset, tmp_path / "p", method="metis", parts=2, order="bfs")
    assert not (tmp_path / "p").exists()
