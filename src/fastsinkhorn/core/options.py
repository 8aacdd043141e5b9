"""Method-specific options: frozen dataclasses validated on construction."""

import dataclasses
import warnings
from dataclasses import dataclass

from .checks import check_non_negative_int, check_positive_int


def _check(condition, name, requirement, value):
    if not condition:
        raise ValueError(f"option {name!r} must be {requirement}, got {value!r}")


@dataclass(frozen=True)
class SinkhornOptions:
    """Options of ``method="sinkhorn"``.

    Attributes
    ----------
    check_every : int or None
        Iterations between convergence checks. ``None``: the backend's default
        (every iteration on the CPU, where the check is free; every few on the
        GPU, where each check is a host synchronisation).
    absorb_threshold : float or None
        The scalings ``u``, ``v`` are folded into the potentials (one exp pass)
        when they leave ``[1/t, t]`` (``1``: at every check, as POT's
        ``tau=1``). ``None``: 1e50 for float64, 1e8 for float32 (the stored
        kernel must not lose entries that later matter).
    """

    check_every: int | None = None
    absorb_threshold: float | None = None

    def __post_init__(self):
        if self.check_every is not None:
            check_positive_int(self.check_every, "option 'check_every'")
        t = self.absorb_threshold
        _check(t is None or t >= 1.0, "absorb_threshold", ">= 1", t)


@dataclass(frozen=True)
class SNSOptions(SinkhornOptions):
    """Options of ``method="sns"`` (Sinkhorn-Newton-Sparse).

    Attributes
    ----------
    warmup_iter : int
        Cap ``N1`` on the Sinkhorn warm-up iterations.
    switch_tol : float
        The warm-up stops once the L1 marginal error is below this.
    density : float
        Initial fraction of each row of the plan kept in the sparsified
        Hessian (at least ``min_per_row`` entries).
    min_per_row : int
        Smallest number of entries kept per row.
    max_per_row : int
        Largest number of entries kept per row (the memory of the sparse
        Hessian is about 16 bytes each, for two or three iterates at once).
        0: ``m`` for a dense cost, ``max(min_per_row, m // 16)`` for a
        point cloud, whose solve then holds at most about a third of what an
        n x m float64 matrix would take, whatever ``reg`` (m // 32 halves
        that and, measured at n = 6000 and reg = 1e-3 of the cost range,
        takes 2.5x the Newton steps).
    adaptive_density : bool
        Grow the density (x2) after a cut step or slow progress, shrink it
        (x0.8) after full steps with fast progress.
    cg_max_iter : int
        Cap on conjugate-gradient iterations per Newton step.
    cg_rtol : float or None
        Relative residual of the Newton system. ``None``: inexact Newton,
        ``min(0.1, sqrt(err))`` with ``err`` the current marginal error.
    armijo : float
        Sufficient-increase constant of the backtracking line search.
    max_backtracks : int
        Step halvings tried before falling back to Sinkhorn steps.
    shift : float
        Hessian shift ``shift * err**2 * mean(diag H)`` with ``err`` the L1
        marginal error: damping far from the optimum, none near it.
    max_step : float
        Trust region of the first trial step: no potential moves by more than
        ``max_step * reg`` (plan entries change by at most ``exp(2 max_step)``).
    fallback_iter : int
        Sinkhorn iterations taken when a Newton step fails.
    linear_solver : {"auto", "cg", "direct"}
        Solver of the Newton system. ``"cg"``: Jacobi-preconditioned CG.
        ``"direct"``: factorisation of the Schur complement on the smaller
        side (dense LAPACK Cholesky or sparse SuperLU), whose cost does not
        depend on conditioning. ``"auto"``: CG until it misses its tolerance
        within ``cg_max_iter`` iterations, direct from then on.
    mass_budget : float
        Direct solves drop the smallest kept entries of each row while the
        mass dropped from the whole plan stays below ``mass_budget`` times
        the current marginal error (so rows keep one to a few entries near
        the optimum at small ``reg``).
    anneal_factor : float
        Annealing: below ``anneal_start * cost_scale`` (the spread of the
        costs that can carry mass; see ``choose_method``), SNS solves a
        sequence of problems with ``reg`` divided by this factor each time,
        each warm-started from the last and solved to ``anneal_tol``, before
        the problem asked for. ``1`` switches annealing off.
    anneal_start : float
        First regularisation of the schedule, relative to the cost scale.
    anneal_tol : float
        L1 marginal error at which an intermediate stage hands over.
    sinkhorn_hedge : bool
        At the switch to Newton, extrapolate the warm-up's measured rate and
        time per iteration, and keep iterating Sinkhorn to ``tol`` when that
        is predicted to be faster than the Newton phase (one timed dense pass
        sets its estimate). ``method="auto"`` turns it on.
    sinkhorn_first : bool
        At the target ``reg``, run Sinkhorn to ``tol`` with the whole
        ``max_iter`` budget instead of the warm-up, and take Newton steps only
        once Sinkhorn stalls or its rate over the last 100 checks predicts
        that it would not reach ``tol`` within the budget or within
        ``sinkhorn_patience`` more iterations. ``method="auto"`` runs so
        where it chooses Sinkhorn (``reg`` large against the cost scale):
        the answer of plain Sinkhorn where Sinkhorn converges soon, and of
        SNS where it would not.
    sinkhorn_patience : int
        With ``sinkhorn_first``: the most further Sinkhorn iterations a
        prediction may ask for before Newton steps take over. Slow
        contraction at large ``reg`` (nearly degenerate plans: a self
        distance, well separated points) can need tens of thousands of
        iterations that a few Newton steps, each a few passes over the
        cost, replace.
    """

    warmup_iter: int = 500
    switch_tol: float = 0.03
    density: float = 0.02
    min_per_row: int = 16
    max_per_row: int = 0
    adaptive_density: bool = True
    cg_max_iter: int = 300
    cg_rtol: float | None = None
    armijo: float = 1e-4
    max_backtracks: int = 12
    shift: float = 1.0
    max_step: float = 20.0
    fallback_iter: int = 20
    linear_solver: str = "auto"
    mass_budget: float = 0.1
    anneal_factor: float = 4.0
    anneal_start: float = 1e-3
    anneal_tol: float = 1e-4
    sinkhorn_hedge: bool = False
    sinkhorn_first: bool = False
    sinkhorn_patience: int = 5000

    def __post_init__(self):
        super().__post_init__()
        for name in ("warmup_iter", "min_per_row", "max_per_row", "cg_max_iter", "max_backtracks",
                     "fallback_iter", "sinkhorn_patience"):
            check_non_negative_int(getattr(self, name), f"option {name!r}")
        _check(self.switch_tol > 0, "switch_tol", "> 0", self.switch_tol)
        _check(0 < self.density <= 1, "density", "in (0, 1]", self.density)
        _check(self.cg_rtol is None or 0 < self.cg_rtol < 1, "cg_rtol", "in (0, 1)", self.cg_rtol)
        _check(0 < self.armijo < 0.5, "armijo", "in (0, 0.5)", self.armijo)
        _check(self.max_step > 0, "max_step", "> 0", self.max_step)
        _check(self.shift >= 0, "shift", ">= 0", self.shift)
        _check(self.linear_solver in ("auto", "cg", "direct"), "linear_solver",
               "one of 'auto', 'cg', 'direct'", self.linear_solver)
        _check(0 <= self.mass_budget < 1, "mass_budget", "in [0, 1)", self.mass_budget)
        _check(self.anneal_factor >= 1, "anneal_factor", ">= 1", self.anneal_factor)
        _check(self.anneal_start > 0, "anneal_start", "> 0", self.anneal_start)
        _check(0 < self.anneal_tol < 1, "anneal_tol", "in (0, 1)", self.anneal_tol)


def parse_options(cls, method, options):
    """Build ``cls`` from ``options``; unknown names warn and are ignored."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        warnings.warn(
            f"unknown option(s) {unknown} for method {method!r} are ignored; "
            f"valid options: {sorted(known)}",
            UserWarning,
            stacklevel=4,
        )
    return cls(**{k: v for k, v in options.items() if k in known})
