"""Basic solutions of the transportation problem on a spanning forest.

A basis of the transportation LP is a spanning forest of the bipartite graph
(rows ``0..n-1``, columns ``n..n+m-1``). Given one, its flows follow from
the marginals alone (leaf elimination) and its duals from the costs alone
(propagation ``u_i + v_j = M_ij`` along the edges): both are exact up to one
rounding per edge, whatever the accuracy of the LP solver that found the
basis. That is how the exact solver polishes an LP solution.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


@njit(cache=True)
def spanning_forest(n, m, rows, cols, order):
    """Kruskal: the edges of ``order`` (indices into ``rows``/``cols``) that
    close no cycle, taken in that order. Returns a boolean mask over edges."""
    parent = np.arange(n + m)
    keep = np.zeros(rows.shape[0], np.bool_)
    for e in order:
        x, y = _find(parent, rows[e]), _find(parent, n + cols[e])
        if x != y:
            parent[x] = y
            keep[e] = True
    return keep


@njit(cache=True)
def adjacency(n_nodes, src, dst):
    """CSR adjacency (edge ids) of an undirected edge list."""
    deg = np.zeros(n_nodes + 1, np.int64)
    for e in range(src.shape[0]):
        deg[src[e] + 1] += 1
        deg[dst[e] + 1] += 1
    start = np.cumsum(deg)
    fill = start[:-1].copy()
    adj = np.empty(2 * src.shape[0], np.int64)
    for e in range(src.shape[0]):
        adj[fill[src[e]]] = e
        fill[src[e]] += 1
        adj[fill[dst[e]]] = e
        fill[dst[e]] += 1
    return start, adj


@njit(cache=True)
def tree_flows(n, m, rows, cols, a, b):
    """Flows of the forest ``(rows, cols)`` meeting the marginals ``a``, ``b``.

    Leaf elimination: a leaf's only edge carries what is left of its mass.
    The last node of each tree absorbs that tree's imbalance (rounding for a
    basis of a feasible problem). Flows are not clipped.
    """
    src, dst = rows, cols + n
    start, adj = adjacency(n + m, src, dst)
    left = np.concatenate((a, b))
    deg = start[1:] - start[:-1]
    used = np.zeros(rows.shape[0], np.bool_)
    flow = np.zeros(rows.shape[0])
    stack = [x for x in range(n + m) if deg[x] == 1]
    while len(stack) > 0:
        x = stack.pop()
        if deg[x] != 1:  # its other end was eliminated first (a two-node tree)
            continue
        for p in range(start[x], start[x + 1]):
            e = adj[p]
            if not used[e]:
                break
        used[e] = True
        y = dst[e] if src[e] == x else src[e]
        flow[e] = left[x]
        left[y] -= left[x]
        left[x] = 0.0
        deg[x] -= 1
        deg[y] -= 1
        if deg[y] == 1:
            stack.append(y)
    return flow


@njit(cache=True)
def tree_duals(n, m, rows, cols, cost):
    """Duals with ``u_i + v_j = cost_e`` on every edge of the forest, and the
    forest's depth.

    Each tree is rooted at its first node, whose dual is 0; the rest follows
    by propagation along the edges, one rounding a step: a dual at depth
    ``d`` carries up to about ``d`` roundings of the duals' size.
    """
    src, dst = rows, cols + n
    start, adj = adjacency(n + m, src, dst)
    dual = np.zeros(n + m)
    depth = np.full(n + m, -1, np.int64)
    for root in range(n + m):
        if depth[root] >= 0:
            continue
        depth[root] = 0
        stack = [root]
        while len(stack) > 0:
            x = stack.pop()
            for p in range(start[x], start[x + 1]):
                e = adj[p]
                y = dst[e] if src[e] == x else src[e]
                if depth[y] < 0:
                    depth[y] = depth[x] + 1
                    dual[y] = cost[e] - dual[x]
                    stack.append(y)
    return dual[:n], dual[n:], int(depth.max())


@njit(cache=True)
def northwest_corner(a, b):
    """Entries ``(rows, cols)`` of the north-west corner rule's plan: a
    feasible basis for any marginals with equal sums (at most n + m - 1)."""
    n, m = a.shape[0], b.shape[0]
    rows = np.empty(n + m - 1, np.int64)
    cols = np.empty(n + m - 1, np.int64)
    ra, cb = a[0], b[0]
    i = j = e = 0
    while True:
        rows[e], cols[e] = i, j
        e += 1
        if i == n - 1 and j == m - 1:
            break
        # move past the side that runs out first (rounding: never off the edge)
        if (ra < cb and i < n - 1) or j == m - 1:
            cb -= ra
            i += 1
            ra = a[i]
        else:
            ra -= cb
            j += 1
            cb = b[j]
    return rows[:e], cols[:e]
