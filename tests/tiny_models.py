"""Tiny hyperparameters per registered model, shared by the model contract and shard tests
(a uniquely named module: tests/ is on sys.path through its conftest)."""

TINY: dict[str, dict] = {
    "gru": {"hidden_size": 16, "num_layers": 1},
    "lstm": {"hidden_size": 16, "num_layers": 1},
    "gcgru": {"K": 2, "hidden_size": 16, "num_layers": 1},
    "dcrnn": {"K": 2, "hidden_size": 16, "num_layers": 1},
    "stgcn": {"channels": [8, 4, 8], "dropout": 0.0, "output_hidden": 16},
    "hyperst_lstm_g": {"spatial_widths": [8, 4], "hidden_sizes": [8]},
    "hyperst_lstm_d": {"spatial_widths": [8, 4], "hidden_sizes": [16]},
    "hyperst_gcgru": {"K": 2, "hidden_size": 16, "num_layers": 1, "spatial_widths": [8, 4]},
    "hyperst_dcgru": {"K": 2, "hidden_size": 16, "num_layers": 1, "spatial_widths": [8, 4]},
    "hyperst_cnn": {"channels": [16, 8], "spatial_widths": [8, 4]},
    "himnet": {"hidden_size": 16, "tod_embedding_dim": 4, "node_embedding_dim": 4,
               "st_embedding_dim": 4},
    "stid": {"input_embedding_dim": 8, "node_embedding_dim": 8, "tod_embedding_dim": 4,
             "dow_embedding_dim": 0, "num_layers": 2, "dropout": 0.0},
    "stunet": {"K": 2, "hidden_size": 8, "levels": 1, "dilation": 2},
}
