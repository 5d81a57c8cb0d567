"""Exact partition-parallel graph products: the boundary exchange of ``runtime.mode=exchange``,
applied from outside the model (:func:`connect`): models only route their neighbour reads
through their graph operators and declare it (``OPERATOR_READS``, distst.nn.base).

Worker i holds part i (its inner nodes first) and the boundary around it (its halo). A
graph operator whose rows are the local nodes, normalised with the whole graph's degrees,
gives exactly the whole-graph product on the inner rows when the halo columns are multiplied
with the owners' current values. :meth:`HaloExchange.products` (which
:func:`distst.nn.layers.graph.spmm` calls for an operator that carries one as its
``boundary``) computes ``A[:, inner] @ x_inner + A[:, halo] @ x_halo`` where the
owners send ``x_halo``: the inner part is multiplied while the boundary rows are in flight
(the overlap of PipeGCN, without its staleness: the result is exact), and no copy of ``x`` is
made. The backward pass sends ``A[:, halo]^T @ grad`` back to the owners, who add it to their
rows' gradients, while the inner part's transpose product runs. The halo rows of a product
are zero and never read: every read of a neighbour goes through the next exchange, and the
loss counts the inner nodes only. One exchange per sparse product, batched over the batch
and time columns, so an order-K Chebyshev filter sends K-1 rounds on a 1-hop halo.

On a deeper halo (a plan of ``halo_hops >= K-1``; exchange mode plans the depth its model's
filters chain, distst.nn.registry.boundary_depth) a filter exchanges once
(:meth:`HaloExchange.chain`): its first product fetches the whole halo's rows of the input,
overlapped as above, and keeps the halo rows the later products read; those run locally on
shrinking row sets. GCGRU (K = 3): half the rounds; DCRNN (K = 2, two directions): a third.

Transport: ``all_to_all_single`` (asynchronous) on the replica's compute group of
:mod:`distst.engine.collectives` (gloo on CPU, NCCL on own GPUs), the lists set up on its gloo
side group; why it never interleaves with the gradient all-reduce is said there.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch

from distst.engine.collectives import Group, all_gather_object, all_to_all_async
from distst.errors import DiststError


class HaloExchange:
    """The send and receive lists of one worker, built once from every worker's node lists.

    ``nodes``: the global ids of the local rows, the ``num_inner`` owned ones first. Every
    rank of ``group`` (one replica's parts) calls the constructor (it all-gathers the lists).
    ``depth``: how many hops of the whole graph around the owned nodes the halo holds (the
    plan's ``halo_hops``); a chain of up to ``depth`` products runs on one fetch
    (:meth:`chain`)."""

    def __init__(self, nodes: np.ndarray, num_inner: int, group: Group, depth: int = 1):
        self.group = group
        self.depth = int(depth)
        self.rank = group.rank
        world = group.size
        nodes = np.asarray(nodes, dtype=np.int64)
        mine = (nodes[:num_inner].tolist(), nodes[num_inner:].tolist())
        everyone = all_gather_object(group, mine)
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
        # bytes sent and rounds (forward and backward), shared with the coarser graphs'
        self._sent = [0]
        self._rounds = [0]
        #: the exchange of the next coarser graph (:meth:`coarsen`), if any
        self.coarser: HaloExchange | None = None
        self._splits: dict = {}
        self._chains: dict = {}

    @property
    def bytes_sent(self) -> int:
        """Bytes this worker sent, forward and backward, on this graph and every coarser one
        made from it: for step timing and its test."""
        return self._sent[0]

    @property
    def rounds(self) -> int:
        """Exchanges this worker took part in (each one ``all_to_all``), counted like
        :attr:`bytes_sent`."""
        return self._rounds[0]

    def to(self, device) -> "HaloExchange":
        self.recv_rows = self.recv_rows.to(device)
        self.send_rows = self.send_rows.to(device)
        self._splits, self._chains = {}, {}
        return self

    def split(self, a: torch.Tensor, rows: str = "owned") -> "SplitOperator":
        """The local operator ``a`` (CSR [N_local, N_local]) cut into its inner columns and
        its halo columns (in the order the halo rows arrive), its halo rows dropped
        (``rows="owned"``) or kept (``"all"``: a chain's first product); computed once per
        operator (keyed by its value buffer, which the module keeps)."""
        key = (a.values().data_ptr(), a.values().device, rows)
        got = self._splits.get(key)
        if got is None:
            got = self._splits[key] = _split(a, self.num_inner, self.recv_rows,
                                             self.num_local if rows == "all" else self.num_inner)
        return got

    def product(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``a @ x`` with the halo rows of ``x`` taken from their owners (exact on the inner
        rows; zero on the halo rows)."""
        return self.products([a], x)[0]

    def products(self, ops: list[torch.Tensor], x: torch.Tensor, rows: str = "owned"
                 ) -> list[torch.Tensor]:
        """``[a @ x for a in ops]`` with one exchange of ``x``'s halo rows for all of them (the
        first hop of every direction of a diffusion convolution reads the same input). The
        products' halo rows are zero (``rows="owned"``), or ``a``'s own where ``a`` has
        them (``"all"``: the first products of a :meth:`chain`, whose operators keep the rows
        the later products read)."""
        if x.shape[0] != self.num_local:
            raise DiststError(f"exchange: a graph product on {x.shape[0]} rows, but this "
                              f"worker holds {self.num_local} nodes")
        return list(_ExchangeProducts.apply(x, self, *[self.split(a, rows) for a in ops]))

    def chain(self, a: torch.Tensor, a_t: torch.Tensor | None, steps: int
              ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Operators for ``steps`` products chained on one :meth:`gather` of their first
        input (an order-``steps + 1`` Chebyshev filter, a ``steps``-hop diffusion), or None
        when the halo is not deep enough (``steps > depth``: each product then exchanges).

        Product j (1..``steps``) keeps the rows within ``steps - j`` hops of the owned rows
        and drops the rest (CSR [N_local, N_local] and its transpose, no boundary). Why this
        is exact on the owned rows: a local row whose whole-graph distance from the owned
        nodes is below ``depth`` has all its neighbours local (the plan's halo holds every
        node within ``depth`` hops either way) and whole-graph normalisation, so its row is
        the whole graph's; the distance counted on the local operator is never below the
        whole graph's. After the gather every local row of the input is the owners' value;
        product j is then exact on the rows it keeps by induction, and the last one on the
        owned rows. The backward of the gather returns the halo rows' gradients home once.
        One round per filter instead of ``steps``; the bytes are the whole halo's rows
        (:attr:`depth` hops) instead of the 1-hop boundary per product; the products cover
        the kept halo rows too (the compute of a ``depth``-hop shard)."""
        if steps < 2 or steps > self.depth:
            return None
        key = (a.values().data_ptr(), a.values().device, int(steps))
        got = self._chains.get(key)
        if got is None:
            got = self._chains[key] = _chain(a, self.num_inner, int(steps))
        return got

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (local rows first: [N_local, ...]) with its halo rows replaced by their
        owners' current rows; the backward returns the halo rows' gradients to the owners.
        For what reads neighbours outside a fixed sparse product (HimNet's learned edge values
        and its per-sample node embeddings)."""
        if x.shape[0] != self.num_local:
            raise DiststError(f"exchange: a gather of {x.shape[0]} rows, but this worker holds "
                              f"{self.num_local} nodes")
        return _Gather.apply(x, self)

    def fetch(self, x: torch.Tensor, *, count: bool = False) -> torch.Tensor:
        """``x`` with its halo rows replaced by the owners' rows, without autograd (the
        forward of :meth:`gather`); uncounted by default: for setting up (ids, degrees)."""
        halo, work = self._start(len(self.recv_rows), x[self.send_rows], self.recv_counts,
                                 self.send_counts, count=count)
        out = x.clone()
        work.wait()
        out[self.recv_rows] = halo
        return out

    def coarsen(self, parent: torch.Tensor, num_coarse: int) -> tuple["HaloExchange",
                                                                      torch.Tensor]:
        """The exchange of the next coarser graph, whose super-nodes group owned nodes only.

        ``parent [num_inner]``: this worker's super-node (0..``num_coarse``-1) of each owned
        node. Returns the coarse exchange and ``parent_local [num_local]``, the coarse local
        row of every local row. A super-node's global id is its owner's offset (the owners
        before it in rank order) plus its own number. A halo node's super-node comes from
        its owner, and it is a halo row of the coarse graph. Every coarse neighbour of an
        owned super-node is such a row, because a coarse edge comes from a fine one. Every
        rank of the group calls this."""
        parent = torch.as_tensor(parent, dtype=torch.long).cpu()
        if parent.shape != (self.num_inner,):
            raise DiststError(f"exchange: coarsening gives {list(parent.shape)} parents for "
                              f"{self.num_inner} owned nodes")
        counts = all_gather_object(self.group, int(num_coarse))
        offset = sum(counts[:self.rank])
        gid = torch.full((self.num_local,), -1, dtype=torch.long, device=self.recv_rows.device)
        gid[:self.num_inner] = (parent + offset).to(gid.device)
        gid = self.fetch(gid).cpu()  # the halo rows' super-nodes, from their owners
        halo = torch.unique(gid[self.num_inner:])  # sorted
        nodes = torch.cat([torch.arange(num_coarse) + offset, halo])
        parent_local = torch.cat([parent, num_coarse + torch.searchsorted(
            halo, gid[self.num_inner:])])
        self.coarser = HaloExchange(nodes.numpy(), int(num_coarse), group=self.group)
        self.coarser._sent, self.coarser._rounds = self._sent, self._rounds
        return self.coarser.to(self.recv_rows.device), parent_local

    def _start(self, out_rows: int, data: torch.Tensor, out_counts, in_counts,
               count: bool = True):
        out = data.new_empty((out_rows, *data.shape[1:]))
        work = all_to_all_async(self.group, out, data, out_counts, in_counts)
        if count:  # no part is in its own halo: every row of ``data`` leaves this worker
            self._sent[0] += data.numel() * data.element_size()
            self._rounds[0] += 1
        return out, work


class SplitOperator(NamedTuple):
    inner: torch.Tensor  # CSR [N_local, N_local]: inner rows x inner columns
    inner_t: torch.Tensor
    boundary: torch.Tensor | None  # CSR [N_local, H]: inner rows x halo columns (arrival order)
    boundary_t: torch.Tensor | None


def _csr(rows, cols, vals, shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse support is in beta" chatter
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, shape).coalesce() \
            .to_sparse_csr()


def _entries(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(rows, cols, values, N)`` of the sparse operator ``a`` [N, N]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coo = a.to_sparse_coo().coalesce()
    rows, cols = coo.indices()
    return rows, cols, coo.values(), a.shape[0]


def _split(a: torch.Tensor, num_inner: int, recv_rows: torch.Tensor,
           num_rows: int) -> SplitOperator:
    rows, cols, vals, n = _entries(a)
    keep = rows < num_rows  # (owned rows only:) a halo row's product is never read
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    inner = cols < num_inner
    ri, ci, vi = rows[inner], cols[inner], vals[inner]
    split = [_csr(ri, ci, vi, (n, n)), _csr(ci, ri, vi, (n, n))]
    h = len(recv_rows)
    if h and (~inner).any():
        # local halo row -> its position in the arrival order
        where = torch.full((n,), -1, dtype=torch.long, device=cols.device)
        where[recv_rows] = torch.arange(h, device=cols.device)
        rb, cb, vb = rows[~inner], where[cols[~inner]], vals[~inner]
        if bool((cb < 0).any()):
            raise DiststError("exchange: the operator reads a halo node no owner sends; the "
                              "plan's boundary is incomplete, make the plan again")
        split += [_csr(rb, cb, vb, (n, h)), _csr(cb, rb, vb, (h, n))]
    else:
        split += [None, None]
    return SplitOperator(*split)


def _chain(a: torch.Tensor, num_inner: int, steps: int
           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:meth:`HaloExchange.chain`'s operators: the hop distance of every local row from the
    owned rows over ``a``'s pattern (either direction), then ``a`` cut to the rows within
    ``steps - j`` hops for product j."""
    rows, cols, vals, n = _entries(a)
    far = steps + 1
    dist = torch.full((n,), far, dtype=torch.long, device=rows.device)
    dist[:num_inner] = 0
    for hop in range(1, steps):  # rows beyond steps - 1 hops are never kept
        near = dist < hop
        reached = torch.zeros(n, dtype=torch.bool, device=rows.device)
        reached[cols[near[rows]]] = True  # neighbours read by a row within reach ...
        reached[rows[near[cols]]] = True  # ... and rows that read one (either direction)
        dist[reached & (dist == far)] = hop
    out = []
    for j in range(1, steps + 1):
        keep = dist[rows] <= steps - j
        r, c, v = rows[keep], cols[keep], vals[keep]
        out.append((_csr(r, c, v, (n, n)), _csr(c, r, v, (n, n))))
    return out


class _ExchangeProducts(torch.autograd.Function):
    """``a @ x`` for one or several split operators ``a`` on one input ``x``: its boundary
    rows travel once (while the inner products run), and the backward sends the sum of the
    operators' halo gradients home once (while the inner transpose products run)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, ex: HaloExchange, *ops: SplitOperator):
        ctx.ex, ctx.ops = ex, ops
        halo, work = ex._start(len(ex.recv_rows), x[ex.send_rows], ex.recv_counts,
                               ex.send_counts)
        ys = [torch.sparse.mm(op.inner, x) for op in ops]  # while the boundary rows travel
        work.wait()
        return tuple(y if op.boundary is None else y + torch.sparse.mm(op.boundary, halo)
                     for y, op in zip(ys, ops))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        ex, ops = ctx.ex, ctx.ops
        grads = [g.contiguous() for g in grads]
        g_halo = grads[0].new_zeros((len(ex.recv_rows), *grads[0].shape[1:]))
        for op, g in zip(ops, grads):
            if op.boundary is not None:
                g_halo += torch.sparse.mm(op.boundary_t, g)
        back, work = ex._start(len(ex.send_rows), g_halo, ex.send_counts, ex.recv_counts)
        g_x = torch.sparse.mm(ops[0].inner_t, grads[0])
        for op, g in zip(ops[1:], grads[1:]):
            g_x += torch.sparse.mm(op.inner_t, g)
        work.wait()
        g_x.index_add_(0, ex.send_rows, back)
        return (g_x, None, *[None] * len(ops))


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, ex: HaloExchange) -> torch.Tensor:
        ctx.ex = ex
        return ex.fetch(x, count=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ex = ctx.ex
        back, work = ex._start(len(ex.send_rows), grad[ex.recv_rows], ex.send_counts,
                               ex.recv_counts)
        g = grad.clone()
        g[ex.recv_rows] = 0  # the halo copies' gradients belong to their owners
        work.wait()
        g.index_add_(0, ex.send_rows, back)
        return g, None


def connect(model: torch.nn.Module, exchange: HaloExchange) -> int:
    """Connect ``model`` to the boundary exchange: its own ``attach_boundary`` when it has
    one (a model with coarse graphs builds an exchange per graph), else every graph-operator
    module's ``boundary`` slot. Returns how many graph operators got one."""
    hook = getattr(model, "attach_boundary", None)
    if hook is not None:
        return hook(exchange)
    n = 0
    for m in model.modules():
        if hasattr(m, "boundary") and callable(getattr(m, "forward", None)):
            m.boundary = exchange
            n += 1
    return n
