"""Numba kernels that evaluate point-cloud costs on the fly (CPU backend).

Each kernel fills a block of rows of an exponent matrix from coordinates,
so nothing n x m is ever stored; NumPy's SIMD ``exp`` then runs on the block
(see ``_cpu.py``). Coordinates of the columns come transposed, ``yT`` (d, m),
so the inner loop runs over contiguous columns for each dimension and
vectorises whatever ``d``.
"""

import numpy as np
from numba import njit

from ._contract import COST_KINDS

# Reassociation and contraction only: the exponents may be -inf (zero masses).
_FAST = {"nsz", "arcp", "contract", "reassoc"}

# The codes of the kinds these kernels compute, read from the one table. Numba
# compiles them in as constants, and its on-disk cache notices a change of this
# file only: after renumbering COST_KINDS, delete this folder's __pycache__ (a
# stale kernel would disagree with the reference in tests/test_contract.py).
SQEUCLIDEAN = COST_KINDS["sqeuclidean"]
EUCLIDEAN = COST_KINDS["euclidean"]
MINKOWSKI = COST_KINDS["minkowski"]


@njit(cache=True, nogil=True, fastmath=_FAST)
def cost_rows(x, yT, code, p, scale, out):
    """``out[r, j] = cost(x_r, y_j)`` for the rows ``x`` (rows, d) of a block.

    ``code`` is the kind's code in ``COST_KINDS``; a code without a formula
    here raises ``ValueError`` before anything is computed.
    """
    if code != SQEUCLIDEAN and code != EUCLIDEAN and code != MINKOWSKI:
        raise ValueError("the CPU kernels have no formula for this point-cloud cost code (see COST_KINDS)")
    rows, d = x.shape
    m = yT.shape[1]
    for r in range(rows):
        o = out[r]
        for j in range(m):
            o[j] = 0.0
        for k in range(d):
            xv = x[r, k]
            yk = yT[k]
            if code == MINKOWSKI:
                for j in range(m):
                    o[j] += abs(xv - yk[j]) ** p
            else:
                for j in range(m):
                    t = xv - yk[j]
                    o[j] += t * t
        if code == EUCLIDEAN:
            for j in range(m):
                o[j] = scale * np.sqrt(o[j])
        elif code == MINKOWSKI:
            q = 1.0 / p
            for j in range(m):
                o[j] = scale * o[j] ** q
        elif scale != 1.0:
            for j in range(m):
                o[j] *= scale


@njit(cache=True, nogil=True, fastmath=_FAST)
def exponent_rows(x, yT, code, p, scale, fr, g, inv, out):
    """``out[r, j] = (fr_r + g_j - cost(x_r, y_j)) * inv`` on a block of rows."""
    cost_rows(x, yT, code, p, scale, out)
    rows, m = out.shape
    for r in range(rows):
        o = out[r]
        fi = fr[r]
        for j in range(m):
            o[j] = (fi + g[j] - o[j]) * inv


@njit(cache=True, nogil=True, fastmath=_FAST)
def shifted_exponent_rows(x, yT, code, p, scale, h, inv, cut, out, top):
    """Log-sum-exp preparation: ``z_rj = (h_j - cost(x_r, y_j)) * inv``, then
    ``top_r = max_j z_rj`` and ``out[r, j] = max(z_rj - top_r, cut)``.

    Clamping at ``cut`` (-460: terms below 1e-200 of the largest) keeps the
    following ``exp`` on its fast path; a row whose terms are all ``-inf``
    gets ``top_r = -inf`` (and zeros, never read).
    """
    cost_rows(x, yT, code, p, scale, out)
    rows, m = out.shape
    for r in range(rows):
        o = out[r]
        best = -np.inf
        for j in range(m):
            z = (h[j] - o[j]) * inv
            o[j] = z
            best = max(best, z)
        top[r] = best
        if best == -np.inf:
            o[:] = 0.0
            continue
        for j in range(m):
            o[j] = max(o[j] - best, cut)
