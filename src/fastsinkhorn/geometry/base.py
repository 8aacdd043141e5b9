"""What every geometry shares: the backend's kernels on buffers and sparse
rows, and passes over the plan built on ``cost_rows``, block by block; and
what the geometries that never hold n x m (point clouds, grids) share.

The members' semantics are those of :class:`~fastsinkhorn.geometry.protocol.Geometry`.
"""

import numpy as np

from ..backends import _blocks
from .lazy_plan import LazyPlan


class BlockedGeometry:
    """Operations shared by every geometry on ``self.backend``, and blocked
    passes built on ``cost_rows``."""

    @property
    def xp(self):
        """The backend's array namespace."""
        return self.backend.xp

    # -- kernels on arrays the drivers hold: the same on every geometry
    def scaling_pass(self, K, v, a, u, tau=1.0):
        """One Sinkhorn iteration on the kernel ``K``; returns ``K^T u``."""
        return self.backend.scaling_pass(K, v, a, u, tau)

    def scale(self, K, u, v, out):
        """``diag(u) K diag(v)`` written into ``out``."""
        return self.backend.scale(K, u, v, out)

    def ell_matvec(self, idx, val, x):
        """``S @ x`` for the row-wise sparse ``S`` given as ``(idx, val)``."""
        return self.backend.ell_matvec(idx, val, x)

    def ell_rmatvec(self, idx, val, y):
        """``S^T @ y``, of length ``m``."""
        return self.backend.ell_rmatvec(idx, val, y, self.shape[-1])

    # -- blocked passes over the plan
    def plan_rows(self, f, g, reg, start, stop):
        """Rows ``start:stop`` of the plan ``exp((f_i + g_j - C_ij) / reg)``, float64."""
        xp = self.xp
        C = self.cost_rows(start, stop)
        with np.errstate(invalid="ignore"):
            z = (f[start:stop, None] + g[None, :] - C) / reg
        return xp.exp(xp.where(xp.isnan(z), -np.inf, z))

    def row_blocks(self):
        """``(start, stop)`` of row blocks of about ``_blocks.ARRAY_BLOCK_ENTRIES`` entries."""
        n, m = self.shape
        step = max(1, _blocks.ARRAY_BLOCK_ENTRIES // m)
        return [(s, min(n, s + step)) for s in range(0, n, step)]

    def summary(self, f, g, reg):
        """``(r, c, <C, P>)`` of the plan at ``(f, g)``, one blocked pass."""
        xp = self.xp
        n, m = self.shape
        r, c, linear = xp.zeros(n), xp.zeros(m), 0.0
        for start, stop in self.row_blocks():
            P = self.plan_rows(f, g, reg, start, stop)
            r[start:stop] = P.sum(axis=1)
            c += P.sum(axis=0)
            linear += float(weighted_costs(xp, self.cost_rows(start, stop), P).sum())
        return r, c, linear


class LazyGeometry(BlockedGeometry):
    """A geometry that cannot store a kernel: memory stays O(n + m) plus the
    description of the cost (log-domain Sinkhorn, a :class:`LazyPlan`).

    Subclasses give ``shape``, ``cost_rows``, ``lse_rows``, ``lse_cols``,
    ``dense_pass`` and (optionally faster) ``summary``.
    """

    can_store_kernel = False
    dtype = np.dtype(np.float64)

    def check_interval(self, requested):
        """1 whatever ``requested``: an iteration is two passes over the cost,
        and its check is O(n) on top."""
        return 1

    def new_buffer(self):
        """``None``: nothing n x m is held."""
        return None

    def plan(self, f, g, reg, out=None):
        """The plan at ``(f, g)``: a :class:`LazyPlan` when ``out`` is ``None``,
        else written into ``out`` block by block (an explicit request)."""
        if out is None:
            return LazyPlan(self, f, g, reg)
        for start, stop in self.row_blocks():
            out[start:stop] = self.plan_rows(f, g, reg, start, stop)
        return out

    def linear_cost(self, P):
        """``<C, P>`` of a stored ``(n, m)`` plan, by row blocks (the cost recomputed)."""
        return float(sum(float(weighted_costs(self.xp, self.cost_rows(start, stop), P[start:stop]).sum())
                         for start, stop in self.row_blocks()))

    def measure(self, plan, f, g, reg):
        """``(r, c, <C, P>)`` of the plan at ``(f, g)`` (a :class:`LazyPlan`):
        :meth:`summary`."""
        return self.summary(f, g, reg)


def weighted_costs(xp, C, P):
    """``C * P`` in float64, an entry without mass counting 0 even at an
    infinite (forbidden) cost, where the product would be NaN."""
    return xp.where(P > 0, C.astype(np.float64, copy=False), 0.0) * P
