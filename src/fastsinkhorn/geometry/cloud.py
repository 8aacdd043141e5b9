"""A point-cloud cost on a backend: costs recomputed from coordinates at every pass."""

from .base import LazyGeometry


class CloudGeometry(LazyGeometry):
    """A :class:`~fastsinkhorn.geometry.PointCloud` cost on a backend: every pass
    recomputes costs from the coordinates; nothing n x m is held (a
    :class:`~fastsinkhorn.geometry.protocol.Geometry` that cannot store a kernel).

    Raises
    ------
    NotImplementedError
        If the backend does not declare ``point_clouds`` (the ``pc_`` kernels
        of :class:`~fastsinkhorn.backends._contract.KernelBackend`).
    """

    # Memory stays O((n + m) d): log-domain Sinkhorn, a LazyPlan, capped SNS rows.

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

    def dense_pass(self, f, g, reg, k):
        """``(r, c, total, idx, val)`` of the plan at ``(f, g)``, one pass, nothing n x m held."""
        return self.backend.pc_dense_pass(self.x, self.y, self.cost, f, g, reg, k)
