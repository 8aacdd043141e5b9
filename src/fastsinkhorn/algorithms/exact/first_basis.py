"""A first basis of the exact solver that puts no mass on forbidden or huge entries.

The north-west corner's basis ignores the costs: it may send mass through a
forbidden entry (``+inf``), or through a huge one (``1e30`` where the rest
is about 1), whose cost would then set the scale of every potential and
wipe out the digits of the others. When it does, the first basis is built
from a flow through the *allowed* entries (``M_ij <= limit``) instead:

1. A feasible flow (:func:`~fastsinkhorn.algorithms.exact.feasibility.feasible_flow`):
   the cheapest candidates first, then any allowed entry, then augmenting
   paths. With no such flow, the limit is dropped (huge entries carry mass
   when they must); with none through finite entries, the problem is
   infeasible and ``ValueError`` names ``M``.
2. Its cycles cancelled (mass pushed around each until an entry empties):
   a forest, whose flows are the basis' flows.
3. Completed into a spanning tree by zero-flow candidates (cheapest first)
   and, where the allowed entries leave components apart, by *fixed*
   connectors (:mod:`fastsinkhorn.algorithms.exact.network_simplex`).
"""

import numpy as np
from numba import njit

from .feasibility import feasible_flow, infeasible_message
from .spanning_tree import _find, adjacency


def flow_basis(C, a, b, limit, cand_rows, cand_cols, cand_cost):
    """A spanning-tree basis whose positive flows use entries ``C_ij <= limit``
    where possible (finite ones in any case).

    Parameters
    ----------
    C : ndarray (n, m)
        Cost (only read).
    a, b : float64 arrays (n,), (m,)
        Masses with equal sums.
    limit : float
        Largest cost the basis' flows should use.
    cand_rows, cand_cols, cand_cost : arrays (k,)
        Candidate entries: filled first and used as zero-flow tree edges,
        cheapest first.

    Returns
    -------
    rows, cols : int64 arrays (n + m - 1,)
        The tree's entries.
    fixed : bool array (n + m - 1,)
        Connectors that are not allowed (``C_ij > limit`` or ``+inf``): zero
        flow and capacity.

    Raises
    ------
    ValueError
        When no plan avoids every ``+inf`` entry of ``M``.
    """
    n, m = C.shape
    order = np.argsort(cand_cost, kind="stable")
    first_rows, first_cols = cand_rows[order], cand_cols[order]
    rows, cols, flow, deficit = feasible_flow(C, a, b, limit, first_rows, first_cols)
    if deficit > 0 and limit < np.inf:  # huge entries must carry mass
        limit = np.inf
        rows, cols, flow, deficit = feasible_flow(C, a, b, limit, first_rows, first_cols)
    if deficit > 0:
        raise ValueError(infeasible_message(deficit, float(a.sum())))
    forest = _cancel_cycles(n, m, rows, cols, flow)
    rows, cols = rows[forest], cols[forest]
    limit = min(float(limit), float(np.finfo(np.float64).max))  # +inf is never allowed
    t_rows, t_cols, fixed = _spanning_tree(C, n, m, rows, cols, first_rows, first_cols, limit)
    return t_rows, t_cols, fixed


@njit(cache=True)
def _root(n_nodes, src, dst, keep):
    """Parent node, parent edge and depth of every node in the forest ``keep``."""
    edges = np.nonzero(keep)[0]
    start, adj = adjacency(n_nodes, src[edges], dst[edges])
    parent = np.full(n_nodes, -1, np.int64)
    pedge = np.full(n_nodes, -1, np.int64)
    depth = np.full(n_nodes, -1, np.int64)
    stack = np.empty(n_nodes, np.int64)
    for root in range(n_nodes):
        if depth[root] >= 0:
            continue
        depth[root], stack[0], size = 0, root, 1
        while size > 0:
            size -= 1
            x = stack[size]
            for p in range(start[x], start[x + 1]):
                e = edges[adj[p]]
                y = dst[e] if src[e] == x else src[e]
                if depth[y] < 0:
                    parent[y], pedge[y], depth[y] = x, e, depth[x] + 1
                    stack[size] = y
                    size += 1
    return parent, pedge, depth


@njit(cache=True)
def _cancel_cycles(n, m, rows, cols, flow):
    """Push mass around the cycles of the flow's support until none is left;
    returns the mask of the remaining forest (flows updated in place, exact
    zeros where an entry emptied)."""
    n_nodes, E = n + m, rows.shape[0]
    src, dst = rows, cols + n
    uf = np.arange(n_nodes)
    keep = np.zeros(E, np.bool_)
    extra = np.empty(E, np.int64)
    n_extra = 0
    for e in range(E):
        x, y = _find(uf, src[e]), _find(uf, dst[e])
        if x != y:
            uf[x] = y
            keep[e] = True
        else:
            extra[n_extra] = e
            n_extra += 1
    if n_extra == 0:
        return keep
    parent, pedge, depth = _root(n_nodes, src, dst, keep)
    path = np.empty(n_nodes, np.int64)
    down = np.empty(n_nodes, np.bool_)
    for q in range(n_extra):
        e = extra[q]
        # the cycle: e (row -> column), then the tree path column -> ... -> row;
        # lowering e raises the path's "down" edges and lowers the others
        x, y, k = dst[e], src[e], 0
        while x != y:
            if depth[x] >= depth[y]:
                path[k], down[k] = pedge[x], x >= n
                x = parent[x]
            else:
                path[k], down[k] = pedge[y], y < n
                y = parent[y]
            k += 1
        theta, out = flow[e], -1
        for p in range(k):
            if not down[p] and flow[path[p]] < theta:
                theta, out = flow[path[p]], path[p]
        flow[e] = 0.0 if out < 0 else flow[e] - theta
        for p in range(k):
            f = path[p]
            if down[p]:
                flow[f] += theta
            else:
                flow[f] = 0.0 if f == out or flow[f] <= theta else flow[f] - theta
        if out >= 0:  # a tree edge emptied first: e takes its place
            keep[out], keep[e] = False, True
            parent, pedge, depth = _root(n_nodes, src, dst, keep)
    return keep


@njit(cache=True)
def _spanning_tree(C, n, m, rows, cols, cand_rows, cand_cols, limit):
    """The forest ``(rows, cols)`` completed into a spanning tree: candidates
    (in order) that join two components, then connectors to row 0's
    component; returns the tree's rows, columns and which are fixed."""
    total = n + m - 1
    t_rows = np.empty(total, np.int64)
    t_cols = np.empty(total, np.int64)
    fixed = np.zeros(total, np.bool_)
    uf = np.arange(n + m)
    k = 0
    for e in range(rows.shape[0]):
        uf[_find(uf, rows[e])] = _find(uf, n + cols[e])
        t_rows[k], t_cols[k] = rows[e], cols[e]
        k += 1
    for q in range(cand_rows.shape[0]):
        if k == total:
            break
        i, j = cand_rows[q], cand_cols[q]
        x, y = _find(uf, i), _find(uf, n + j)
        if x != y and C[i, j] <= limit:
            uf[x] = y
            t_rows[k], t_cols[k] = i, j
            k += 1
    # connectors: to a column of row 0's component (row 0 joins column 0 first if alone)
    anchor = -1
    for j in range(m):
        if _find(uf, n + j) == _find(uf, 0):
            anchor = j
            break
    for v in range(n + m):
        if k == total:
            break
        if _find(uf, v) == _find(uf, 0) and anchor >= 0:
            continue
        i, j = (v, anchor) if v < n else (0, v - n)
        if anchor < 0:  # row 0 alone: join it to column 0's component
            i, j, anchor = 0, 0, 0
        x, y = _find(uf, i), _find(uf, n + j)
        if x == y:
            continue
        uf[x] = y
        t_rows[k], t_cols[k] = i, j
        fixed[k] = not C[i, j] <= limit
        k += 1
    return t_rows[:k], t_cols[:k], fixed[:k]
