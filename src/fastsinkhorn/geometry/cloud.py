"""A point-cloud cost on a backend: costs recomputed from coordinates at every pass."""

import numpy as np

from .base import BlockedGeometry


class CloudGeometry(BlockedGeometry):
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
