"""A point-cloud cost on a backend: costs recomputed from coordinates at every pass."""

import numpy as np

from .base import BlockedGeometry, weighted_costs
from .lazy_plan import LazyPlan


class CloudGeometry(BlockedGeometry):
    """A :class:`~fastsinkhorn.geometry.PointCloud` cost on a backend: every pass
    recomputes costs from the coordinates; nothing n x m is held (a
    :class:`~fastsinkhorn.geometry.protocol.Geometry` that cannot store a kernel).

    Raises
    ------
    NotImplementedError
        If the backend does not declare ``point_clouds`` (the ``pc_`` kernels
        of :class:`~fastsinkhorn.backends._contract.KernelBackend`).
    """

    #: Memory stays O((n + m) d): log-domain Sinkhorn, a LazyPlan, capped SNS rows.
    can_store_kernel = False
    dtype = np.dtype(np.float64)

    def __init__(self, cloud, backend):
        if not backend.point_clouds:
            raise NotImplementedError(f"point-cloud costs are not implemented on backend={backend.name!r}")
        xp = backend.xp
        self.x, self.y = xp.asarray(cloud.x), xp.asarray(cloud.y)
        self.cost, self.backend = cloud.spec, backend
        self.cost_range = self.cost_scale = cloud.cost_range_bound()

    @property
    def shape(self):
        return (self.x.shape[0], self.y.shape[0])

    def check_interval(self, requested):
        """1 whatever ``requested``: an iteration is two passes over the cost,
        and its check is O(n) on top."""
        return 1

    def new_buffer(self):
        """``None``: nothing n x m is held."""
        return None

    def cost_rows(self, start, stop):
        """Rows ``start:stop`` of the cost, computed from the coordinates (float64)."""
        return self.backend.pc_cost_rows(self.x, self.y, self.cost, start, stop)

    def lse_rows(self, g, reg):
        """``log sum_j exp((g_j - C_ij) / reg)``, float64 (n,), one pass."""
        return self.backend.pc_lse_rows(self.x, self.y, self.cost, g, reg)

    def lse_cols(self, f, reg):
        """``log sum_i exp((f_i - C_ij) / reg)``, float64 (m,): every supported
        cost is symmetric, so the row pass on the swapped clouds."""
        return self.backend.pc_lse_rows(self.y, self.x, self.cost, f, reg)

    def plan(self, f, g, reg, out=None):
        """The plan at ``(f, g)``: a :class:`LazyPlan` when ``out`` is ``None``,
        else written into ``out`` block by block (an explicit request)."""
        if out is None:
            return LazyPlan(self, f, g, reg)
        for start, stop in self.row_blocks():
            out[start:stop] = self.plan_rows(f, g, reg, start, stop)
        return out

    def dense_pass(self, f, g, reg, k):
        """``(r, c, total, idx, val)`` of the plan at ``(f, g)``, one pass, nothing n x m held."""
        return self.backend.pc_dense_pass(self.x, self.y, self.cost, f, g, reg, k)

    def linear_cost(self, P):
        """``<C, P>`` of a stored ``(n, m)`` plan, by row blocks (the cost recomputed)."""
        return float(sum(float(weighted_costs(self.xp, self.cost_rows(start, stop), P[start:stop]).sum())
                         for start, stop in self.row_blocks()))

    def measure(self, plan, f, g, reg):
        """``(r, c, <C, P>)`` of the plan at ``(f, g)`` (a :class:`LazyPlan`):
        :meth:`summary`, one blocked pass."""
        return self.summary(f, g, reg)
