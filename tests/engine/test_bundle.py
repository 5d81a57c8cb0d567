from pathlib import Path

import numpy as np
import pytest
import torch


def test_grid_synth_is_generated_once_and_cached(tmp_path):
    from distst.config import load_config
    from distst.data.network import load_network
    from distst.engine.provision import ensure_dataset

    cfg = load_config(None, ["model.name=hyperst_cnn", f"data.cache_dir={tmp_path}",
                             "data.synth.graph=grid", "data.synth.grid=[4, 5]",
                             "data.synth.days=2"])
    out = ensure_dataset(cfg.data, quiet=True)
    assert out.name.startswith("synth-grid-v") and "4x5" in out.name
    net = load_network(out)
    assert net.num_nodes == 20 and net.channels == ["inflow", "outflow"]
    assert net.num_steps == 2 * 24  # 60-minute steps by default
    mtime = (out / "values.npy").stat().st_mtime_ns
    assert ensure_dataset(cfg.data, quiet=True) == out
    assert (out / "values.npy").stat().st_mtime_ns == mtime


def test_local_coarsening_levels_chain_to_the_local_nodes():
    from distst.graph.coarsening import local_coarsening

    # a 6-node path: GPA pairs neighbours, so each level roughly halves it
    ei = np.array([[0, 1, 1, 2, 2, 3, 3, 4, 4, 5], [1, 0, 2, 1, 3, 2, 4, 3, 5, 4]])
    levels = local_coarsening(ei, np.ones(10), 6, 2)
    assert len(levels) == 2
    n_prev = 6
    for parent, edge_index, edge_weight, n in levels:
        # every node of the previous level sits in exactly one super-node, and none is empty
        assert parent.shape == (n_prev,) and parent.dtype == torch.long
        assert sorted(set(parent.tolist())) == list(range(n)) and n < n_prev
        assert edge_index.shape[1] == edge_weight.shape[0] and int(edge_index.max()) < n
        n_prev = n
    assert local_coarsening(ei, np.ones(10), 6, 0) == []


def test_coarsening_within_parts_never_merges_two_parts_and_contracts_every_edge():
    """Exchange mode's coarsening, in one process: GPA per part, numbered part by part; the
    coarse graph holds every edge of the graph between different super-nodes, cut ones too.
    With one part it is the plain coarsening; ``owned=k`` is the first k nodes' own GPA."""
    from distst.graph.coarsening import GraphCoarsening

    rng = np.random.default_rng(0)
    n = 24
    src, dst = rng.integers(0, n, 80), rng.integers(0, n, 80)
    ei = np.stack([np.r_[src, dst], np.r_[dst, src]])
    w = rng.uniform(0.1, 1.0, 80)
    ew = np.r_[w, w]
    plain = GraphCoarsening(ei, ew, n)
    for a, b in zip(plain(2), plain.within(np.zeros(n, dtype=np.int64))(2)):
        assert torch.equal(a[0], b[0]) and a[3] == b[3]
        assert torch.equal(a[1], b[1]) and torch.allclose(a[2], b[2])
    parts = (np.arange(n) >= 10).astype(np.int64)
    levels = plain.within(parts)(2)
    assign = np.arange(n)
    for parent, _, cew, m in levels:
        assign = parent.numpy()[assign]
        # a super-node's members share a part; part 0's super-nodes come first
        for c in range(m):
            assert len(set(parts[assign == c])) == 1
        first = assign[parts == 1].min()
        assert assign[parts == 0].max() < first
        # the coarse weights are the fine ones between different super-nodes, summed
        keep = (ei[0] != ei[1]) & (assign[ei[0]] != assign[ei[1]])
        sym = {}
        for s_, t_, ww in zip(ei[0][keep], ei[1][keep], ew[keep]):
            sym[(s_, t_)] = sym.get((s_, t_), 0.0) + ww  # duplicates add up
        und = {}
        for (s_, t_), ww in sym.items():
            und[(s_, t_)] = max(ww, sym.get((t_, s_), 0.0))
        assert float(cew.sum()) == pytest.approx(sum(und.values()), rel=1e-6)
    local = plain.within(np.where(np.arange(n) < 10, 0, 1))(2)
    mine = GraphCoarsening(ei, ew, n)(2, owned=10)
    sub0 = np.arange(n) < 10
    assign0 = np.arange(10)
    assign_all = np.arange(n)
    for (p_own, _, _, m_own), (p_all, _, _, _) in zip(mine, local):
        assign0 = p_own.numpy()[assign0]
        assign_all = p_all.numpy()[assign_all]
        assert np.array_equal(assign0, assign_all[sub0])  # part 0 is numbered first
        assert m_own == len(set(assign_all[sub0]))


def _directed_dataset(tmp_path):
    from distst.data.network import save_network
    from distst.data.synth import synth_network

    net = synth_network(num_nodes=20, days=2, seed=1)
    keep = np.random.default_rng(0).random(net.num_edges) < 0.6  # drop reverse edges
    net.edge_index, net.edge_weight = net.edge_index[:, keep], net.edge_weight[keep]
    return save_network(net, tmp_path / "directed"), net


def test_each_model_gets_the_graph_it_states_and_the_run_says_so_once(tmp_path, capsys):
    """Chebyshev models get the symmetrised edges (one notice per run, with the count), DCRNN
    the directed ones, a graph-free model whatever it declares; the rule is data.symmetrize."""
    from distst.config import DataConfig
    from distst.engine.bundle import build_bundle
    from distst.graph.adjacency import is_symmetric
    from distst.nn.registry import model_graph

    d, net = _directed_dataset(tmp_path)
    assert not is_symmetric(net.edge_index, net.edge_weight, net.num_nodes)
    assert model_graph("gcgru") == model_graph("stgcn") == model_graph("stunet") \
        == model_graph("hyperst_gcgru") == "undirected"
    assert model_graph("dcrnn") == model_graph("hyperst_dcgru") == "directed"
    assert model_graph("gru") is None
    bundle = build_bundle(DataConfig(day_of_week=False), d)
    capsys.readouterr()
    for _ in range(2):
        kw = bundle.kwargs_for_model("gcgru")
        ei, ew = kw["edge_index"].numpy(), kw["edge_weight"].numpy()
        assert is_symmetric(ei, ew, net.num_nodes)
    out = capsys.readouterr().out
    assert out.count("needs an undirected graph") == 1 and "no reverse edge" in out
    kw = bundle.kwargs_for_model("dcrnn")
    np.testing.assert_array_equal(kw["edge_index"].numpy(), net.edge_index)
    # sum rule: a one-way edge keeps its weight, a two-way pair adds up
    summed = build_bundle(DataConfig(day_of_week=False, symmetrize="sum"), d,
                          notices=False).kwargs_for_model("gcgru")
    assert float(summed["edge_weight"].sum()) >= float(kw["edge_weight"].sum()) * 2 - 1e-3
    # a worker's bundle (scaler given) stays quiet
    quiet = build_bundle(DataConfig(day_of_week=False), d,
                         scaler_state=bundle.scaler.state_dict())
    capsys.readouterr()
    quiet.kwargs_for_model("gcgru")
    assert "undirected" not in capsys.readouterr().out


def test_symmetrize_rule_is_checked_at_config_time():
    import pytest

    from distst.config import load_config
    from distst.errors import DiststError

    with pytest.raises(DiststError, match="data.symmetrize.*max, sum"):
        load_config(None, ["data.symmetrize=mean"])


def _plan_in_process(cfg, dataset_dir, q):
    import time

    import distst.graph.partition.plan as plan
    from distst.engine.provision import ensure_plan

    real = plan._dump_json

    def slow(*a, **k):  # the plan folder stays claimed long enough for both to meet
        time.sleep(0.7)
        return real(*a, **k)

    plan._dump_json = slow
    try:
        q.put(("ok", ensure_plan(cfg, dataset_dir)))
    except Exception as e:  # noqa: BLE001 - reported to the test
        q.put(("error", f"{type(e).__name__}: {e}"))


def test_two_runs_planning_the_same_cached_plan_at_once_share_it(tiny):
    """Two `distst train` at once on one machine plan the same cache folder: the second
    waits for the first's plan instead of being refused by its claim on the folder."""
    import multiprocessing as mp

    from distst.engine.provision import ensure_dataset

    cfg = tiny("runtime.workers=2", "runtime.mode=shard", "partition.parts=2", nodes=30)
    data = ensure_dataset(cfg.data)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_plan_in_process, args=(cfg, str(data), q)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [g[0] for g in got] == ["ok", "ok"], got
    assert got[0][1] == got[1][1]
    plans = Path(got[0][1]).parent
    assert sorted(p.name for p in plans.iterdir()) == [Path(got[0][1]).name]


def test_exchange_plans_the_filter_deep_boundary_and_takes_a_shallower_given_plan(tiny,
                                                                                  tmp_path):
    """Exchange mode plans the boundary a filter chains (2 hops for GCGRU at K = 3: one fetch
    per filter); a plan given with a 1-hop boundary still runs (a fetch per product), and one
    without a boundary is refused."""
    from distst.engine.provision import ensure_dataset, ensure_plan
    from distst.errors import DiststError
    from distst.graph.partition.plan import load_plan, make_plan

    cfg = tiny("runtime.workers=2", "runtime.mode=exchange", "partition.parts=2",
               "model.params.K=3", nodes=30)
    data = ensure_dataset(cfg.data)
    assert load_plan(ensure_plan(cfg, data)).halo_hops == 2
    for hops in (0, 1):
        make_plan(data, tmp_path / f"plan{hops}", method="metis", parts=2, halo_hops=hops)
    cfg.partition.plan = str(tmp_path / "plan1")
    assert ensure_plan(cfg, data) == str(tmp_path / "plan1")
    cfg.partition.plan = str(tmp_path / "plan0")
    with pytest.raises(DiststError, match="has no boundary.*--halo-hops 1"):
        ensure_plan(cfg, data)


def test_partition_order_rcm_plans_its_own_cached_plan(tiny):
    """partition.order=rcm: the cached plan is another folder (the ascending one stays
    valid for runs that ask for it) whose parts keep their owned nodes in RCM order."""
    from distst.engine.provision import ensure_dataset, ensure_plan
    from distst.graph.partition.plan import load_plan

    cfg = tiny("runtime.workers=2", "runtime.mode=shard", "partition.parts=2",
               "partition.order=rcm", nodes=30)
    data = ensure_dataset(cfg.data)
    rcm = ensure_plan(cfg, data)
    cfg.partition.order = "ascending"
    asc = ensure_plan(cfg, data)
    assert rcm != asc and rcm.endswith("-rcm")
    assert (load_plan(rcm).order, load_plan(asc).order) == ("rcm", "ascending")
