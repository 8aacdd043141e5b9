r"""Whether masses can be transported within the allowed entries of a cost.

Entries ``M_ij = +inf`` are forbidden: no mass may go there. A balanced
problem is feasible when some plan with the marginals ``a`` and ``b`` puts
no mass on them, i.e. when a maximum flow from the rows (capacities ``a``)
to the columns (capacities ``b``) through the finite entries (unbounded)
moves all the mass. What it cannot move is, by max-flow/min-cut,

.. math::
    \max_{S \subseteq \text{rows}} \; a(S) - b(N(S)),

``N(S)`` the columns some row of ``S`` reaches through a finite entry: the
violation of Hall's condition, e.g. a row of positive mass whose finite
entries all lead to columns of zero mass.

The flow is found without an n x m temporary (``M`` is only read): a greedy
pass sends each row's mass to the columns it reaches (cheapest given
entries first), then augmenting paths, found by breadth-first searches
through the allowed entries of ``M`` and back along the flow's sparse
support, move the rest, many paths per search. Every transfer empties
exactly the residual it equals (no rounding residue is left to chase), so a
feasible problem leaves only the rounding of the two sums.
"""

import numpy as np
from numba import njit, types
from numba.typed import Dict

from ...core.arrays import to_numpy
from ...core.validation import prepare_problem

#: Masses left below ``ROUNDING_RTOL * (n + m)`` times the total are rounding:
#: every transfer rounds each residual it changes by up to eps of its size.
ROUNDING_RTOL = 4 * float(np.finfo(np.float64).eps)


def transport_deficit(M, a=None, b=None):
    """The mass that cannot be transported within the finite entries of ``M``.

    Parameters
    ----------
    M : array_like (n, m)
        Dense NumPy cost; ``+inf`` marks a forbidden entry.
    a, b : array_like (n,), (m,), optional
        Masses with equal sums (checked and rescaled as everywhere:
        :data:`fastsinkhorn.core.validation.MASS_SUM_RTOL`); uniform when omitted.

    Returns
    -------
    float
        ``sum(a)`` minus the largest mass a plan can move through finite
        entries: ``0.0`` when a plan avoiding every forbidden entry exists,
        else (exact up to rounding) ``max_S a(S) - b(N(S))`` over sets of
        rows ``S``, ``N(S)`` the columns they reach by finite entries.
        Values below ``ROUNDING_RTOL * (n + m) * sum(a)`` are rounding and
        reported as ``0.0``.

    Examples
    --------
    >>> import numpy as np
    >>> inf = np.inf
    >>> transport_deficit(np.array([[0.0, inf], [inf, 0.0]]))
    0.0
    >>> transport_deficit(np.array([[0.0, 1.0], [0.0, inf], [0.0, inf]]), b=[1/3, 2/3])
    0.3333333333333333
    """
    prob = prepare_problem(M, a, b, 1.0, "cpu", check_support=False)
    C, a, b = to_numpy(prob.geom.M), to_numpy(prob.a), to_numpy(prob.b)
    return feasible_flow(C, a, b)[3]


def check_transportable(C, a, b, problem=""):
    """Raise the ``ValueError`` of an infeasible support when the masses ``a``,
    ``b`` (float64, equal sums) cannot be moved within the finite entries of
    the dense cost ``C`` (NumPy or CuPy); ``problem`` names a problem of a batch."""
    C, a, b = (to_numpy(x) for x in (C, a, b))
    deficit = feasible_flow(np.ascontiguousarray(C), a, b)[3]
    if deficit > 0:
        raise ValueError(infeasible_message(deficit, float(a.sum()), problem))


def infeasible_message(deficit, total, problem=""):
    """The message of an infeasible support: how much mass has no allowed route."""
    return (f"M: the masses cannot be transported within its finite entries{problem} (+inf marks a "
            f"forbidden entry): a mass of {deficit:.6g} of {total:.6g} would have to go through forbidden "
            "entries (some rows' mass exceeds what the columns they reach by finite entries can take)")


def feasible_flow(C, a, b, limit=np.inf, first_rows=None, first_cols=None):
    """A flow of largest mass from ``a`` to ``b`` through the entries ``C_ij <= limit``.

    Parameters
    ----------
    C : ndarray (n, m)
        Cost, C-contiguous float32/float64 (only read).
    a, b : float64 arrays (n,), (m,)
        Masses with equal sums.
    limit : float
        Entries above it (and ``+inf``) are not used.
    first_rows, first_cols : int arrays (k,), optional
        Entries to fill first, in this order (e.g. the cheapest ones): the
        greedy pass sends mass along them before sweeping the rest.

    Returns
    -------
    rows, cols, flow : arrays (E,)
        The flow's positive entries (the support may contain cycles).
    deficit : float
        The mass left unsent (``0.0`` below the rounding level).
    """
    n, m = C.shape
    if first_rows is None:
        first_rows = first_cols = np.zeros(0, np.int64)
    total = float(a.sum())
    rounding = ROUNDING_RTOL * (n + m) * total
    limit = min(float(limit), float(np.finfo(np.float64).max))  # +inf itself is never allowed
    rows, cols, flow, left = _max_flow(C, np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64),
                                       limit, np.asarray(first_rows, np.int64),
                                       np.asarray(first_cols, np.int64), rounding)
    keep = flow > 0
    return rows[keep], cols[keep], flow[keep], (left if left > rounding else 0.0)


@njit(cache=True)
def _take(have, t):
    """``have - t``, exactly 0 when ``t`` is all of it."""
    return 0.0 if t >= have else have - t


@njit(cache=True)
def _grow(x, fill):
    """``x`` twice as long, the new half ``fill``."""
    out = np.full(2 * x.shape[0], fill, x.dtype)
    out[:x.shape[0]] = x
    return out


@njit(cache=True)
def _send(i, j, t, m, er, ec, ef, nxt, head, index, ne):
    """``t`` more on entry ``(i, j)``, created if new. The flow's entries:
    ``er, ec, ef`` (grown by doubling), each column's in a linked list
    (``head[j]``, ``nxt[e]``), ``index`` from ``i * m + j``. Returns the
    arrays (new ones when grown) and the entry count."""
    key = i * m + j
    if key in index:
        ef[index[key]] += t
        return er, ec, ef, nxt, ne
    if ne == er.shape[0]:
        er, ec, ef, nxt = _grow(er, 0), _grow(ec, 0), _grow(ef, 0.0), _grow(nxt, -1)
    er[ne], ec[ne], ef[ne] = i, j, t
    nxt[ne], head[j] = head[j], ne
    index[key] = ne
    return er, ec, ef, nxt, ne + 1


#: Below this fraction of allowed entries, their columns are listed once
#: (CSR, int32: at most a quarter of a boolean mask's memory) and every pass
#: walks the lists; above it, the passes read M itself.
SPARSE_FRACTION = 1 / 16


@njit(cache=True)
def _allowed_lists(C, limit):
    """CSR lists of the allowed columns of each row (``C_ij <= limit``),
    or empty arrays when more than :data:`SPARSE_FRACTION` are allowed."""
    n, m = C.shape
    count = np.zeros(n + 1, np.int64)
    for i in range(n):
        for j in range(m):
            if C[i, j] <= limit:
                count[i + 1] += 1
    if count.sum() > SPARSE_FRACTION * n * m:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    start = np.cumsum(count)
    cols = np.empty(start[n], np.int32)
    for i in range(n):
        q = start[i]
        for j in range(m):
            if C[i, j] <= limit:
                cols[q] = j
                q += 1
    return start, cols


@njit(cache=True)
def _next_open(skip, j):
    """The first open position ``>= j`` of a skip list (path halving)."""
    while skip[j] != j:
        skip[j] = skip[skip[j]]
        j = skip[j]
    return j


@njit(cache=True)
def _max_flow(C, a, b, limit, first_rows, first_cols, rounding):
    n, m = C.shape
    start, lists = _allowed_lists(C, limit)
    sparse = start.shape[0] > 0
    ra, rb = a.copy(), b.copy()
    size = 2 * (n + m) + 16
    er = np.zeros(size, np.int64)
    ec = np.zeros(size, np.int64)
    ef = np.zeros(size)
    nxt = np.full(size, -1, np.int64)
    head = np.full(m, -1, np.int64)
    index = Dict.empty(key_type=types.int64, value_type=types.int64)
    ne = 0

    # greedy: the given entries first, then each row over the columns it
    # reaches; each transfer empties its row or its column (a forest)
    for q in range(first_rows.shape[0]):
        i, j = first_rows[q], first_cols[q]
        if ra[i] > 0 and rb[j] > 0 and C[i, j] <= limit:
            t = min(ra[i], rb[j])
            ra[i], rb[j] = _take(ra[i], t), _take(rb[j], t)
            er, ec, ef, nxt, ne = _send(i, j, t, m, er, ec, ef, nxt, head, index, ne)
    skip = np.arange(m + 1)  # columns with room left (dense sweep)
    for i in range(n):
        if sparse:
            for q in range(start[i], start[i + 1]):
                if not ra[i] > 0:
                    break
                j = lists[q]
                if rb[j] > 0:
                    t = min(ra[i], rb[j])
                    ra[i], rb[j] = _take(ra[i], t), _take(rb[j], t)
                    er, ec, ef, nxt, ne = _send(i, j, t, m, er, ec, ef, nxt, head, index, ne)
            continue
        j = _next_open(skip, 0)
        while ra[i] > 0 and j < m:
            if not rb[j] > 0:
                skip[j] = j + 1
            elif C[i, j] <= limit:
                t = min(ra[i], rb[j])
                ra[i], rb[j] = _take(ra[i], t), _take(rb[j], t)
                er, ec, ef, nxt, ne = _send(i, j, t, m, er, ec, ef, nxt, head, index, ne)
                if not rb[j] > 0:
                    skip[j] = j + 1
            j = _next_open(skip, j + 1)

    # Dinic: levels by a breadth-first search from the rows with mass left
    # (row -> column through an allowed entry, column -> row back along a
    # positive flow, column -> sink when it has room), then a blocking flow
    # along level-increasing paths (current-arc pointers, dead ends pruned)
    row_level = np.empty(n, np.int64)
    col_level = np.empty(m, np.int64)
    queue = np.empty(n, np.int64)
    row_arc = np.empty(n, np.int64)  # current arc: position in the row's columns
    col_arc = np.empty(m, np.int64)  # current arc: entry in the column's list
    path_row = np.empty(n + 1, np.int64)
    path_col = np.empty(n + 1, np.int64)
    path_edge = np.empty(n + 1, np.int64)  # the entry a path row was reached back along
    while ra.sum() > rounding:
        row_level[:], col_level[:] = -1, -1
        tail = 0
        for i in range(n):
            if ra[i] > 0:
                row_level[i] = 0
                queue[tail] = i
                tail += 1
        sink_level = -1
        skip[:] = np.arange(m + 1)  # columns not reached yet (dense search)
        head_q = 0
        while head_q < tail:
            i = queue[head_q]
            head_q += 1
            level = row_level[i] + 1
            if sink_level >= 0 and level >= sink_level:
                break
            if sparse:
                q, stop = start[i], start[i + 1]
                j = lists[q] if q < stop else m
            else:
                j = _next_open(skip, 0)
            while j < m:
                if col_level[j] < 0 and C[i, j] <= limit:
                    col_level[j] = level
                    skip[j] = j + 1
                    if rb[j] > 0:
                        sink_level = level + 1
                    e = head[j]
                    while e >= 0:
                        r = er[e]
                        if ef[e] > 0 and row_level[r] < 0:
                            row_level[r] = level + 1
                            queue[tail] = r
                            tail += 1
                        e = nxt[e]
                if sparse:
                    q += 1
                    j = lists[q] if q < stop else m
                else:
                    j = _next_open(skip, j + 1)
        if sink_level < 0:
            break
        if sparse:
            row_arc[:] = start[:n]
        else:
            row_arc[:] = 0
        col_arc[:] = head
        for s in range(n):
            if row_level[s] != 0:
                continue
            depth = 0
            path_row[0] = s
            while ra[s] > 0:
                i = path_row[depth]
                found = advanced = False
                stop = start[i + 1] if sparse else m
                while row_arc[i] < stop:
                    j = lists[row_arc[i]] if sparse else row_arc[i]
                    if col_level[j] == row_level[i] + 1 and C[i, j] <= limit:
                        if col_level[j] + 1 == sink_level:
                            if rb[j] > 0:
                                path_col[depth] = j
                                found = True
                                break
                        else:  # on along a positive flow back to a row one level down
                            e = col_arc[j]
                            while e >= 0 and not (ef[e] > 0 and row_level[er[e]] == col_level[j] + 1):
                                e = nxt[e]
                            col_arc[j] = e
                            if e >= 0:
                                path_col[depth] = j
                                path_edge[depth + 1] = e
                                path_row[depth + 1] = er[e]
                                depth += 1
                                advanced = True
                                break
                    row_arc[i] += 1
                if found:
                    t = min(ra[s], rb[path_col[depth]])
                    for k in range(1, depth + 1):
                        t = min(t, ef[path_edge[k]])
                    ra[s], rb[path_col[depth]] = _take(ra[s], t), _take(rb[path_col[depth]], t)
                    for k in range(depth + 1):
                        er, ec, ef, nxt, ne = _send(path_row[k], path_col[k], t, m, er, ec, ef, nxt, head, index,
                                                    ne)
                        if k > 0:
                            ef[path_edge[k]] = _take(ef[path_edge[k]], t)
                    depth = 0  # start again from the source (the arcs remember the way)
                elif not advanced:  # a dead end: its row leaves the level graph
                    row_level[i] = -1
                    if depth == 0:
                        break
                    depth -= 1
                    j = path_col[depth]
                    col_arc[j] = nxt[col_arc[j]]
    return er[:ne].copy(), ec[:ne].copy(), ef[:ne].copy(), float(ra.sum())
