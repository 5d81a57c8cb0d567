"""The training loop: one process, the same code on every Ray Train worker.

``Trainer.train_epoch`` shows a step in order: batch, forward, loss, backward, reduce, clip,
step, report. What differs between modes is not in the loop: who is which worker is the
:class:`distst.layout.Layout`'s, which nodes a worker owns and how gradients and per-node
state are reduced is the strategy's (:func:`distst.engine.parallelize.parallelize`, whose
touch points the step names), every collective goes through
:mod:`distst.engine.collectives`, and where checkpoints and metrics go is the
:class:`distst.engine.context.Context`'s business (a plain process or Ray Train).

Windows: each epoch the training windows are shuffled with a seed shared by all workers and
cut into disjoint, equal slices, one per replica (the parts of one replica take the same
windows); a global batch of ``train.batch_size`` windows is split evenly so that W workers take
the same optimiser steps as one. Evaluation sums absolute/squared errors and counts over
workers before dividing, so the reported metrics equal those of one process.
"""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import torch

from distst.config import Config, null_value
from distst.data.windows import iterate_batches, num_batches
from distst.engine.checkpoint import load_checkpoint, save_checkpoint
from distst.engine.collectives import Collectives
from distst.engine.context import Context, NullBar
from distst.engine.bundle import DataBundle, history_for_ha
from distst.engine.parallelize import parallelize
from distst.engine.logs import RunLog, read_metrics_log
from distst.engine.memory import HeapTrimmer
from distst.engine.timing import StepClock, ring_bytes_sent
from distst.errors import DiststError
from distst.layout import Layout
from distst.metrics import StreamingMetrics, masked_error_sum, observed_mask
from distst.nn.common import inverse_sigmoid_decay
from distst.nn.registry import build_model, require_recompute


#: the run's final metrics (model, best epoch, test and HA tables), written by the main rank
TEST_METRICS = "test_metrics.json"


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
        self.layout = Layout.of(cfg)
        #: every collective of this worker (groups made here: every rank builds one)
        self.comm = Collectives(self.layout, ctx.rank, ctx.world_size, self.device)
        seed_everything(cfg.train.seed)
        params = dict(cfg.model.params)
        self.model = build_model(cfg.model.name, bundle.kwargs_for_model(cfg.model.name), params)
        require_recompute(cfg.model.name, cfg.train.recompute)
        self.model.recompute = cfg.train.recompute == "step"
        # the host allocator's held memory: CPU tensors only (CUDA has its own caching)
        self.trim_heap = (HeapTrimmer(cfg.train.heap_slack_mib)
                          if cfg.train.heap_slack_mib and self.device.type == "cpu" else None)
        self.model.step_hook = self.trim_heap
        self.model.to(self.device)
        self.trainable = any(p.requires_grad for p in self.model.parameters())
        if hasattr(self.model, "fit_history"):
            self.model.fit_history(*[t.to(self.device) for t in history_for_ha(bundle)])
        # the layout's strategy, applied from outside the model
        self.par = parallelize(self.model, cfg, self.layout, self.comm, bundle.owned)
        # the module the loop calls: DDP around self.model with several workers
        self.wrapped = self.par.wrapped
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
        # within the current epoch (train.checkpoint_every_steps): batches done and their
        # summed loss, so that a run restored mid-epoch ends the epoch as if never stopped
        self.step_in_epoch = 0
        self.epoch_loss = [0.0, 0]
        share = self._worker_batch(cfg.train.batch_size)
        if cfg.train.micro_batches > share:
            raise DiststError(
                f"train.micro_batches={cfg.train.micro_batches} is more than the {share} "
                f"windows this worker takes per step (train.batch_size={cfg.train.batch_size}"
                + (f" over {self.layout.replicas} replicas" if share != cfg.train.batch_size
                   else "") + f"); set train.micro_batches to at most {share}")
        self.clock = StepClock(self.device, cfg.train.step_timing and self.trainable)
        self.run_log = RunLog(ctx.run_dir, tensorboard=cfg.train.tensorboard)

    # -- helpers -------------------------------------------------------------------------
    def _window_split(self) -> tuple[int, int]:
        """(index, count) of this worker's slice of the windows (:meth:`Layout.window_split`);
        one process standing in for a layout takes them all."""
        if self.ctx.world_size == 1:
            return 0, 1
        return self.layout.window_split(self.ctx.rank)

    def _worker_batch(self, batch_size: int) -> int:
        """This worker's windows of a global batch (:meth:`Layout.worker_batch`)."""
        return self.layout.worker_batch(batch_size) if self.ctx.world_size > 1 else batch_size

    def _loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss over observed targets (``pred``, ``y`` in original units)."""
        return self.par.mean_loss(*self._error_sum(pred, y))

    def _error_sum(self, pred: torch.Tensor, y: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the training loss's per-entry errors, count of observed targets) over the
        owned nodes. ``train.loss_scale=normalized`` divides the errors by the scaler's std,
        i.e. computes the loss on the scaled targets (ST-UNet, Sec. 4.2); it stays a sum over
        entries, so shard mode's count all-reduce is exact either way."""
        tc = self.cfg.train
        return masked_error_sum(self.par.inner(pred), self.par.inner(y), tc.loss,
                                null_value=self.null, delta=tc.huber_delta,
                                scale=self._loss_std())

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor, teacher_forcing: float,
                          timed: bool = False) -> torch.Tensor:
        """Forward and backward of this worker's share of one batch, in ``train.micro_batches``
        pieces (``torch.tensor_split`` along the batch) whose gradients add up to the whole
        share's: every piece's error sum is divided by the whole batch's count of observed
        targets over all workers (:meth:`Parallel.global_count`, once). DDP all-reduces with
        the last piece's backward, or (exchange mode, timed steps) after it, in
        :meth:`Parallel.reduce_grads`. Returns the step's loss, detached.

        Equal to the whole batch at once up to float rounding for every model without
        randomness inside a step: dropout masks and teacher forcing's coin flips are drawn
        per piece (the same distribution, other draws)."""
        tc, par, clock = self.cfg.train, self.par, self.clock
        count = par.global_count(observed_mask(par.inner(y), self.null).sum())
        pieces = min(tc.micro_batches, x.shape[0])
        xs, ys = torch.tensor_split(x, pieces), torch.tensor_split(y, pieces)
        loss = None
        for j in range(pieces):
            # strategy: DDP's reduce overlapped with the last piece's backward, or (exchange
            # mode, and timed steps, which take it apart to time it: engine.timing) left to
            # reduce_grads
            with par.step_context(timed, sync=j == pieces - 1):
                pred = self._predict(xs[j], ys[j], teacher_forcing)
                total, _ = self._error_sum(pred, ys[j])
                piece = par.scale_loss(total, count)
                clock.lap("forward")
                piece.backward()
                clock.lap("backward")
            loss = piece.detach() if loss is None else loss + piece.detach()
        return loss

    def _loss_std(self) -> torch.Tensor | None:
        """The scale the training errors are divided by (``train.loss_scale``), owned rows."""
        std = self.std if self.cfg.train.loss_scale == "normalized" else None
        if std is not None and std.dim() == 2:  # per-node std [N, C_t]: owned nodes only
            std = self.par.inner_rows(std)
        return std

    def _scale_targets(self, y: torch.Tensor) -> torch.Tensor:
        # y: [B, H, N, C_t] in original units with NaN; teacher forcing wants scaled, no NaN
        return torch.nan_to_num((y - self.mean) / self.std, nan=0.0)

    def _predict(self, x: torch.Tensor, y: torch.Tensor | None, teacher_forcing: float) -> torch.Tensor:
        targets = self._scale_targets(y) if y is not None and teacher_forcing > 0 else None
        return self.forecast(self.wrapped, x, targets, teacher_forcing)

    def forecast(self, net: torch.nn.Module, x: torch.Tensor,
                 targets: torch.Tensor | None = None, teacher_forcing: float = 0.0
                 ) -> torch.Tensor:
        """``net``'s forecast of ``x`` in the data's units, fp32, under ``train.precision``
        (bf16: autocast around the forward only, so that the loss, the metrics and the
        de-normalisation below stay fp32)."""
        bf16 = self.cfg.train.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = net(x, targets=targets, teacher_forcing=teacher_forcing)
        # out: [B, H, N, C_t] scaled -> original units, where losses and metrics live
        return out.float() * self.std + self.mean

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Trainer state for a checkpoint; per-node parameters are stored for the whole graph
        (collective in shard mode: every rank must call it)."""
        shard = self.par
        best = shard.global_state(self.best_state) if self.best_state is not None else None
        return {
            "model": shard.global_state(self.model.state_dict()),
            "optimizer": (shard.global_optimizer_state(self.optimizer.state_dict())
                          if self.optimizer else None),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_model": best,
            "history": self.history,
            "step_in_epoch": self.step_in_epoch,
            "epoch_loss": list(self.epoch_loss),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.model.load_state_dict(self.par.local_state(state["model"]))
        except RuntimeError as e:  # another model or other sizes: name the first mismatch
            detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()),
                          str(e).splitlines()[0])
            raise DiststError(
                f"the checkpoint's weights do not fit model {self.cfg.model.name} built from "
                f"this config ({detail}); use the config the checkpoint was trained with (the "
                "config.yaml in its run folder)") from None
        if self.optimizer and state.get("optimizer"):
            self.optimizer.load_state_dict(self.par.local_optimizer_state(state["optimizer"]))
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_val = float(state["best_val"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        best = state.get("best_model")
        self.best_state = self.par.local_state(best) if best is not None else None
        self.history = list(state.get("history", []))
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        self.epoch_loss = list(state.get("epoch_loss", [0.0, 0]))
        rng = state.get("rng")
        if rng:
            set_rng_state(rng)

    def _checkpoint(self, metrics: dict, extra: dict | None = None) -> None:
        """Report ``metrics`` with a checkpoint of the trainer's state. Every rank calls (the
        state gathers per-node rows, and Ray wants a report from each); the main rank writes
        the checkpoint into a folder the context removes again, whatever happens."""
        state = self.state_dict()
        if not self.ctx.is_main:
            self.ctx.report(metrics, None)
            return
        with self.ctx.checkpoint_dir() as d:
            save_checkpoint(d, state, self.cfg, self.bundle, extra=extra)
            self.ctx.report(metrics, d)

    # -- loops ---------------------------------------------------------------------------
    def train_epoch(self) -> dict:
        tc = self.cfg.train
        ds = self.bundle.datasets["train"]
        rank, world = self._window_split()
        bs = self._worker_batch(tc.batch_size)
        start = self.step_in_epoch
        batches = iterate_batches(ds, bs, shuffle=True, seed=tc.seed, epoch=self.epoch,
                                  rank=rank, world_size=world, drop_last=True,
                                  start_batch=start)
        n_batches = num_batches(len(ds), bs, world, drop_last=True)
        if tc.max_batches_per_epoch:
            n_batches = min(n_batches, tc.max_batches_per_epoch)
        if n_batches == 0:
            raise DiststError(
                f"train.batch_size={tc.batch_size} is larger than the {len(ds)} training "
                "windows; lower train.batch_size"
            )
        self.wrapped.train()
        # carried: the summed loss over all workers of the batches before a mid-epoch restore
        # (held by the main rank only, so that the sum below counts it once)
        carried = self.epoch_loss if self.ctx.is_main else [0.0, 0]
        total, count = 0.0, 0
        t0 = time.perf_counter()
        bar = (self.ctx.progress(n_batches, f"epoch {self.epoch + 1}/{tc.epochs}")
               if tc.progress else NullBar())
        bar.update(start)
        clock, timed = self.clock, self.clock.enabled
        clock.start()
        exchanged = self.par.exchange_bytes()
        par = self.par
        for i, (x, y) in enumerate(batches, start=start):
            if i >= n_batches:
                break
            x, y = x.to(self.device), y.to(self.device)
            clock.lap("data")
            tf = teacher_forcing_ratio(self.global_step, tc.cl_decay_steps)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._forward_backward(x, y, tf, timed)
            if timed:
                par.wait_for_all()
                clock.lap("idle")
            # strategy: what backward did not reduce, and the per-node rows to their owners
            payload = par.reduce_grads(timed)
            clock.lap("allreduce")
            # the norm of the reduced gradients is the same on every worker, so all of them
            # stop together at a non-finite loss (one worker's NaN reaches all through DDP)
            norm = par.clip(tc.grad_clip if tc.grad_clip > 0 else math.inf)
            if not math.isfinite(norm):
                self._non_finite(loss, i, n_batches)
            self.optimizer.step()
            if self.trim_heap is not None:
                self.trim_heap()
            clock.lap("optimizer")
            now = par.exchange_bytes()
            clock.end_step(self.global_step, payload,
                           ring_bytes_sent(payload, self.ctx.world_size), now - exchanged)
            exchanged = now
            self.global_step += 1
            total += float(loss.detach())
            count += 1
            elapsed = time.perf_counter() - t0
            wps = (i + 1 - start) * bs * world / max(elapsed, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}", win_s=f"{wps:.0f}")
            every = tc.checkpoint_every_steps
            if every and (i + 1) % every == 0 and i + 1 < n_batches:
                red = self.comm.sum_books([carried[0] + total, carried[1] + count])
                self.step_in_epoch, self.epoch_loss = i + 1, [float(red[0]), int(red[1])]
                self._checkpoint({"epoch": self.epoch, "step": self.global_step,
                                  "partial": True})
            clock.start()  # bookkeeping above is no phase of the next step
        self.step_in_epoch, self.epoch_loss = 0, [0.0, 0]
        bar.close()
        elapsed = time.perf_counter() - t0
        # mean training loss over workers, so every rank logs the same number
        red = self.comm.sum_books([carried[0] + total, float(carried[1] + count)])
        return {
            "train_loss": float(red[0] / max(red[1], 1.0)),
            "train_time_s": elapsed,
            "windows_per_s": (n_batches - start) * bs * world / max(elapsed, 1e-9),
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
        net = model if model is not None else self.wrapped
        ds = self.bundle.datasets[split]
        rank, world = self._window_split()
        bs = self._worker_batch(self.cfg.train.eval_batch_size)
        metrics = StreamingMetrics(self.bundle.horizon, null_value=self.null)
        net.eval()
        for i, (x, y) in enumerate(iterate_batches(ds, bs, shuffle=False, seed=0, epoch=0,
                                                   rank=rank, world_size=world,
                                                   drop_last=False, even=False)):
            if max_batches and i >= max_batches:
                break
            x = x.to(self.device)
            out = self.forecast(net, x)
            # [B, H, N_local, C] -> owned nodes only; halo nodes are scored by their owner
            metrics.update(self.par.inner(out), self.par.inner(y))
        state = self.comm.sum_books(metrics.state())
        return StreamingMetrics.from_state(state, self.bundle.horizon, null_value=self.null)

    def _truncate_log(self) -> None:
        """After a resume, metrics.jsonl keeps the epochs up to the checkpoint's only: the
        epochs after it are trained again and logged again, one row per epoch."""
        path = self.ctx.run_dir / "metrics.jsonl"
        if not (self.ctx.is_main and path.is_file()):
            return
        rows = [ln for ln in path.read_bytes().decode(errors="replace").splitlines() if ln.strip()]
        keep = [r for r in read_metrics_log(path) if r["epoch"] <= self.epoch]
        if len(keep) != len(rows):  # later epochs, or a last line cut short
            path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if self.ctx.is_main:
            self.run_log.write(record)

    def _save_step_times(self) -> None:
        """This worker's timed steps and what they processed (train.step_timing)."""
        if not self.clock.enabled:
            return
        bs = self._worker_batch(self.cfg.train.batch_size)
        shard = self.par
        self.clock.save(self.ctx.run_dir, self.ctx.rank, self.ctx.world_size, {
            "node": self.ctx.node, "mode": self.cfg.runtime.mode,
            # the global batch: windows one optimiser step consumes over all workers
            "windows_per_step": bs * self._window_split()[1],
            "worker_windows_per_step": bs, "inner_nodes": shard.num_inner,
            "local_nodes": int(shard.global_ids.numel()), "global_nodes": shard.num_global,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "threads": torch.get_num_threads(), "device": str(self.device)})

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
                               "val_mape": val["avg"]["mape"], "val_mae_by_step": val["mae"],
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
                self._save_step_times()
                self.ctx.log(f"epoch {record['epoch']}/{tc.epochs}: train_loss {record['train_loss']:.4f} "
                             f"val_mae {record['val_mae']:.4f} ({record['windows_per_s']:.0f} windows/s, "
                             f"{record['epoch_time_s']:.1f}s)")
                self._checkpoint(record)
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)
        self.run_log.close()
        final = self.final_metrics()
        self._checkpoint({"epoch": self.epoch, "final": True, **_flat(final)},
                         extra={"test": final})
        if self.ctx.is_main:
            (self.ctx.run_dir / TEST_METRICS).write_text(json.dumps(final, indent=2))
        return final

    def final_metrics(self) -> dict:
        tc = self.cfg.train
        steps = tuple(tc.report_steps)
        minutes = self.bundle.network.step_minutes
        test = self.evaluate("test", tc.max_test_batches)
        out = {
            "model": self.cfg.model.name,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epoch,
            "test": test.report(steps=steps, step_minutes=minutes),
            # every horizon step (index h-1 = step h, step_minutes apart), for plots
            "mae_by_step": {"step_minutes": minutes, "test": test.compute()["mae"]},
        }
        if tc.baseline_ha and self.cfg.model.name != "ha":
            ha = build_model("ha", self.bundle.kwargs_for_model("ha"))
            ha.to(self.device)
            ha.fit_history(*[t.to(self.device) for t in history_for_ha(self.bundle)])
            ha_metrics = self.evaluate("test", tc.max_test_batches, model=ha)
            out["ha"] = ha_metrics.report(steps=steps, step_minutes=minutes)
            out["mae_by_step"]["ha"] = ha_metrics.compute()["mae"]
        return out


def _flat(final: dict) -> dict:
    """``test_avg_mae``-style keys, so that Tune's result tables show the test metrics;
    distst itself reads them from the run's test_metrics.json."""
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
