"""A trained run as a self-contained artifact (``distst export``): a TorchScript program that
loads with plain torch, without distst, and forecasts from raw windows.

The program is the run's best model with everything that made its inputs baked in: the input
channels, the scaler, the time-of-day / day-of-week encoding and the graph operators (sparse
constants of the traced program). It takes

- ``values`` float32 ``[B, L, N, C]``: a window of L steps of every channel of the dataset
  (``meta.json``'s ``channels``), sensors in ``sensor_ids`` order, in the data's units, NaN
  where missing;
- ``timestamps`` int64 ``[B, L]``: the steps' times in nanoseconds since 1970 (the data's
  wall clock, as ``timestamps.npy`` holds them);

and returns float32 ``[B, H, N, C_t]``: the forecasts of the target channels in the data's
units, H steps after the window. ``meta.json`` beside ``model.ts`` holds the sensor ids, the
channels, the sizes, the step, the scaler's statistics, the time encoding and the run's
resolved config.

Why TorchScript (``torch.jit.trace``) and not ``torch.export``: the graph products are sparse
CSR constants, which ``torch.export`` 2.13 cannot trace (its fake tensors refuse a CSR tensor).
Tracing records one path through the model, so every export is checked: the program must
equal the model on a second batch of another size and other data (to 1e-5); a model whose
forward branches on its input fails that check and is refused by name.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distst.errors import DiststError

FORMAT = "distst-export-v1"
PROGRAM = "model.ts"
META = "meta.json"
NS_PER_DAY = 86_400 * 10**9
#: the program must equal the model to this (relative to the forecasts' scale)
TOLERANCE = 1e-5


class Forecaster(nn.Module):
    """Raw window in, forecasts in the data's units out (see the module docstring); the
    preprocessing is :class:`distst.data.windows.WindowDataset`'s, in torch."""

    def __init__(self, model: nn.Module, input_channels: list[int], offset: np.ndarray,
                 scale: np.ndarray, target_mean: torch.Tensor, target_std: torch.Tensor,
                 time_of_day: bool, day_of_week: bool):
        super().__init__()
        self.model = model
        self.register_buffer("input_channels", torch.as_tensor(input_channels))
        # float32 like the windows: (x - offset) * (1 / scale), NaN -> 0 (the training mean)
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32))
        self.register_buffer("inv_scale", torch.as_tensor(
            (1.0 / scale).astype(np.float32)))
        self.register_buffer("mean", target_mean.float())
        self.register_buffer("std", target_std.float())
        self.time_of_day, self.day_of_week = time_of_day, day_of_week

    def forward(self, values: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        x = values.index_select(-1, self.input_channels)  # [B, L, N, C_in]
        z = (x - self.offset) * self.inv_scale
        z = torch.where(torch.isnan(z), torch.zeros_like(z), z)
        feats = [z]
        b, steps, n = z.shape[0], z.shape[1], z.shape[2]
        days = torch.div(timestamps, NS_PER_DAY, rounding_mode="floor")  # [B, L]
        if self.time_of_day:
            tod = (timestamps - days * NS_PER_DAY).double() / NS_PER_DAY
            tod = tod.float().clamp(max=float(np.nextafter(np.float32(1), np.float32(0))))
            feats.append(tod[:, :, None, None].expand(b, steps, n, 1))  # [B, L] -> [B, L, N, 1]
        if self.day_of_week:
            # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
            dow = (torch.remainder(days + 3, 7).double() / 7.0).float()
            feats.append(dow[:, :, None, None].expand(b, steps, n, 1))
        out = self.model(torch.cat(feats, dim=-1))  # [B, H, N, C_t], scaled
        return out.float() * self.std + self.mean


def forecaster(trainer) -> Forecaster:
    """The eager :class:`Forecaster` of a restored run (``restore_best``)."""
    bundle = trainer.bundle
    train = bundle.datasets["train"]
    offset, scale = bundle.scaler.params(channels=bundle.input_channels)
    mean, std = bundle.target_scale(torch.device("cpu"))
    return Forecaster(trainer.model.eval(), list(bundle.input_channels), offset, scale, mean,
                      std, train.add_time_of_day, train.add_day_of_week).eval()


def _example(bundle, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw windows of the run's data starting at ``starts``: (values, timestamps)."""
    net, lin = bundle.network, bundle.input_len
    rows = starts[:, None] + np.arange(lin)[None, :]  # [B, L]
    values = torch.from_numpy(np.asarray(net.values[rows.reshape(-1)], dtype=np.float32)
                              .reshape(len(starts), lin, net.num_nodes, net.num_channels))
    return values, torch.from_numpy(np.asarray(net.timestamps, dtype=np.int64)[rows])


def trace(trainer) -> torch.jit.ScriptModule:
    """The traced program, checked against the eager model on another batch; refuses a model
    whose program differs (it branches on its input) or that cannot be traced."""
    name = trainer.cfg.model.name
    eager = forecaster(trainer)
    for p in eager.parameters():  # an inference program: its outputs need no autograd graph
        p.requires_grad_(False)
    bundle = trainer.bundle
    starts = np.asarray(bundle.splits["test"] if len(bundle.splits["test"]) else
                        bundle.splits["train"], dtype=np.int64)
    if len(starts) < 5:
        raise DiststError(f"run of model {name}: fewer than 5 windows to trace and check the "
                          "export with")
    first = _example(bundle, starts[:2])
    # another size, other windows, and a missing value: what the check must hold on
    second_starts = starts[np.linspace(2, len(starts) - 1, 3).astype(np.int64)]
    second = _example(bundle, second_starts)
    second[0][0, 0, 0, 0] = float("nan")
    try:
        # the tracer's warnings (shape checks and constants it freezes) are what the check
        # below settles; they would only alarm the user
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.jit.trace(eager, first, check_trace=False, strict=False)
    except Exception as e:  # noqa: BLE001 - any tracing failure refuses this model
        raise DiststError(f"model {name} cannot be exported: tracing it failed "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    with torch.no_grad():
        want, got = eager(*second), program(*second)
    scale = float(want.abs().max().clamp_min(1.0))
    diff = float((want - got).abs().max()) if want.shape == got.shape else float("inf")
    if not diff <= TOLERANCE * scale:
        raise DiststError(
            f"model {name} cannot be exported: its traced program differs from the model on "
            f"a batch of another size by {diff:.3g} (shapes {tuple(got.shape)} vs "
            f"{tuple(want.shape)}), so its forward depends on the batch or the data in a way "
            "tracing freezes; use distst predict for it")
    return program


def describe(trainer) -> dict:
    """What a caller of the forecaster needs to know (sizes, ids, channels, scaler, time
    encoding, the run's config): an export's ``meta.json``, a service's ``/metadata``."""
    bundle, cfg = trainer.bundle, trainer.cfg
    net = bundle.network
    train = bundle.datasets["train"]
    offset, scale = bundle.scaler.params()
    return {
        "model": cfg.model.name, "epoch": trainer.epoch,
        "inputs": {"values": "float32 [B, input_len, num_nodes, len(channels)], data units, "
                             "NaN where missing",
                   "timestamps": "int64 [B, input_len], ns since 1970 (the data's clock)"},
        "outputs": "float32 [B, horizon, num_nodes, len(target_channels)], data units",
        "sensor_ids": [str(s) for s in net.node_ids], "channels": list(net.channels),
        "input_channels": [net.channels[c] for c in bundle.input_channels],
        "target_channels": [net.channels[c] for c in bundle.target_channels],
        "input_len": bundle.input_len, "horizon": bundle.horizon,
        "step_minutes": net.step_minutes, "num_nodes": net.num_nodes,
        "time_encoding": {"time_of_day": train.add_time_of_day,
                          "day_of_week": train.add_day_of_week,
                          "rule": "time of day = ns since midnight / 86400e9; day of week = "
                                  "weekday / 7, Monday = 0; no time zone"},
        "scaler": {"offset": np.asarray(offset).tolist(), "scale": np.asarray(scale).tolist(),
                   "channels": list(net.channels)},
        "dataset": bundle.dataset_dir, "config": cfg.to_dict(),
    }


def export_run(run, out: str | Path) -> dict:
    """Writes ``out/model.ts`` and ``out/meta.json`` for the best model of ``run`` (whole or
    not at all); returns the metadata."""
    from distst.engine.checkpoint import resolve_checkpoint
    from distst.engine.entry import restore_best
    from distst.storage import atomic_dir, location, output_dir

    trainer = restore_best(run)
    program = trace(trainer)
    meta = {"format": FORMAT, **describe(trainer),
            "checkpoint": str(resolve_checkpoint(run)), "torch": torch.__version__}
    dest = location(out)
    if dest.is_local:
        p = dest.local
        if p.is_file() or (p.is_dir() and any(p.iterdir()) and not (p / META).is_file()):
            raise DiststError(f"--out {out}: exists and is not a distst export (no {META}); "
                              "choose a new folder")
        with atomic_dir(p) as d:  # whole or not at all
            _write(d, program, meta)
    else:
        with output_dir(str(out), META, "export") as d:
            d.mkdir(parents=True, exist_ok=True)
            _write(d, program, meta)
    return meta


def _write(d: Path, program, meta: dict) -> None:
    program.save(str(d / PROGRAM))
    (d / META).write_text(json.dumps(meta, indent=1))
