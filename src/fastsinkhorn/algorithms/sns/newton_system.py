"""The sparsified Newton system of SNS, solved directly through a Schur complement.

The system is

    [[diag(r) + mu, S], [S^T, diag(c) + mu]] (d_f, d_g) = (rhs_f, rhs_g)

with ``S`` the kept entries of the plan (row-wise, as ``(idx, val)``) and
``r``, ``c`` the exact marginals. When the plan approaches a permutation its
smallest eigenvalues approach ``r_i - P_{i, sigma(i)}`` and conjugate gradient
stalls; a factorisation does not care about conditioning. Eliminating the
larger side leaves the Schur complement on the smaller one,

    C = diag(c) + mu - S^T diag(1 / (r + mu)) S        (for n >= m),

a graph Laplacian of the columns (linked through shared rows) plus a positive
diagonal: symmetric, weakly diagonally dominant, with non-positive
off-diagonals. Its diagonal is assembled from positive terms only,

    C_jj = mu + (c_j - sum_i S_ij)
           + sum_i S_ij (mu + (r_i - sum_l S_il) + sum_{l != j} S_il) / (r_i + mu),

so the tiny eigenvalues of a near-permutation plan are not lost to the
cancellation of ``c_j - sum_i S_ij^2 / r_i``. The shift ``mu > 0`` removes the
null direction ``(1, -1)`` (adding t to f and -t to g leaves the plan alone).

``C`` is factorised by dense LAPACK Cholesky when it is small or would fill
in, and by SuperLU (SciPy, a symmetric-mode LU with a fill-reducing ordering)
when large and sparse; see :func:`factorize`. The solution is polished by one step of
iterative refinement against the full sparsified system.

SciPy is imported by the functions that use it, not by this module: ``import
scipy.linalg`` alone is a large part of ``import fastsinkhorn`` (figures in
benchmarks/RESULTS.md, section 6), and most solves (Sinkhorn, SNS while PCG
converges) never factorise.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Schur complements up to this order are always factorised densely (LAPACK).
DENSE_MAX_ORDER = 200
#: Larger ones go to the sparse solver when the Cholesky flops bounded by their
#: envelope after reverse Cuthill-McKee are below this fraction of dense flops
#: (a sparse flop costs several dense ones: LAPACK runs at ~50 GFlop/s here,
#: SuperLU at a few).
SPARSE_MAX_FLOP_FRACTION = 0.1


@dataclass
class DirectSolve:
    """A factorised Newton system, ready for right-hand sides."""

    solve: Callable  # (rhs_f, rhs_g) -> (d_f, d_g)
    order: int  # order of the factorised Schur complement
    kind: str  # "dense" or "sparse"


@dataclass
class _Side:
    """One side of the bipartite system: diagonal, dropped mass."""

    diag: Any  # marginal + mu
    dropped: Any  # marginal mass not kept in S


def _sum_of_others(seg, s, nseg):
    """For each entry, the sum of the other entries of its segment.

    Computed without cancellation: ``total - s`` is only used for entries
    that are not their segment's largest (then ``total - s >= max >= s``);
    for the largest, the sum of the rest is added up directly.
    """
    total = np.bincount(seg, s, nseg)
    top = np.zeros(nseg)
    np.maximum.at(top, seg, s)
    is_top = s == top[seg]
    n_top = np.bincount(seg, is_top, nseg)
    rest = np.bincount(seg, np.where(is_top, 0.0, s), nseg)
    return np.where(is_top, rest[seg] + (n_top[seg] - 1) * top[seg], np.maximum(total[seg] - s, 0.0))


def envelope_flops(C):
    """Flops of a Cholesky factorisation confined to the envelope of ``C``
    after a reverse Cuthill-McKee ordering: an O(nnz) upper bound on the fill
    a sparse factorisation can suffer (minimum-degree orderings do better)."""
    import scipy.sparse
    import scipy.sparse.csgraph

    perm = scipy.sparse.csgraph.reverse_cuthill_mckee(C, symmetric_mode=True)
    lower = scipy.sparse.tril(C.tocsr()[perm][:, perm], format="csr")
    rows = np.repeat(np.arange(lower.shape[0]), np.diff(lower.indptr))
    first = np.full(lower.shape[0], lower.shape[0])
    np.minimum.at(first, rows, lower.indices)
    width = np.maximum(np.arange(lower.shape[0]) - first, 0).astype(np.float64)
    return float((width * width).sum())


def _dense_cholesky(C):
    """LAPACK Cholesky of a dense array; returns ``solve``. LAPACK's threads
    are BLAS's: capped at the free cores (beside another process, two
    spinning threads made a 300-point solve 16x slower)."""
    import scipy.linalg

    from ...backends._threads import blas_products  # (loads Numba: not at import fastsinkhorn)

    with blas_products():
        factor = scipy.linalg.cho_factor(C, lower=True, check_finite=False)

    def solve(y):
        with blas_products():
            return scipy.linalg.cho_solve(factor, y, check_finite=False)

    return solve


def _sparse_lu(C):
    """SuperLU of a CSC matrix (minimum-degree ordering on ``C + C^T``, no
    pivoting: ``C`` is diagonally dominant); returns ``solve``."""
    import scipy.sparse.linalg

    return scipy.sparse.linalg.splu(C, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                    options={"SymmetricMode": True}).solve


def factorize(C_offdiag, diag, kind=None):
    """Factorise ``C = C_offdiag + diag(diag)`` (symmetric positive definite).

    Returns ``(solve, kind)``; ``kind`` ("dense" or "sparse") may be
    given to skip the choice (a solve reuses its first one: the structure
    that decides it belongs to the problem). The choice, measured on the
    Newton systems of the benchmark suite (``benchmarks/factorization.py``;
    figures in benchmarks/RESULTS.md, section 4.1): Schur complements of
    plans between histograms on grids are sparse with little fill (SuperLU
    is several times faster than dense LAPACK Cholesky at order 4096), those
    of random-assignment plans link random columns, and any ordering fills
    them in (dense Cholesky is several times faster than SuperLU; QDLDL and
    CHOLMOD were slower still). The envelope bound of :func:`envelope_flops` tells
    them apart in O(nnz): dense LAPACK Cholesky for small or filling
    matrices, SuperLU (``MMD_AT_PLUS_A`` ordering, no pivoting: ``C`` is
    diagonally dominant) otherwise.
    """
    import scipy.sparse

    order = diag.shape[0]
    C = (C_offdiag + scipy.sparse.diags(diag)).tocsc()
    if kind is None:
        sparse = order > DENSE_MAX_ORDER and envelope_flops(C) < SPARSE_MAX_FLOP_FRACTION * order**3 / 3
        kind = "sparse" if sparse else "dense"
    if kind == "sparse":
        return _sparse_lu(C), "sparse"
    return _dense_cholesky(C.toarray()), "dense"


#: Entry pairs materialised at once while assembling the Schur complement.
PAIRS_PER_CHUNK = 1 << 22


def _pairs_within_segments(seg, nseg):
    """All ordered pairs ``(t, u)``, ``t != u``, of entries in the same segment.

    ``seg`` must be sorted. Returns two index arrays (sum of squared segment
    lengths, less the diagonal).
    """
    lengths = np.bincount(seg, minlength=nseg)
    per_entry = lengths[seg]
    first = np.repeat((np.cumsum(lengths) - lengths)[seg], per_entry)
    left = np.repeat(np.arange(seg.shape[0]), per_entry)
    right = first + np.arange(left.shape[0]) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
    distinct = left != right
    return left[distinct], right[distinct]


def _schur_offdiagonal(e, k, s, elim_diag):
    """Off-diagonal terms ``-s_ej s_el / d_e`` (j != l) of the Schur complement,
    as ``(j, l, value)`` chunks of at most ~``PAIRS_PER_CHUNK`` pairs.

    ``e`` (sorted), ``k``, ``s``: eliminated index, kept index and value of
    each entry. Chunks split the eliminated side, so memory stays bounded
    however many entries a row keeps.
    """
    ne = elim_diag.shape[0]
    lengths = np.bincount(e, minlength=ne)
    entry_start = np.concatenate([[0], np.cumsum(lengths)])
    pairs = np.cumsum(lengths.astype(np.int64) ** 2)
    cuts = np.searchsorted(pairs, np.arange(PAIRS_PER_CHUNK, pairs[-1] if ne else 0, PAIRS_PER_CHUNK))
    bounds = np.unique(np.concatenate([[0], cuts + 1, [ne]]).clip(0, ne))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = slice(entry_start[lo], entry_start[hi])
        left, right = _pairs_within_segments(e[part] - lo, hi - lo)
        left, right = left + part.start, right + part.start
        yield k[left], k[right], -s[left] * s[right] / elim_diag[e[left]]


def factorize_newton_system(idx, val, r, c, mu, kind=None):
    """Assemble and factorise the sparsified Newton system (host, float64).

    Parameters
    ----------
    idx, val : arrays (n, k)
        Kept entries of each row of the plan (column indices, values); zero
        values are padding.
    r, c : arrays (n,), (m,)
        Exact row and column sums of the plan.
    mu : float
        Positive shift added to the whole diagonal.
    kind : {None, "dense", "sparse"}
        Factorisation to use; ``None`` chooses (see :func:`factorize`).

    Returns
    -------
    DirectSolve

    Raises
    ------
    numpy.linalg.LinAlgError
        When the factorisation breaks down (the caller raises ``mu``).
    """
    n, m = r.shape[0], c.shape[0]
    keep = val > 0
    rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)[keep]  # sorted
    cols = idx[keep].astype(np.int64)
    s = val[keep].astype(np.float64)

    # Eliminate the larger side; entries sorted by their index on that side.
    if n >= m:
        e, k, elim_marg, kept_marg = rows, cols, r, c
    else:
        order = np.argsort(cols, kind="stable")
        e, k, s, elim_marg, kept_marg = cols[order], rows[order], s[order], c, r
    ne, nk = elim_marg.shape[0], kept_marg.shape[0]
    elim = _Side(elim_marg + mu, np.maximum(elim_marg - np.bincount(e, s, ne), 0.0))
    kept = _Side(kept_marg + mu, np.maximum(kept_marg - np.bincount(k, s, nk), 0.0))

    others = _sum_of_others(e, s, ne)
    diag = mu + kept.dropped + np.bincount(k, s * (mu + elim.dropped[e] + others) / elim.diag[e], nk)
    chunks = _schur_offdiagonal(e, k, s, elim.diag)
    if kind == "dense" or (kind is None and nk <= DENSE_MAX_ORDER):
        C = np.zeros(nk * nk)
        for row, col, value in chunks:
            C += np.bincount(row * nk + col, value, nk * nk)
        C = C.reshape(nk, nk)
        C[np.diag_indices(nk)] += diag
        solve_kept, kind = _dense_cholesky(C), "dense"
    else:
        import scipy.sparse

        off = scipy.sparse.csc_matrix((nk, nk))
        for row, col, value in chunks:
            off = off + scipy.sparse.csc_matrix((value, (row, col)), shape=(nk, nk))
        solve_kept, kind = factorize(off, diag, kind)

    def times_B(x_k):  # (the eliminated rows of S) @ x_k
        return np.bincount(e, s * x_k[k], ne)

    def times_BT(x_e):
        return np.bincount(k, s * x_e[e], nk)

    def solve_once(rhs_e, rhs_k):
        d_k = solve_kept(rhs_k - times_BT(rhs_e / elim.diag))
        return (rhs_e - times_B(d_k)) / elim.diag, d_k

    def solve(rhs_f, rhs_g):
        rhs_e, rhs_k = (rhs_f, rhs_g) if n >= m else (rhs_g, rhs_f)
        d_e, d_k = solve_once(rhs_e, rhs_k)
        # one step of iterative refinement against the unfactorised system
        c_e, c_k = solve_once(rhs_e - elim.diag * d_e - times_B(d_k), rhs_k - times_BT(d_e) - kept.diag * d_k)
        d_e, d_k = d_e + c_e, d_k + c_k
        return (d_e, d_k) if n >= m else (d_k, d_e)

    return DirectSolve(solve=solve, order=nk, kind=kind)


def prune_by_mass(val, r, budget):
    """Zero the smallest kept entries of each row while their mass fits the budget.

    Row ``i`` may drop mass ``budget * r_i / sum(r)`` in all, counting what the
    selection already left out (``r_i - sum(val[i])``). Near the optimum at
    small ``reg`` a row then keeps one to a few entries, and the factorisation
    stays sparse; the exact marginals keep the diagonal right.

    Returns the pruned copy of ``val``.
    """
    total = float(r.sum())
    if total <= 0:
        return val
    allowance = budget * r / total - np.maximum(r - val.sum(axis=1), 0.0)
    order = np.argsort(val, axis=1)  # ascending
    ascending = np.take_along_axis(val, order, axis=1)
    drop = np.cumsum(ascending, axis=1) <= allowance[:, None]
    drop[:, -1] = False  # every row keeps its largest entry
    pruned = val.copy()
    np.put_along_axis(pruned, order, np.where(drop, 0.0, ascending), axis=1)
    return pruned
