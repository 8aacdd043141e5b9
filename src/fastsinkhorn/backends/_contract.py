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

Regular grids need no kernel of their own: their geometry
(:mod:`fastsinkhorn.geometry.grid`) does each axis's pass as array-library
matrix products over one small dense cost, with the dense ``lse_rows`` and
``lse_cols`` for its stabilisers and exact recomputations.

Capabilities: a backend declares what it implements beyond the dense
kernels as class attributes (``point_clouds``, ``small_batches``); a geometry or driver that needs one checks the
declaration, never the presence of methods.

``small_batches``: the backend has ``sinkhorn_small_batch(M, a, b, reg, tol,
max_iter, g0)``, a whole batched log-domain Sinkhorn of small dense problems
in one call (the GPU's Numba-CUDA kernels, ``_cuda_numba``), returning a
``_cuda_numba.SmallBatchResult``, or ``None`` where it does not take the
batch (then the driver's loop runs). Not a member of the protocol: only
a backend that declares it has it.
"""

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

#: Point-cloud costs and their kernel codes: the one table of them. The CPU
#: kernels (``_cpu_cloud_kernels``) read their codes from it, and the CUDA
#: sources get them as macros at compile time (``_gpu.cost_code_options``,
#: ``-DFS_COST_<KIND>=<code>``); the reference computes each kind by its name.
#: Every backend rejects a kind it has no formula for (the reference and the CPU
#: kernels raise ``ValueError``, the CUDA sources fail to compile), so a cost added
#: here and not to a backend fails there rather than computing another cost.
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

    def __post_init__(self):
        if self.kind not in COST_KINDS:
            raise ValueError(f"point-cloud cost must be one of {tuple(COST_KINDS)}, got {self.kind!r}")

    @property
    def code(self):
        """The kernel code of ``kind`` (``COST_KINDS``)."""
        return COST_KINDS[self.kind]


@runtime_checkable
class KernelBackend(Protocol):
    """O(nm) kernels behind the solvers; see ``ReferenceBackend`` for semantics."""

    name: str
    xp: Any  # numpy or cupy
    check_every: int  # iterations between host-side convergence checks
    point_clouds: bool  # capability: implements the point-cloud (pc_) members
    small_batches: bool  # capability: has sinkhorn_small_batch (see the module)

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

    def row_spreads(self, M, u, v, rows, quantile): ...

    # point clouds (cost computed on the fly)
    def pc_cost_rows(self, x, y, cost, start, stop): ...

    def pc_lse_rows(self, x, y, cost, g, reg): ...

    def pc_dense_pass(self, x, y, cost, f, g, reg, k): ...

    # row-wise sparse matrices (SNS Hessian)
    def ell_matvec(self, idx, val, x): ...

    def ell_rmatvec(self, idx, val, y, m): ...
