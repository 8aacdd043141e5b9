"""Numba kernels of the exact solver: the dense pricing pass over ``M``.

One streaming read of the row-major cost, ``prange`` over ``nblocks`` row
blocks (each with its own column minima, reduced after the loop) as in the
CPU backend: no n x m temporary is ever made. Reduced costs are computed in
float64 whatever the cost's dtype, on ``M - shift``: the solver works on the
cost less its minimum, which for a cost ``1e12 + r`` is exact (Sterbenz) and
keeps the duals, and their rounding, at the scale of ``r``.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def smallest_reduced_costs(M, u, v, k, nblocks, shift=0.0):
    """The ``k`` smallest reduced costs ``(M_ij - shift) - u_i - v_j`` of
    every row, and the smallest of every column (``+inf`` entries: ``+inf``).

    Returns ``(idx, rc, col_arg, col_min)``: ``idx`` (n, k) column indices
    and ``rc`` (n, k) their reduced costs, ascending along each row (padded
    with -1 / +inf when ``k > m``); ``col_arg`` (m,) the row of each column's
    smallest reduced cost and ``col_min`` (m,) that value.
    """
    n, m = M.shape
    idx = np.full((n, k), -1, np.int64)
    rc = np.full((n, k), np.inf)
    cmin = np.full((nblocks, m), np.inf)
    carg = np.zeros((nblocks, m), np.int64)
    size = (n + nblocks - 1) // nblocks
    for blk in prange(nblocks):
        bmin, barg = cmin[blk], carg[blk]
        for i in range(blk * size, min(n, (blk + 1) * size)):
            ui = u[i]
            ri, xi = rc[i], idx[i]
            worst = np.inf
            for j in range(m):
                r = (np.float64(M[i, j]) - shift) - ui - v[j]
                if r < bmin[j]:
                    bmin[j] = r
                    barg[j] = i
                if r < worst:  # insert into the sorted k smallest
                    p = k - 1
                    while p > 0 and ri[p - 1] > r:
                        ri[p] = ri[p - 1]
                        xi[p] = xi[p - 1]
                        p -= 1
                    ri[p] = r
                    xi[p] = j
                    worst = ri[k - 1]
    col_min = np.full(m, np.inf)
    col_arg = np.zeros(m, np.int64)
    for blk in range(nblocks):
        for j in range(m):
            if cmin[blk, j] < col_min[j]:
                col_min[j] = cmin[blk, j]
                col_arg[j] = carg[blk, j]
    return idx, rc, col_arg, col_min


@njit(cache=True, parallel=True)
def gather_costs(M, rows, cols, shift=0.0):
    """``M[rows, cols] - shift`` as float64 (entries of a sparse support)."""
    out = np.empty(rows.shape[0])
    for e in prange(rows.shape[0]):
        out[e] = np.float64(M[rows[e], cols[e]]) - shift
    return out
