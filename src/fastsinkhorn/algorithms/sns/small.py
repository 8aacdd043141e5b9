"""SNS on small dense problems, compiled end to end.

:func:`run_small` hands the whole solve to one Numba function
(:func:`fastsinkhorn.backends._cpu_small_kernels.small_sns`): no Python per
iteration. It runs where that is measured to be faster than the driver
(:func:`applies`: CPU, one stored dense balanced problem with finite costs, at most
:data:`SMALL_MAX_SIDE` points on the smaller side, no callback or verbose
output, and only the options it honours set); the
driver (:func:`fastsinkhorn.algorithms.sns.driver.run_sns`) runs otherwise.
The algorithm is the driver's: the same annealing schedule, warm-up and
switch tolerance, Newton on the dual with an Armijo line search, Sinkhorn
for the rest of the budget if Newton stalls. One difference, by design: the
Newton system is the full Hessian's (at these sizes its dense Schur
complement costs less than selecting a sparse one), so ``density`` and the
linear-solver options have nothing to choose. POT's drop-ins' stopping rule
(``norm="l2"``, ``sqrt(||P1 - a||^2 + ||P^T1 - b||^2) <= tol``) is met by
stopping on the L1 error, which bounds it: at most a Newton step more.
"""

import dataclasses

import numpy as np

from ...core.marginals import marginal_error, marginal_l2_error
from ...core.options import SNSOptions
from ...core.result import Status
from ...geometry.dense import DenseGeometry

#: The most points on the smaller side for the compiled path: above it the
#: dense Schur complement (``n^2 m`` per Newton step) costs more than the
#: driver's sparsified system (measured: benchmarks/RESULTS.md, section 18).
SMALL_MAX_SIDE = 256

#: The options the compiled path honours; any other set to a non-default value
#: sends the problem to the driver, which honours it.
#: (``check_every``: the compiled loop checks every iteration; a caller's
#: ``absorb_threshold`` (POT's ``tau``) goes to the driver, which absorbs
#: there, the compiled loop at its own threshold; ``sinkhorn_hedge`` weighs
#: Sinkhorn against the driver's Newton steps, which here cost a few dozen
#: Sinkhorn iterations each. ``sinkhorn_first``, ``method="auto"`` at large
#: ``reg``, promises plain Sinkhorn's answer where Sinkhorn converges: the
#: driver keeps that promise.)
HONOURED = {"warmup_iter", "switch_tol", "armijo", "max_backtracks", "shift", "max_step", "fallback_iter",
            "anneal_factor", "anneal_start",
            "anneal_tol", "check_every", "sinkhorn_hedge", "sinkhorn_patience"}

#: The compiled solvers' status codes, as :class:`Status`.
STATUS = (Status.CONVERGED, Status.MAX_ITER, Status.STALLED)


def applies(prob, opts, monitor, norm):
    """Whether :func:`run_small` solves ``prob`` (see the module)."""
    if prob.backend.name != "cpu" or len(prob.shape) != 2 or not prob.balanced or prob.forbidden:
        return False
    if not isinstance(prob.geom, DenseGeometry):  # a point cloud's plan stays lazy: the driver's
        return False
    if norm not in ("l1", "l2") or monitor.callback is not None or monitor.verbose or opts.sinkhorn_first:
        return False
    if min(prob.shape) > SMALL_MAX_SIDE or prob.shape[0] * prob.shape[1] > 4 * SMALL_MAX_SIDE ** 2:
        return False
    defaults = SNSOptions()
    return all(getattr(opts, f.name) == getattr(defaults, f.name)
               for f in dataclasses.fields(SNSOptions) if f.name not in HONOURED)


def run_small(prob, opts, monitor, max_iter, f0, g0, regs, norm="l1"):
    """The compiled solve of ``prob`` through the schedule ``regs``: returns
    ``(plan, f, g, n_iter_phases, status)`` as the driver's ``run_sns``; the
    history's one row holds the error in ``norm`` (the L1 error bounds the
    ``"l2"`` one, so stopping on it meets both)."""
    from ...backends._cpu_small_kernels import small_sns

    M = np.asarray(prob.geom.M, dtype=np.float64)
    a, b = np.asarray(prob.a, dtype=np.float64), np.asarray(prob.b, dtype=np.float64)
    rows, cols = np.flatnonzero(a > 0), np.flatnonzero(b > 0)  # zero masses carry no potential
    sub = np.ascontiguousarray(M[np.ix_(rows, cols)])
    f, g = np.array(f0, dtype=np.float64)[rows], np.array(g0, dtype=np.float64)[cols]
    flip = len(rows) > len(cols)  # the Schur complement of the larger side: n <= m
    if flip:
        sub, a_s, b_s, f, g = np.ascontiguousarray(sub.T), b[cols], a[rows], g, f
    else:
        a_s, b_s = a[rows], b[cols]
    n_sinkhorn, n_newton, code = small_sns(
        sub, a_s, b_s, np.asarray(regs, dtype=np.float64), float(monitor.tol), float(max(monitor.tol, opts.anneal_tol)),
        float(opts.switch_tol), int(max(opts.warmup_iter, 1)), int(max_iter), f, g, float(opts.armijo),
        int(opts.max_backtracks), float(opts.shift), float(opts.max_step), int(opts.fallback_iter))
    if flip:
        f, g = g, f
    f_full, g_full = np.full(len(a), -np.inf), np.full(len(b), -np.inf)
    f_full[rows], g_full[cols] = f, g
    plan = prob.geom.plan(f_full, g_full, prob.reg)
    r, c = plan.sum(1, dtype=np.float64), plan.sum(0, dtype=np.float64)
    error = marginal_error(np, r, c, a, b) if norm == "l1" else marginal_l2_error(np, r, c, a, b)
    monitor.check(n_sinkhorn + n_newton, error, "newton" if n_newton else "sinkhorn")  # the history's one row
    phases = {"sinkhorn": int(n_sinkhorn), "newton": int(n_newton)}
    return plan, f_full, g_full, phases, STATUS[code]
