#!/usr/bin/env python
"""Does the order of the sensors in memory change the cost of a training step? (issue 34)

GCGRU (the quickstart's: K = 3, hidden 32, one layer; batch ``--batch``) on random kNN graphs
(points uniform in the unit square, each node's k = 8 nearest neighbours, Gaussian weights),
a training step (forward + backward + Adam) timed, median of ``--steps`` after one warm-up,
with the sensors in three orders:

* ``drawn``: as the points were drawn (no relation between index and place: the worst case,
  and how a graph assembled from an unsorted sensor list arrives);
* ``rcm``: reverse Cuthill-McKee of the symmetrised graph (``scipy.sparse.csgraph``): small
  bandwidth, neighbours close in memory;
* ``grid``: sorted by a 2-D cell (rows of cells of about 8 points), a cheap spatial order.

The series and the targets are permuted with the graph, so every order computes the same
numbers; the script checks the loss equal across orders.

    .venv/bin/python scripts/bench_locality.py [--nodes 1000 4000 16000] [--batch 8]
    .venv/bin/python scripts/bench_locality.py --plan-parts 2 --orders ascending rcm \
        --nodes 32000 --batch 2    # one shard worker's step, partition.order
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def knn_graph(n: int, k: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 2))
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(pos).query(pos, k + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    sigma = dist.mean()
    dst = np.repeat(np.arange(n), k)
    src = idx.reshape(-1)
    w = np.exp(-(dist.reshape(-1) / sigma) ** 2).astype(np.float32)
    from distst.graph.adjacency import symmetrize

    # undirected, as `distst train` makes it for a Chebyshev model (data.symmetrize=max)
    ei, w = symmetrize(np.stack([src, dst]), w, "max", n)
    return pos, np.asarray(ei), np.asarray(w, np.float32)


def order_of(kind: str, pos, ei, n):
    if kind == "drawn":
        return np.arange(n)
    if kind == "grid":
        cells = max(1, int(np.sqrt(n / 8)))
        cx = np.minimum((pos[:, 0] * cells).astype(int), cells - 1)
        cy = np.minimum((pos[:, 1] * cells).astype(int), cells - 1)
        # boustrophedon rows: consecutive cells stay neighbours at the row ends
        cx = np.where(cy % 2 == 1, cells - 1 - cx, cx)
        return np.lexsort((pos[:, 0], cx, cy))
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    a = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n)).tocsr()
    return np.asarray(reverse_cuthill_mckee((a + a.T).tocsr(), symmetric_mode=True))


def bandwidth(ei) -> float:
    return float(np.median(np.abs(ei[0] - ei[1])))


def step_time(n: int, kind: str, batch: int, steps: int, threads: int) -> dict:
    from distst.nn.registry import build_model

    torch.set_num_threads(threads)
    pos, ei, w = knn_graph(n)
    perm = np.ascontiguousarray(order_of(kind, pos, ei, n), dtype=np.int64)  # new i = old perm[i]
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    ei_new = inv[ei]
    torch.manual_seed(0)
    model = build_model("gcgru", dict(
        num_nodes=n, input_dim=3, output_dim=1, input_len=12, horizon=12,
        edge_index=torch.as_tensor(ei_new), edge_weight=torch.as_tensor(w),
        out_degree=None, in_degree=None, steps_per_day=288, time_of_day=True,
        day_of_week=True), {"K": 3, "hidden_size": 32, "num_layers": 1})
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 12, n, 3, generator=g)[:, :, torch.as_tensor(perm)]
    y = torch.randn(batch, 12, n, 1, generator=g)[:, :, torch.as_tensor(perm)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, losses = [], []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = (model(x) - y).abs().mean()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
        else:
            losses.append(float(loss))
    t = statistics.median(times)
    return {"nodes": n, "order": kind, "median_bandwidth": bandwidth(ei_new), "step_s": t,
            "ms_per_1000": 1000 * t / (n / 1000), "first_loss": losses[0]}


def plan_step_time(n: int, order: str, parts: int, batch: int, steps: int, threads: int,
                   root: str) -> dict:
    """The training step of part 0 of a ``parts``-part METIS plan (2-hop halo) of a generated
    ``n``-sensor network (``distst data synth``'s kNN road graph, whose sensors come in no
    spatial order), its owned nodes ``order``-ed as ``partition.order`` does: what one shard
    worker computes."""
    import os

    from distst.config import DataConfig
    from distst.data.network import save_network
    from distst.data.synth import synth_network
    from distst.engine.bundle import build_bundle
    from distst.graph.partition.plan import make_plan, open_part
    from distst.nn.registry import build_model

    torch.set_num_threads(threads)
    data = os.path.join(root, f"synth-{n}")
    if not os.path.exists(data):
        save_network(synth_network(num_nodes=n, days=2, seed=0), data)
    plan = os.path.join(root, f"plan-{n}-{parts}-{order}")
    if not os.path.exists(plan):
        make_plan(data, plan, method="metis", parts=parts, halo_hops=2, order=order)
    part = open_part(plan, 0)
    bundle = build_bundle(DataConfig(path=data), data, part=part, notices=False)
    torch.manual_seed(0)
    model = build_model("gcgru", bundle.kwargs_for_model("gcgru"),
                        {"K": 3, "hidden_size": 32, "num_layers": 1})
    x, y = bundle.datasets["train"].batch(np.arange(batch) * 7)
    y = torch.nan_to_num(y)
    inner = part.num_inner
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        (model(x, targets=y) - y)[:, :, :inner].abs().mean().backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    ei = np.asarray(part.network.edge_index)
    own = (ei[0] < inner) & (ei[1] < inner)
    t = statistics.median(times)
    return {"nodes": n, "parts": parts, "order": order, "local_rows": part.num_local,
            "median_bandwidth": float(np.median(np.abs(ei[0][own] - ei[1][own]))),
            "step_s": t, "ms_per_1000_local": 1000 * t / (part.num_local / 1000)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--orders", nargs="+", default=["drawn", "rcm", "grid"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plan-parts", type=int, default=0, metavar="P",
                    help="time part 0 of a P-part plan of a generated network instead, with "
                         "--orders among ascending, rcm (partition.order)")
    args = ap.parse_args()
    if args.plan_parts:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="bench-locality-") as root:
            for n in args.nodes:
                for order in args.orders:
                    print(json.dumps(plan_step_time(n, order, args.plan_parts, args.batch,
                                                    args.steps, args.threads, root)),
                          flush=True)
        return
    for n in args.nodes:
        rows = [step_time(n, kind, args.batch, args.steps, args.threads) for kind in args.orders]
        base = rows[0]["first_loss"]
        for r in rows:
            # the same numbers in another order: equal losses up to float summation order
            assert abs(r["first_loss"] - base) <= 1e-4 * abs(base), (r, base)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
