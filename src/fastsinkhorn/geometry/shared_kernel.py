"""Log-sum-exp passes of many problems over one cost, as matrix-matrix products.

For ``B`` problems on one cost ``C`` (n, m), Sinkhorn's row pass
``out_bi = log sum_j exp((g_bj - C_ij) / reg)`` is, with stabilisers
``alpha`` (n,) and ``beta`` (m,) shared by all problems and the kernel
``K_ij = exp((alpha_i + beta_j - C_ij) / reg)``,

    out_bi = log (K V_b)_i + s_b - alpha_i / reg,
    V_bj = exp(h_bj - s_b),  h_bj = (g_bj - beta_j) / reg,  s_b = max_j h_bj,

one product ``V @ K^T`` for all problems: compute-bound BLAS, where ``B``
separate passes would each read the cost. :class:`SharedKernel` does this
exactly, not approximately:

* ``K <= 1`` and ``V <= 1`` (the stabilisers are centred so that each row
  (or column) of ``K`` sums to 1, and ``s_b`` is each problem's maximum), so
  nothing overflows;
* entries below :data:`FLUSH` are set to exact zeros (subnormal operands
  slow BLAS down by orders of magnitude), so each dropped term is below
  ``FLUSH``; a sum ``(K V_b)_i`` at or above :data:`TINY` (``m`` times
  ``FLUSH``, and more) has lost nothing measurable, and a sum below it is
  recomputed exactly, entry by entry, as a plain log-sum-exp.

Sums fall below ``TINY`` where a problem's potentials are far (about 640
``reg`` in float64, 57 ``reg`` in float32) from the stabilisers: small
``reg`` with very different problems. The stabilisers are then re-centred on
the problems' current potentials (one exact pass and one exp pass over the
cost), at most every :data:`RECENTRE_EVERY` passes unless most sums failed;
what still fails is recomputed exactly. The answer is exact either way; only
its speed depends on how alike the problems are.
"""

import contextlib

import numpy as np

#: Entries of ``K`` and ``V`` below this are stored as zeros (per dtype of the cost).
FLUSH = {np.dtype(np.float64): 1e-300, np.dtype(np.float32): 1.2e-38}
LOG_FLUSH = {dtype: float(np.log(value)) for dtype, value in FLUSH.items()}
#: Sums below this are recomputed exactly: each dropped term is below FLUSH,
#: so at or above TINY the relative error is below m * FLUSH / TINY (1e-20 m
#: in float64, 1e-13 m in float32).
TINY = {np.dtype(np.float64): 1e-280, np.dtype(np.float32): 1e-25}
#: Passes between two re-centrings of the stabilisers (unless most sums of a pass failed).
RECENTRE_EVERY = 10
#: Entries of the exact recomputation done per NumPy call (``k x m`` temporaries).
_EXACT_ENTRIES = 1 << 20


class SharedKernel:
    """The stabilised kernel of one cost, and batched exact log-sum-exp passes over it.

    Parameters
    ----------
    cost : DenseGeometry
        The cost ``C`` (n, m) (C-contiguous, float32 or float64) on its
        backend: read for the stabilisers' exact passes and the exact
        recomputations.
    dtype : numpy dtype, optional
        Of ``K`` and of the products: the cost's by default (float32 products
        for a float32 cost, twice as fast); float64 for exact measures.

    Notes
    -----
    One instance is shared by every subset of a batch (a batch shrinks as its
    problems converge), so the stabilisers follow the problems still running.
    ``passes`` and ``recentred`` count what was done (for tests and tuning).
    """

    def __init__(self, cost, dtype=None):
        self.cost = cost
        self.xp = cost.backend.xp
        self.dtype = np.dtype(cost.dtype if dtype is None else dtype)
        self.reg = None
        self.K = self.KC = None
        self.alpha = self.beta = self.alpha_reg = self.beta_reg = None
        self.passes = self.recentred = self.exact_entries = 0
        self._since_centre = 0

    # -- the two passes ------------------------------------------------------
    def lse_rows(self, g, reg):
        """``log sum_j exp((g_bj - C_ij) / reg)`` for ``g`` (B, m): float64 (B, n)."""
        return self._pass(g, reg, rows=True)

    def lse_cols(self, f, reg):
        """``log sum_i exp((f_bi - C_ij) / reg)`` for ``f`` (B, n): float64 (B, m)."""
        return self._pass(f, reg, rows=False)

    def weighted_lse_rows(self, g, reg):
        """``log sum_j C_ij exp((g_bj - C_ij) / reg)`` for ``g`` (B, m): float64 (B, n).

        The pass with the cost inside the sum (what ``<C, P>`` and a grid's
        weighted axis need): :meth:`lse_rows` plus the log of the rows'
        cost-weighted means ``(KC V_b)_i / (K V_b)_i``, by the same products
        (``KC = C * K``, built once per ``reg``); means whose sums are below
        :data:`TINY` are recomputed exactly. An entry without mass counts 0,
        even at an infinite cost (``-inf`` where a row's weighted sum is 0).
        """
        xp = self.xp
        lse = self.lse_rows(g, reg)  # also centres the stabilisers for this reg
        if self.KC is None:
            self.KC = xp.empty_like(self.K)
            for start, stop in self._row_blocks():
                C = self.cost.cost_rows(start, stop)
                K = self.K[start:stop]
                self.KC[start:stop] = xp.where(K > 0, C, 0.0) * K
        V = self._operand(g, self.beta, reg)[0]
        with self._threads():
            KV, KCV = V @ self.K.T, V @ self.KC.T
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = xp.where(KV > 0, KCV.astype(np.float64) / KV.astype(np.float64), 0.0)
        bad = (KV < TINY[self.dtype]) & xp.isfinite(lse)
        if bool(bad.any()):
            b_idx, i_idx = xp.nonzero(bad)
            mean[b_idx, i_idx] = self._exact(g, reg, b_idx, i_idx, weighted=True)
        with np.errstate(divide="ignore"):
            return lse + xp.log(mean)

    def row_costs(self, f, g, reg):
        """``sum_j C_ij P_bij`` for the plans ``P_b`` at ``(f_b, g_b)``: float64
        (B, n), from :meth:`weighted_lse_rows` (no overflow: each is a row's
        cost-weighted mass)."""
        return self.xp.exp(f / reg + self.weighted_lse_rows(g, reg))

    # -- implementation ------------------------------------------------------
    def _pass(self, p, reg, rows):
        xp = self.xp
        if self.reg != reg:
            self._centre(p, reg, rows)
        out, bad = self._products(p, reg, rows)
        if bool(bad.any()) and (self._since_centre >= RECENTRE_EVERY or 2 * int(bad.sum()) > bad.size):
            self._centre(p, reg, rows)
            out, bad = self._products(p, reg, rows)
        if bool(bad.any()):
            b_idx, k_idx = xp.nonzero(bad)
            out[b_idx, k_idx] = self._exact(p, reg, b_idx, k_idx, rows=rows)
        self.passes += 1
        self._since_centre += 1
        return out

    def _operand(self, p, shift, reg):
        """``(V, s, empty)``: ``V = exp(h - s)``, ``h = (p - shift) / reg``, in the kernel's
        dtype, each problem's maximum ``s`` (0 where a problem's ``p`` is all
        ``-inf``: ``empty``). Exponents are raised to ``log FLUSH`` (no
        subnormal operand): a term so raised is below FLUSH, as a flushed one."""
        xp = self.xp
        h = p - shift[None, :]
        h *= 1.0 / reg
        s = h.max(axis=1)
        empty = ~xp.isfinite(s)
        if bool(empty.any()):
            s = xp.where(empty, 0.0, s)
        h -= s[:, None]
        xp.maximum(h, LOG_FLUSH[self.dtype], out=h)
        xp.exp(h, out=h)
        return h.astype(self.dtype, copy=False), s, empty

    def _products(self, p, reg, rows):
        """The pass by one product: ``(out, bad)``, ``bad`` marking the sums to
        recompute (below TINY where the exact answer is not ``-inf``)."""
        xp = self.xp
        shift, other = (self.beta, self.alpha_reg) if rows else (self.alpha, self.beta_reg)
        V, s, empty = self._operand(p, shift, reg)
        with self._threads():
            S = V @ self.K.T if rows else V @ self.K
        bad = S < TINY[self.dtype]
        with np.errstate(divide="ignore"):
            out = xp.log(S.astype(np.float64, copy=False))
        out += s[:, None]
        out -= other[None, :]
        if bool(empty.any()):  # a problem with no mass on this side: -inf, exactly
            out[empty] = -np.inf
            bad[empty] = False
        return out, bad

    def _centre(self, p, reg, rows):
        """Stabilisers from the problems' potentials ``p`` (the pass's input
        side): their mean over the problems on that side, the exact
        c-transform of it on the other (so each row, or column, of ``K`` sums
        to 1), and ``K`` rebuilt (one exact pass and one exp pass)."""
        xp, cost = self.xp, self.cost
        finite = xp.isfinite(p)
        count = finite.sum(axis=0)
        mean = xp.where(count > 0, xp.where(finite, p, 0.0).sum(axis=0) / xp.maximum(count, 1), 0.0)
        # the other side: -reg lse of the mean, 0 where no finite cost reaches it
        other = -reg * (cost.lse_rows(mean, reg) if rows else cost.lse_cols(mean, reg))
        other = xp.where(xp.isfinite(other), other, 0.0)
        self.alpha, self.beta = (other, mean) if rows else (mean, other)
        self.alpha_reg, self.beta_reg = self.alpha / reg, self.beta / reg
        self.reg, self.KC = reg, None
        if self.K is None:
            self.K = xp.empty(cost.shape, dtype=self.dtype)
        for start, stop in self._row_blocks():
            with np.errstate(invalid="ignore"):
                z = (self.alpha[start:stop, None] + self.beta[None, :] - cost.cost_rows(start, stop)) / reg
            K = xp.exp(xp.where(xp.isnan(z), -np.inf, z))
            K[K < FLUSH[self.dtype]] = 0.0
            self.K[start:stop] = K
        self.recentred += 1
        self._since_centre = 0

    def _exact(self, p, reg, b_idx, k_idx, rows=True, weighted=False):
        """The sums ``(b, k)`` by plain log-sum-exps over the cost's row (or
        column) ``k`` (``weighted``: the rows' cost-weighted means instead)."""
        xp, cost = self.xp, self.cost
        n_other = cost.shape[1] if rows else cost.shape[0]
        out = xp.empty(len(b_idx))
        step = max(1, _EXACT_ENTRIES // n_other)
        for start in range(0, len(b_idx), step):
            b, k = b_idx[start:start + step], k_idx[start:start + step]
            C = cost_lines(cost, k, rows)
            with np.errstate(invalid="ignore"):
                z = (p[b] - C) / reg
            z = xp.where(xp.isnan(z), -np.inf, z)
            top = z.max(axis=1)
            top = xp.where(xp.isfinite(top), top, 0.0)
            w = xp.exp(z - top[:, None])
            if weighted:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[start:start + step] = (xp.where(w > 0, C, 0.0) * w).sum(axis=1) / w.sum(axis=1)
            else:
                with np.errstate(divide="ignore"):
                    out[start:start + step] = xp.log(w.sum(axis=1)) + top
        self.exact_entries += len(b_idx)
        return out

    def _threads(self):
        """The products' threads: NumPy's BLAS capped at the free cores
        (:func:`~fastsinkhorn.backends._threads.blas_products`); a device's
        library is left alone."""
        if self.xp is not np:
            return contextlib.nullcontext()
        from ..backends._threads import blas_products  # (loads Numba: not at import fastsinkhorn)

        return blas_products()

    def _row_blocks(self):
        n, m = self.cost.shape
        step = max(1, (1 << 18) // m)
        return [(s, min(n, s + step)) for s in range(0, n, step)]


def cost_lines(cost, k, rows):
    """Rows ``k`` of the cost (``rows``), or its columns ``k`` as rows: float64 (len(k), ·)."""
    M = cost.M
    lines = M[k] if rows else M[:, k].T
    return lines.astype(np.float64)

