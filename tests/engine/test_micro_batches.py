"""train.micro_batches: a worker's share of a batch in pieces whose gradients add up to the
whole share's, in every mode (one process, replicate, shard, exchange), with DDP reducing
once per step, and whole runs that train what the undivided batch trains."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml

from distst.config import load_config
from distst.data.windows import iterate_batches
from distst.engine.bundle import build_bundle
from distst.engine.context import LocalContext
from distst.engine.entry import open_worker_data, prepare_workers, train_local
from distst.engine.provision import ensure_dataset
from distst.engine.trainer import Trainer
from distst.errors import DiststError
from process_group import GroupContext, run_group
from tiny_models import TINY

#: every model a road network feeds (HyperST-CNN reads a city grid); no dropout, no teacher
#: forcing, so a piece's forward is the whole batch's rows
MODELS = [m for m in TINY if m != "hyperst_cnn"]
#: float32 sums in another order (pieces, then the pieces' sum)
ROUNDOFF = 2e-5


def _params(name):
    return f"model.params={yaml.safe_dump(TINY[name], default_flow_style=True).strip()}"


def _first_batch(trainer):
    ds = trainer.bundle.datasets["train"]
    rank, world = trainer._window_split()
    x, y = next(iter(iterate_batches(ds, trainer._worker_batch(trainer.cfg.train.batch_size),
                                     shuffle=True, seed=0, epoch=0, rank=rank,
                                     world_size=world, drop_last=True)))
    return x.to(trainer.device), y.to(trainer.device)


def _grads(trainer, x, y, micro):
    trainer.cfg.train.micro_batches = micro
    trainer.optimizer.zero_grad(set_to_none=True)
    loss = trainer._forward_backward(x, y, 0.0)
    trainer.par.reduce_grads()
    return float(loss), {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                         if p.grad is not None}


def _worst(a: dict, b: dict) -> float:
    """Largest difference of two gradient sets, relative to the largest gradient."""
    assert a.keys() == b.keys() and a
    scale = max(float(g.abs().max()) for g in a.values())
    return max(float((a[k] - b[k]).abs().max()) for k in a) / max(scale, 1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_pieces_add_up_to_the_whole_batch_in_one_process(tiny, name, tmp_path):
    cfg = tiny("runtime.mode=local", "train.cl_decay_steps=0", _params(name), model=name)
    bundle = build_bundle(cfg.data, ensure_dataset(cfg.data))
    trainer = Trainer(cfg, bundle, LocalContext(tmp_path))
    x, y = _first_batch(trainer)
    assert x.shape[0] == 32
    loss1, whole = _grads(trainer, x, y, 1)
    loss3, pieces = _grads(trainer, x, y, 3)  # 11 + 11 + 10 windows
    assert loss3 == pytest.approx(loss1, rel=ROUNDOFF)
    assert _worst(whole, pieces) < ROUNDOFF


def _group_case(rank: int, jobs, out: str) -> None:
    """Each job's first batch on this worker, whole and in 3 pieces, with DDP's all-reduces
    counted; the worker's numbers go to ``out/rank_R.json``."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    res = {}
    for name, job in jobs:
        ctx = GroupContext(str(job.cfg.runtime.storage))
        ctx.keeps_fetch_records = False
        dataset_dir, part = open_worker_data(job.cfg, job.dataset_dir, job.plan_dir, ctx)
        bundle = build_bundle(job.cfg.data, dataset_dir, scaler_state=job.scaler, part=part)
        trainer = Trainer(job.cfg, bundle, ctx)
        calls = [0]
        if isinstance(trainer.wrapped, DistributedDataParallel):
            def counted(state, bucket):
                calls[0] += 1
                return allreduce_hook(state, bucket)

            trainer.wrapped.register_comm_hook(trainer.wrapped.process_group, counted)
        x, y = _first_batch(trainer)
        loss1, whole = _grads(trainer, x, y, 1)
        reduced1, calls[0] = calls[0], 0
        loss3, pieces = _grads(trainer, x, y, 3)
        res[name] = {"worst": _worst(whole, pieces), "loss": [loss1, loss3],
                     "ddp_reduces": [reduced1, calls[0]], "windows": int(x.shape[0])}
    (Path(out) / f"rank_{rank}.json").write_text(json.dumps(res))


def test_pieces_add_up_in_replicate_shard_and_exchange_with_one_reduce_per_step(
        tmp_path, overrides_for):
    modes = {"replicate": ["runtime.workers=2"],
             "shard": ["partition.parts=2", "partition.halo_hops=1"],
             "exchange": ["partition.parts=2", "model.params.node_embedding_dim=3"]}
    jobs = []
    for mode, extra in modes.items():
        d = tmp_path / mode
        d.mkdir()
        cfg = load_config(None, overrides_for(d, f"runtime.mode={mode}",
                                              "train.cl_decay_steps=0", *extra))
        jobs.append((mode, prepare_workers(cfg)))
    run_group(_group_case, 2, pickle.loads(pickle.dumps(jobs)), str(tmp_path))
    by_rank = [json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in (0, 1)]
    for mode in modes:
        for res in (by_rank[0][mode], by_rank[1][mode]):
            assert res["worst"] < ROUNDOFF, (mode, res)
            assert res["loss"][1] == pytest.approx(res["loss"][0], rel=ROUNDOFF), (mode, res)
            # replicate: each worker takes half the batch; shard and exchange: all of it
            assert res["windows"] == (16 if mode == "replicate" else 32)
            whole, pieces = res["ddp_reduces"]
            if mode == "exchange":  # reduced after backward (reduce_grads), never inside it
                assert whole == pieces == 0, res
            else:  # DDP's buckets once per step, with the last piece
                assert whole > 0 and pieces == whole, res


def test_a_run_in_micro_batches_trains_the_undivided_run(tiny):
    _, plain = train_local(tiny("runtime.mode=local", "train.cl_decay_steps=0"))
    run_dir, pieces = train_local(tiny("runtime.mode=local", "train.cl_decay_steps=0",
                                       "train.micro_batches=4", "runtime.name=micro"))
    assert pieces["test"]["avg"]["mae"] == pytest.approx(plain["test"]["avg"]["mae"], rel=1e-4)
    log = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]


def test_more_micro_batches_than_windows_is_refused(tiny):
    with pytest.raises(DiststError, match=r"train.micro_batches=64 is more than the 32 "
                       r"windows.*at most 32"):
        train_local(tiny("runtime.mode=local", "train.micro_batches=64"))
    with pytest.raises(DiststError, match=r"train.micro_batches.*must be >= 1"):
        tiny("train.micro_batches=0")
