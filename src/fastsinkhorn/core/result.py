"""The solver result, its status codes and the convergence warning."""

import enum
from dataclasses import dataclass, field
from typing import Any

from .arrays import is_cupy_array


class ConvergenceWarning(UserWarning):
    """The solver stopped before reaching the requested tolerance."""


class Status(enum.Enum):
    """Why a solve stopped; each member carries its message."""

    CONVERGED = "converged: marginal error <= tol"
    MAX_ITER = "stopped: max_iter reached before the marginal error fell below tol"
    CALLBACK = "stopped by the callback (StopIteration)"
    STALLED = "stopped: no further progress possible in this precision"

    @property
    def message(self):
        return self.value


@dataclass
class OTResult:
    """Result of :func:`fastsinkhorn.solve`.

    Attributes
    ----------
    plan : array (n, m), LazyPlan, or array (B, n, m)
        Transport plan ``P_ij = exp((f_i + g_j - M_ij) / reg)``, same array
        library and dtype as the input cost; a :class:`~fastsinkhorn.LazyPlan`
        for a point-cloud cost. For a batch (``M`` of shape ``(B, n, m)``)
        every field that describes one problem has the batch axis first:
        ``potentials`` ``(B, n)``, ``(B, m)``; ``value``, ``value_linear``,
        ``marginal_error`` and ``converged`` arrays of length ``B``.
    potentials : tuple of arrays
        Dual potentials ``(f, g)`` (``-inf`` where a mass is zero).
    value : float
        (A NumPy scalar of the input's dtype: ``np.float64`` is a ``float``.)
        The objective as POT reports it: ``<M, P> + reg * KL(P | a b^T)``
        (``reg_type="KL"``, the default) or ``<M, P> + reg * sum P log P``
        (``"entropy"``), plus ``rho * KL(P 1 | a)`` and ``rho * KL(P^T 1 |
        b)`` for relaxed marginals, with ``KL(p | q) = sum p log(p / q)``.
    value_linear : float
        Linear transport cost ``<M, P>`` (the input's dtype, as ``value``).
    marginals : tuple of arrays
        ``(P 1, P^T 1)`` of the returned plan (summed in float64, returned in
        the plan's dtype, as POT's); also ``marginal_a``, ``marginal_b``.
    marginal_error : float
        ``||P 1 - a||_1 + ||P^T 1 - b||_1`` of the returned plan; for
        unbalanced OT, against the marginals the optimum has at the returned
        potentials (the L1 norm of the dual's gradient).
    n_iter : int
        Total number of iterations (Sinkhorn iterations plus Newton steps);
        for a batch, an array of each problem's.
    n_iter_phases : dict
        Iterations per phase, e.g. ``{"sinkhorn": 40, "newton": 9}``.
    converged : bool
        Whether ``marginal_error <= tol``.
    status : Status
        Why the solver stopped (``status.message`` explains).
    history : dict of lists
        One entry per convergence check: ``iteration``, ``error``, ``time``
        (seconds since the start), ``phase`` and, for SNS, ``cg_iterations``,
        ``nnz`` and ``step``.
    backend, method : str
        Backend and method that ran.
    tol : float
        Tolerance actually used (after raising it to the dtype floor).
    """

    plan: Any
    potentials: tuple
    value: float
    value_linear: float
    marginal_error: float
    n_iter: int
    n_iter_phases: dict
    converged: bool
    status: Status
    history: dict = field(repr=False)
    backend: str = "cpu"
    method: str = "sinkhorn"
    tol: float = 0.0
    reg: float = 0.0
    marginals: tuple = field(default=None, repr=False)
    #: ``solve_sample(debias=True)``: the three solves, ``{"res_ab", "res_aa", "res_bb"}``
    debiased: dict = field(default=None, repr=False)

    #: POT's ``OTResult`` fields that have no counterpart here
    value_quad = None
    #: POT's backend object of the result's arrays; None, as POT's for NumPy
    #: arrays (read by code written for POT: ``sol._backend or NumpyBackend()``)
    _backend = None
    citation = ("Cuturi (2013), Sinkhorn distances: lightspeed computation of optimal transport, NeurIPS; "
                "Tang, Shavlovsky, Rahmanian, Tardini, Thekumparampil, Xiao, Ying (2024), "
                "Accelerating Sinkhorn algorithm with sparse Newton iterations, ICLR")

    @property
    def potential_a(self):
        return self.potentials[0]

    @property
    def potential_b(self):
        return self.potentials[1]

    @property
    def marginal_a(self):
        """Row sums of the returned plan."""
        return self.marginals[0]

    @property
    def marginal_b(self):
        """Column sums of the returned plan."""
        return self.marginals[1]

    @property
    def sparse_plan(self):
        """The plan as a SciPy CSR matrix (CuPy's for a CuPy plan); for a
        lazy plan, its entries above 1e-10 of their row's largest."""
        if hasattr(self.plan, "to_sparse"):
            return self.plan.to_sparse()
        if self.batched:
            raise ValueError("a batch of plans has no single sparse plan")
        if is_cupy_array(self.plan):
            import cupyx.scipy.sparse as sparse
        else:
            import scipy.sparse as sparse
        return sparse.csr_matrix(self.plan)

    @property
    def lazy_plan(self):
        """The :class:`~fastsinkhorn.LazyPlan` of a point-cloud solve, else ``None``."""
        return self.plan if hasattr(self.plan, "to_sparse") else None

    @property
    def message(self):
        return self.status.message

    @property
    def log(self):
        """POT-style dictionary view of the result: ``err`` (the error at each
        check), ``n_iter`` (iterations run, as ``ot.batch``: for a batch, those
        of its longest problem), ``niter`` (POT's 0-based index of the last
        iteration) and ``potentials``; after ``solve_sample(debias=True)``, also
        POT's ``res_ab``, ``res_aa`` and ``res_bb`` (the three solves)."""
        n_iter = int(self.n_iter.max()) if self.batched else self.n_iter  # a batch: its longest problem
        log = {"err": self.history["error"], "n_iter": n_iter, "niter": n_iter - 1,
               "potentials": self.potentials}
        return {**log, **self.debiased} if self.debiased else log

    @property
    def batched(self):
        """Whether this is the result of a batch (array-valued fields)."""
        return getattr(self.plan, "ndim", 2) == 3

    def __repr__(self):
        shape = "x".join(str(s) for s in getattr(self.plan, "shape", ()))
        iters = f"{self.n_iter} {self.n_iter_phases}"
        if self.batched:
            iters = f"{int(self.n_iter.min())} to {int(self.n_iter.max())} per problem"
            errors = f"max marginal_error={float(self.marginal_error.max()):.3e}"
            values = f"{int(self.converged.sum())} of {len(self.converged)} problems converged"
        else:
            errors = f"marginal_error={self.marginal_error:.3e}"
            values = f"value={self.value:.10g}, value_linear={self.value_linear:.10g}"
        return (
            f"OTResult({self.message}\n"
            f"  method={self.method!r}, backend={self.backend!r}, plan {shape}\n"
            f"  n_iter={iters}, {errors} (tol {self.tol:.1e})\n"
            f"  {values})"
        )
