"""GPA: matchings by path growing, graph coarsening, and a multilevel partitioner built on them.

ST-UNet (Yu et al., "ST-UNet: A Spatio-Temporal U-Network for Graph-structured Time Series
Modeling", Sec. 3.2, Eq. 4 and Algorithm 1 "gPartition") pools a graph by the *global path
growing algorithm* (GPA): Drake & Hougardy's improved path growing algorithm PGA'
("Improved linear time approximation algorithms for weighted matchings", APPROX 2003) computes
a matching ``M``, matched pairs are merged into super-nodes, and this repeats for ``p`` levels
so that level ``p`` has ``N' ~ N / 2^p`` super-nodes (Eq. 4).

Part I, edge selection (:func:`matching`), as Algorithm 1 lines 1-14:

1. start at the lowest-id vertex that is still in the graph (deterministic choice, line 4);
2. grow a path: follow the heaviest edge of the current vertex ``v`` to ``u`` (ties: the lowest
   ``u``), remove ``v`` and its edges, continue from ``u`` until it has no edges left (5-10);
3. take a maximum weight matching of that path by dynamic programming (line 11)
   (``f[i] = max(f[i-1], f[i-2] + w_i)``). If the last vertex of the path is adjacent to its
   first one (the path closed on itself, e.g. an even cycle), the closing edge is considered
   too: the better of "path DP" and "closing edge + DP of the inner path" is taken, which is
   the maximum weight matching of the cycle;
4. the union of the path matchings is a 1/2-approximation of the maximum weight matching;
   it is extended to a maximal matching (line 12) by adding the remaining edges whose two
   ends are both unmatched, heaviest first (ties: lowest (u, v)).

Part II, coarsening (:func:`contract`): matched pairs become one super-node, unmatched vertices
stay single; edges between super-nodes carry the summed weights of the edges they replace
(parallel edges merged), edges inside a super-node disappear. Super-node ids are ordered by the
lowest original id they contain, so everything is deterministic.

Part III, multilevel (:func:`gpa_hierarchy`): repeat I and II ``levels`` times.

The partitioner (:func:`gpa_partition`) is a multilevel scheme in the style of METIS, with GPA
as its coarsening:

* coarsen by GPA matching + contraction until at most ``coarsen_per_part * P`` super-nodes
  remain or a level shrinks the graph by less than 5%. Two departures from the pooling
  hierarchy, both standard in multilevel partitioners: a super-node may not grow beyond
  ``1.5 N / (coarsen_per_part P)`` nodes (so the coarse graph stays balanceable), and the
  path growing follows the edge rating ``w_uv^2 / (size_u size_v)`` (``rating="expansion2"``,
  Holtgrewe, Sanders & Schulz 2010) instead of the raw summed weight, which otherwise makes
  big super-nodes swallow each other and leaves small ones unmatched
  (``rating="weight"`` restores the raw weights). Coarse edges still carry summed weights;
* split the coarse graph into ``P`` parts by greedy graph growing from ``trials`` seeds;
* project each back level by level, and at every level restore balance, then refine the
  boundary: first vectorised passes (boundary vertices move to the neighbouring part they are
  most connected to if that lowers the cut and the part has room; passes alternate between
  "to a higher part id" and "to a lower part id" so that neighbours never swap blindly; a
  pass that does not lower the cut is undone), then a few sequential Fiduccia-Mattheyses
  passes over the boundary that may take negative-gain moves and keep the best prefix;
* keep the trial with the lowest final cut.

The graph is symmetrised as in :func:`~distst.graph.partition.quality.undirected_csr`. Part I
visits every vertex and edge a constant number of times, but it is a sequential Python loop
(path growing cannot be vectorised): about 1-2 microseconds per edge.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from distst.errors import DiststError
from distst.graph.partition.base import Partition
from distst.graph.partition.quality import undirected_csr

RATINGS = ("expansion2", "weight")
DEFAULT_UFACTOR = 30  # same meaning as METIS's: largest part <= (1 + ufactor / 1000) * N / P


def balance_cap(num_nodes: int, num_parts: int, ufactor: int = DEFAULT_UFACTOR) -> int:
    """Most nodes a part may hold: ``max(ceil(N / P), floor((1 + ufactor/1000) N / P))``
    (METIS's load imbalance tolerance, rounded so that it can always be met)."""
    return max(math.ceil(num_nodes / num_parts),
               math.floor((1 + ufactor / 1000) * num_nodes / num_parts))


# -- Part I: edge selection ------------------------------------------------------------------
def _heaviest_first(adj: sp.csr_matrix, allowed: np.ndarray | None = None):
    """Rows of ``adj`` re-sorted by (weight descending, neighbour id ascending), as lists.

    ``allowed`` (bool per stored entry) removes entries before sorting.
    """
    n = adj.shape[0]
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(adj.indptr))  # [nnz]
    col, w = adj.indices.astype(np.int64), adj.data
    if allowed is not None:
        row, col, w = row[allowed], col[allowed], w[allowed]
    # Two stable passes instead of a 3-key lexsort (3x faster): the CSR rows are already
    # sorted by column, so sorting by -weight keeps equal weights in column order, and the
    # stable sort by row then regroups the rows without disturbing that order.
    by_weight = np.argsort(-w, kind="stable")
    order = by_weight[np.argsort(row[by_weight], kind="stable")]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n), out=indptr[1:])
    return indptr, col[order], w[order]


def _path_dp(ws: list[float], lo: int, hi: int) -> tuple[float, list[int]]:
    """Maximum weight matching of the path whose edges are ``ws[lo:hi]`` (edge i joins path
    vertices i and i+1): value and chosen edge indices. Ties take the edge (more pairs)."""
    k = hi - lo
    if k <= 0:
        return 0.0, []
    f = [0.0] * (k + 1)
    take = [False] * (k + 1)
    f[1], take[1] = ws[lo], True
    for i in range(2, k + 1):
        with_edge = f[i - 2] + ws[lo + i - 1]
        if with_edge >= f[i - 1]:
            f[i], take[i] = with_edge, True
        else:
            f[i] = f[i - 1]
    chosen = []
    i = k
    while i > 0:
        if take[i]:
            chosen.append(lo + i - 1)
            i -= 2
        else:
            i -= 1
    return f[k], chosen


def _pga_mates(adj: sp.csr_matrix, allowed: np.ndarray | None = None) -> np.ndarray:
    """``mate[v]`` (int64 [N], -1 = unmatched) of the PGA' matching extended to maximal."""
    n = adj.shape[0]
    indptr, nbr, wt = _heaviest_first(adj, allowed)
    starts = indptr.tolist()
    nbr_l, wt_l = nbr.tolist(), wt.tolist()
    alive = bytearray(b"\x01") * n
    mate = [-1] * n
    for s in range(n):
        if not alive[s]:
            continue
        path = [s]
        ws: list[float] = []
        v = s
        while True:  # grow the path (Algorithm 1, lines 5-10)
            alive[v] = 0
            p, end = starts[v], starts[v + 1]
            while p < end and not alive[nbr_l[p]]:  # heaviest edge to a vertex still there
                p += 1
            if p == end:
                break
            ws.append(wt_l[p])
            v = nbr_l[p]
            path.append(v)
        k = len(ws)
        if k == 0:
            continue
        if k == 1:
            mate[s], mate[v] = v, s
            continue
        best, chosen = _path_dp(ws, 0, k)
        # The path closed on itself if its last vertex is adjacent to its first one.
        for p in range(starts[v], starts[v + 1]):
            if nbr_l[p] == s:
                inner, inner_chosen = _path_dp(ws, 1, k - 1)
                if wt_l[p] + inner > best:
                    chosen = inner_chosen
                    mate[s], mate[v] = v, s
                break
        for i in chosen:
            a, b = path[i], path[i + 1]
            mate[a], mate[b] = b, a
    mate_arr = np.asarray(mate, dtype=np.int64)
    # Extend to a maximal matching: edges with both ends free, heaviest first.
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    free = (mate_arr[row] < 0) & (mate_arr[nbr] < 0) & (row < nbr)
    if free.any():
        u, v, w = row[free], nbr[free], wt[free]
        order = np.lexsort((v, u, -w))
        for a, b in zip(u[order].tolist(), v[order].tolist()):
            if mate[a] < 0 and mate[b] < 0:
                mate[a], mate[b] = b, a
        mate_arr = np.asarray(mate, dtype=np.int64)
    return mate_arr


def matching(edge_index, edge_weight, num_nodes: int, *, symmetrize: str = "max") -> np.ndarray:
    """The GPA matching (Algorithm 1, Part I) as int64 ``[M, 2]`` pairs ``(u, v)``, ``u < v``,
    sorted by ``u``. No two pairs share a vertex and no edge of the graph has both ends free."""
    adj = undirected_csr(edge_index, edge_weight, num_nodes, how=symmetrize)
    mate = _pga_mates(adj)
    u = np.flatnonzero(mate > np.arange(num_nodes))
    return np.stack([u, mate[u]], axis=1).astype(np.int64)


# -- Part II: coarsening ---------------------------------------------------------------------
def contract(adj: sp.csr_matrix, mate: np.ndarray, node_weight: np.ndarray | None = None):
    """Merge matched pairs: ``(cluster [N] int64, coarse_adj [N', N'], coarse_node_weight)``.

    ``cluster[v]`` is the super-node of ``v``; super-nodes are numbered by their lowest member.
    Coarse edge weights are sums over the replaced edges; edges inside a super-node vanish.
    """
    n = adj.shape[0]
    idx = np.arange(n, dtype=np.int64)
    rep = np.minimum(idx, np.where(mate >= 0, mate, idx))  # lowest member of v's pair
    is_rep = rep == idx
    cid = np.cumsum(is_rep) - 1
    cluster = cid[rep]
    nc = int(is_rep.sum())
    row = np.repeat(idx, np.diff(adj.indptr))
    r, c = cluster[row], cluster[adj.indices]
    keep = r != c
    coarse = sp.coo_matrix((adj.data[keep], (r[keep], c[keep])), shape=(nc, nc)).tocsr()
    coarse.sum_duplicates()  # parallel edges merged by summing; also sorts the columns
    nw = np.ones(n) if node_weight is None else node_weight
    return cluster, coarse, np.bincount(cluster, weights=nw, minlength=nc)


# -- Part III: the hierarchy -----------------------------------------------------------------
@dataclass
class Coarsening:
    """ST-UNet's multilevel coarsening (Algorithm 1 Part III, Eq. 4).

    ``levels[l - 1][i]``: super-node at level ``l`` (1..p) of ORIGINAL node ``i``.
    ``graphs[l - 1]``: the level-``l`` graph ``(edge_index int64 [2, E'], edge_weight float32
    [E'], num_nodes)``, both directions listed, weights summed over merged edges.
    ``sizes[l - 1]``: number of original nodes in each level-``l`` super-node.
    A level whose graph has no edges left repeats the previous one unchanged.
    """

    levels: list[np.ndarray] = field(default_factory=list)
    graphs: list[tuple[np.ndarray, np.ndarray, int]] = field(default_factory=list)
    sizes: list[np.ndarray] = field(default_factory=list)

    @property
    def num_levels(self) -> int:
        return len(self.levels)


def _csr_to_edges(adj: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, int]:
    coo = adj.tocoo()
    ei = np.stack([coo.row, coo.col]).astype(np.int64)
    return ei, coo.data.astype(np.float32), int(adj.shape[0])


def gpa_hierarchy(edge_index, edge_weight, num_nodes: int, levels: int, *,
                  symmetrize: str = "max") -> Coarsening:
    """Coarsen the graph ``levels`` times by GPA matching + contraction (Algorithm 1)."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 0:
        raise DiststError(f"gpa hierarchy: levels={levels!r} must be an integer >= 0 "
                          "(p in ST-UNet Eq. 4; each level halves the graph)")
    adj = undirected_csr(edge_index, edge_weight, num_nodes, how=symmetrize)
    out = Coarsening()
    current = np.arange(num_nodes, dtype=np.int64)
    nw = np.ones(num_nodes)
    for _ in range(int(levels)):
        cluster, adj, nw = contract(adj, _pga_mates(adj), nw)
        current = cluster[current]
        out.levels.append(current)
        out.graphs.append(_csr_to_edges(adj))
        out.sizes.append(nw.astype(np.int64))
    return out


# -- the partitioner -------------------------------------------------------------------------
def _row_ids(adj: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(adj.shape[0], dtype=np.int64), np.diff(adj.indptr))


def _cut_weight(adj: sp.csr_matrix, row: np.ndarray, part: np.ndarray) -> float:
    cross = part[row] != part[adj.indices]
    return float(adj.data[cross].sum()) / 2.0  # both directions stored


def _cut_change(adj: sp.csr_matrix, moved: np.ndarray, old: np.ndarray,
                new: np.ndarray) -> float:
    """Exact change of the cut weight when ``moved`` vertices go from ``old`` to ``new`` parts,
    from the edges at the moved vertices only (an edge with both ends moved is seen twice)."""
    sub = adj[moved]
    src = np.repeat(moved, np.diff(sub.indptr))  # [nnz of the moved rows]
    dst = sub.indices
    change = (new[src] != new[dst]).astype(np.float64) - (old[src] != old[dst])
    both = np.zeros(adj.shape[0], dtype=bool)
    both[moved] = True
    share = np.where(both[dst], 0.5, 1.0)
    return float(np.sum(sub.data * change * share))


def _connections(adj: sp.csr_matrix, nodes: np.ndarray, part: np.ndarray, P: int) -> np.ndarray:
    """``conn[i, q]``: weight from ``nodes[i]`` into part ``q`` (float64 [len(nodes), P])."""
    sub = adj[nodes]
    local = np.repeat(np.arange(len(nodes), dtype=np.int64), np.diff(sub.indptr))
    key = local * P + part[sub.indices]  # [nnz of the rows]: (row, part of the neighbour)
    conn = np.bincount(key, weights=sub.data, minlength=len(nodes) * P)
    return conn.reshape(len(nodes), P)


def _greedy_growing(adj: sp.csr_matrix, nw: np.ndarray, P: int, first_seed: int) -> np.ndarray:
    """Greedy graph growing partitioning (Karypis & Kumar 1998, GGGP) of a small graph.

    Parts 0..P-2 grow one after the other from a seed vertex, always adding the frontier vertex
    whose move lowers the region's cut most, until the part reaches its share of the weight
    left; the last part takes the rest. Disconnected leftovers start a new seed.
    """
    n = adj.shape[0]
    indptr, indices, data = adj.indptr, adj.indices, adj.data
    part = np.full(n, -1, dtype=np.int64)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    remaining = float(nw.sum())
    seed = first_seed
    for k in range(P - 1):
        target = remaining / (P - k)
        conn = {}  # frontier vertex -> weight into the region
        heap: list[tuple[float, int]] = []
        weight = 0.0
        while weight < target:
            if not heap:
                free = np.flatnonzero(part < 0)
                if free.size <= P - 1 - k:  # keep one vertex for each later part
                    break
                v = seed if (seed is not None and part[seed] < 0) else int(free[0])
                seed = None
            else:
                g, v = heapq.heappop(heap)
                if part[v] >= 0 or -g != 2 * conn[v] - deg[v]:
                    continue  # stale heap entry
            if weight + nw[v] / 2 > target and weight > 0:
                break  # adding v would overshoot more than it fills
            part[v] = k
            weight += nw[v]
            for p in range(indptr[v], indptr[v + 1]):
                u = int(indices[p])
                if part[u] < 0:
                    conn[u] = conn.get(u, 0.0) + data[p]
                    heapq.heappush(heap, (-(2 * conn[u] - deg[u]), u))
        remaining -= weight
        if seed is None:  # the next part starts beside this one: its frontier's best vertex
            free_frontier = [u for u in conn if part[u] < 0]
            seed = max(free_frontier, key=lambda u: (conn[u], -u)) if free_frontier else None
    part[part < 0] = P - 1
    return part


def _rebalance(adj, row, nw, part, P, cap, max_rounds=64):
    """Move vertices out of parts heavier than ``cap`` into parts with room, losing as little
    cut as possible (boundary vertices first). Best effort on coarse levels."""
    for _ in range(max_rounds):
        size = np.bincount(part, weights=nw, minlength=P)
        over = size > cap + 1e-9
        if not over.any():
            return part
        in_over = over[part]
        cross = part[row] != part[adj.indices]
        boundary = np.zeros(len(part), dtype=bool)
        boundary[row[cross]] = True
        cand = np.flatnonzero(in_over & boundary)
        if cand.size == 0:
            cand = np.flatnonzero(in_over)
        conn = _connections(adj, cand, part, P)  # [C, P]
        own = conn[np.arange(cand.size), part[cand]]
        room = cap - size
        # Only into parts with room for the vertex (which excludes the too heavy ones).
        score = np.where(room[None, :] + 1e-9 < nw[cand][:, None], -np.inf, conn)
        dst = np.argmax(score, axis=1)
        gain = score[np.arange(cand.size), dst] - own
        moved = False
        for i in np.lexsort((cand, -gain)).tolist():  # best gain first, ties by vertex id
            v, d, s = int(cand[i]), int(dst[i]), int(part[cand[i]])
            if not np.isfinite(gain[i]) or size[s] <= cap + 1e-9 or nw[v] > room[d] + 1e-9:
                continue
            part[v] = d
            size[s] -= nw[v]
            size[d] += nw[v]
            room[d] -= nw[v]
            room[s] += nw[v]
            moved = True
        if not moved:
            return part
    return part


def _refine(adj, row, nw, part, P, cap, passes):
    """Vectorised boundary refinement (see the module docstring); returns the new parts."""
    cut = _cut_weight(adj, row, part)
    stale = 0
    for it in range(passes):
        cross = part[row] != part[adj.indices]
        if not cross.any():
            break
        bnodes = np.unique(row[cross])
        conn = _connections(adj, bnodes, part, P)  # [B, P]
        src = part[bnodes]
        own = conn[np.arange(bnodes.size), src]
        cols = np.arange(P)[None, :]
        upward = it % 2 == 0
        bad = (cols <= src[:, None]) if upward else (cols >= src[:, None])
        score = np.where(bad | (conn <= 0), -np.inf, conn)
        dst = np.argmax(score, axis=1)
        gain = score[np.arange(bnodes.size), dst] - own
        ok = np.isfinite(gain) & (gain > 0)
        if not ok.any():
            stale += 1
            if stale >= 2:
                break
            continue
        v, d, g = bnodes[ok], dst[ok], gain[ok]
        size = np.bincount(part, weights=nw, minlength=P)
        order = np.lexsort((v, -g, d))  # per destination, best gain first
        v, d = v[order], d[order]
        w = nw[v]
        csum = np.cumsum(w)
        first = np.r_[0, np.flatnonzero(d[1:] != d[:-1]) + 1]
        group_start = np.repeat(csum[first] - w[first], np.diff(np.r_[first, d.size]))
        accept = (csum - group_start) <= (cap - size[d]) + 1e-9
        if not accept.any():
            stale += 1
            if stale >= 2:
                break
            continue
        new = part.copy()
        moved = v[accept]
        new[moved] = d[accept]
        new_cut = cut + _cut_change(adj, moved, part, new)
        if new_cut < cut - 1e-12:
            part, cut, stale = new, new_cut, 0
        else:
            stale += 1
            if stale >= 2:
                break
    return part


def _fm_refine(adj, row, nw, part, P, cap, passes=3, stall=64):
    """Sequential k-way Fiduccia-Mattheyses refinement of the boundary (Python, boundary-only).

    Each pass repeatedly moves the unlocked vertex with the best gain (cut decrease, possibly
    negative) to a part with room, locks it and updates its neighbours; after ``stall`` moves
    without a new best cut the moves after the best prefix are undone. Negative moves let it
    climb out of the local minima the vectorised refinement stops in. Cost is proportional to
    the boundary and the moves tried, not to N.
    """
    indptr, indices, data = adj.indptr, adj.indices, adj.data
    nw_l = nw.tolist()
    part_l = part.tolist()
    size = np.bincount(part, weights=nw, minlength=P).tolist()
    adjacency: dict[int, tuple[list, list]] = {}  # only the rows FM touches, as lists

    def neighbours(v):
        nb = adjacency.get(v)
        if nb is None:
            lo, hi = indptr[v], indptr[v + 1]
            nb = adjacency[v] = (indices[lo:hi].tolist(), data[lo:hi].tolist())
        return nb

    for _ in range(passes):
        cross = part[row] != part[adj.indices]
        bnodes = np.unique(row[cross])
        if bnodes.size == 0:
            break
        conn = dict(zip(bnodes.tolist(), _connections(adj, bnodes, part, P).tolist()))

        def conn_of(v):
            c = conn.get(v)
            if c is None:
                c = [0.0] * P
                for u, w in zip(*neighbours(v)):
                    c[part_l[u]] += w
                conn[v] = c
            return c

        def best_move(v):
            c, own = conn_of(v), part_l[v]
            if size[own] - nw_l[v] <= 0:
                return -1, 0.0  # never empty a part
            bq, bg = -1, -math.inf
            for q in range(P):
                if q != own and c[q] > 0 and size[q] + nw_l[v] <= cap and c[q] - c[own] > bg:
                    bq, bg = q, c[q] - c[own]
            return bq, bg

        heap = []
        for v in bnodes.tolist():
            q, g = best_move(v)
            if q >= 0:
                heap.append((-g, v))
        heapq.heapify(heap)
        locked = set()
        moves = []  # (vertex, from part)
        total = best_total = 0.0
        best_len = 0
        while heap and len(moves) - best_len < stall:
            negg, v = heapq.heappop(heap)
            if v in locked:
                continue
            q, g = best_move(v)
            if q < 0:
                continue
            if g != -negg:  # stale entry: requeue with the current gain
                heapq.heappush(heap, (-g, v))
                continue
            a = part_l[v]
            part_l[v] = q
            size[a] -= nw_l[v]
            size[q] += nw_l[v]
            locked.add(v)
            moves.append((v, a))
            total += g
            if total > best_total + 1e-12:
                best_total, best_len = total, len(moves)
            for u, w in zip(*neighbours(v)):
                c = conn.get(u)
                if c is not None:
                    c[a] -= w
                    c[q] += w
                else:
                    conn_of(u)  # first seen now: computed from the parts after the move
                if u not in locked:
                    qu, gu = best_move(u)
                    if qu >= 0:
                        heapq.heappush(heap, (-gu, u))
        for v, a in reversed(moves[best_len:]):  # undo the moves after the best prefix
            size[part_l[v]] -= nw_l[v]
            size[a] += nw_l[v]
            part_l[v] = a
        part = np.asarray(part_l, dtype=np.int64)
        if best_len == 0:
            break
    return part


def gpa_partition(edge_index, edge_weight, num_nodes: int, num_parts: int, *, seed: int = 0,
                  ufactor: int = DEFAULT_UFACTOR, symmetrize: str = "max",
                  coarsen_per_part: int = 8, refine_passes: int = 10,
                  trials: int = 4, rating: str = "expansion2",
                  fm_passes: int = 3) -> Partition:
    """Partition into ``num_parts`` parts by GPA coarsening + growing + refinement.

    ``ufactor``: the largest part may hold ``max(ceil(N / P), (1 + ufactor/1000) N / P)``
    nodes (the METIS convention, so that both methods are compared at the same balance).
    ``trials``: initial partitions of the coarsest graph (the first grows from vertex 0, the
    others from seeds drawn with ``seed``), each uncoarsened and refined; the best final cut
    (among those within the balance cap) is kept.
    The coarsening itself is deterministic; ``seed`` only picks the extra trial seeds.
    """
    for name, value, low in (("ufactor", ufactor, 0), ("coarsen_per_part", coarsen_per_part, 1),
                             ("refine_passes", refine_passes, 0), ("trials", trials, 1),
                             ("fm_passes", fm_passes, 0),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DiststError(f"gpa: option {name}={value!r} must be an integer >= {low}")
    if rating not in RATINGS:
        raise DiststError(f"gpa: unknown rating {rating!r}; choose one of {', '.join(RATINGS)}")
    params = {"seed": int(seed), "ufactor": int(ufactor), "symmetrize": symmetrize,
              "coarsen_per_part": int(coarsen_per_part), "refine_passes": int(refine_passes),
              "trials": int(trials), "rating": rating,
              "fm_passes": int(fm_passes)}
    t0 = time.perf_counter()
    P, n = int(num_parts), int(num_nodes)
    adj = undirected_csr(edge_index, edge_weight, n, how=symmetrize)
    if P == 1:
        return Partition(np.zeros(n, dtype=np.int64), 1, "gpa", params,
                         time.perf_counter() - t0, notes=[])
    cap = balance_cap(n, P, ufactor)
    target = coarsen_per_part * P
    max_vw = max(1.0, math.ceil(1.5 * n / target))

    graphs, weights, maps = [adj], [np.ones(n)], []
    while graphs[-1].shape[0] > target:
        g, nw = graphs[-1], weights[-1]
        row = _row_ids(g)
        allowed = nw[row] + nw[g.indices] <= max_vw  # keep super-nodes balanceable
        rated = g.copy()
        if rating == "expansion2":
            rated.data = g.data ** 2 / (nw[row] * nw[g.indices])
        mate = _pga_mates(rated, allowed)
        pairs = int((mate >= 0).sum()) // 2
        if pairs < 0.05 * g.shape[0]:
            break  # no more progress (isolated vertices, or everything at the size cap)
        cluster, coarse, cw = contract(g, mate, nw)
        graphs.append(coarse)
        weights.append(cw)
        maps.append(cluster)
    levels = len(maps)

    # Initial partitions of the coarsest graph by greedy growing from a few seeds; each is
    # carried through the whole uncoarsening (cheap next to the coarsening: refinement is
    # vectorised) and the best final result is kept, since the best coarse cut is often not
    # the best fine one.
    rows = [_row_ids(g) for g in graphs]
    g, nw = graphs[-1], weights[-1]
    rng = np.random.default_rng(seed)
    seeds = [0] + rng.integers(0, g.shape[0], size=trials - 1).tolist()
    best = None
    for s in seeds:
        part = _greedy_growing(g, nw, P, int(s))
        for lvl in range(levels, -1, -1):  # coarsest first; project from lvl+1 to lvl
            if lvl < levels:
                part = part[maps[lvl]]
            part = _rebalance(graphs[lvl], rows[lvl], weights[lvl], part, P, cap)
            part = _refine(graphs[lvl], rows[lvl], weights[lvl], part, P, cap, refine_passes)
            if fm_passes:
                part = _fm_refine(graphs[lvl], rows[lvl], weights[lvl], part, P, cap,
                                  fm_passes)
        over = max(0, int(np.bincount(part, minlength=P).max()) - cap)
        key = (over, _cut_weight(graphs[0], rows[0], part))
        if best is None or key < best[0]:
            best = (key, part)
    part = best[1]
    notes = [f"gpa: {levels} coarsening level(s), coarsest graph {graphs[-1].shape[0]} "
             f"super-nodes"]
    sizes = np.bincount(part, minlength=P)
    if sizes.max() > cap:
        notes.append(f"gpa: largest part has {int(sizes.max())} nodes, above the balance "
                     f"cap {cap} (ufactor={ufactor})")
    if (sizes == 0).any():
        notes.append(f"gpa: {int((sizes == 0).sum())} part(s) are empty")
    return Partition(part, P, "gpa", params, time.perf_counter() - t0, notes=notes)
