"""Primal network simplex on a sparse support, warm-started from a basis.

Column generation adds a few entries at a time to a support whose LP was
solved already: from the previous optimal basis, a handful of pivots
restores optimality, where a fresh LP solve would start from scratch. Each
pivot: block search for an entry of negative reduced cost, the cycle it
closes in the tree (walking both ends up to their common ancestor), the
ratio test, the exchange, and the subtree cut off by the leaving edge
re-hung from the entering one (parents, child lists, depths, potentials:
O(subtree size)).

Nodes: rows ``0..n-1``, columns ``n..n+m-1``; entry ``e`` is the edge
``rows[e] -> n + cols[e]``, carrying ``flow[e] >= 0``.

A basis may hold *fixed* edges: artificial connectors of zero flow and zero
capacity (a forbidden entry, or a huge cost the first basis avoids), which
keep the tree spanning while the allowed entries cannot. They count with a
finite stand-in cost ``fake`` in the potentials (their real cost, +inf or
huge, would wipe out every other potential's digits); any cycle through one
is a degenerate pivot that removes it, after which the entry is an ordinary
one with its real cost (one of +inf never enters).
"""

import numpy as np
from numba import njit

from .spanning_tree import adjacency


@njit(cache=True)
def _hang(root, n_nodes, src, dst, tree, parent, pedge, depth, pi, cost, fixed, fake, child, sibling, prev):
    """Parents, depths, potentials (``pi_x + pi_y = cost_e`` on tree edges,
    ``fake`` on fixed ones, ``pi = 0`` at ``root``) and child lists of the
    spanning tree ``tree``, from scratch; returns the nodes in traversal
    order (parents first)."""
    start, adj = adjacency(n_nodes, src[tree], dst[tree])
    child[:], sibling[:], prev[:] = -1, -1, -1
    parent[root], pedge[root], depth[root], pi[root] = -1, -1, 0, 0.0
    order = np.empty(n_nodes, np.int64)
    order[0], k, head = root, 1, 0
    while head < k:
        x = order[head]
        head += 1
        for p in range(start[x], start[x + 1]):
            e = tree[adj[p]]
            y = dst[e] if src[e] == x else src[e]
            if y != parent[x]:
                parent[y], pedge[y], depth[y] = x, e, depth[x] + 1
                pi[y] = (fake if fixed[e] else cost[e]) - pi[x]
                _link(y, x, child, sibling, prev)
                order[k] = y
                k += 1
    return order


@njit(cache=True)
def _rebuild(n_nodes, src, dst, tree, parent, pedge, depth, pi, cost, fixed, fake, child, sibling, prev):
    """:func:`_hang` from the tree's centroid (no subtree above half the
    nodes): shallow trees make the cycles and the re-hung subtrees of the
    pivots short."""
    order = _hang(0, n_nodes, src, dst, tree, parent, pedge, depth, pi, cost, fixed, fake, child, sibling, prev)
    size = np.ones(n_nodes, np.int64)
    largest = np.zeros(n_nodes, np.int64)  # largest child subtree
    for q in range(n_nodes - 1, 0, -1):
        x = order[q]
        size[parent[x]] += size[x]
        largest[parent[x]] = max(largest[parent[x]], size[x])
    centroid, best = 0, n_nodes
    for x in range(n_nodes):
        worst = max(largest[x], n_nodes - size[x])
        if worst < best:
            centroid, best = x, worst
    if centroid != 0:
        _hang(centroid, n_nodes, src, dst, tree, parent, pedge, depth, pi, cost, fixed, fake, child, sibling, prev)


@njit(cache=True, inline="always")
def _link(y, x, child, sibling, prev):
    """Make ``y`` the first child of ``x``."""
    sibling[y], prev[y] = child[x], -1
    if child[x] >= 0:
        prev[child[x]] = y
    child[x] = y


@njit(cache=True, inline="always")
def _unlink(y, x, child, sibling, prev):
    """Remove ``y`` from the children of ``x``."""
    if prev[y] >= 0:
        sibling[prev[y]] = sibling[y]
    else:
        child[x] = sibling[y]
    if sibling[y] >= 0:
        prev[sibling[y]] = prev[y]


@njit(cache=True)
def network_simplex(n, m, rows, cols, cost, fixed, fake, flow, in_tree, tol, max_pivots):
    """Pivot to an optimal basis of the LP on the support ``(rows, cols)``.

    Parameters
    ----------
    rows, cols, cost : arrays (E,)
        The support and its costs (``+inf``: never carries flow).
    fixed : bool array (E,)
        Fixed tree edges (zero flow and capacity, cost ``fake`` while in the
        tree); updated in place (an edge that leaves is fixed no more).
    fake : float
        The stand-in cost of fixed edges.
    flow : float64 array (E,)
        A basic feasible solution on ``in_tree``; updated in place.
    in_tree : bool array (E,)
        A spanning tree (``n + m - 1`` edges) containing every positive
        flow; updated in place.
    tol : float
        Entries of reduced cost ``>= -tol`` do not enter.
    max_pivots : int
        Pivots allowed.

    Returns
    -------
    pivots : int
        Pivots made.
    optimal : bool
        Whether the basis is optimal on the support; ``False`` only when
        ``max_pivots`` stopped the pivots with an entry still to enter.
    pi : float64 array (n + m,)
        The basis' potentials (rows', then columns'), rebuilt from scratch
        from the tree's centroid when ``optimal``.
    depth : int
        The tree's depth from that centroid (the roundings a potential holds).

    Each pivot re-hangs the subtree cut off by the leaving edge from the
    entering edge and shifts its potentials (O(subtree)); potentials drift
    by a rounding a pivot, so optimality is confirmed on potentials rebuilt
    from scratch.
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
    child = np.empty(n_nodes, np.int64)
    sibling = np.empty(n_nodes, np.int64)
    prev = np.empty(n_nodes, np.int64)
    _rebuild(n_nodes, src, dst, tree, parent, pedge, depth, pi, cost, fixed, fake, child, sibling, prev)
    block = max(int(np.sqrt(E)), 32)
    pos = 0
    path = np.empty(n_nodes, np.int64)
    down = np.empty(n_nodes, np.bool_)  # whether the cycle lowers the flow on that edge
    side = np.empty(n_nodes, np.bool_)  # whether the edge is on the column's side
    stack = np.empty(n_nodes, np.int64)
    fresh = True  # potentials just rebuilt from scratch
    pivots, optimal = 0, False
    while True:
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
            if fresh:
                optimal = True
                break
            _rebuild(n_nodes, src, dst, tree, parent, pedge, depth, pi, cost, fixed, fake, child, sibling, prev)
            fresh = True
            continue
        if pivots >= max_pivots:  # an entry would still enter: the cap cut the solve short
            break
        fresh = False
        pivots += 1
        # the cycle: +enter (row i -> column j), then the tree path j -> ... -> i.
        # Going up from j, the edge above a column is crossed column -> row: its
        # flow goes down; going up from i, the edge above a row likewise.
        x, y, k = dst[enter], src[enter], 0
        while x != y:
            if depth[x] >= depth[y]:
                path[k], down[k], side[k] = pedge[x], x >= n, True
                x = parent[x]
            else:
                path[k], down[k], side[k] = pedge[y], y < n, False
                y = parent[y]
            k += 1
        theta, leave, on_col_side = np.inf, -1, True
        for q in range(k):
            if fixed[path[q]]:  # no capacity either way: a degenerate pivot that removes it
                theta, leave, on_col_side = 0.0, path[q], side[q]
                break
            if down[q] and flow[path[q]] < theta:
                theta, leave, on_col_side = flow[path[q]], path[q], side[q]
        theta = max(theta, 0.0)
        flow[enter] += theta
        for q in range(k):
            flow[path[q]] += -theta if down[q] else theta
        flow[leave] = 0.0
        fixed[leave] = False
        tree[slot[leave]] = enter
        slot[enter], slot[leave] = slot[leave], -1
        # the subtree below ``leave`` holds the entering edge's end on that side:
        # re-hang it from there (reversing the parents on the way up to ``leave``)
        bottom = src[leave] if parent[src[leave]] == dst[leave] else dst[leave]
        if on_col_side:
            x, new_parent = dst[enter], src[enter]
        else:
            x, new_parent = src[enter], dst[enter]
        new_edge, top = enter, x
        while True:
            old_parent, old_edge = parent[x], pedge[x]
            _unlink(x, old_parent, child, sibling, prev)
            _link(x, new_parent, child, sibling, prev)
            parent[x], pedge[x] = new_parent, new_edge
            if x == bottom:
                break
            new_parent, new_edge, x = x, old_edge, old_parent
        # shift the subtree's potentials (+delta on the side of ``top``, -delta
        # on the other: edges inside it stay tight) and renumber its depths
        delta = cost[enter] - pi[parent[top]] - pi[top]
        top_is_row = top < n
        stack[0], size = top, 1
        while size > 0:
            size -= 1
            x = stack[size]
            pi[x] += delta if (x < n) == top_is_row else -delta
            depth[x] = depth[parent[x]] + 1
            c = child[x]
            while c >= 0:
                stack[size] = c
                size += 1
                c = sibling[c]
    in_tree[:] = slot >= 0
    return pivots, optimal, pi, int(depth.max())
