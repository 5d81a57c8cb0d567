import numpy as np
import torch


def test_grid_synth_is_generated_once_and_cached(tmp_path):
    from distst.config import load_config
    from distst.data.network import load_network
    from distst.engine.bundle import ensure_dataset

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
    from distst.engine.bundle import local_coarsening

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
