"""Many problems on one stored cost: a batch whose passes are matrix-matrix products.

``solve(M, a, b)`` with one cost ``M`` (n, m) and masses ``a`` (B, n) and/or
``b`` (B, m) (a 1-D side is shared by all problems) solves the ``B``
problems as one batch without copying ``M`` per problem: every Sinkhorn
half-step of all problems is one product with one stabilised kernel
(:class:`~fastsinkhorn.geometry.shared_kernel.SharedKernel`), exact at any
``reg``. This is POT's 2-D ``b`` (many histograms against one), the
pairwise distances of :mod:`fastsinkhorn.distributed` within a task, and the
passes of a barycenter.

The iteration is the log-domain one (the geometry stores no per-problem
kernel); each problem stops on its own. The plan of problem ``p`` comes
back as a :class:`~fastsinkhorn.LazyPlan` (``result.plan[p]``, of a
:class:`~fastsinkhorn.geometry.lazy_plan.LazyPlanBatch`): nothing
``B x n x m`` is held.
"""

import functools

import numpy as np

from .base import LazyGeometry, weighted_costs
from .dense import DenseGeometry
from .lazy_plan import LazyPlan, LazyPlanBatch
from .shared_kernel import SharedKernel


class SharedCostGeometry(LazyGeometry):
    """``n_problems`` problems on one cost ``M`` (n, m): shape ``(B, n, m)``.

    Parameters
    ----------
    M : array (n, m), float32 or float64, C-contiguous
    n_problems : int
    backend : KernelBackend
    cost_range : float
        ``max M - min M`` over the finite entries.
    kernel : SharedKernel, optional
        The stabilised kernel to share (a subset of a batch keeps its parent's).

    Notes
    -----
    A :class:`~fastsinkhorn.geometry.protocol.BatchGeometry` that cannot
    store a kernel: ``lse_rows``/``lse_cols``/``summary`` take and return
    arrays with the batch axis first. SNS solves each problem on its own cost
    view (:meth:`problem_cost`); :meth:`dense_pass` is not available.
    """

    def __init__(self, M, n_problems, backend, cost_range, kernel=None):
        self.M, self.backend, self.cost_range = M, backend, cost_range
        self.n_problems = int(n_problems)
        self.single = DenseGeometry(M, backend, cost_range)
        self.kernel = kernel if kernel is not None else SharedKernel(self.single)

    #: every problem has the same cost, so the batch's scale is its range (as a batch's)
    @property
    def cost_scale(self):
        return self.cost_range

    @property
    def shape(self):
        return (self.n_problems,) + tuple(self.M.shape)

    @property
    def dtype(self):
        return self.M.dtype

    batched = True

    @property
    def pass_rounding(self):
        """Relative rounding of a pass's sums (of ``m`` terms each) in the
        products' dtype: what a stopping test on them must leave as margin."""
        eps = float(np.finfo(self.dtype).eps)
        return eps * (float(np.sqrt(max(self.M.shape))) if self.dtype == np.float32 else 1.0)

    @functools.cached_property
    def measure_kernel(self):
        """The kernel of :meth:`summary`: float64 products, also for a float32
        cost (the returned marginals and values are then exact, not the
        float32 passes' own)."""
        return self.kernel if self.dtype == np.float64 else SharedKernel(self.single, np.float64)

    def problem_cost(self, p):
        """The cost of problem ``p``: ``M`` itself (no copy)."""
        return self.M

    def subset(self, problems):
        """The geometry of the problems ``problems`` (the same cost and kernel)."""
        return SharedCostGeometry(self.M, len(problems), self.backend, self.cost_range, self.kernel)

    def cost_rows(self, start, stop):
        """Rows ``start:stop`` of the shared cost, float64."""
        return self.single.cost_rows(start, stop)

    def lse_rows(self, g, reg):
        """``log sum_j exp((g_bj - M_ij) / reg)``: float64 (B, n) for ``g`` (B, m)."""
        return self.kernel.lse_rows(g, reg)

    def lse_cols(self, f, reg):
        """``log sum_i exp((f_bi - M_ij) / reg)``: float64 (B, m) for ``f`` (B, n)."""
        return self.kernel.lse_cols(f, reg)

    def dense_pass(self, f, g, reg, k):
        """Not available on the batch: SNS solves each problem on :meth:`problem_cost`."""
        raise NotImplementedError("a shared-cost batch has no batched SNS pass; SNS solves problem by problem")

    def summary(self, f, g, reg):
        """``(r, c, <M, P>)`` of every problem's plan at ``(f, g)``: (B, n),
        (B, m) and (B,) float64, by float64 products (:attr:`measure_kernel`)."""
        xp, kernel = self.xp, self.measure_kernel
        r = xp.exp(f / reg + kernel.lse_rows(g, reg))
        c = xp.exp(g / reg + kernel.lse_cols(f, reg))
        return r, c, kernel.row_costs(f, g, reg).sum(axis=1)

    def plan(self, f, g, reg, out=None):
        """The plans at ``(f, g)``: a :class:`LazyPlanBatch` (one :class:`LazyPlan`
        per problem), or, into ``out`` (B, n, m), every plan written (an explicit request)."""
        if out is None:
            return LazyPlanBatch(LazyPlan(self.single, f[p], g[p], reg) for p in range(self.n_problems))
        for p in range(self.n_problems):
            for start, stop in self.single.row_blocks():
                out[p, start:stop] = self.single.plan_rows(f[p], g[p], reg, start, stop)
        return out

    def linear_cost(self, P):
        """``<M, P_b>`` of stored plans ``P`` (B, n, m): float64 (B,)."""
        xp = self.xp
        return xp.asarray([float(weighted_costs(xp, self.M.astype(np.float64, copy=False), P[p]).sum())
                           for p in range(P.shape[0])])
