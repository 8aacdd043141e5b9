"""SNS on a batch of problems: each its own Newton iteration, stopping on its own.

:func:`run_sns_batch` is ``method="sns"`` for a ``(B, n, m)`` cost. Problem
``p`` is solved as :func:`fastsinkhorn.solve` solves ``M[p]`` alone (its own
annealing schedule, from the spread of its own costs; its own warm start):
the problems the compiled path takes (:func:`fastsinkhorn.algorithms.sns.small.applies`)
in one Numba call (:func:`fastsinkhorn.backends._cpu_small_batch.small_sns_batch`,
parallel over problems), the others by the driver, one after the other.
"""

import dataclasses

import numpy as np

from ...core.marginals import marginal_error, marginal_l2_error
from ...core.monitor import Monitor
from ...core.result import Status
from ...geometry.dense import DenseGeometry
from . import small
from .driver import anneal_schedule, run_sns

#: A batch's status, from its problems' (the first of these any problem has).
_WORST = (Status.CALLBACK, Status.STALLED, Status.MAX_ITER)


def problem(prob, p):
    """Problem ``p`` of the batch ``prob`` as a single prepared problem (its cost a view)."""
    M = prob.geom.M[p] if prob.geom.M.ndim == 3 else prob.geom.M  # a shared cost: the one M
    forbidden = prob.forbidden and not bool(prob.xp.isfinite(M).all())
    return dataclasses.replace(prob, geom=DenseGeometry(M, prob.backend, prob.geom.cost_range), a=prob.a[p],
                               b=prob.b[p], forbidden=forbidden)


def run_sns_batch(prob, opts, monitor, max_iter, f0, g0, norm="l1"):
    """``method="sns"`` on a batch: returns ``(plan, f, g, n_iter_phases,
    status)`` as the batched Sinkhorn's runner, with per-problem arrays of
    iterations in ``n_iter_phases`` (see the module).

    ``monitor``'s history gets one row (the largest iteration count and
    error of the batch); each problem the driver solves has its own monitor
    with ``monitor``'s tolerance, callback and ``verbose``.
    """
    xp = prob.xp
    problems = [problem(prob, p) for p in range(prob.shape[0])]
    compiled = np.array([small.applies(sub, opts, monitor, norm) for sub in problems], dtype=bool)
    f, g = xp.array(f0, dtype=np.float64), xp.array(g0, dtype=np.float64)
    phases = {"sinkhorn": np.zeros(len(problems), np.int64), "newton": np.zeros(len(problems), np.int64)}
    statuses = [Status.MAX_ITER] * len(problems)
    driver_plans = {}
    if compiled.any():
        idx = np.flatnonzero(compiled)
        warm = (f[idx] != 0).any(axis=1) | (g[idx] != 0).any(axis=1)
        regs = [anneal_schedule(prob.reg, problems[p].cost_scale, opts, bool(w)) for p, w in zip(idx, warm)]
        out = _run_compiled(prob, opts, monitor, max_iter, idx, regs, f, g)
        for name, counts in zip(("sinkhorn", "newton"), out[:2]):
            phases[name][idx] = counts
        for p, code in zip(idx, out[2]):
            statuses[p] = small.STATUS[code]
    for p in np.flatnonzero(~compiled):  # the driver, problem by problem
        own = Monitor(monitor.tol, monitor.callback, monitor.verbose)
        plan_p, f[p], g[p], phases_p, statuses[p] = run_sns(problems[p], opts, own, max_iter, f[p].copy(),
                                                                g[p].copy(), norm)
        driver_plans[p] = plan_p
        for name, count in phases_p.items():
            phases[name][p] = count
    plan = prob.geom.plan(f, g, prob.reg)  # (a shared cost: lazy plans at the potentials)
    for p, plan_p in driver_plans.items() if prob.geom.can_store_kernel else ():
        plan[p] = plan_p  # exactly what the driver returned
    _record(monitor, plan, f, g, prob, sum(phases.values()), phases, norm)
    status = next((s for s in _WORST if s in statuses), Status.CONVERGED)
    return plan, f, g, phases, status


def _run_compiled(prob, opts, monitor, max_iter, idx, regs, f, g):
    """The problems ``idx`` by one call of the compiled batch solver; ``f``,
    ``g`` updated in place. Returns ``(n_sinkhorn, n_newton, status codes)``."""
    from ...backends._cpu_small_batch import small_sns_batch

    schedule = np.zeros((len(idx), max(map(len, regs))))
    for k, r in enumerate(regs):
        schedule[k, :len(r)] = r
    f_s, g_s = np.ascontiguousarray(f[idx]), np.ascontiguousarray(g[idx])
    costs = np.broadcast_to(prob.geom.M, prob.shape)[idx]  # (a shared cost: copies of the one M)
    out = small_sns_batch(
        np.ascontiguousarray(costs, dtype=np.float64), np.ascontiguousarray(prob.a[idx], np.float64),
        np.ascontiguousarray(prob.b[idx], np.float64), schedule, np.array([len(r) for r in regs], np.int64),
        float(monitor.tol), float(max(monitor.tol, opts.anneal_tol)), float(opts.switch_tol),
        int(max(opts.warmup_iter, 1)), int(max_iter), f_s, g_s, float(opts.armijo), int(opts.max_backtracks),
        float(opts.shift), float(opts.max_step), int(opts.fallback_iter))
    f[idx], g[idx] = f_s, g_s
    return out


def _record(monitor, plan, f, g, prob, n_iter, phases, norm):
    """The batch's one history row: its largest iteration count and error
    (``"l1"``: the largest problem's; ``"l2"``: the norm of all problems'
    errors, POT's joint one); the callback, if any, was called by each
    problem's own monitor."""
    measure = marginal_error if norm == "l1" else marginal_l2_error
    r, c, _ = prob.geom.measure(plan, f, g, prob.reg)
    error = measure(prob.xp, r, c, prob.a, prob.b)
    callback, monitor.callback = monitor.callback, None
    try:
        monitor.check(int(n_iter.max()), float(np.max(error)), "newton" if phases["newton"].any() else "sinkhorn")
    finally:
        monitor.callback = callback
