"""``solve``: the native entry point, the method registry and the result."""

import warnings

import numpy as np

from ._arrays import is_cupy_array, to_numpy
from ._lazy_plan import LazyPlan
from ._marginals import marginal_error
from ._monitor import Monitor
from ._options import SinkhornOptions, SNSOptions, parse_options
from ._result import ConvergenceWarning, OTResult, Status
from ._sinkhorn import run_sinkhorn
from ._sns import run_sns
from ._validation import effective_tol, prepare_problem
from .geometry import PointCloud

#: name -> (options class, runner, default max_iter)
METHODS = {
    "sinkhorn": (SinkhornOptions, run_sinkhorn, 10_000),
    "sns": (SNSOptions, run_sns, 10_000),
}

#: ``method="auto"`` picks SNS when ``reg`` is at most this fraction of the
#: cost range (and the tolerance is tight): there Sinkhorn needs thousands of
#: iterations, SNS a few dozen. Above it, Sinkhorn converges in a few hundred
#: cheap iterations and Newton steps do not pay for themselves.
AUTO_SNS_MAX_REG = 5e-3
AUTO_SNS_MAX_TOL = 1e-4


def choose_method(reg, cost_range, tol):
    """The documented rule behind ``method="auto"``.

    ``"sns"`` if ``reg <= AUTO_SNS_MAX_REG * (max(M) - min(M))`` and
    ``tol <= AUTO_SNS_MAX_TOL``, else ``"sinkhorn"``. When ``"auto"`` picks
    SNS it also turns on its ``sinkhorn_hedge``: at the switch to Newton, the
    warm-up's measured rate decides whether Sinkhorn would finish sooner.
    """
    if cost_range > 0 and reg <= AUTO_SNS_MAX_REG * cost_range and tol <= AUTO_SNS_MAX_TOL:
        return "sns"
    return "sinkhorn"


def solve(M, a=None, b=None, *, reg, method="auto", tol=None, max_iter=None,
          warm_start=None, callback=None, verbose=False, backend="auto", **options):
    r"""Solve an entropic optimal transport problem.

    .. math::
        \min_{P \ge 0} \langle M, P\rangle + \mathrm{reg} \sum_{ij} P_{ij}(\log P_{ij} - 1)
        \quad \text{s.t.} \quad P 1 = a,\; P^T 1 = b

    Parameters
    ----------
    M : array_like (n, m) or (B, n, m), or PointCloud
        Cost matrix (NumPy or CuPy; float32 or float64; C- or F-ordered), or
        a :class:`~fastsinkhorn.PointCloud`, whose costs are computed on the
        fly (the plan is then returned as a :class:`~fastsinkhorn.LazyPlan`).
        A 3-D ``M`` (or a batch of clouds) is a batch of ``B`` independent
        problems, solved together by Sinkhorn: each problem stops at its own
        tolerance check, and the result's per-problem fields are arrays.
    a, b : array_like (n,), (m,), optional
        Marginals with equal sums; uniform when omitted or empty. For a
        batch, ``(B, n)``/``(B, m)``, or 1-D ones shared by every problem.
    reg : float
        Entropic regularization (> 0).
    method : {"auto", "sinkhorn", "sns"}
        ``"sinkhorn"``: log-stable Sinkhorn with early stopping.
        ``"sns"``: Sinkhorn-Newton-Sparse (Tang et al. 2024).
        ``"auto"``: see :func:`choose_method`.
    tol : float, optional
        Bound on the L1 marginal error ``||P 1 - a||_1 + ||P^T 1 - b||_1`` of
        the returned plan. Default ``DEFAULT_TOL`` of the dtype (1e-9 for
        float64, 1e-5 for float32); raised with a warning to what the dtype
        can reach.
    max_iter : int, optional
        Cap on iterations (Sinkhorn iterations plus Newton steps); 10000 by default.
    warm_start : tuple of arrays, optional
        Potentials ``(f, g)`` from an earlier solve (``result.potentials``).
    callback : callable, optional
        ``callback(state)`` at each convergence check (every iteration on the
        CPU, every ``check_every``-th, 10 by default, on the GPU; every Newton
        step) whose error is still above the tolerance: not at the check that
        meets it, nor at one that ends an SNS warm-up or annealing stage on
        its own threshold. ``state`` is an
        :class:`~fastsinkhorn._monitor.IterationState`: ``iteration``,
        ``error`` (the checked L1 marginal error), ``phase`` (``"sinkhorn"``
        or ``"newton"``), ``elapsed`` (seconds) and ``extra`` (Newton checks:
        ``cg_iterations``, ``nnz``, ``step``, ``solver``, ``reg``). Raising
        ``StopIteration`` stops the solve cleanly.
    verbose : bool
        Print one line per convergence check (all of them, the last included).
    backend : {"auto", "cpu", "gpu", "reference"}
        ``"auto"`` follows the arrays (CuPy -> ``"gpu"``, else ``"cpu"``).
    **options
        Method options: :class:`~fastsinkhorn._options.SinkhornOptions` or
        :class:`~fastsinkhorn._options.SNSOptions` fields. Unknown names warn.

    Returns
    -------
    OTResult
        ``plan``, ``potentials``, ``value``, ``value_linear``,
        ``marginal_error``, ``n_iter``, ``converged``, ``status``, ``history``...

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` runs out first (the plan is still the last iterate).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> M = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = fastsinkhorn.solve(M, reg=0.1, method="sinkhorn")
    >>> bool(res.converged), res.plan.round(3).tolist()
    (True, [[0.5, 0.0], [0.0, 0.5]])
    """
    return _solve(M, a, b, reg=reg, method=method, tol=tol, max_iter=max_iter,
                  warm_start=warm_start, callback=callback, verbose=verbose,
                  backend=backend, options=options)


def solve_sample(X_a, X_b, a=None, b=None, *, reg, metric="sqeuclidean", p=2.0, scale=1.0,
                 lazy=False, **kwargs):
    """Solve entropic OT between two samples, with the cost of each pair from ``metric``.

    Parameters
    ----------
    X_a : array_like (n, d)
        Source points (NumPy or CuPy).
    X_b : array_like (m, d)
        Target points.
    a, b : array_like (n,), (m,), optional
        Weights; uniform when omitted.
    reg : float
        Entropic regularization (> 0), in the units of the cost.
    metric : {"sqeuclidean", "euclidean", "minkowski"}
        Cost between points, times ``scale`` (see :class:`~fastsinkhorn.PointCloud`).
    p : float
        Exponent of the ``"minkowski"`` metric.
    scale : float
        Positive factor applied to the cost.
    lazy : bool
        ``False`` (POT's default): build the dense ``(n, m)`` cost once and
        solve it. ``True``: never store it; every pass recomputes costs from
        the points (memory O((n + m) d)), and ``result.plan`` is a
        :class:`~fastsinkhorn.LazyPlan`.
    **kwargs
        Passed to :func:`solve` (``method``, ``tol``, ``max_iter``, ...).

    Returns
    -------
    OTResult

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> x = np.array([[0.0], [1.0]]); y = np.array([[0.1], [0.9]])
    >>> res = fastsinkhorn.solve_sample(x, y, reg=0.01, lazy=True)
    >>> res.plan.to_dense().round(3).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    cloud = PointCloud(X_a, X_b, cost=metric, p=p, scale=scale)
    return solve(cloud if lazy else cloud.cost_matrix(), a, b, reg=reg, **kwargs)


def _solve(M, a, b, *, reg, method, tol, max_iter, warm_start, callback, verbose,
           backend, options, norm="l1", warn=True):
    """:func:`solve` with the POT-compatibility knobs (stopping norm, warn)."""
    arrays = (M.x, a, b) if isinstance(M, PointCloud) else (M, a, b)
    host_input = not any(is_cupy_array(x) for x in arrays)
    prob = prepare_problem(M, a, b, reg, backend)
    batched = len(prob.shape) == 3
    tol = effective_tol(tol, prob.dtype, prob.shape[-2:])
    if method == "auto":
        method = "sinkhorn" if batched else choose_method(prob.reg, prob.cost_range, tol)
        if method == "sns":  # and keep Sinkhorn where it is measured to be faster
            options = {"sinkhorn_hedge": True, **options}
    if method not in METHODS:
        raise ValueError(f"method must be one of {('auto',) + tuple(METHODS)}, got {method!r}")
    if batched and method != "sinkhorn":
        raise NotImplementedError(f"method={method!r} does not solve batches (a 3-D M); use method='sinkhorn'")
    opts_cls, runner, default_max_iter = METHODS[method]
    opts = parse_options(opts_cls, method, options)
    if max_iter is None:
        max_iter = default_max_iter
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    f0, g0 = _warm_start(prob, warm_start)

    # the loops stop a little below tol: storing the plan in the problem's dtype
    # moves each marginal by up to eps/2 of its mass (float32: ~6e-8)
    rounding = float(np.finfo(prob.dtype).eps) * float(prob.a.sum(axis=-1).max())
    monitor = Monitor(tol - rounding, callback, verbose)
    plan, f, g, phases, status = runner(prob, opts, monitor, int(max_iter), f0, g0, norm=norm)
    result = _result(prob, plan, f, g, phases, status, monitor, method, tol, norm)
    if host_input and prob.backend.name == "gpu":
        if not isinstance(result.plan, LazyPlan):
            result.plan = to_numpy(result.plan)
        result.potentials = tuple(to_numpy(p) for p in result.potentials)
    if warn and not bool(xp_all(result.converged)) and status is not Status.CALLBACK:
        which = f" on {int((~result.converged).sum())} of {len(result.converged)} problems" if batched else ""
        warnings.warn(
            f"{method} did not reach tol={tol:.1e} in {int(np.max(result.n_iter))} iterations{which} "
            f"(marginal error {float(result.marginal_error.max() if batched else result.marginal_error):.2e}); "
            "increase max_iter or reg",
            ConvergenceWarning, stacklevel=3,
        )
    return result


def xp_all(flags):
    """``all`` of a bool or an array of bools (NumPy or CuPy)."""
    return flags.all() if hasattr(flags, "all") else flags


def _warm_start(prob, warm_start):
    xp, (*batch, n, m) = prob.xp, prob.shape
    if warm_start is None:
        return xp.zeros((*batch, n)), xp.zeros((*batch, m))
    try:
        f, g = warm_start
    except (TypeError, ValueError):
        raise ValueError("warm_start must be a pair (f, g) of potentials") from None
    if prob.transposed:
        f, g = g, f
    out = []
    for name, x, size in (("warm_start[0]", f, n), ("warm_start[1]", g, m)):
        x = xp.asarray(x, dtype=np.float64)
        x = x if batch else x.ravel()
        if x.shape != (*batch, size):
            raise ValueError(f"{name} must have shape {(*batch, size)}, got {x.shape}")
        if bool(xp.isnan(x).any()):
            raise ValueError(f"{name} must not contain NaN")
        out.append(xp.where(xp.isfinite(x), x, 0.0))  # -inf of zero masses: recomputed
    return tuple(out)


def _result(prob, plan, f, g, phases, status, monitor, method, tol, norm):
    """Measure the returned plan (one pass) and package the :class:`OTResult`.

    ``plan`` is ``None`` for a lazy geometry: the result then carries a
    :class:`LazyPlan`, measured by one blocked pass over the cost.
    """
    xp, reg = prob.xp, prob.reg
    if plan is None:
        r, c, linear = prob.geom.summary(f, g, reg)
        plan = LazyPlan(prob.geom, f, g, reg)
    else:  # axes counted from the end: a batch has its problems first
        r = plan.sum(axis=-1, dtype=np.float64)
        c = plan.sum(axis=-2, dtype=np.float64)
        linear = prob.geom.linear_cost(plan)
    error = marginal_error(xp, r, c, prob.a, prob.b)
    # sum P (log P - 1) from the potentials: log P_ij = (f_i + g_j - M_ij) / reg
    fr = (xp.where(xp.isfinite(f), f, 0.0) * r).sum(axis=-1)
    gc = (xp.where(xp.isfinite(g), g, 0.0) * c).sum(axis=-1)
    value = fr + gc - reg * r.sum(axis=-1)
    value = float(value) if value.ndim == 0 else value
    if not bool(xp.isfinite(xp.asarray(error)).all()):
        status = Status.STALLED
    # POT's criterion ("l2"): the column violation of the row-normalised plan
    converged = (error if norm == "l1" else xp.sqrt(((c - prob.b) ** 2).sum(axis=-1))) <= tol
    converged = bool(converged) if xp.ndim(converged) == 0 else converged
    if bool(xp_all(converged)) and status is Status.MAX_ITER:
        status = Status.CONVERGED
    if prob.transposed:
        plan, f, g = plan.T, g, f
    return OTResult(
        plan=plan,
        potentials=(f.astype(prob.dtype), g.astype(prob.dtype)),
        value=value,
        value_linear=linear,
        marginal_error=error,
        n_iter=sum(phases.values()),
        n_iter_phases=phases,
        converged=converged,
        status=status if not (status is Status.CONVERGED and not bool(xp_all(converged))) else Status.STALLED,
        history=monitor.history,
        backend=prob.backend.name,
        method=method,
        tol=tol,
        reg=reg,
    )
