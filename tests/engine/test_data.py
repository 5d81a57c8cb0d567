import numpy as np
import torch


def test_grid_synth_is_generated_once_and_cached(tmp_path):
    from distst.config import load_config
    from distst.data.network import load_network
    from distst.engine.data import ensure_dataset

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
    from distst.engine.data import local_coarsening

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
