import math

import pytest

from distst.config import (Config, apply_overrides, config_from_dict, load_config, null_value,
                           read_yaml, save_config)
from distst.errors import DiststError


def test_defaults_and_overrides_are_typed():
    cfg = load_config(None, ["train.epochs=3", "train.lr=1", "model.params.hidden_size=32",
                             "data.split=[0.6,0.2,0.2]", "runtime.workers=1"])
    assert cfg.train.epochs == 3
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == 1.0  # int widened to float
    assert cfg.model.params == {"hidden_size": 32}
    assert cfg.data.split == [0.6, 0.2, 0.2]


@pytest.mark.parametrize("override, fragment", [
    ("train.epoch=3", "valid keys: epochs"),
    ("trian.epochs=3", "valid keys: data, model, train, runtime, partition"),
    ("train.epochs=abc", "expected int"),
    ("train.epochs=1.5", "expected int"),
    ("data.split=0.5", "expected a list"),
    ("data.split=[0.5,0.5,0.5]", "sum"),
    ("runtime.mode=shards", "choices: replicate, shard, exchange, local"),
    ("partition.halo_hops=-1", ">= 0"),
    ("partition.parts=0", ">= 1"),
    ("runtime.workers=0", ">= 1"),
    ("data.null_value=zero", "neither 'nan' nor a number"),
    ("train.loss=hubr", "choices: mae, mse, mae_mse, huber"),
    ("train.huber_delta=0", "'train.huber_delta' must be finite and > 0"),
    ("train.huber_delta=-1.5", "'train.huber_delta' must be finite and > 0"),
    ("train.huber_delta=.inf", "'train.huber_delta' must be finite and > 0"),
    ("train.loss_scale=scaled", "choices: original, normalized"),
    ("train.adam_eps=0", "'train.adam_eps' must be > 0"),
    ("noequals", "key.sub=value"),
])
def test_bad_keys_and_values_name_the_key(override, fragment):
    with pytest.raises(DiststError, match=None) as e:
        load_config(None, [override])
    assert fragment in str(e.value)


def test_yaml_include_and_roundtrip(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {epochs: 7, lr: 0.5}\nmodel: {name: gru, params: {hidden_size: 8}}\n")
    (tmp_path / "run.yaml").write_text("include: [base.yaml]\ntrain: {lr: 0.1}\nmodel: {params: {num_layers: 1}}\n")
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.1
    assert cfg.model.name == "gru" and cfg.model.params == {"hidden_size": 8, "num_layers": 1}
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(DiststError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(DiststError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "loop.yaml").write_text("include: [loop.yaml]\n")
    with pytest.raises(DiststError, match="includes itself"):
        read_yaml(tmp_path / "loop.yaml")


def test_null_value_parsing():
    cfg = Config()
    assert math.isnan(null_value(cfg.data))
    cfg = config_from_dict(apply_overrides({}, ["data.null_value=0"]))
    assert null_value(cfg.data) == 0.0


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.rglob("*.yaml"))
    assert (root / "quickstart.yaml") in files
    for f in files:
        if "sweeps" in f.parts or "studies" in f.parts:  # checked by their own loaders
            continue
        load_config(f)


def test_synth_graph_choices_and_grid_shape_are_checked():
    from distst.config import load_config

    with pytest.raises(DiststError, match=r"data.synth.graph.*'ring'.*knn, delaunay, grid"):
        load_config(None, ["model.name=gcgru", "data.synth.graph=ring"])
    with pytest.raises(DiststError, match=r"data.synth.grid.*\[height, width\]"):
        load_config(None, ["model.name=gcgru", "data.synth.graph=grid", "data.synth.grid=[4]"])


# -- YAML as distst reads it (issue 30) ----------------------------------------------------
def test_an_include_fan_out_reads_each_file_once(tmp_path, monkeypatch):
    """Six levels, each naming the next file ten times: 10^6 reads and merges before (a hang);
    each file is read once now, and the result is the same mapping."""
    from pathlib import Path

    from distst.config import read_yaml

    for i in range(6):
        (tmp_path / f"f{i}.yaml").write_text(
            "include: [" + ", ".join([f"f{i + 1}.yaml"] * 10) + "]\n" + f"k{i}: {i}\n")
    (tmp_path / "f6.yaml").write_text("train: {epochs: 3}\n")
    reads = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real(self))
    data = read_yaml(tmp_path / "f0.yaml")
    assert data == {"train": {"epochs": 3}, **{f"k{i}": i for i in range(6)}}
    assert sorted(reads) == [f"f{i}.yaml" for i in range(7)]


def test_an_include_that_is_a_folder_or_a_symlink_loop_is_named_as_such(tmp_path):
    import os

    from distst.config import read_yaml

    (tmp_path / "models").mkdir()
    (tmp_path / "a.yaml").write_text("include: [models]\n")
    with pytest.raises(DiststError, match=r"models \(included by .*a\.yaml\) is a folder"):
        read_yaml(tmp_path / "a.yaml")
    os.symlink(tmp_path / "loop.yaml", tmp_path / "loop.yaml")
    with pytest.raises(DiststError, match=r"loop\.yaml cannot be opened \(Too many levels of "
                                          r"symbolic links\)"):
        read_yaml(tmp_path / "loop.yaml")


def test_anchors_merges_and_overrides_still_work(tmp_path):
    """YAML's own ways of repeating and overriding are not duplicate keys."""
    from distst.config import load_yaml

    text = ("base: &b {epochs: 5, lr: 0.01}\n"
            "train:\n  <<: *b\n  epochs: 2\n"
            "milestones: &m [10, 20]\nagain: *m\n")
    data = load_yaml(text, "t.yaml")
    assert data["train"] == {"epochs": 2, "lr": 0.01} and data["again"] == [10, 20]


def test_yaml_bounds_name_the_file(tmp_path):
    from distst.config import load_yaml

    with pytest.raises(DiststError, match=r"big\.yaml is 2,097,152 bytes"):
        load_yaml(b"#" * (2 << 20), "big.yaml")
    deep = "a: " + "[" * 40 + "]" * 40
    with pytest.raises(DiststError, match=r"deep\.yaml: values nested more than 32 levels"):
        load_yaml(deep, "deep.yaml")
    with pytest.raises(DiststError, match=r"o\.yaml: key 'x' appears twice in one mapping "
                                          r"\(lines 1 and 3\)"):
        load_yaml("x: 1\ny: 2\nx: 3\n", "o.yaml")
