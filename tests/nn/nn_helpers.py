"""Tiny graphs shared by the model tests (a uniquely named module: tests/nn is on sys.path)."""

import torch


def random_digraph(num_nodes: int, num_edges: int, seed: int = 0):
    """A directed weighted graph with a duplicate edge, a self loop and an isolated node."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes - 1, (num_edges,), generator=g)
    dst = torch.randint(0, num_nodes - 1, (num_edges,), generator=g)
    # node num_nodes-1 stays isolated; add a self loop and duplicate the first edge
    src = torch.cat([src, torch.tensor([2, int(src[0])])])
    dst = torch.cat([dst, torch.tensor([2, int(dst[0])])])
    w = torch.rand(src.numel(), generator=g) + 0.1
    return torch.stack([src, dst]), w


def permute_graph(edge_index, perm):
    """Relabel nodes so that new node i is old node perm[i]."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv[edge_index]


def random_graph(num_nodes: int, num_edges: int, seed: int = 0):
    """:func:`random_digraph` made undirected (one weight per pair, self loop kept): what the
    engine hands the Chebyshev models, which refuse a directed graph."""
    import numpy as np

    from distst.graph.adjacency import symmetrize

    ei, w = random_digraph(num_nodes, num_edges, seed)
    sei, sw = symmetrize(ei.numpy(), w.numpy(), "max", num_nodes)
    return torch.as_tensor(np.asarray(sei)), torch.as_tensor(np.asarray(sw))
