"""A stored dense cost on a backend."""

import functools

import numpy as np

from ..core.transpose import solved_transposed
from .base import BlockedGeometry, weighted_costs
from .cost_scale import support_scale


class DenseGeometry(BlockedGeometry):
    """A stored ``(n, m)`` cost ``M`` (C-contiguous), or a ``(B, n, m)``
    batch, on a backend: a :class:`~fastsinkhorn.geometry.protocol.BatchGeometry`.

    Owns the memory layout: :meth:`from_array` takes an F-ordered cost as the
    transposed problem (no copy), so every kernel reads rows of ``M``.
    """

    #: (n, m) buffers fit next to the stored cost: scaling Sinkhorn, dense plans.
    can_store_kernel = True

    def __init__(self, M, backend, cost_range):
        self.M, self.backend, self.cost_range = M, backend, cost_range

    @functools.cached_property
    def cost_scale(self):
        """The spread of the costs that can carry mass (:func:`support_scale`;
        for a batch, ``cost_range``): what ``reg`` is compared with by
        ``method="auto"`` and SNS's annealing. Computed on first use."""
        if self.batched:
            return self.cost_range
        return support_scale(self.M, self.backend)

    @classmethod
    def from_array(cls, M, backend, cost_range):
        """``(geometry, transposed)`` for a validated 2-D cost array."""
        transposed = solved_transposed(M)
        return cls(M.T if transposed else M, backend, cost_range), transposed

    @property
    def shape(self):
        return self.M.shape

    @property
    def dtype(self):
        return self.M.dtype

    def check_interval(self, requested):
        """``requested``, or the backend's ``check_every`` (a check syncs a GPU)."""
        return requested or self.backend.check_every

    def new_buffer(self):
        """An ``(n, m)`` buffer of the cost's dtype (kernel or plan)."""
        return self.backend.xp.empty(self.M.shape, dtype=self.M.dtype)

    def cost_rows(self, start, stop):
        """Rows ``start:stop`` of ``M`` in float64."""
        return self.M[start:stop].astype(np.float64, copy=False)

    def lse_rows(self, g, reg):
        """``log sum_j exp((g_j - M_ij) / reg)``, float64 (n,)."""
        return self.backend.lse_rows(self.M, g, reg)

    def lse_cols(self, f, reg):
        """``log sum_i exp((f_i - M_ij) / reg)``, float64 (m,)."""
        return self.backend.lse_cols(self.M, f, reg)

    def plan(self, f, g, reg, out=None):
        """The plan at ``(f, g)`` written into ``out`` (a new buffer if ``None``)."""
        return self.backend.plan(self.M, f, g, reg, self.new_buffer() if out is None else out)

    def dense_pass(self, f, g, reg, k):
        """``(r, c, total, idx, val)`` of the plan at ``(f, g)``: marginals, mass, top-k rows."""
        return self.backend.dense_pass(self.M, f, g, reg, k)

    @property
    def batched(self):
        return self.M.ndim == 3

    def subset(self, problems):
        """The geometry of some problems of a batch (their costs copied)."""
        return DenseGeometry(self.M[problems], self.backend, self.cost_range)

    def linear_cost(self, P):
        """``<M, P>`` in float64 (an array of B values for a batch), by row
        blocks: no n x m float64 temporary, and no BLAS call (a large ``vdot``
        wakes OpenBLAS's threads, whose busy-waiting then slows the solver's
        own threads: benchmarks/RESULTS.md, section 2)."""
        M, xp = self.M, self.backend.xp
        if self.batched:  # by blocks of whole problems
            step = max(1, (1 << 18) // (M.shape[1] * M.shape[2]))
            return xp.concatenate([weighted_costs(xp, M[p:p + step], P[p:p + step]).sum(axis=(1, 2))
                                   for p in range(0, M.shape[0], step)])
        rows = max(1, (1 << 18) // M.shape[1])
        return float(sum(float(weighted_costs(xp, M[i:i + rows], P[i:i + rows]).sum())
                         for i in range(0, M.shape[0], rows)))

    def measure(self, plan, f, g, reg):
        """``(r, c, <M, P>)`` of the stored plan as stored (axes counted from
        the end: a batch has its problems first); ``f, g, reg`` are unused."""
        r = plan.sum(axis=-1, dtype=np.float64)
        c = plan.sum(axis=-2, dtype=np.float64)
        return r, c, self.linear_cost(plan)
