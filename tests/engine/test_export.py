"""`distst export`: a TorchScript program plus metadata that loads with plain torch (distst
made unimportable), equals `distst predict` to 1e-5, and for every model of the zoo either
exports and equals the eager model or is refused by name."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from distst.cli import main
from distst.config import load_config
from distst.engine.entry import restore_best, train_local
from distst.engine.export import forecaster, trace
from distst.engine.predict import predict
from distst.errors import DiststError
from distst.nn.registry import MODELS
from raw_files import trained_los_run
from tiny_models import TINY

#: the README's loader, as a user without distst runs it: raw windows of the dataset in,
#: forecasts out
LOADER = r"""
import json, sys
sys.modules["distst"] = None  # the artifact must not need distst
import numpy as np, torch
art, data, starts = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]))
meta = json.load(open(f"{art}/meta.json"))
program = torch.jit.load(f"{art}/model.ts")
values, stamps = np.load(f"{data}/values.npy"), np.load(f"{data}/timestamps.npy")
rows = starts[:, None] + np.arange(meta["input_len"])
with torch.no_grad():
    out = program(torch.from_numpy(values[rows].astype(np.float32)), torch.from_numpy(stamps[rows]))
np.save(f"{art}/check.npy", out.numpy())
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    return d, trained_los_run(d, "e", seed=2)


def test_the_artifact_loads_without_distst_and_equals_predict(trained, capsys):
    d, run = trained
    art = d / "artifact"
    assert main(["export", str(run), "--out", str(art)]) == 0
    assert "gcgru (epoch 1) exported" in capsys.readouterr().out
    meta = json.loads((art / "meta.json").read_text())
    assert meta["sensor_ids"] == [f"s{i}" for i in range(12)]
    assert (meta["channels"], meta["target_channels"]) == (["speed"], ["speed"])
    assert (meta["input_len"], meta["horizon"], meta["step_minutes"]) == (12, 12, 5.0)
    assert meta["config"]["model"]["name"] == "gcgru"
    starts = restore_best(run).bundle.splits["test"]
    res = subprocess.run([sys.executable, "-c", LOADER, str(art), str(d / "data"),
                          json.dumps(starts.tolist())], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = np.load(art / "check.npy")
    want = predict(run, split="test").values
    assert got.shape == want.shape == (len(starts), 12, 12, 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # a second export replaces the first whole; a foreign folder is never overwritten
    assert main(["export", str(run), "--out", str(art)]) == 0
    (d / "notes").mkdir()
    (d / "notes" / "mine.txt").write_text("keep")
    assert main(["export", str(run), "--out", str(d / "notes")]) == 2
    assert (d / "notes" / "mine.txt").read_text() == "keep"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_exports_and_equals_itself(name, tmp_path):
    """Each model trained one step, traced, and checked on windows the trace never saw,
    with a missing input among them."""
    extra = (["data.synth.graph=grid", "data.synth.grid=[4, 5]", "data.synth.days=4"]
             if name == "hyperst_cnn" else ["data.synth.nodes=15", "data.synth.days=3"])
    cfg = load_config(None, [
        f"data.cache_dir={tmp_path.parent / 'distst-cache'}", f"runtime.storage={tmp_path}",
        "runtime.name=r", f"model.name={name}",
        "model.params=" + yaml.safe_dump(TINY.get(name, {}), default_flow_style=True).strip(),
        "train.epochs=1", "train.max_batches_per_epoch=1", "train.max_val_batches=1",
        "train.max_test_batches=1", "train.progress=false", "train.threads=1",
        "train.batch_size=8", *extra])
    with contextlib.redirect_stdout(io.StringIO()):
        train_local(cfg)
    trainer = restore_best(tmp_path / "r")
    try:
        program = trace(trainer)
    except DiststError as e:  # a refusal must name the model and say why
        pytest.fail(f"{name} was refused: {e}")
    bundle = trainer.bundle
    starts = np.asarray(bundle.splits["val"], dtype=np.int64)[:5]
    rows = starts[:, None] + np.arange(bundle.input_len)
    net = bundle.network
    values = torch.from_numpy(np.asarray(net.values, np.float32)[rows])
    values[1, 3, 2, 0] = float("nan")
    stamps = torch.from_numpy(np.asarray(net.timestamps, np.int64)[rows])
    with torch.no_grad():
        want = forecaster(trainer)(values, stamps)
        got = program(values, stamps)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_model_whose_trace_differs_is_refused_by_name(trained, monkeypatch):
    """A forward that branches on the batch size: tracing freezes one branch, the check on a
    batch of another size finds it."""
    _, run = trained
    trainer = restore_best(run)
    real = trainer.model.forward

    def branching(x, **kw):
        out = real(x, **kw)
        return out * 2 if x.shape[0] == 2 else out  # traced at 2, checked at 3

    monkeypatch.setattr(trainer.model, "forward", branching)
    with pytest.raises(DiststError, match=r"model gcgru cannot be exported: its traced program "
                                          r"differs from the model on a batch of another size"):
        trace(trainer)
