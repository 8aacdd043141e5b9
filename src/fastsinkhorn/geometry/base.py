"""What every geometry shares: passes over the plan built on ``cost_rows``, block by block."""

import numpy as np

from ..backends import _blocks


class BlockedGeometry:
    """Operations shared by every geometry, built on ``cost_rows``."""

    def plan_rows(self, f, g, reg, start, stop):
        """Rows ``start:stop`` of the plan ``exp((f_i + g_j - C_ij) / reg)``, float64."""
        xp = self.backend.xp
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
        xp = self.backend.xp
        n, m = self.shape
        r, c, linear = xp.zeros(n), xp.zeros(m), 0.0
        for start, stop in self.row_blocks():
            P = self.plan_rows(f, g, reg, start, stop)
            r[start:stop] = P.sum(axis=1)
            c += P.sum(axis=0)
            linear += float(weighted_costs(xp, self.cost_rows(start, stop), P).sum())
        return r, c, linear


def weighted_costs(xp, C, P):
    """``C * P`` in float64, an entry without mass counting 0 even at an
    infinite (forbidden) cost, where the product would be NaN."""
    return xp.where(P > 0, C.astype(np.float64, copy=False), 0.0) * P
