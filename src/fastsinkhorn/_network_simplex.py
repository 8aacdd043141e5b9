"""Primal network simplex on a sparse support, warm-started from a basis.

Column generation adds a few entries at a time to a support whose LP was
solved already: from the previous optimal basis, a handful of pivots
restores optimality, where a fresh LP solve would start from scratch. Each
pivot: block search for an entry of negative reduced cost, the cycle it
closes in the tree (walking both ends up to their common ancestor), the
ratio test, the exchange; the tree's parents, depths and potentials are then
rebuilt by one traversal (O(n + m) a pivot: simple, and cheap next to the
pricing pass over ``M`` that follows).

Nodes: rows ``0..n-1``, columns ``n..n+m-1``; entry ``e`` is the edge
``rows[e] -> n + cols[e]``, carrying ``flow[e] >= 0``.
"""

import numpy as np
from numba import njit

from ._spanning_tree import adjacency


@njit(cache=True)
def _rebuild(n_nodes, src, dst, tree, parent, pedge, depth, pi, cost):
    """Parents, depths and potentials (``pi_x + pi_y = cost_e`` on tree
    edges, ``pi = 0`` at the root, node 0) of the spanning tree ``tree``."""
    start, adj = adjacency(n_nodes, src[tree], dst[tree])
    parent[0], pedge[0], depth[0], pi[0] = -1, -1, 0, 0.0
    stack = [0]
    while len(stack) > 0:
        x = stack.pop()
        for p in range(start[x], start[x + 1]):
            e = tree[adj[p]]
            y = dst[e] if src[e] == x else src[e]
            if y != parent[x]:
                parent[y], pedge[y], depth[y] = x, e, depth[x] + 1
                pi[y] = cost[e] - pi[x]
                stack.append(y)


@njit(cache=True)
def network_simplex(n, m, rows, cols, cost, flow, in_tree, tol, max_pivots):
    """Pivot to an optimal basis of the LP on the support ``(rows, cols)``.

    Parameters
    ----------
    rows, cols, cost : arrays (E,)
        The support and its costs.
    flow : float64 array (E,)
        A basic feasible solution on ``in_tree``; updated in place.
    in_tree : bool array (E,)
        A spanning tree (``n + m - 1`` edges) containing every positive
        flow; updated in place.
    tol : float
        Entries of reduced cost ``>= -tol`` do not enter.
    max_pivots : int

    Returns
    -------
    pivots : int
        Pivots made; ``max_pivots`` means the cap stopped them.
    """
    n_nodes, E = n + m, rows.shape[0]
    src, dst = rows, cols + n
    tree = np.nonzero(in_tree)[0]
    slot = np.full(E, -1, np.int64)  # position of a tree edge in ``tree``
    slot[tree] = np.arange(tree.shape[0])
    parent = np.empty(n_nodes, np.int64)
    pedge = np.empty(n_nodes, np.int64)
    depth = np.empty(n_nodes, np.int64)
    pi = np.empty(n_nodes)
    _rebuild(n_nodes, src, dst, tree, parent, pedge, depth, pi, cost)
    block = max(int(np.sqrt(E)), 32)
    pos = 0
    path = np.empty(n_nodes, np.int64)
    down = np.empty(n_nodes, np.bool_)  # whether the cycle lowers the flow on that edge
    for pivot in range(max_pivots):
        # block search: the most negative reduced cost of the first block holding one
        enter, best, scanned = -1, -tol, 0
        while scanned < E and enter < 0:
            for _ in range(min(block, E - scanned)):
                e = pos
                pos = pos + 1 if pos + 1 < E else 0
                if slot[e] < 0:
                    r = cost[e] - pi[src[e]] - pi[dst[e]]
                    if r < best:
                        best, enter = r, e
            scanned += block
        if enter < 0:
            in_tree[:] = slot >= 0
            return pivot
        # the cycle: +enter (row i -> column j), then the tree path j -> ... -> i.
        # Going up from j, the edge above a column is crossed column -> row: its
        # flow goes down; going up from i, the edge above a row likewise.
        x, y, k = dst[enter], src[enter], 0
        while x != y:
            if depth[x] >= depth[y]:
                path[k], down[k] = pedge[x], x >= n
                x = parent[x]
            else:
                path[k], down[k] = pedge[y], y < n
                y = parent[y]
            k += 1
        theta, leave = np.inf, -1
        for q in range(k):
            if down[q] and flow[path[q]] < theta:
                theta, leave = flow[path[q]], path[q]
        theta = max(theta, 0.0)
        flow[enter] += theta
        for q in range(k):
            flow[path[q]] += -theta if down[q] else theta
        flow[leave] = 0.0
        tree[slot[leave]] = enter
        slot[enter], slot[leave] = slot[leave], -1
        _rebuild(n_nodes, src, dst, tree, parent, pedge, depth, pi, cost)
    in_tree[:] = slot >= 0
    return max_pivots
