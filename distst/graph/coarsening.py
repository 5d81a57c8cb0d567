"""GPA coarsening (ST-UNet, Algorithm 1) as pooling models read it: the ``coarsening`` data
key (distst.nn.registry.DATA_KEYS), on a graph or on the parts of a partition."""

from __future__ import annotations

import numpy as np
import torch

from distst.errors import DiststError


def local_coarsening(edge_index, edge_weight, num_nodes: int, levels: int) -> list[tuple]:
    """GPA coarsening of a (local) graph for pooling models, one tuple per level l = 1..levels:
    ``(parent LongTensor [N_{l-1}], edge_index LongTensor [2, E_l], edge_weight [E_l], N_l)``."""
    from distst.graph.partition.gpa import gpa_hierarchy

    hier = gpa_hierarchy(np.asarray(edge_index), np.asarray(edge_weight), int(num_nodes), levels)
    out, prev = [], np.arange(int(num_nodes), dtype=np.int64)
    for assign, (ei, ew, n_l) in zip(hier.levels, hier.graphs):
        # assign: level-l super-node of each ORIGINAL node; parent: of each level-(l-1) node
        parent = np.zeros(int(prev.max()) + 1, dtype=np.int64)
        parent[prev] = assign
        out.append((torch.as_tensor(parent), torch.as_tensor(ei, dtype=torch.long),
                    torch.as_tensor(ew, dtype=torch.float32), int(n_l)))
        prev = assign
    return out


class GraphCoarsening:
    """The ``coarsening`` data key of pooling models (ST-UNet): GPA (Algorithm 1) on the
    model's graph. ``coarsening(levels)`` gives one ``(parent, edge_index, edge_weight,
    num_nodes)`` per level (:func:`local_coarsening`).

    A graph split into parts with a boundary (exchange mode) needs two more things from it.
    ``coarsening(levels, owned=k)`` coarsens the subgraph of the first ``k`` (owned) nodes
    only: what a worker can coarsen alone, so that super-nodes never span parts. :meth:`undirected` is the graph as GPA reads it (both
    directions, max rule), whose edges between parts the model contracts with the owners'
    numbering. :meth:`within` (``parts [N]``) gives the one-process equivalent: GPA on each
    part's subgraph, super-nodes numbered part by part, every edge of the graph contracted."""

    def __init__(self, edge_index, edge_weight, num_nodes: int, parts=None):
        self.edge_index = np.asarray(edge_index, dtype=np.int64)
        self.edge_weight = np.asarray(edge_weight, dtype=np.float64)
        self.num_nodes = int(num_nodes)
        self.parts = None if parts is None else np.asarray(parts, dtype=np.int64)
        if self.parts is not None and self.parts.shape != (self.num_nodes,):
            raise DiststError(f"coarsening: parts has shape {list(self.parts.shape)}, expected "
                              f"one part per node ([{self.num_nodes}])")

    def __call__(self, levels: int, owned: int | None = None) -> list[tuple]:
        if self.parts is not None:
            return self._within_parts(levels)
        ei, ew, n = self.edge_index, self.edge_weight, self.num_nodes
        if owned is not None:
            keep = (ei[0] < owned) & (ei[1] < owned)
            ei, ew, n = ei[:, keep], ew[keep], int(owned)
        return local_coarsening(ei, ew, n, levels)

    def within(self, parts) -> "GraphCoarsening":
        return GraphCoarsening(self.edge_index, self.edge_weight, self.num_nodes, parts)

    def undirected(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(edge_index LongTensor [2, E], edge_weight float64 [E])``: both directions of
        every edge, weight the larger one, self loops dropped (what GPA contracts)."""
        from distst.graph.adjacency import undirected_csr

        coo = undirected_csr(self.edge_index, self.edge_weight, self.num_nodes).tocoo()
        return (torch.as_tensor(np.stack([coo.row, coo.col]).astype(np.int64)),
                torch.as_tensor(coo.data, dtype=torch.float64))

    def _within_parts(self, levels: int) -> list[tuple]:
        import scipy.sparse as sp

        from distst.graph.adjacency import undirected_csr
        from distst.graph.partition.gpa import gpa_hierarchy

        n = self.num_nodes
        adj = undirected_csr(self.edge_index, self.edge_weight, n)
        assign = [np.empty(n, dtype=np.int64) for _ in range(levels)]
        counts = [0] * levels
        for j in np.unique(self.parts):  # part by part: ids offset by the parts before
            nodes = np.flatnonzero(self.parts == j)
            sub = adj[nodes][:, nodes].tocoo()
            hier = gpa_hierarchy(np.stack([sub.row, sub.col]), sub.data, len(nodes), levels)
            for lvl in range(levels):
                assign[lvl][nodes] = counts[lvl] + hier.levels[lvl]
                counts[lvl] += int(hier.graphs[lvl][2])
        row = np.repeat(np.arange(n, dtype=np.int64), np.diff(adj.indptr))
        out, prev = [], np.arange(n, dtype=np.int64)
        for lvl in range(levels):
            parent = np.zeros(int(prev.max()) + 1 if n else 0, dtype=np.int64)
            parent[prev] = assign[lvl]
            r, c = assign[lvl][row], assign[lvl][adj.indices]
            keep = r != c  # edges inside a super-node vanish, parallel ones add up
            m = counts[lvl]
            coarse = sp.coo_matrix((adj.data[keep], (r[keep], c[keep])), shape=(m, m)).tocsr()
            coarse.sum_duplicates()
            coarse = coarse.tocoo()
            out.append((torch.as_tensor(parent),
                        torch.as_tensor(np.stack([coarse.row, coarse.col]).astype(np.int64)),
                        torch.as_tensor(coarse.data, dtype=torch.float32), m))
            prev = assign[lvl]
        return out
