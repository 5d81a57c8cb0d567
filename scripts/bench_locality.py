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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--orders", nargs="+", default=["drawn", "rcm", "grid"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for n in args.nodes:
        rows = [step_time(n, kind, args.batch, args.steps, args.threads) for kind in args.orders]
        base = rows[0]["first_loss"]
        for r in rows:
            # the same numbers in another order: equal losses up to float summation order
            assert abs(r["first_loss"] - base) <= 1e-4 * abs(base), (r, base)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
