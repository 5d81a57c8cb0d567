#!/usr/bin/env python
"""Benchmark: distst's fused sparse GCGRU cell vs the PyG-ChebConv GConvGRU reference.

The reference is PyTorch Geometric Temporal's ``GConvGRU`` when it can be imported, otherwise
(the usual case: its package imports torch_sparse) the line-by-line replica in
``distst.nn.reference`` built from ``torch_geometric.nn.ChebConv``. The reference batches as PyG
users do: B disjoint copies of the graph (features ``[B*N, F]``, offset edge_index).

Measured per training step = forward + backward (gradients of all weights), median of
``--repeats`` after ``--warmup`` (``--stat min`` on a busy machine):

* ``cell``: one cell step (distst includes the [B, N, F] -> node-major transposes);
* ``seq``: a 12-step encoder sequence, the cell applied 12 times (state carried);
* ``layer`` (distst only): the same sequence as the GCGRU model's encoder runs it, the input
  convolutions of all steps in one expansion.

Outputs are checked equal (max abs difference) after copying the reference's weights.

    .venv/bin/python scripts/bench_graphconv.py [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from distst.nn.layers.cells import GCGRUCell
from distst.nn.layers.graph import GraphOperator


def knn_graph(num_nodes: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random geometric graph: points in the unit square, each node receives edges from its k
    nearest neighbours; Gaussian-kernel weights (sigma = mean kNN distance)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(num_nodes, 2, generator=g)
    d = torch.cdist(pos, pos)
    d.fill_diagonal_(float("inf"))
    dist, nbr = d.topk(k, largest=False)  # [N, k]
    src = nbr.reshape(-1)
    dst = torch.arange(num_nodes).repeat_interleave(k)
    sigma = dist.mean()
    w = torch.exp(-(dist.reshape(-1) / sigma) ** 2)
    return torch.stack([src, dst]), w


def load_reference():
    try:  # the real thing, if this environment can import it
        from torch_geometric_temporal.nn.recurrent import GConvGRU  # type: ignore

        return GConvGRU, "torch_geometric_temporal.nn.recurrent.GConvGRU"
    except Exception:  # ImportError, or torch_sparse missing underneath
        from distst.nn.reference import PygGConvGRU

        return PygGConvGRU, "distst.nn.reference.PygGConvGRU (PyG ChebConv x6, as GConvGRU)"


STAT = {"median": statistics.median, "min": min}


def timed(fn, warmup: int, repeats: int, stat: str = "median") -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return STAT[stat](times)


def run_config(ref_cls, ei, ew, n, batch, fin, hidden, K, steps, warmup, repeats, seed,
               stat="median"):
    from distst.nn.reference import batched_edge_index

    torch.manual_seed(seed)
    ref = ref_cls(fin, hidden, K)
    with torch.no_grad():  # non-zero biases so that the bias copy is exercised too
        for name, p in ref.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    cell = GCGRUCell(fin, hidden, K)
    cell.load_from_gconv_gru(ref)
    graph = GraphOperator(ei, ew, n, "sym")
    bei, bew = batched_edge_index(ei, ew, n, batch)

    xs = torch.randn(steps, batch, n, fin)  # [T, B, N, F]
    h0 = torch.randn(batch, n, hidden) * 0.5  # [B, N, H]
    gout = torch.randn(batch, n, hidden)  # fixed upstream gradient

    # --- correctness --------------------------------------------------------------------
    with torch.no_grad():
        ref_h = ref(xs[0].reshape(batch * n, fin), bei, bew, h0.reshape(batch * n, hidden))
        op, op_t = graph()
        our_h = cell(op, op_t, xs[0].transpose(0, 1).contiguous(),
                     h0.transpose(0, 1).contiguous()).transpose(0, 1)
        diff_cell = (ref_h.view(batch, n, hidden) - our_h).abs().max().item()
        rh, oh = None, torch.zeros(n, batch, hidden)
        for t in range(steps):
            rh = ref(xs[t].reshape(batch * n, fin), bei, bew, rh)
            oh = cell(op, op_t, xs[t].transpose(0, 1).contiguous(), oh)
        diff_seq = (rh.view(batch, n, hidden) - oh.transpose(0, 1)).abs().max().item()

    # --- timing -------------------------------------------------------------------------
    def ref_cell():
        ref.zero_grad(set_to_none=True)
        out = ref(xs[0].reshape(batch * n, fin), bei, bew, h0.reshape(batch * n, hidden))
        (out.view(batch, n, hidden) * gout).sum().backward()

    def our_cell():
        cell.zero_grad(set_to_none=True)
        op, op_t = graph()
        out = cell(op, op_t, xs[0].transpose(0, 1).contiguous(), h0.transpose(0, 1).contiguous())
        (out.transpose(0, 1) * gout).sum().backward()

    def ref_seq():
        ref.zero_grad(set_to_none=True)
        h = None
        for t in range(steps):
            h = ref(xs[t].reshape(batch * n, fin), bei, bew, h)
        (h.view(batch, n, hidden) * gout).sum().backward()

    def our_seq():
        cell.zero_grad(set_to_none=True)
        op, op_t = graph()
        h = xs.new_zeros(n, batch, hidden)
        for t in range(steps):
            h = cell(op, op_t, xs[t].transpose(0, 1).contiguous(), h)
        (h.transpose(0, 1) * gout).sum().backward()

    def our_layer():
        cell.zero_grad(set_to_none=True)
        op, op_t = graph()
        seq = xs.permute(2, 0, 1, 3).contiguous()  # [T, B, N, F] -> [N, T, B, F]
        xg = cell.input_gates(op, op_t, seq.view(n, steps * batch, fin)).view(
            n, steps, batch, -1)
        h = xs.new_zeros(n, batch, hidden)
        for xg_t in xg.unbind(1):  # as the model does (cheaper backward than slicing)
            h = cell.recur(op, op_t, xg_t, h)
        (h.transpose(0, 1) * gout).sum().backward()

    res = {
        "ref_cell": timed(ref_cell, warmup, repeats, stat),
        "our_cell": timed(our_cell, warmup, repeats, stat),
        "ref_seq": timed(ref_seq, warmup, repeats, stat),
        "our_seq": timed(our_seq, warmup, repeats, stat),
        "our_layer": timed(our_layer, warmup, repeats, stat),
        "diff_cell": diff_cell,
        "diff_seq": diff_seq,
    }
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1026)
    ap.add_argument("--knn", type=int, default=8)
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--input-dim", type=int, nargs="+", default=[2, 32])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stat", choices=sorted(STAT), default="median",
                    help="min is the robust choice on a machine shared with other jobs")
    ap.add_argument("--out", help="append the markdown table to this file")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    ref_cls, ref_name = load_reference()
    ei, ew = knn_graph(args.nodes, args.knn, args.seed)
    lines = [
        f"GCGRU cell, fwd+bwd per training step: N={args.nodes} (random geometric {args.knn}-NN "
        f"graph, seed {args.seed}, E={ei.shape[1]}), K={args.K}, batch={args.batch}, "
        f"{args.steps}-step sequence, torch {torch.__version__}, {args.threads} threads, "
        f"{args.stat} of {args.repeats} after {args.warmup} warm-up",
        f"reference: {ref_name}",
        "",
        "| hidden | input dim | ref cell ms | distst cell ms | speedup | ref 12-step ms | "
        "distst 12-step ms | speedup | distst layer-wise 12-step ms | speedup | "
        "max abs diff cell | max abs diff 12-step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for hidden in args.hidden:
        for fin in args.input_dim:
            r = run_config(ref_cls, ei, ew, args.nodes, args.batch, fin, hidden, args.K,
                           args.steps, args.warmup, args.repeats, args.seed, args.stat)
            row = (
                f"| {hidden} | {fin} | {r['ref_cell'] * 1e3:.1f} | {r['our_cell'] * 1e3:.1f} | "
                f"{r['ref_cell'] / r['our_cell']:.1f}x | {r['ref_seq'] * 1e3:.0f} | "
                f"{r['our_seq'] * 1e3:.0f} | {r['ref_seq'] / r['our_seq']:.1f}x | "
                f"{r['our_layer'] * 1e3:.0f} | {r['ref_seq'] / r['our_layer']:.1f}x | "
                f"{r['diff_cell']:.1e} | {r['diff_seq']:.1e} |"
            )
            print(row, flush=True)
            lines.append(row)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
