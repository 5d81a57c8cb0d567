"""Exact partition-parallel graph products: the boundary exchange of ``runtime.mode=exchange``.

Worker i holds part i (its inner nodes first) and the 1-hop boundary around it (its halo). A
graph operator whose rows are the local nodes, normalised with the whole graph's degrees,
gives exactly the whole-graph product on the inner rows *if* the halo rows of its input hold
the owners' current values. :class:`HaloExchange` makes that so before every sparse product
(:func:`distst.nn.layers.graph.spmm` applies it): the owners send the rows their neighbours
need, and the backward pass returns the gradient of every halo row to its owner, which adds
it to its own row's gradient. What the halo rows of any intermediate result hold is never
read: every read of a neighbour goes through the next exchange, and the loss counts the
inner nodes only. The design follows the boundary exchange of partition-parallel GNN
training (CAGNET; PipeGCN, without its staleness), applied inside recurrent cells at every
Chebyshev or diffusion step, batched over the batch and time columns: one exchange per sparse
product, so an order-K Chebyshev filter sends K-1 rounds.

Transport: ``torch.distributed.all_to_all_single`` on a process group of its own (gloo on
CPU, NCCL on GPU), so that it never interleaves with DDP's gradient all-reduce.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from distst.errors import DiststError


class HaloExchange:
    """The send and receive lists of one worker, built once from every worker's node lists.

    ``nodes``: the global ids of the local rows, the ``num_inner`` owned ones first. Every
    rank of ``group`` calls the constructor (it all-gathers the lists)."""

    def __init__(self, nodes: np.ndarray, num_inner: int, group=None):
        self.group = group
        self.rank = dist.get_rank(group)
        world = dist.get_world_size(group)
        nodes = np.asarray(nodes, dtype=np.int64)
        mine = (nodes[:num_inner].tolist(), nodes[num_inner:].tolist())
        everyone: list = [None] * world
        dist.all_gather_object(everyone, mine, group=group)
        owner = {}
        for r, (inner, _) in enumerate(everyone):
            for pos, g in enumerate(inner):
                if g in owner:
                    raise DiststError(f"exchange: node {g} is owned by parts {owner[g][0]} and "
                                      f"{r}; the plan is inconsistent, make it again")
                owner[g] = (r, pos)
        # what I receive: my halo rows, grouped by owner in rank order
        recv_rows, self.recv_counts = [], []
        for r in range(world):
            rows = [num_inner + k for k, g in enumerate(mine[1]) if owner[g][0] == r]
            recv_rows += rows
            self.recv_counts.append(len(rows))
        # what I send: to each rank, my rows that are in its halo, in its halo's order
        send_rows, self.send_counts = [], []
        for _, halo in everyone:
            rows = [owner[g][1] for g in halo if owner[g][0] == self.rank]
            send_rows += rows
            self.send_counts.append(len(rows))
        self.num_local = len(nodes)
        self.num_inner = num_inner
        self.recv_rows = torch.as_tensor(recv_rows, dtype=torch.long)
        self.send_rows = torch.as_tensor(send_rows, dtype=torch.long)
        #: bytes this worker sent (forward and backward), for step timing and its test
        self.bytes_sent = 0

    def to(self, device) -> "HaloExchange":
        self.recv_rows = self.recv_rows.to(device)
        self.send_rows = self.send_rows.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [N_local, D] with its halo rows replaced by their owners' rows."""
        if x.shape[0] != self.num_local:
            raise DiststError(f"exchange: a graph product on {x.shape[0]} rows, but this "
                              f"worker holds {self.num_local} nodes")
        return _Exchange.apply(x, self)

    def _swap(self, out_rows: int, data: torch.Tensor, out_counts, in_counts) -> torch.Tensor:
        out = data.new_empty((out_rows, *data.shape[1:]))
        dist.all_to_all_single(out, data.contiguous(), out_counts, in_counts, group=self.group)
        # no part is in its own halo: every row of ``data`` leaves this worker
        self.bytes_sent += data.numel() * data.element_size()
        return out


class _Exchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, ex: HaloExchange) -> torch.Tensor:
        ctx.ex = ex
        got = ex._swap(len(ex.recv_rows), x[ex.send_rows], ex.recv_counts, ex.send_counts)
        out = x.clone()
        out[ex.recv_rows] = got
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ex = ctx.ex
        # the halo rows' gradients go home and add to their owners' rows
        back = ex._swap(len(ex.send_rows), grad[ex.recv_rows], ex.send_counts, ex.recv_counts)
        g = grad.clone()
        g[ex.recv_rows] = 0
        g.index_add_(0, ex.send_rows, back)
        return g, None


def exchanged(op: torch.Tensor, exchange: HaloExchange | None) -> torch.Tensor:
    """Mark the sparse operator ``op`` so that :func:`distst.nn.layers.graph.spmm` exchanges
    its input's halo rows first (an attribute on the per-forward CSR view: the operator
    modules stay picklable and the ~40 call sites keep their ``(op, op_t)`` pairs)."""
    if exchange is not None:
        op._distst_exchange = exchange
    return op


def exchange_of(op: torch.Tensor) -> HaloExchange | None:
    return getattr(op, "_distst_exchange", None)


def attach(model: torch.nn.Module, exchange: HaloExchange) -> int:
    """Give every graph-operator module of ``model`` the exchange; returns how many."""
    n = 0
    for m in model.modules():
        if hasattr(m, "exchange") and callable(getattr(m, "forward", None)):
            m.exchange = exchange
            n += 1
    return n
