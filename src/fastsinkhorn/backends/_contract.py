"""The kernel contract every backend implements, as a type.

The geometries (:mod:`fastsinkhorn.geometry`) call only these members, and
the drivers (:mod:`fastsinkhorn.algorithms.sinkhorn`,
:mod:`fastsinkhorn.algorithms.sns.driver`) call only the geometries
(:class:`~fastsinkhorn.geometry.protocol.Geometry`) plus ``xp`` for O(n)
vector work. :class:`~fastsinkhorn.backends._reference.ReferenceBackend`
documents each method's semantics and is the oracle the other backends are
tested against (``tests/test_contract.py`` runs every member on every
available backend).

Two families of O(nm) kernels: the dense ones read a stored ``(n, m)`` cost
``M`` (or kernel ``K``); the point-cloud ones (``pc_``) compute the cost of
each pair from coordinates ``x`` (n, d) and ``y`` (m, d) as they go, so they
never hold anything n x m. Column-wise point-cloud reductions are the row
ones with ``x`` and ``y`` swapped (every supported cost is symmetric).

Capabilities: a backend declares what it implements beyond the dense
kernels as class attributes (``point_clouds``); a geometry that needs one
checks the declaration, never the presence of methods.
"""

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

#: Point-cloud costs and their kernel codes.
COST_KINDS = {"sqeuclidean": 0, "euclidean": 1, "minkowski": 2}


@dataclass(frozen=True)
class CostSpec:
    """A point-cloud cost ``c(x, y)``, as the kernels evaluate it.

    ``sqeuclidean``: ``scale * sum_k (x_k - y_k)^2``;
    ``euclidean``: ``scale * sqrt(sum_k (x_k - y_k)^2)``;
    ``minkowski``: ``scale * (sum_k |x_k - y_k|^p)^(1/p)``.
    """

    kind: str = "sqeuclidean"
    p: float = 2.0
    scale: float = 1.0

    @property
    def code(self):
        return COST_KINDS[self.kind]


@runtime_checkable
class KernelBackend(Protocol):
    """O(nm) kernels behind the solvers; see ``ReferenceBackend`` for semantics."""

    name: str
    xp: Any  # numpy or cupy
    check_every: int  # iterations between host-side convergence checks
    point_clouds: bool  # capability: implements the point-cloud (pc_) members

    # dense cost / kernel
    def lse_rows(self, M, g, reg): ...

    def lse_cols(self, M, f, reg): ...

    def plan(self, M, f, g, reg, out): ...

    def scaling_pass(self, K, v, a, u, tau=1.0): ...

    def scale(self, K, u, v, out): ...

    def dense_pass(self, M, f, g, reg, k): ...

    # cost statistics (method="auto", annealing)
    def reduction_offsets(self, M): ...

    def largest_reduced_cost(self, M, u, v, cutoff): ...

    # point clouds (cost computed on the fly)
    def pc_cost_rows(self, x, y, cost, start, stop): ...

    def pc_lse_rows(self, x, y, cost, g, reg): ...

    def pc_dense_pass(self, x, y, cost, f, g, reg, k): ...

    # row-wise sparse matrices (SNS Hessian)
    def ell_matvec(self, idx, val, x): ...

    def ell_rmatvec(self, idx, val, y, m): ...
