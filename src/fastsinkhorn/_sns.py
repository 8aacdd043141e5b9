"""Sinkhorn-Newton-Sparse (Tang et al., ICLR 2024), written once for every backend.

1. Warm-up: Sinkhorn (absorbed scaling) until the L1 marginal error is below
   ``switch_tol``, or after ``warmup_iter`` iterations, or once 100 iterations
   gain less than 0.1% (Sinkhorn has stalled: Newton's globalised steps do better).
2. Newton on the concave dual ``L(f, g) = <a,f> + <b,g> - reg sum P(f, g)``:
   the Hessian ``-(1/reg) [[diag r, P], [P^T, diag c]]`` is sparsified to the
   ``k`` largest entries of each row of ``P`` (selection rule: per-row top-k,
   exact diagonals ``r = P1``, ``c = P^T1``, which keep it diagonally
   dominant), the system is solved by Jacobi-preconditioned CG to a relative
   residual tied to the current error (inexact Newton), and the step is found
   by Armijo backtracking on ``L``.

Each line-search trial is one dense pass over ``M`` that also returns
``r``, ``c`` and the sparsified rows at the trial point, so the accepted
trial hands the next Newton step everything it needs: a full step reads
``M`` once. Near machine accuracy ``L`` changes by less than its rounding, so
a trial is also accepted when it lowers the marginal error. When CG or the
line search fails, a few Sinkhorn iterations are taken and the density doubles;
the best iterate seen is what is returned.
"""

import math

import numpy as np

from ._cg import pcg
from ._result import Status
from ._sinkhorn import sinkhorn_loop


class _Point:
    """Potentials with everything one dense pass measures at them."""

    def __init__(self, prob, f, g, k):
        be, xp = prob.backend, prob.xp
        self.f, self.g, self.k = f, g, k
        # A long trial step may overflow exp: that trial is rejected (dual -inf).
        with np.errstate(over="ignore", invalid="ignore"):
            self.r, self.c, total, self.idx, self.val = be.dense_pass(prob.M, f, g, prob.reg, k)
            dual = _dot_finite(xp, prob.a, f) + _dot_finite(xp, prob.b, g) - prob.reg * float(total)
            error = float(xp.abs(self.r - prob.a).sum() + xp.abs(self.c - prob.b).sum())
        finite = math.isfinite(dual) and math.isfinite(error)
        self.dual = dual if finite else -math.inf
        self.error = error if finite else math.inf


def _dot_finite(xp, w, p):
    """``<w, p>`` ignoring the ``-inf`` potentials of zero masses (``0 * -inf``)."""
    return float(w @ xp.where(xp.isfinite(p), p, 0.0))


def _initial_k(opts, m):
    return int(min(m, max(opts.min_per_row, math.ceil(opts.density * m))))


def newton_direction(prob, pt, opts):
    """Solve the sparsified Newton system.

    Returns ``(df, dg, cg_iterations, slope)`` with ``slope`` the directional
    derivative of the dual along ``(df, dg)`` (positive for an ascent direction).
    """
    be, xp = prob.backend, prob.xp
    n, m = prob.M.shape
    grad = xp.concatenate([prob.a - pt.r, prob.b - pt.c])
    # Shift mu = shift * err^2 * mean(diag), err = ||grad||_1: damps (towards
    # gradient ascent) far from the optimum, where sparsified Newton steps are
    # wild; vanishes near it, so local convergence stays superlinear (the
    # shifted-Newton idea of SSNS, Tang & Qiu 2024).
    diag = xp.concatenate([pt.r, pt.c])
    mu = opts.shift * pt.error**2 * float(diag.mean()) + 1e-14
    diag = diag + mu

    def matvec(x):
        xf, xg = x[:n], x[n:]
        return xp.concatenate([pt.r * xf + be.ell_matvec(pt.idx, pt.val, xg),
                               be.ell_rmatvec(pt.idx, pt.val, xf, m) + pt.c * xg]) + mu * x

    rtol = opts.cg_rtol or min(0.1, math.sqrt(pt.error))
    d, iters, _ = pcg(matvec, grad, diag, rtol, opts.cg_max_iter, xp)
    return prob.reg * d[:n], prob.reg * d[n:], iters, float(grad @ (prob.reg * d))


def run_sns(prob, opts, monitor, max_iter, f0, g0, norm="l1"):
    """``method="sns"``: returns ``(plan, f, g, n_iter_phases, status)``."""
    be, xp, reg = prob.backend, prob.xp, prob.reg
    n, m = prob.M.shape
    K = xp.empty(prob.M.shape, dtype=prob.dtype)
    phases = {"sinkhorn": 0, "newton": 0}

    def sinkhorn_steps(f, g, iters, tol, stall_window=0):
        out = sinkhorn_loop(prob, opts, monitor, iters, f, g, K=K, norm="l1", tol=tol,
                            first_iteration=sum(phases.values()) + 1, stall_window=stall_window)
        phases["sinkhorn"] += out.n_iter
        return out

    warm = sinkhorn_steps(f0, g0, min(max(opts.warmup_iter, 1), max_iter), max(monitor.tol, opts.switch_tol),
                          stall_window=100)
    if warm.status is Status.CALLBACK or (warm.status is Status.CONVERGED and warm.error <= monitor.tol):
        return (be.scale(warm.K, warm.u, warm.v, warm.K), *warm.potentials(reg, xp), phases, warm.status)

    k = _initial_k(opts, m)
    pt = _Point(prob, *warm.potentials(reg, xp), k)
    best = pt
    status, step, cg_iters, failures = Status.MAX_ITER, None, 0, 0
    while sum(phases.values()) < max_iter:
        stop = monitor.check(sum(phases.values()), pt.error, "newton",
                             cg_iterations=cg_iters, nnz=n * pt.k, step=step)
        if stop is not None:
            status = stop
            break
        phases["newton"] += 1
        df, dg, cg_iters, slope = newton_direction(prob, pt, opts)
        # trust region: no potential moves more than max_step * reg in one trial
        # (far from the optimum, rows with r_i << a_i give enormous directions)
        largest = max(float(xp.abs(df).max()), float(xp.abs(dg).max()))
        trial, step = None, min(1.0, opts.max_step * reg / largest) if largest > 0 else 1.0
        if slope > 0:  # an ascent direction for the dual: search along it
            for _ in range(opts.max_backtracks):
                cand = _Point(prob, pt.f + step * df, pt.g + step * dg, k)
                if cand.dual >= pt.dual + opts.armijo * step * slope or cand.error < pt.error:
                    trial = cand
                    break
                step *= 0.5
        if trial is None:  # CG or line search failed: Sinkhorn steps, denser Hessian
            failures += 1
            step = 0.0
            k = min(m, 2 * k)
            budget = max(1, min(opts.fallback_iter, max_iter - sum(phases.values())))
            out = sinkhorn_steps(pt.f, pt.g, budget, 0.0)
            trial = _Point(prob, *out.potentials(reg, xp), k)
            if failures > 3 and trial.error >= best.error:
                status = Status.STALLED
                pt = trial
                break
        elif opts.adaptive_density:
            ratio = trial.error / pt.error
            if step < 1.0 or ratio > 0.5:
                k = min(m, 2 * k)
            elif ratio < 0.1:
                k = max(min(m, opts.min_per_row), int(0.8 * k))
        pt = trial
        if pt.error < best.error:
            best = pt
    if pt.error > best.error:  # never return an iterate worse than the best seen
        pt = best
    plan = be.plan(prob.M, pt.f, pt.g, reg, K)
    return plan, pt.f, pt.g, phases, status
