"""Sinkhorn-Newton-Sparse (Tang et al., ICLR 2024), written once for every backend.

1. Warm-up: Sinkhorn (absorbed scaling) until the L1 marginal error is below
   ``switch_tol``, or after ``warmup_iter`` iterations, or once the error fell
   by less than 0.1% over 100 convergence checks (100 iterations on the CPU,
   which checks every iteration; 1000 on the GPU, which checks every 10th;
   see ``check_every``): Sinkhorn has stalled, Newton's globalised steps do better.
2. Newton on the concave dual ``L(f, g) = <a,f> + <b,g> - reg sum P(f, g)``:
   the Hessian ``-(1/reg) [[diag r, P], [P^T, diag c]]`` is sparsified to the
   ``k`` largest entries of each row of ``P`` (selection rule: per-row top-k,
   exact diagonals ``r = P1``, ``c = P^T1``, which keep it diagonally
   dominant). The system is solved by Jacobi-preconditioned CG to a relative
   residual tied to the current error (inexact Newton) while that is cheap,
   and by a direct factorisation of its Schur complement
   (:mod:`fastsinkhorn.algorithms.sns.newton_system`) once CG fails (see
   :class:`LinearSolver`); the step is found by Armijo backtracking on ``L``.
3. Annealing: at small ``reg`` the stages above run on a decreasing sequence
   of regularisations, each warm-started from the last (:func:`anneal_schedule`).

Each line-search trial is one dense pass over the cost (``dense_pass`` of
the geometry) that also returns ``r``, ``c`` and the sparsified rows at the
trial point, so the accepted trial hands the next Newton step everything it
needs: a full step reads ``M`` once (on the GPU the per-row selection then
re-reads rows, mostly from L2). Near machine accuracy ``L`` changes by less
than its rounding, so a trial is also accepted when it lowers the marginal
error. When the solve or
the line search fails, a few Sinkhorn iterations are taken and the density
doubles; the best iterate seen is what is returned.
"""

import dataclasses
import math
import time
import types

import numpy as np

from ...core.arrays import to_numpy
from ...core.cg import pcg
from ...core.marginals import marginal_error, marginal_l2_error
from ...core.result import Status
from ..sinkhorn import sinkhorn_loop
from . import small
from .newton_system import factorize_newton_system, prune_by_mass


class _Point:
    """Potentials with everything one dense pass measures at them."""

    def __init__(self, prob, f, g, k):
        xp = prob.xp
        self.f, self.g = f, g
        # A long trial step may overflow exp: that trial is rejected (dual -inf).
        with np.errstate(over="ignore", invalid="ignore"):
            self.r, self.c, total, idx, val = prob.geom.dense_pass(f, g, prob.reg, k)
            self.idx, self.val = _compact(xp, idx, val)
            self.nnz = int((self.val > 0).sum())
            rows, cols = prob.rows, prob.cols
            # the marginals the plan must have here: a and b, or their relaxed targets
            self.target_r, self.target_c = rows.target(f), cols.target(g)
            dual = float(rows.dual(f)) + float(cols.dual(g)) - prob.reg * float(total)
            error = marginal_error(xp, self.r, self.c, self.target_r, self.target_c)
            # POT's "l2" criterion for an iterate whose rows are not exact either
            l2 = marginal_l2_error(xp, self.r, self.c, self.target_r, self.target_c)
            # the Newton system's diagonal: the marginals plus the relaxations' curvature
            self.diag_r = self.r + rows.curvature(self.target_r)
            self.diag_c = self.c + cols.curvature(self.target_c)
        finite = math.isfinite(dual) and math.isfinite(error)
        self.dual = dual if finite else -math.inf
        self.error = error if finite else math.inf
        self.l2_error = l2 if finite else math.inf

    def light(self):
        """The potentials and measures of this point, without its sparse rows."""
        return types.SimpleNamespace(f=self.f, g=self.g, error=self.error, l2_error=self.l2_error,
                                     dual=self.dual)


def _compact(xp, idx, val):
    """Drop the zero padding of a row-wise sparse matrix down to its widest row.

    The selection keeps up to ``k`` entries a row, but near the optimum most
    are zeros (negligible entries); every product with ``S`` costs
    O(n * width), so trim the width to the largest count of kept entries.
    """
    width = max(int((val > 0).sum(axis=1).max()), 1)
    if width > 0.75 * val.shape[1]:  # too little to gain for a copy of both arrays
        return idx, val
    if bool((val[:, width:] > 0).any()):  # kept entries not packed first: pack them
        order = xp.argsort(val <= 0, axis=1)
        idx, val = xp.take_along_axis(idx, order, axis=1), xp.take_along_axis(val, order, axis=1)
    return xp.ascontiguousarray(idx[:, :width]), xp.ascontiguousarray(val[:, :width])


def _max_k(opts, m, bounded):
    """Cap on Hessian entries per row (``max_per_row``; see SNSOptions):
    ``m``, or ``m // 16`` when the memory must stay ``bounded`` (a geometry
    that stores no kernel)."""
    if opts.max_per_row:
        return max(1, min(m, opts.max_per_row))
    return max(1, min(m, max(opts.min_per_row, m // 16))) if bounded else m


def _initial_k(opts, m, cap):
    return int(min(cap, max(opts.min_per_row, math.ceil(opts.density * m))))


#: Newton steps a stage typically takes from the switch to tight tolerances
#: (the ``sinkhorn_hedge`` cost model).
NEWTON_STEPS = 12
#: Whether this process has run a dense pass (its kernels are loaded): see
#: ``_SNSRun._timed_point``.
_DENSE_PASS_LOADED = False


class LinearSolver:
    """Chooses and runs the solver of each Newton system.

    ``linear_solver="auto"`` tries Jacobi-PCG first (cheap when the system is
    well conditioned: smooth plans at moderate ``reg``), capped at the number
    of iterations whose estimated time equals one direct solve (so a failed
    try at most doubles the cost of the step), then factorises directly.
    Once PCG has failed, the direct solver is used for the rest of the stage
    (conditioning only gets worse as a stage converges). ``"cg"`` and
    ``"direct"`` force one solver.
    """

    def __init__(self, opts):
        self.opts = opts
        self.factor_kind = None  # dense or sparse, chosen by the first factorisation
        self.new_stage()

    def new_stage(self):
        self.mode = "direct" if self.opts.linear_solver == "direct" else "cg"

    def _cg_cap(self, pt):
        """PCG iterations that cost about one direct solve: a cost model of
        both in seconds, its constants fitted to timings on one machine (what
        decides the cap is their ratio; measured figures are in
        benchmarks/RESULTS.md)."""
        if self.opts.linear_solver == "cg":
            return self.opts.cg_max_iter
        n, m = pt.r.shape[0], pt.c.shape[0]
        order = min(n, m)
        per_iteration = 15e-6 + 1.2e-9 * pt.nnz + 4e-9 * (n + m)
        assembly = 2e-8 * float(((pt.val > 0).sum(axis=1) ** 2).sum())
        factor = min(order**3 / 1.2e11, 50 * assembly)  # dense, or sparse with modest fill
        direct = 1e-3 + assembly + factor
        return int(min(self.opts.cg_max_iter, max(10, direct / per_iteration)))

    def direction(self, prob, pt):
        """Solve the sparsified Newton system at ``pt``.

        Returns ``(df, dg, info)`` where ``info`` holds the directional
        derivative of the dual along ``(df, dg)`` (``slope``, positive for an
        ascent direction), the solver used and its CG iterations.
        """
        xp = prob.xp
        grad_f, grad_g = pt.target_r - pt.r, pt.target_c - pt.c
        # Shift mu = shift * err^2 * mean(diag): damps (towards gradient ascent)
        # far from the optimum, where sparsified Newton steps are wild; vanishes
        # near it, so local convergence stays superlinear (the shifted-Newton
        # idea of SSNS, Tang & Qiu 2024). The floor removes the null direction.
        mean_diag = float(pt.r.sum() + pt.c.sum()) / (pt.r.shape[0] + pt.c.shape[0])
        mu = self.opts.shift * pt.error**2 * mean_diag + 1e-14
        info = {"cg_iterations": 0, "solver": self.mode}
        if self.mode == "cg":
            d, iters, converged = self._cg(prob, pt, grad_f, grad_g, mu, self._cg_cap(pt))
            info["cg_iterations"] = iters
            if converged or self.opts.linear_solver == "cg":
                return self._finish(prob, d[: grad_f.shape[0]], d[grad_f.shape[0]:], grad_f, grad_g, info)
            self.mode = info["solver"] = "direct"
        df, dg = self._direct(prob, pt, grad_f, grad_g, mu)
        return self._finish(prob, xp.asarray(df), xp.asarray(dg), grad_f, grad_g, info)

    @staticmethod
    def _finish(prob, df, dg, grad_f, grad_g, info):
        df, dg = prob.reg * df, prob.reg * dg
        if prob.balanced:
            # Without the null direction (1, -1): it changes neither the plan nor
            # the dual, but the shift mu of a nearly singular system can make it
            # the largest part of the solve, which would then use up the trust
            # region and drag both potentials far from the cost scale (see
            # ``centred`` in _sinkhorn).
            t = (float(df.sum()) - float(dg.sum())) / (df.shape[0] + dg.shape[0])
            df, dg = df - t, dg + t
        info["slope"] = float(grad_f @ df + grad_g @ dg)
        return df, dg, info

    def _cg(self, prob, pt, grad_f, grad_g, mu, max_iter):
        geom, xp = prob.geom, prob.xp
        n = pt.r.shape[0]

        def matvec(x):
            xf, xg = x[:n], x[n:]
            return xp.concatenate([pt.diag_r * xf + geom.ell_matvec(pt.idx, pt.val, xg),
                                   geom.ell_rmatvec(pt.idx, pt.val, xf) + pt.diag_c * xg]) + mu * x

        rtol = self.opts.cg_rtol or min(0.1, math.sqrt(pt.error))
        diag = xp.concatenate([pt.diag_r, pt.diag_c]) + mu
        return pcg(matvec, xp.concatenate([grad_f, grad_g]), diag, rtol, max_iter, xp)

    def _direct(self, prob, pt, grad_f, grad_g, mu):
        """Factorise on the host (O(nnz) data; nothing n x m is copied)."""
        r, c, val = (to_numpy(x) for x in (pt.diag_r, pt.diag_c, pt.val))
        val = prune_by_mass(val, to_numpy(pt.r), self.opts.mass_budget * pt.error)
        for _ in range(8):
            try:
                system = factorize_newton_system(to_numpy(pt.idx), val, r, c, mu, self.factor_kind)
                break
            except (np.linalg.LinAlgError, RuntimeError):  # lost definiteness to rounding
                mu = 10.0 * mu + 1e-14
        else:
            raise np.linalg.LinAlgError("the Newton system could not be factorised")
        self.factor_kind = system.kind
        return system.solve(to_numpy(grad_f), to_numpy(grad_g))


def anneal_schedule(reg, cost_scale, opts, warm):
    """Regularisations of the stages of one SNS solve, largest first, ending at ``reg``.

    At small ``reg`` the dual is far from quadratic at the Sinkhorn warm-up's
    iterate and damped Newton crawls (hundreds of steps) before it reaches
    its quadratic basin. Solving a sequence of problems, ``reg`` divided by
    ``anneal_factor`` each time from ``anneal_start * cost_scale`` (the
    spread of the costs that can carry mass: see ``choose_method``), and
    warm-starting each from the last, keeps every stage inside that basin: a
    few Newton steps each. A warm start from the caller skips the schedule.
    """
    if warm or opts.anneal_factor <= 1 or cost_scale <= 0:
        return [reg]
    regs, stage = [], opts.anneal_start * cost_scale
    while stage > reg * 1.5:
        regs.append(stage)
        stage /= opts.anneal_factor
    return regs + [reg]


class _SNSRun:
    """State shared by the stages of one SNS solve: budget, counters, buffer."""

    def __init__(self, prob, opts, monitor, max_iter, norm="l1"):
        self.prob, self.opts, self.monitor, self.max_iter = prob, opts, monitor, max_iter
        self.norm = norm  # stopping norm of the final stage ("l2": POT's criterion)
        self.K = prob.geom.new_buffer()  # None where the geometry stores no kernel
        self.phases = {"sinkhorn": 0, "newton": 0}
        self.linear = LinearSolver(opts)
        self.max_k = _max_k(opts, prob.shape[1], bounded=not prob.geom.can_store_kernel)
        self.k = _initial_k(opts, prob.shape[1], self.max_k)

    @property
    def used(self):
        return sum(self.phases.values())

    def sinkhorn_steps(self, prob, f, g, iters, tol, stall_window=0, norm="l1", predict_miss=None):
        iters = max(1, min(iters, self.max_iter - self.used))
        out = sinkhorn_loop(prob, self.opts, self.monitor, iters, f, g, K=self.K, norm=norm, tol=tol,
                            first_iteration=self.used + 1, stall_window=stall_window,
                            predict_miss=predict_miss)
        self.phases["sinkhorn"] += out.n_iter
        return out

    def stage(self, prob, f, g, tol):
        """Warm-up then Newton at ``prob.reg`` until the error is ``<= tol``.

        Returns ``(f, g, status, plan_of)``: ``plan_of(K)`` is the plan of the
        returned iterate, written into ``K`` (``None``, where the geometry
        stores no kernel: its lazy plan).
        """
        opts, reg = self.opts, prob.reg
        first = None
        final = prob.reg == self.prob.reg
        norm = self.norm if final else "l1"
        first_check = len(self.monitor.history["error"])
        if opts.sinkhorn_first and final:  # Sinkhorn to tol; Newton only if it would miss
            warm = self.sinkhorn_steps(prob, f, g, self.max_iter, tol, stall_window=100, norm=norm,
                                       predict_miss=opts.sinkhorn_patience)
            if warm.status in (Status.CONVERGED, Status.CALLBACK) or self.used >= self.max_iter:
                return (*warm.potentials(), warm.status, warm.plan_into)
        else:
            warm = self.sinkhorn_steps(prob, f, g, max(opts.warmup_iter, 1), max(tol, opts.switch_tol),
                                       stall_window=100)
        if warm.status is Status.CONVERGED and warm.error > tol and opts.sinkhorn_hedge and final:
            first, pass_time = self._timed_point(prob, *warm.potentials())  # Newton's start, if it goes on
            predicted = self._sinkhorn_iterations_if_cheaper(first_check, pass_time, tol)
            if predicted:  # twice the prediction at most (Sinkhorn's rate may degrade), and at most
                # half the budget left: a wrong bet must leave Newton room to finish
                iters = min(2 * predicted + 10, max(1, (self.max_iter - self.used) // 2))
                warm = self.sinkhorn_steps(prob, *warm.potentials(), iters, tol, norm=norm)
                first = None
        if warm.status is Status.CALLBACK or (warm.status is Status.CONVERGED and warm.error <= tol) \
                or self.used >= self.max_iter:
            return (*warm.potentials(), warm.status, warm.plan_into)
        self.linear.new_stage()
        first = first or _Point(prob, *warm.potentials(), self.k)
        pt, status = self.newton(prob, [first], tol, norm)
        if status is Status.STALLED and self.used < self.max_iter:
            # Newton cannot improve further: Sinkhorn gets the rest of the budget
            out = self.sinkhorn_steps(prob, pt.f, pt.g, self.max_iter, tol, norm=norm)
            if out.error < pt.error:
                return (*out.potentials(), out.status, out.plan_into)
        return pt.f, pt.g, status, lambda K: prob.geom.plan(pt.f, pt.g, reg, K)

    def _timed_point(self, prob, f, g):
        """The Newton start at ``(f, g)`` and the seconds one dense pass takes.

        The first dense pass of a process also loads its kernels (Numba's
        cache, or a compilation): timing it would make Newton look many times
        dearer than it is, so that one is repeated and the repeat timed.
        """
        global _DENSE_PASS_LOADED
        repeats = 1 if _DENSE_PASS_LOADED else 2
        for _ in range(repeats):
            start = time.perf_counter()
            point = _Point(prob, f, g, self.k)
            elapsed = time.perf_counter() - start
        _DENSE_PASS_LOADED = True
        return point, elapsed

    def _sinkhorn_iterations_if_cheaper(self, first_check, pass_time, tol):
        """Sinkhorn iterations to ``tol`` if it is predicted to beat the Newton
        phase, else 0 (``sinkhorn_hedge``).

        Sinkhorn's remaining time: its contraction rate and time per check
        over the later half (at most 50) of the warm-up's checks, extrapolated to
        ``tol``. Newton's: ``NEWTON_STEPS`` steps of about three dense passes
        each (direction, trial point, selection), the pass timed just now.
        Sinkhorn is chosen only when predicted to take half of that: a wrong
        choice costs its budget (twice the prediction) before Newton resumes.
        """
        h = self.monitor.history
        errors, times = h["error"][first_check:], h["time"][first_check:]
        window = min(len(errors) // 2, 50)  # the later half: the first checks converge faster
        if window < 20 or not 0 < errors[-1] < errors[-1 - window]:
            return 0
        # Sinkhorn slows down as it converges: take the slower of the window's
        # rate and that of its last 10 checks
        rate = max((errors[-1] / errors[-1 - window]) ** (1.0 / window), (errors[-1] / errors[-11]) ** 0.1)
        if not rate < 1:
            return 0
        per_check = (times[-1] - times[-1 - window]) / window
        checks = math.log(tol / errors[-1]) / math.log(rate)
        if per_check * checks >= 0.5 * NEWTON_STEPS * 3 * pass_time:  # clearly cheaper only
            return 0
        return int(math.ceil(checks)) * self.prob.geom.check_interval(self.opts.check_every)

    def newton(self, prob, start, tol, norm="l1"):
        """Newton steps from the point in the list ``start`` until its ``norm``
        error is ``<= tol``; returns the best iterate (potentials and errors)
        and the status.

        ``start`` is emptied, and the best iterate is kept without its sparse
        rows: only the current point and one trial hold O(n k) arrays.
        """
        opts, xp, reg, m = self.opts, prob.xp, prob.reg, self.max_k
        pt = start.pop()
        best = pt.light()
        status, step, cg_iters, failures, solver = Status.MAX_ITER, None, 0, 0, None
        while self.used < self.max_iter:
            # step, solver, cg_iterations: of the step that led here; nnz: of this point's Hessian
            stop = self.monitor.check(self.used, pt.error if norm == "l1" else pt.l2_error, "newton",
                                      tol=tol, cg_iterations=cg_iters,
                                      nnz=pt.nnz, step=step, solver=solver, reg=reg)
            if stop is not None:
                status = stop
                break
            self.phases["newton"] += 1
            df, dg, info = self.linear.direction(prob, pt)
            slope, cg_iters, solver = info["slope"], info["cg_iterations"], info["solver"]
            # trust region: no potential moves more than max_step * reg in one trial
            # (far from the optimum, rows with r_i << a_i give enormous directions)
            largest = max(float(xp.abs(df).max()), float(xp.abs(dg).max()))
            trial, step = None, min(1.0, opts.max_step * reg / largest) if largest > 0 else 1.0
            if slope > 0:  # an ascent direction for the dual: search along it
                for _ in range(opts.max_backtracks):
                    cand = _Point(prob, pt.f + step * df, pt.g + step * dg, self.k)
                    if cand.dual >= pt.dual + opts.armijo * step * slope or cand.error < pt.error:
                        trial = cand
                        break
                    step *= 0.5
            if trial is None:  # the solve or the line search failed: Sinkhorn steps, denser Hessian
                failures += 1
                step = 0.0
                self.k = min(m, 2 * self.k)
                out = self.sinkhorn_steps(prob, pt.f, pt.g, opts.fallback_iter, 0.0)
                trial = _Point(prob, *out.potentials(), self.k)
                if failures > 3 and trial.error >= best.error:
                    status = Status.STALLED
                    pt = trial
                    break
            elif opts.adaptive_density:
                ratio = trial.error / pt.error
                if step < 1.0 or ratio > 0.5:
                    self.k = min(m, 2 * self.k)
                elif ratio < 0.1:
                    self.k = max(min(m, opts.min_per_row), int(0.8 * self.k))
            pt = trial
            if pt.error < best.error:
                best = pt.light()
        if pt.error <= best.error:
            best = pt.light()
        return best, status  # never an iterate worse than the best seen


def run_sns(prob, opts, monitor, max_iter, f0, g0, norm="l1"):
    """``method="sns"``: returns ``(plan, f, g, n_iter_phases, status)``
    (``plan`` an array where the geometry stores a kernel, else a
    :class:`~fastsinkhorn.LazyPlan`).

    ``norm="l2"`` (POT's drop-ins) stops the final stage on
    ``sqrt(||P1 - a||^2 + ||P^T1 - b||^2)``, which bounds POT's quantity (the
    column violation once rows are exact); intermediate stages and the
    switch to Newton always use the L1 error. A caller's warm start (any
    non-zero potential) skips the annealing schedule.
    """
    warm = bool(prob.xp.any(f0 != 0) or prob.xp.any(g0 != 0))
    regs = anneal_schedule(prob.reg, prob.cost_scale, opts, warm)
    if small.applies(prob, opts, monitor, norm):  # compiled end to end: no Python per iteration
        return small.run_small(prob, opts, monitor, max_iter, f0, g0, regs, norm)
    run = _SNSRun(prob, opts, monitor, max_iter, norm)
    f, g = f0, g0
    for stage_reg in regs:
        final = stage_reg == regs[-1]
        tol = monitor.tol if final else max(monitor.tol, opts.anneal_tol)
        stage = prob if final else dataclasses.replace(prob, reg=stage_reg)
        f, g, status, plan_of = run.stage(stage, f, g, tol)
        if status is Status.CALLBACK or run.used >= max_iter:
            break
    if not final:  # stopped early: the plan of the last iterate at the target reg
        def plan_of(K):
            return prob.geom.plan(f, g, prob.reg, K)
    return plan_of(run.K), f, g, run.phases, status
