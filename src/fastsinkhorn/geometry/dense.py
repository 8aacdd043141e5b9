"""A stored dense cost on a backend."""

import functools

import numpy as np

from .base import BlockedGeometry, weighted_costs
from .cost_scale import support_scale
from ..core.transpose import solved_transposed


class DenseGeometry(BlockedGeometry):
    """A stored ``(n, m)`` cost ``M`` (C-contiguous) on a backend.

    Owns the memory layout: :meth:`from_array` takes an F-ordered cost as the
    transposed problem (no copy), so every kernel reads rows of ``M``.
    """

    lazy = False

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

    def new_buffer(self):
        """An ``(n, m)`` buffer of the cost's dtype (kernel or plan)."""
        return self.backend.xp.empty(self.M.shape, dtype=self.M.dtype)

    def cost_rows(self, start, stop):
        return self.M[start:stop].astype(np.float64, copy=False)

    def lse_rows(self, g, reg):
        return self.backend.lse_rows(self.M, g, reg)

    def lse_cols(self, f, reg):
        return self.backend.lse_cols(self.M, f, reg)

    def plan(self, f, g, reg, out):
        return self.backend.plan(self.M, f, g, reg, out)

    def dense_pass(self, f, g, reg, k):
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
        own threads by up to 2x on a 2-core machine)."""
        M, xp = self.M, self.backend.xp
        if self.batched:  # by blocks of whole problems
            step = max(1, (1 << 18) // (M.shape[1] * M.shape[2]))
            return xp.concatenate([weighted_costs(xp, M[p:p + step], P[p:p + step]).sum(axis=(1, 2))
                                   for p in range(0, M.shape[0], step)])
        rows = max(1, (1 << 18) // M.shape[1])
        return float(sum(float(weighted_costs(xp, M[i:i + rows], P[i:i + rows]).sum())
                         for i in range(0, M.shape[0], rows)))
