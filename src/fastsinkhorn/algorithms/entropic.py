"""One entropic solve of a prepared problem: its driver run, and its result.

Below the entry points (:func:`fastsinkhorn.solve` and the drop-ins, which
validate the caller's arguments and choose the method) and above the
drivers: the warm start in the problem's orientation, the monitor, the
driver itself, and the :class:`~fastsinkhorn.core.result.OTResult` built
from its potentials. The exact solver ranks its candidates with an SNS solve
through :func:`run_entropic` too, so that it never calls back into the
entry points.
"""

import numpy as np

from ..core.marginals import column_l2_error, marginal_error
from ..core.monitor import Monitor
from ..core.result import OTResult, Status
from .sinkhorn import run_sinkhorn
from .sns.batch import run_sns_batch
from .sns.driver import run_sns

#: Each entropic method's driver (what it is and solves: :mod:`fastsinkhorn.core.methods`).
RUNNERS = {"sinkhorn": run_sinkhorn, "sns": run_sns}
#: Each method's driver of a batch (a 3-D cost): Sinkhorn iterates all
#: problems jointly; SNS solves each on its own (:mod:`~fastsinkhorn.algorithms.sns.batch`).
BATCH_RUNNERS = {"sinkhorn": run_sinkhorn, "sns": run_sns_batch}


def run_entropic(prob, method, opts, tol, max_iter, warm_start=None, callback=None, verbose=False, norm="l1"):
    """Run ``method``'s driver on the prepared problem ``prob``.

    Parameters
    ----------
    prob : PreparedProblem
        From :func:`~fastsinkhorn.core.validation.prepare_problem`.
    method : {"sinkhorn", "sns"}
    opts : SinkhornOptions or SNSOptions
        Parsed options of ``method`` (SNS's ``sinkhorn_first``: the result
        is reported as ``"sinkhorn"`` when no Newton step ran).
    tol : float
        The stopping tolerance, already adjusted to the dtype.
    max_iter : int
    warm_start : pair of arrays, optional
        Potentials ``(f, g)`` in the caller's orientation.
    callback, verbose
        As :func:`fastsinkhorn.solve`'s.
    norm : {"l1", "l2"}
        The stopping norm (``"l2"``: POT's column error, for the drop-ins).

    Returns
    -------
    result : OTResult
    status : Status
        The driver's own status (before the result's convergence check).
    """
    f0, g0 = _warm_start(prob, warm_start)
    # the loops stop a little below tol: storing the plan in the problem's dtype
    # moves each marginal by up to eps/2 of its mass (float32: ~6e-8); a geometry
    # whose passes round more (float32 products over a shared cost) says by how much
    relative = getattr(prob.geom, "pass_rounding", float(np.finfo(prob.dtype).eps))
    rounding = relative * float(prob.a.sum(axis=-1).max())
    monitor = Monitor(tol - rounding if tol > 0 else -1.0, callback, verbose)
    runner = (BATCH_RUNNERS if len(prob.shape) == 3 else RUNNERS)[method]
    plan, f, g, phases, status = runner(prob, opts, monitor, int(max_iter), f0, g0, norm=norm)
    if getattr(opts, "sinkhorn_first", False) and not np.any(phases["newton"]):  # what ran was plain Sinkhorn
        method, phases = "sinkhorn", {"sinkhorn": phases["sinkhorn"]}
    return _result(prob, plan, f, g, phases, status, monitor, method, tol, norm), status


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
    f, g = prob.oriented(f, g)
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
    """Measure the returned plan (one pass: the geometry's ``measure``) and
    package the :class:`OTResult`.

    ``plan`` is the runner's: an array, or a :class:`~fastsinkhorn.LazyPlan`
    where the geometry stores no kernel (measured by one blocked pass over
    the cost).
    """
    xp, reg = prob.xp, prob.reg
    r, c, linear = prob.geom.measure(plan, f, g, reg)
    target_c = prob.cols.target(g)
    error = marginal_error(xp, r, c, prob.rows.target(f), target_c)
    value = objective(prob, f, g, r, c)
    if not bool(xp.isfinite(xp.asarray(error)).all()):
        status = Status.STALLED
    # POT's criterion ("l2"): the column violation once rows are exact; measured
    # on both sides, so that a plan whose rows are not exact (a Newton iterate
    # at the end of the budget) is not reported converged on its columns alone
    if norm == "l1":
        converged = error <= tol
    else:
        converged = xp.hypot(column_l2_error(xp, r, prob.rows.target(f)), column_l2_error(xp, c, target_c)) <= tol
    converged = bool(converged) if xp.ndim(converged) == 0 else converged
    if bool(xp_all(converged)) and status is Status.MAX_ITER:
        status = Status.CONVERGED
    plan, (f, g), (r, c) = prob.caller_plan(plan), prob.oriented(f, g), prob.oriented(r, c)
    dtype = prob.dtype  # every returned array and number in the input's dtype, as POT's
    return OTResult(
        plan=plan,
        marginals=(r.astype(dtype), c.astype(dtype)),
        potentials=(f.astype(dtype), g.astype(dtype)),
        value=in_dtype(value, dtype),
        value_linear=in_dtype(linear, dtype),
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


def in_dtype(x, dtype):
    """A float64 measure (number or array) in the problem's ``dtype``: a NumPy
    scalar of that dtype (``np.float64`` is a ``float``), or an array."""
    if getattr(x, "ndim", 0) == 0:
        return np.dtype(dtype).type(float(x))
    return x.astype(dtype)


def objective(prob, f, g, r, c):
    """POT's ``value`` of the plan at potentials ``(f, g)`` with marginals ``(r, c)``.

    ``<M, P> + reg Omega(P)`` plus ``rho KL(r | a)`` (and likewise for ``b``)
    for relaxed marginals, where ``Omega(P) = KL(P | a b^T)`` in the KL frame
    and ``sum P log P`` otherwise, and ``KL(p | q) = sum p log(p / q)`` (POT's
    ``kl_div``). ``<M, P> + reg sum P log P = <f, r> + <g, c>`` since
    ``log P_ij = (f_i + g_j - M_ij) / reg``: no pass over the plan.
    """
    xp = prob.xp
    value = _dot(xp, r, f) + _dot(xp, c, g)
    if prob.kl_frame:
        value = value - prob.reg * (_dot_log(xp, r, prob.a) + _dot_log(xp, c, prob.b))
    for side, marginal in ((prob.rows, r), (prob.cols, c)):
        if not side.exact:
            value = value + side.rho * (_dot_log(xp, marginal, marginal) - _dot_log(xp, marginal, side.mass))
    return value


def _dot(xp, w, p):
    """``<w, p>`` per problem, ignoring the ``-inf`` potentials of empty rows."""
    return (xp.where(xp.isfinite(p), p, 0.0) * w).sum(axis=-1)


def _dot_log(xp, r, w):
    """``sum_i r_i log w_i`` per problem, terms with ``r_i = 0`` counting 0."""
    with np.errstate(divide="ignore"):
        return xp.where(r > 0, r * xp.log(xp.where(r > 0, w, 1.0)), 0.0).sum(axis=-1)
