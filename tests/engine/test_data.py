

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
