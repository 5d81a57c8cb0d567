"""One-process training and evaluation loops; the Ray runtime runs the same code per worker.

Shard semantics (``runtime.mode=shard``): worker i holds part i (inner nodes first, then its
halo). Every worker draws the same windows in the same order, so one step is one full-graph
batch. The loss of worker i is ``W * sum_i |e| / count`` where ``count`` is the number of
observed inner targets summed over all workers: DDP's gradient average then equals the
gradient of the full-graph masked MAE (over inner nodes, each node counted once).

Replicate semantics: every worker holds the whole graph; each epoch the training windows are
shuffled with a seed shared by all workers and cut into disjoint, equal slices (one per
rank); a global batch of ``train.batch_size`` windows is split evenly so that W workers take
the same optimiser steps as one. Evaluation sums absolute/squared errors and counts over
workers before dividing, so the reported metrics equal those of one process.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from distst.config import Config, null_value
from distst.data.windows import iterate_batches
from distst.engine.checkpoint import load_checkpoint, save_checkpoint
from distst.engine.context import Context, NullBar
from distst.engine.data import DataBundle, history_for_ha
from distst.errors import DiststError
from distst.metrics import StreamingMetrics, masked_error_sum
from distst.nn.common import inverse_sigmoid_decay
from distst.nn.registry import build_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def teacher_forcing_ratio(step: int, decay_steps: int) -> float:
    """DCRNN's inverse-sigmoid schedule (distst.nn.common); ``decay_steps <= 0`` disables it."""
    return inverse_sigmoid_decay(step, decay_steps) if decay_steps > 0 else 0.0


class Trainer:
    def __init__(self, cfg: Config, bundle: DataBundle, ctx: Context):
        self.cfg = cfg
        self.bundle = bundle
        self.ctx = ctx
        self.device = ctx.device
        self.null = null_value(cfg.data)
        self.shard = cfg.runtime.mode == "shard"
        # losses and metrics cover inner nodes [0, num_inner); halo nodes follow them
        self.num_inner = bundle.num_inner if bundle.num_inner is not None else bundle.network.num_nodes
        seed_everything(cfg.train.seed)
        params = dict(cfg.model.params)
        self.model = build_model(cfg.model.name, bundle.kwargs_for_model(cfg.model.name), params)
        self.model.to(self.device)
        self.trainable = any(p.requires_grad for p in self.model.parameters())
        # Per-node parameters (first dim = local nodes): initialised from the node's global id
        # so that a node starts equal in every shard that holds it, kept out of DDP in shard
        # mode (their shapes differ per part) and reduced by hand (see _reduce_node_grads).
        self.node_param_names = tuple(getattr(self.model, "node_parameters", ()))
        n_local = bundle.network.num_nodes
        self.global_ids = torch.as_tensor(
            bundle.global_ids if bundle.global_ids is not None else np.arange(n_local),
            dtype=torch.long, device=self.device)
        self.num_global = bundle.num_global_nodes or n_local
        self._init_node_params()
        if hasattr(self.model, "fit_history"):
            self.model.fit_history(*[t.to(self.device) for t in history_for_ha(bundle)])
        self.net = self.model
        if self.trainable and ctx.world_size > 1:
            # graph operators are non-persistent buffers that are equal on every rank; per-node
            # state must never be overwritten by rank 0's copy, hence no buffer broadcast.
            if self.shard and self.node_param_names:
                # DDP matches "{module}.{param}" names, which for a root parameter is
                # ".name"; plain names alone would be silently averaged (measured, torch 2.13)
                ignore = [n for n in self.node_param_names]
                ignore += [n if "." in n else f".{n}" for n in self.node_param_names]
                DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    self.model, ignore)
            with warnings.catch_warnings():
                # torch deprecates the flag, but its replacement still syncs at init, and
                # rank-local buffers (shard graphs) must not be synced: keep the old flag
                warnings.simplefilter("ignore", FutureWarning)
                self.net = DistributedDataParallel(self.model, broadcast_buffers=False)
        tc = cfg.train
        self.optimizer = (
            torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                             eps=tc.adam_eps)
            if self.trainable else None
        )
        self.scheduler = (
            torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=tc.lr_milestones,
                                                 gamma=tc.lr_gamma)
            if self.optimizer else None
        )
        self.mean, self.std = bundle.target_scale(self.device)
        self.epoch = 0
        self.global_step = 0
        self.best_val = math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.best_state: dict | None = None
        self.history: list[dict] = []

    # -- helpers -------------------------------------------------------------------------
    def _per_worker_batch(self, batch_size: int) -> int:
        if self.shard:  # every shard sees the whole global batch (for its own nodes)
            return batch_size
        return max(1, batch_size // self.ctx.world_size)

    def _window_split(self) -> tuple[int, int]:
        """(rank, world) for splitting windows: shards all take the same windows."""
        return (0, 1) if self.shard else (self.ctx.rank, self.ctx.world_size)

    def _loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss over observed targets (``pred``, ``y`` in original units).

        ``train.loss_scale=normalized`` divides the errors by the scaler's std, i.e. computes
        the loss on the scaled targets (ST-UNet, Sec. 4.2); it stays a sum over entries, so
        shard mode's count all-reduce below is exact either way."""
        tc = self.cfg.train
        std = self.std if tc.loss_scale == "normalized" else None
        if not self.shard:
            total, count = masked_error_sum(pred, y, tc.loss, null_value=self.null,
                                            delta=tc.huber_delta, scale=std)
            return total / count.clamp(min=1)
        pred, y = pred[:, :, : self.num_inner], y[:, :, : self.num_inner]
        if std is not None and std.dim() == 2:  # per-node std [N, C_t]: inner nodes only
            std = std[: self.num_inner]
        total, count = masked_error_sum(pred, y, tc.loss, null_value=self.null,
                                        delta=tc.huber_delta, scale=std)
        count = self.ctx.all_reduce_sum(count.to(torch.float64).reshape(1))
        return total * self.ctx.world_size / count.clamp(min=1.0).to(total.dtype)

    def _scale_targets(self, y: torch.Tensor) -> torch.Tensor:
        # y: [B, H, N, C_t] in original units with NaN; teacher forcing wants scaled, no NaN
        return torch.nan_to_num((y - self.mean) / self.std, nan=0.0)

    def _predict(self, x: torch.Tensor, y: torch.Tensor | None, teacher_forcing: float) -> torch.Tensor:
        targets = self._scale_targets(y) if y is not None and teacher_forcing > 0 else None
        out = self.net(x, targets=targets, teacher_forcing=teacher_forcing)
        # out: [B, H, N, C_t] scaled -> original units, where losses and metrics live
        return out * self.std + self.mean

    # -- per-node parameters ---------------------------------------------------------------
    def _node_params(self) -> list[tuple[str, torch.nn.Parameter]]:
        named = dict(self.model.named_parameters())
        return [(n, named[n]) for n in self.node_param_names]

    @torch.no_grad()
    def _init_node_params(self) -> None:
        std = float(getattr(self.model, "node_parameter_std", 0.1))
        for name, p in self._node_params():
            g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + zlib.crc32(name.encode()))
            full = torch.randn((self.num_global, *p.shape[1:]), generator=g) * std
            p.copy_(full.to(p.device)[self.global_ids])

    def _reduce_node_grads(self) -> None:
        """Sum every copy's gradient into its global row and hand each copy the total / W.

        Worker i's loss is W * (its share of the full-graph loss), so the summed gradient over
        copies, divided by W, is exactly the full-graph gradient of that node's parameters."""
        if not (self.shard and self.ctx.world_size > 1):
            return
        for _, p in self._node_params():
            if p.grad is None:
                continue
            full = p.grad.new_zeros((self.num_global, *p.shape[1:]))
            full.index_add_(0, self.global_ids, p.grad)
            self.ctx.all_reduce_sum(full)
            p.grad.copy_(full[self.global_ids] / self.ctx.world_size)

    def _clip(self, max_norm: float) -> float:
        """Scale the gradients to a total norm of at most ``max_norm`` (inf: leave them);
        returns the norm before scaling, the same number on every worker."""
        if not self.node_param_names:
            return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        # One norm for the whole model, every node counted once (by its owner), so that all
        # shards scale their gradients by the same factor as a single process would.
        node = set(self.node_param_names)
        grads = [p.grad for n, p in self.model.named_parameters() if p.grad is not None]
        shared = sum((p.grad.double().pow(2).sum() for n, p in self.model.named_parameters()
                      if n not in node and p.grad is not None), torch.zeros((), dtype=torch.float64))
        own = sum((p.grad[: self.num_inner].double().pow(2).sum()
                   for _, p in self._node_params() if p.grad is not None),
                  torch.zeros((), dtype=torch.float64))
        if self.shard:
            own = self.ctx.all_reduce_sum(own.reshape(1).cpu())[0]
        norm = float((shared.cpu() + own).sqrt())
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
        return norm

    def _globalise(self, local: torch.Tensor) -> torch.Tensor:
        """Local per-node rows -> the whole-graph tensor, each node from the part that owns it
        (collective in shard mode: every rank calls)."""
        full = local.new_zeros((self.num_global, *local.shape[1:]))
        own = slice(0, self.num_inner)
        full.index_add_(0, self.global_ids[own], local[own])
        if self.shard:
            self.ctx.all_reduce_sum(full)
        return full

    def _localise(self, full: torch.Tensor) -> torch.Tensor:
        return full.to(self.global_ids.device)[self.global_ids]

    def _global_node_state(self, state: dict) -> dict:
        """Replace local per-node rows by whole-graph tensors (collective: every rank calls)."""
        out = dict(state)
        for name in self.node_param_names:
            out[name] = self._globalise(state[name])
        return out

    def _local_node_state(self, state: dict) -> dict:
        out = dict(state)
        for name in self.node_param_names:
            if name in out and out[name].shape[0] == self.num_global:
                out[name] = self._localise(out[name])
        return out

    def _node_param_slots(self) -> dict[int, int]:
        """Optimizer state index -> local row count, for the per-node parameters."""
        return {i: p.shape[0] for i, (n, p) in enumerate(self.model.named_parameters())
                if n in self.node_param_names}

    def _global_optimizer_state(self) -> dict:
        """The optimizer state with the per-node rows of Adam's moments made whole-graph, so a
        resumed shard run (any partition) continues with every node's own moments
        (collective: every rank calls, in the same parameter order)."""
        opt = self.optimizer.state_dict()
        state = dict(opt["state"])
        for i, rows in self._node_param_slots().items():
            if i in state:
                state[i] = {k: self._globalise(v) if torch.is_tensor(v) and v.dim() >= 1
                            and v.shape[0] == rows else v for k, v in state[i].items()}
        return {**opt, "state": state}

    def _local_optimizer_state(self, opt: dict) -> dict:
        state = dict(opt["state"])
        for i in self._node_param_slots():
            key = i if i in state else str(i) if str(i) in state else None
            if key is not None:
                state[key] = {k: self._localise(v) if torch.is_tensor(v) and v.dim() >= 1
                              and v.shape[0] == self.num_global else v
                              for k, v in state[key].items()}
        return {**opt, "state": state}

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Trainer state for a checkpoint; per-node parameters are stored for the whole graph
        (collective in shard mode: every rank must call it)."""
        best = self._global_node_state(self.best_state) if self.best_state is not None else None
        return {
            "model": self._global_node_state(self.model.state_dict()),
            "optimizer": self._global_optimizer_state() if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_model": best,
            "history": self.history,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.model.load_state_dict(self._local_node_state(state["model"]))
        except RuntimeError as e:  # another model or other sizes: name the first mismatch
            detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()),
                          str(e).splitlines()[0])
            raise DiststError(
                f"the checkpoint's weights do not fit model {self.cfg.model.name} built from "
                f"this config ({detail}); use the config the checkpoint was trained with (the "
                "config.yaml in its run folder)") from None
        if self.optimizer and state.get("optimizer"):
            self.optimizer.load_state_dict(self._local_optimizer_state(state["optimizer"]))
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_val = float(state["best_val"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        best = state.get("best_model")
        self.best_state = self._local_node_state(best) if best is not None else None
        self.history = list(state.get("history", []))
        rng = state.get("rng")
        if rng:
            set_rng_state(rng)

    def _save(self, extra: dict | None = None) -> Path | None:
        """Every rank calls (the state gathers per-node rows); the main rank writes."""
        state = self.state_dict()
        if not self.ctx.is_main:
            return None
        tmp = Path(tempfile.mkdtemp(prefix="distst-ckpt-"))
        save_checkpoint(tmp, state, self.cfg, self.bundle, extra=extra)
        return tmp

    # -- loops ---------------------------------------------------------------------------
    def train_epoch(self) -> dict:
        tc = self.cfg.train
        ds = self.bundle.datasets["train"]
        bs = self._per_worker_batch(tc.batch_size)
        rank, world = self._window_split()
        batches = iterate_batches(ds, bs, shuffle=True, seed=tc.seed, epoch=self.epoch,
                                  rank=rank, world_size=world, drop_last=True)
        n_batches = len(ds) // (bs * world)
        if tc.max_batches_per_epoch:
            n_batches = min(n_batches, tc.max_batches_per_epoch)
        if n_batches == 0:
            raise DiststError(
                f"train.batch_size={tc.batch_size} is larger than the {len(ds)} training "
                "windows; lower train.batch_size"
            )
        self.net.train()
        total, count = 0.0, 0
        t0 = time.perf_counter()
        bar = (self.ctx.progress(n_batches, f"epoch {self.epoch + 1}/{tc.epochs}")
               if tc.progress else NullBar())
        for i, (x, y) in enumerate(batches):
            if i >= n_batches:
                break
            x, y = x.to(self.device), y.to(self.device)
            tf = teacher_forcing_ratio(self.global_step, tc.cl_decay_steps)
            pred = self._predict(x, y, tf)
            loss = self._loss(pred, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._reduce_node_grads()
            # the norm of the reduced gradients is the same on every worker, so all of them
            # stop together at a non-finite loss (one worker's NaN reaches all through DDP)
            norm = self._clip(tc.grad_clip if tc.grad_clip > 0 else math.inf)
            if not math.isfinite(norm):
                self._non_finite(loss, i, n_batches)
            self.optimizer.step()
            self.global_step += 1
            total += float(loss.detach())
            count += 1
            elapsed = time.perf_counter() - t0
            wps = (i + 1) * bs * world / max(elapsed, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}", win_s=f"{wps:.0f}")
        bar.close()
        elapsed = time.perf_counter() - t0
        # mean training loss over workers, so every rank logs the same number
        red = self.ctx.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64))
        return {
            "train_loss": float(red[0] / max(red[1], 1.0)),
            "train_time_s": elapsed,
            "windows_per_s": n_batches * bs * world / max(elapsed, 1e-9),
        }

    def _non_finite(self, loss: torch.Tensor, i: int, n_batches: int):
        tc = self.cfg.train
        last = (f"the last good checkpoint (epoch {self.epoch}) is kept in {self.ctx.run_dir}"
                if self.epoch else "no epoch finished, so there is no checkpoint")
        raise DiststError(
            f"training diverged at epoch {self.epoch + 1}, step {i + 1} of {n_batches}: loss "
            f"{float(loss.detach()):.4g}, gradient norm not finite; {last}. Likely causes: "
            f"the learning rate (train.lr={tc.lr:g}; try a tenth of it, or train.grad_clip) "
            "or extreme values in the data (check 'distst data info')"
        )

    @torch.no_grad()
    def evaluate(self, split: str, max_batches: int = 0, model: torch.nn.Module | None = None) -> StreamingMetrics:
        """Streaming masked metrics on ``split``, summed over all workers."""
        net = model if model is not None else self.net
        ds = self.bundle.datasets[split]
        rank, world = self._window_split()
        bs = max(1, self.cfg.train.eval_batch_size // world)
        metrics = StreamingMetrics(self.bundle.horizon, null_value=self.null)
        net.eval()
        n = self.num_inner
        for i, (x, y) in enumerate(iterate_batches(ds, bs, shuffle=False, seed=0, epoch=0,
                                                   rank=rank, world_size=world,
                                                   drop_last=False, even=False)):
            if max_batches and i >= max_batches:
                break
            x = x.to(self.device)
            out = net(x, targets=None, teacher_forcing=0.0)
            # [B, H, N_local, C] -> inner nodes only; halo nodes are scored by their owner
            metrics.update((out * self.std + self.mean)[:, :, :n], y[:, :, :n])
        state = self.ctx.all_reduce_sum(metrics.state())
        return StreamingMetrics.from_state(state, self.bundle.horizon, null_value=self.null)

    def _truncate_log(self) -> None:
        """After a resume, metrics.jsonl keeps the epochs up to the checkpoint's only: the
        epochs after it are trained again and logged again, one row per epoch."""
        path = self.ctx.run_dir / "metrics.jsonl"
        if not (self.ctx.is_main and path.is_file()):
            return
        rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in rows if json.loads(ln).get("epoch", 0) <= self.epoch]
        if len(keep) != len(rows):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(ln + "\n" for ln in keep))
            tmp.replace(path)

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if self.ctx.is_main:
            self.ctx.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.ctx.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def fit(self) -> dict:
        tc = self.cfg.train
        if any(self.bundle.excluded_windows.values()):
            self.ctx.log("windows left out because they straddle a time gap: " + ", ".join(
                f"{k} {v}" for k, v in self.bundle.excluded_windows.items()))
        resume = self.ctx.latest_checkpoint()
        if resume is not None:
            state, _ = load_checkpoint(resume, map_location=self.device)
            self.load_state_dict(state["trainer"])
            self._truncate_log()
            self.ctx.log(f"resuming from {resume} at epoch {self.epoch}")
        if self.trainable:
            while self.epoch < tc.epochs and self.bad_epochs < tc.patience:
                t0 = time.perf_counter()
                record = {"epoch": self.epoch + 1, **self.train_epoch()}
                val = self.evaluate("val", tc.max_val_batches).compute()
                record.update({"val_mae": val["avg"]["mae"], "val_rmse": val["avg"]["rmse"],
                               "val_mape": val["avg"]["mape"],
                               "lr": self.optimizer.param_groups[0]["lr"],
                               "teacher_forcing": teacher_forcing_ratio(self.global_step,
                                                                        tc.cl_decay_steps)})
                self.scheduler.step()
                self.epoch += 1
                if record["val_mae"] < self.best_val:
                    self.best_val, self.best_epoch, self.bad_epochs = record["val_mae"], self.epoch, 0
                    self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    self.bad_epochs += 1
                record["epoch_time_s"] = time.perf_counter() - t0
                record["best_val_mae"] = self.best_val
                self._log(record)
                self.ctx.log(f"epoch {record['epoch']}/{tc.epochs}: train_loss {record['train_loss']:.4f} "
                             f"val_mae {record['val_mae']:.4f} ({record['windows_per_s']:.0f} windows/s, "
                             f"{record['epoch_time_s']:.1f}s)")
                self.ctx.report(record, self._save())
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)
        final = self.final_metrics()
        ckpt = self._save(extra={"test": final})
        self.ctx.report({"epoch": self.epoch, "final": True, **_flat(final)}, ckpt)
        if self.ctx.is_main:
            tmp = self.ctx.run_dir / "test_metrics.json.tmp"
            tmp.write_text(json.dumps(final, indent=2))
            tmp.replace(self.ctx.run_dir / "test_metrics.json")
        return final

    def final_metrics(self) -> dict:
        tc = self.cfg.train
        steps = tuple(tc.report_steps)
        minutes = self.bundle.network.step_minutes
        out = {
            "model": self.cfg.model.name,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epoch,
            "test": self.evaluate("test").report(steps=steps, step_minutes=minutes),
        }
        if tc.baseline_ha and self.cfg.model.name != "ha":
            ha = build_model("ha", self.bundle.kwargs_for_model("ha"))
            ha.to(self.device)
            ha.fit_history(*[t.to(self.device) for t in history_for_ha(self.bundle)])
            out["ha"] = self.evaluate("test", model=ha).report(steps=steps, step_minutes=minutes)
        return out


def _flat(final: dict) -> dict:
    flat = {}
    for who in ("test", "ha"):
        for horizon, vals in final.get(who, {}).items():
            for k, v in vals.items():
                flat[f"{who}_{horizon}_{k}"] = v
    return flat


def rng_state() -> dict:
    """torch, numpy and Python RNG states as tensors and plain lists only, so that a
    checkpoint loads with ``torch.load(weights_only=True)`` (no pickled numpy objects)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    n, p = rng["numpy"], rng["python"]
    if isinstance(n, dict):
        n = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
             n["gauss"])
    np.random.set_state(n)  # a tuple: a checkpoint written before the dict form
    if isinstance(p, dict):
        p = (p["version"], tuple(p["internal"]), p["gauss_next"])
    random.setstate(p)
