"""A grid's log-domain passes as small matrix products, exact at any ``reg``.

:meth:`GridGeometry.log_convolve <fastsinkhorn.geometry.grid.GridGeometry.log_convolve>`
does each axis's 1-D log-sum-exp term by term: ``k_a`` exponentials per
entry and axis. Along one axis (the other indices fixed: a line ``h`` of
``k`` values) the same sum is, with the line's maximum ``s``,

    out_i = s + log sum_j K_ij exp(h_j - s),   K_ij = exp(-c_a(i, j) / reg),

one product of the lines with the ``(k, k)`` kernel for all lines at once:
``k`` times fewer exponentials, and BLAS. It is exact where it can be
trusted: ``exp(h_j - s) <= 1`` and ``K <= 1`` (nothing overflows), entries
below :data:`FLUSH` are stored as zeros (each dropped term is below it), so
a sum at or above :data:`TINY` has a relative error below ``k FLUSH / TINY``
(``1e-20 k``); a sum below it (its terms underflowed: small ``reg``, mass
far away) is recomputed entry by entry as a plain log-sum-exp. When most
sums of a pass fail, the whole pass is left to the backend's exact
``grid_lse``. A line of ``-inf`` (zero masses) gives ``-inf`` without either.
"""

import numpy as np

#: Entries of the kernel and of ``exp(h - s)`` below this are stored as zeros
#: (subnormal operands slow BLAS down by orders of magnitude).
FLUSH = 1e-300
#: Sums below this are recomputed exactly.
TINY = 1e-280
#: Above this fraction of failed sums in one axis's pass, the pass is done
#: exactly by the backend instead.
EXACT_FRACTION = 0.05


class StabilisedGridPasses:
    """The passes of a :class:`~fastsinkhorn.geometry.grid.GridGeometry` (its
    ``lse_rows`` / ``lse_cols`` on a batch ``(B, n)``) by per-axis products.

    Parameters
    ----------
    geometry : GridGeometry
        Its axis costs, backend (``xp``) and exact ``log_convolve`` (the fallback).
    """

    def __init__(self, geometry):
        self.geometry = geometry
        self.xp = geometry.xp
        self.shape = geometry.shape
        self._reg, self._kernels = None, None

    def kernels(self, reg):
        """Per axis: the log-kernel ``-c_a / reg`` and the kernel ``exp`` of it, flushed."""
        if reg != self._reg:
            xp = self.xp
            logs = [xp.asarray(-c / reg) for c in self.geometry.axis_costs]
            self._kernels = [(L, xp.where(xp.exp(L) < FLUSH, 0.0, xp.exp(L))) for L in logs]
            self._reg = reg
        return self._kernels

    def lse_rows(self, g, reg):
        """``log sum_j exp((g_bj - C_ij) / reg)``: float64 (B, n)."""
        return self.log_convolve(g / reg, reg)

    def lse_cols(self, f, reg):
        """The cost is symmetric: :meth:`lse_rows` of ``f``."""
        return self.lse_rows(f, reg)

    def log_convolve(self, h, reg):
        """``out_i = log sum_j exp(h_j - C_ij / reg)`` for ``h`` (..., n)."""
        grid_shape = self.geometry.grid.shape
        batch = h.shape[:-1]
        values = h.reshape(batch + grid_shape)
        for axis, (L, K) in enumerate(self.kernels(reg)):
            values = self._axis_pass(values, len(batch) + axis, L, K, reg)
            if values is None:  # too many sums failed: the exact pass, all axes
                return self.geometry.log_convolve(h, reg)
        return values.reshape(h.shape)

    def _axis_pass(self, values, axis, L, K, reg):
        """One axis's log-sum-exp by a product, failed sums recomputed; None
        when more than :data:`EXACT_FRACTION` of them failed."""
        xp = self.xp
        moved = xp.moveaxis(values, axis, -1)
        lines = moved.reshape(-1, moved.shape[-1])
        top = lines.max(axis=1)
        empty = xp.isneginf(top)  # a line of zero masses: -inf, exactly
        top = xp.where(empty, 0.0, top)
        E = xp.exp(lines - top[:, None])
        E = xp.where(E < FLUSH, 0.0, E)
        S = E @ K.T
        failed = (S < TINY) & ~empty[:, None]
        n_failed = int(failed.sum())
        if n_failed > EXACT_FRACTION * S.size:
            return None
        with np.errstate(divide="ignore"):
            out = xp.log(S) + top[:, None]
        out = xp.where(empty[:, None], -np.inf, out)
        if n_failed:
            rows, cols = xp.nonzero(failed)
            terms = lines[rows] + L[cols]  # (n_failed, k): at most 5% of the pass's entries
            peak = terms.max(axis=1)
            peak = xp.where(xp.isneginf(peak), 0.0, peak)
            with np.errstate(divide="ignore"):
                out[rows, cols] = xp.log(xp.exp(terms - peak[:, None]).sum(axis=1)) + peak
        return xp.moveaxis(out.reshape(moved.shape), -1, axis)
