"""distst's segment softmax (distst.nn.layers.sparse) against PyG's torch_geometric.utils.softmax.

HimNet's sparse adaptive graph normalises a score per edge over each row's k-hop neighbours,
for a batch of samples at once (scores [B, E]). PyG's softmax works on the first dimension
(src [E, *]), so the batch goes last there. Forward + backward, CPU, median of repeats.

    .venv/bin/python scripts/bench_segment_softmax.py --nodes 2000 --degree 30 --batch 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch_geometric.utils import softmax as pyg_softmax

from distst.nn.layers.sparse import segment_softmax


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--degree", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    n, e = args.nodes, args.nodes * args.degree
    row = torch.sort(torch.randint(0, n, (e,), generator=g)).values  # entries sorted by row
    scores = torch.randn(args.batch, e, generator=g, requires_grad=True)
    scores_t = scores.detach().t().contiguous().requires_grad_(True)  # [E, B] for PyG

    def ours():
        segment_softmax(scores, row, n).sum().backward()

    def pyg():
        pyg_softmax(scores_t, row, num_nodes=n, dim=0).sum().backward()

    def pyg_batch_first():  # HimNet's [B, E] layout: transposed in and out
        pyg_softmax(scores.t(), row, num_nodes=n, dim=0).t().sum().backward()

    a = segment_softmax(scores.detach(), row, n)
    b = pyg_softmax(scores_t.detach(), row, num_nodes=n, dim=0).t()
    t_ours, t_pyg = _time(ours, args.repeats), _time(pyg, args.repeats)
    t_pyg_b = _time(pyg_batch_first, args.repeats)
    print(f"N={n} E={e} B={args.batch} threads={args.threads}: max |diff| "
          f"{float((a - b).abs().max()):.2e}; distst {t_ours * 1e3:.1f} ms, "
          f"PyG {t_pyg * 1e3:.1f} ms on [E, B], {t_pyg_b * 1e3:.1f} ms on [B, E] "
          f"(forward + backward, median of {args.repeats})")


if __name__ == "__main__":
    main()
