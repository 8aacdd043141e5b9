"""Geometries bound to a backend: all the drivers know of the cost.

The drivers never touch ``M`` nor allocate n x m arrays themselves; they call
these few operations (row/column log-sum-exp at given potentials, the plan
into a buffer, the SNS dense pass, blocks of plan rows), which each geometry
maps onto its backend's kernels. ``DenseGeometry`` reads a stored cost and can
hold a kernel buffer (``lazy = False``); ``CloudGeometry`` computes costs from
coordinates and holds nothing n x m (``lazy = True``).
"""

import functools

import numpy as np

from ._cost_scale import support_scale

#: Plan entries per block when a pass over the plan is done block by block.
BLOCK_ENTRIES = 1 << 18


class _Geometry:
    """Operations shared by every geometry, built on ``cost_rows``."""

    def plan_rows(self, f, g, reg, start, stop):
        """Rows ``start:stop`` of the plan ``exp((f_i + g_j - C_ij) / reg)``, float64."""
        xp = self.backend.xp
        C = self.cost_rows(start, stop)
        with np.errstate(invalid="ignore"):
            z = (f[start:stop, None] + g[None, :] - C) / reg
        return xp.exp(xp.where(xp.isnan(z), -np.inf, z))

    def row_blocks(self):
        """``(start, stop)`` of row blocks of about ``BLOCK_ENTRIES`` entries."""
        n, m = self.shape
        step = max(1, BLOCK_ENTRIES // m)
        return [(s, min(n, s + step)) for s in range(0, n, step)]

    def summary(self, f, g, reg):
        """``(r, c, <C, P>)`` of the plan at ``(f, g)``, one blocked pass."""
        xp = self.backend.xp
        n, m = self.shape
        r, c, linear = xp.zeros(n), xp.zeros(m), 0.0
        for start, stop in self.row_blocks():
            P = self.plan_rows(f, g, reg, start, stop)
            r[start:stop] = P.sum(axis=1)
            c += P.sum(axis=0)
            linear += float(_weighted_costs(xp, self.cost_rows(start, stop), P).sum())
        return r, c, linear


class DenseGeometry(_Geometry):
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
        transposed = not M.flags.c_contiguous
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
            return xp.concatenate([_weighted_costs(xp, M[p:p + step], P[p:p + step]).sum(axis=(1, 2))
                                   for p in range(0, M.shape[0], step)])
        rows = max(1, (1 << 18) // M.shape[1])
        return float(sum(float(_weighted_costs(xp, M[i:i + rows], P[i:i + rows]).sum())
                         for i in range(0, M.shape[0], rows)))


def _weighted_costs(xp, C, P):
    """``C * P`` in float64, an entry without mass counting 0 even at an
    infinite (forbidden) cost, where the product would be NaN."""
    return xp.where(P > 0, C.astype(np.float64, copy=False), 0.0) * P


class CloudGeometry(_Geometry):
    """A :class:`~fastsinkhorn.geometry.PointCloud` cost on a backend: every pass
    recomputes costs from the coordinates; nothing n x m is held."""

    lazy = True
    dtype = np.dtype(np.float64)

    def __init__(self, cloud, backend):
        for member in ("pc_lse_rows", "pc_dense_pass", "pc_cost_rows"):
            if not hasattr(backend, member):
                raise NotImplementedError(f"point-cloud costs are not implemented on backend={backend.name!r}")
        xp = backend.xp
        self.x, self.y = xp.asarray(cloud.x), xp.asarray(cloud.y)
        self.cost, self.backend = cloud.spec, backend
        self.cost_range = self.cost_scale = cloud.cost_range_bound()

    @property
    def shape(self):
        return (self.x.shape[0], self.y.shape[0])

    def cost_rows(self, start, stop):
        return self.backend.pc_cost_rows(self.x, self.y, self.cost, start, stop)

    def lse_rows(self, g, reg):
        return self.backend.pc_lse_rows(self.x, self.y, self.cost, g, reg)

    def lse_cols(self, f, reg):  # every supported cost is symmetric: swap the clouds
        return self.backend.pc_lse_rows(self.y, self.x, self.cost, f, reg)

    def dense_pass(self, f, g, reg, k):
        return self.backend.pc_dense_pass(self.x, self.y, self.cost, f, g, reg, k)
