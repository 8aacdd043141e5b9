"""Log-stable Sinkhorn, written once for every backend and geometry.

The loop (convergence checks, stall test, history) is shared, and sees the
cost only through its :class:`~fastsinkhorn.geometry.protocol.Geometry`
(no backend call). What one iteration does depends on the geometry's
capability ``can_store_kernel``:

* A geometry that can store a kernel (dense costs, :class:`_ScalingIterate`):
  the iterate is kept as potentials ``(f, g)`` plus scalings ``(u, v)`` on
  the stored kernel ``K = exp((f_i + g_j - M_ij) / reg)``; the plan is
  ``diag(u) K diag(v)``. Iterations are plain scalings, no exp: one
  ``scaling_pass`` over ``K`` each (a single read of ``K`` on the CPU; two,
  ``K v`` then ``K^T u``, on the GPU and in the reference backend); when a
  scaling leaves ``[1/t, t]`` it is folded into the potentials and ``K``
  recomputed (one exp pass). The first half-step is done in the log domain,
  so every row of ``K`` holds mass whatever ``reg``, the cost scale or the
  warm start.
* A geometry that cannot (point clouds, grids, many problems on one cost;
  :class:`_LogIterate`): nothing n x m is stored per problem, so each
  half-step is an exact log-domain update, one pass over the cost each
  (recomputed on the fly; for a shared cost, one matrix product for all
  problems), and the plan is the geometry's lazy one.

A batch of dense problems (``(B, n, m)`` cost) runs through the same code:
every array carries the batch axis first and the backends make one parallel
pass over all problems; each problem stops at its own tolerance check
(:class:`_Freezer`), and the batch shrinks as its problems converge.

Either way each iteration performs the row half-step and yields the column
sums of the row-normalised plan, so the marginal error of that iterate (rows
exact, columns off) costs O(m) and no extra pass: the iterate that is
returned is exactly the one whose error was checked.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.arrays import to_numpy as to_host
from ..core.marginals import side_error, sinkhorn_errors
from ..core.relaxation import translation
from ..core.result import Status
from . import small_batch


def log_iteration(prob, f, g):
    """One exact log-domain Sinkhorn iteration (row then column half-step)."""
    geom, reg = prob.geom, prob.reg
    f = prob.rows.potential(geom.lse_rows(g, reg))
    g = prob.cols.potential(geom.lse_cols(f, reg))
    return f, g


def centred(prob, f, g):
    """``(f + t, g - t)`` with the mass-weighted means of both equal.

    Balanced OT is invariant along ``(1, -1)``, so the offset ``t`` is
    arbitrary, and every half-step carries it over. A warm start of much
    larger magnitude than the costs (an annealing stage at a far larger
    ``reg``, a caller's potentials) then leaves ``f_i + g_j`` to cancel two
    large numbers and the plan to rounding noise; centring keeps both
    potentials on the scale of ``f_i + g_j``. Zero masses (``-inf``) are left
    as they are; for a batch, one offset per problem.
    """
    xp = prob.xp

    def mean(p, w):
        w = xp.where(xp.isfinite(p), w, 0.0)
        return (xp.where(w > 0, p, 0.0) * w).sum(axis=-1) / w.sum(axis=-1)

    t = 0.5 * (mean(g, prob.b) - mean(f, prob.a))
    t = t[..., None] if xp.ndim(t) else t
    return f + t, g - t


class _ScalingIterate:
    """Scalings on a stored kernel, absorbed into the potentials (dense costs)."""

    def __init__(self, prob, opts, f, g, K):
        self.prob, self.K = prob, K if K is not None else prob.geom.new_buffer()
        self.threshold = opts.absorb_threshold or (1e8 if prob.dtype == np.float32 else 1e50)
        # Row half-step in the log domain: every row then holds its mass. A
        # column left empty shows up as an infinite scaling after the first
        # pass, which triggers a full log-domain iteration (``maintain``).
        f = prob.rows.potential(prob.geom.lse_rows(g, prob.reg))
        self.u = prob.xp.ones(f.shape)
        self._reset(f, g)
        self.last_good = (f, g)

    def _reset(self, f, g):
        prob = self.prob
        self.f, self.g = f, g
        prob.geom.plan(f, g, prob.reg, self.K)
        self.u[...] = 1.0
        self.v = prob.xp.ones(g.shape)
        # unbalanced: the scaling half-steps u = exp(h - tau log(K v)) of this kernel
        self.h_a = None if prob.rows.exact else prob.rows.log_scaling_target(f)
        self.h_b = None if prob.cols.exact else prob.cols.log_scaling_target(g)

    def row_step(self):
        """Row half-step; returns the column sums of the resulting plan."""
        rows = self.prob.rows
        self.colsum = self.prob.geom.scaling_pass(self.K, self.v, self.prob.a if rows.exact else self.h_a,
                                                  self.u, rows.tau)
        return self.v * self.colsum

    def col_target(self):
        """The column marginal the optimal plan has at the current potentials."""
        cols = self.prob.cols
        return self.prob.b if cols.exact else cols.target(self.g + self.prob.reg * self.prob.xp.log(self.v))

    def col_step(self):
        prob = self.prob
        self.v = prob.cols.scaling(self.h_b, self.colsum)
        if not prob.balanced:  # unbalanced: the plan's mass in one step (see ``translation``)
            # (f + t, g - t) leaves K alone: shift the absorbed potentials, not the scalings
            f, g = self.potentials()
            t = translation(prob.rows, prob.cols, f, g)
            t = t[..., None] if prob.xp.ndim(t) else t
            self.f, self.g = self.f + t, self.g - t
            self.h_a, self.h_b = prob.rows.log_scaling_target(self.f), prob.cols.log_scaling_target(self.g)

    def maintain(self):
        """Absorb scalings that left ``[1/t, t]`` (reads ``u``, ``v``: a sync on
        a GPU, so only at convergence checks)."""
        u, v, reg, xp = self.u, self.v, self.prob.reg, self.prob.xp
        lo = min(float(u.min()), float(v.min()))
        hi = max(float(u.max()), float(v.max()))
        if 1.0 / self.threshold < lo and hi < self.threshold:  # also false for inf/nan
            return
        if np.isfinite(hi) and lo > 0:
            f, g = self.f + reg * xp.log(u), self.g + reg * xp.log(v)
            self.last_good = (f, g)
        else:
            f, g = log_iteration(self.prob, *self.last_good)
        self._reset(f, g)

    def restart(self):
        """Mass was lost (non-finite error): restart from the last absorbed state."""
        self._reset(*log_iteration(self.prob, *self.last_good))

    def potentials(self):
        """``f + reg log u``, ``g + reg log v``: the potentials of the plan."""
        xp, reg = self.prob.xp, self.prob.reg
        return self.f + reg * xp.log(self.u), self.g + reg * xp.log(self.v)

    def plan_into(self, out=None):
        """Write the plan ``diag(u) K diag(v)`` into ``out`` (``None``: into ``K``)."""
        return self.prob.geom.scale(self.K, self.u, self.v, self.K if out is None else out)

    def subset(self, keep):
        """This iterate restricted to the problems ``keep`` of a batch: the
        same arrays sliced (copies), so the iterations go on unchanged."""
        prob = self.prob
        sub = dataclasses.replace(prob, geom=prob.geom.subset(keep), a=prob.a[keep], b=prob.b[keep])
        new = object.__new__(_ScalingIterate)
        new.prob, new.K, new.threshold = sub, self.K[keep], self.threshold
        new.f, new.g, new.u, new.v = self.f[keep], self.g[keep], self.u[keep], self.v[keep]
        new.h_a, new.h_b = (None if h is None else h[keep] for h in (self.h_a, self.h_b))
        new.last_good = tuple(x[keep] for x in self.last_good)
        return new

    def plan_of(self, sel):
        """The plans of the problems ``sel`` of a batch (a new array)."""
        K = self.K[sel]
        return self.prob.geom.scale(K, self.u[sel], self.v[sel], K)


class _LogIterate:
    """Exact log-domain half-steps on a geometry that stores no kernel: two
    passes over the cost an iteration."""

    def __init__(self, prob, f, g):
        self.prob, self.f, self.g = prob, f, g

    def row_step(self):
        prob, geom, reg, xp = self.prob, self.prob.geom, self.prob.reg, self.prob.xp
        self.f = prob.rows.potential(geom.lse_rows(self.g, reg))
        self.lse = geom.lse_cols(self.f, reg)
        # columns of the row-normalised plan; every entry is <= a_i, so no overflow
        return xp.exp(self.g / reg + self.lse)

    def col_target(self):
        return self.prob.cols.target(self.g)

    def col_step(self):
        prob = self.prob
        self.g = prob.cols.potential(self.lse)
        if not prob.balanced:
            t = translation(prob.rows, prob.cols, self.f, self.g)
            t = t[..., None] if prob.xp.ndim(t) else t  # a batch: one shift per problem
            self.f, self.g = self.f + t, self.g - t

    def maintain(self):
        pass  # potentials are the iterate: nothing to absorb

    def restart(self):
        raise FloatingPointError("log-domain Sinkhorn produced a non-finite marginal error")

    def potentials(self):
        return self.f, self.g

    def plan_into(self, out=None):
        """The geometry's plan at the potentials: written into ``out``, or
        (``None``) in the geometry's own form, a :class:`~fastsinkhorn.LazyPlan`."""
        return self.prob.geom.plan(self.f, self.g, self.prob.reg, out)

    def subset(self, keep):
        """This iterate restricted to the problems ``keep`` of a batch (a
        lazy batch: a shared cost), its potentials sliced."""
        prob = self.prob
        sub = dataclasses.replace(prob, geom=prob.geom.subset(keep), a=prob.a[keep], b=prob.b[keep])
        return _LogIterate(sub, self.f[keep], self.g[keep])


class _Freezer:
    """Per-problem stopping of a batch (L1 criterion).

    Each problem keeps the iterate of its first convergence check at or
    below the tolerance, exactly what a single solve of it returns: its
    potentials and plan are copied out then. Converged problems ride along
    (unchanged arithmetic for the others) until half the active ones have
    converged (a lazy batch: not at all); then the batch is compacted to the rest (their kernels,
    scalings and potentials sliced: the iterations go on unchanged), so the
    work follows the problems still running.
    """

    def __init__(self, prob):
        xp, B = prob.xp, prob.shape[0]
        self.xp = xp
        self.rows = np.arange(B)  # full-batch index of each problem of the running batch
        self.done = np.zeros(B, dtype=bool)
        self.n_iter = np.zeros(B, dtype=np.int64)
        self.f, self.g = xp.empty(prob.a.shape), xp.empty(prob.b.shape)
        # a stored plan per problem, copied out as it converges; a lazy batch
        # (a shared cost) keeps potentials only, its plans made at the end
        self.geom, self.reg = prob.geom, prob.reg
        self.plan = prob.geom.new_buffer()

    def check(self, state, c, iteration, tol):
        """Freeze the problems at or below ``tol``; the largest L1 error of the others (0 if none)."""
        errors = to_host(side_error(self.xp, c, state.col_target()))
        live = ~self.done[self.rows]
        newly = live & (errors <= tol)
        if newly.any():
            self._store(state, np.flatnonzero(newly), iteration)
        rest = live & ~newly
        return float(errors[rest].max()) if rest.any() else 0.0

    def _store(self, state, sel, iteration):
        rows = self.rows[sel]
        f, g = state.potentials()
        self.f[rows], self.g[rows] = f[sel], g[sel]
        if self.plan is not None:
            self.plan[rows] = state.plan_of(sel)
        self.done[rows] = True
        self.n_iter[rows] = iteration

    def compact(self, state):
        """The running batch without its converged problems, once they are half
        of it; at once for a lazy batch (a shared cost), where slicing costs
        O(n + m) a problem and every problem kept costs a share of each product."""
        live = ~self.done[self.rows]
        if live.all() or not live.any() or (self.plan is not None and 2 * live.sum() > live.size):
            return state
        keep = np.flatnonzero(live)
        self.rows = self.rows[keep]
        return state.subset(keep)

    def finish(self, state, iteration):
        """Store the problems still running (their last iterate)."""
        live = np.flatnonzero(~self.done[self.rows])
        if live.size:
            self._store(state, live, iteration)
        self.done[:] = True

    def potentials(self):
        return self.f, self.g

    def plan_into(self, out=None):
        return self.plan if self.plan is not None else self.geom.plan(self.f, self.g, self.reg, out)


@dataclass
class SinkhornOutcome:
    """End state of :func:`sinkhorn_loop`."""

    iterate: Any  # potentials() and plan_into(out=None)
    n_iter: int
    status: Status
    error: float

    def potentials(self):
        return self.iterate.potentials()

    def plan_into(self, out=None):
        """The plan of the end state, written into ``out`` (``None``: the
        iterate's own buffer, or the geometry's lazy plan)."""
        return self.iterate.plan_into(out)


def marginal_errors(xp, c, b, norm):
    """``(L1, stopping)`` errors of column marginals ``c`` against ``b``.

    For a batch: the L1 error of its worst problem (the loop runs until all
    converge), and for ``norm="l2"`` the Frobenius norm of all the problems'
    violations (POT's criterion for a 2-D ``b``, which bounds each problem's).
    """
    return sinkhorn_errors(xp, c, b, norm)


def sinkhorn_loop(prob, opts, monitor, max_iter, f, g, K=None, phase="sinkhorn",
                  first_iteration=1, norm="l1", tol=None, stall_window=0, predict_miss=None):
    """Run Sinkhorn from potentials ``(f, g)`` until ``monitor`` says stop.

    Parameters
    ----------
    prob : PreparedProblem
    opts : SinkhornOptions
    monitor : Monitor
        Decides convergence (its ``tol``), callback and records the history.
    max_iter : int
        Iterations to run at most.
    f, g : arrays
        Starting potentials (float64, finite where the mass is positive).
    K : array or None
        Reusable (n, m) buffer of the problem dtype (``geom.new_buffer()``;
        ``None``: a new one where the geometry can store a kernel).
    norm : {"l1", "l2"}
        Norm of the column-marginal violation compared with the tolerance
        (``"l2"`` is POT's criterion); the recorded history is always that norm.
    tol : float or None
        Stop at this error instead of the monitor's tolerance (SNS warm-up).
    stall_window : int
        If positive, stop with ``Status.STALLED`` when Sinkhorn is not worth
        going on with (SNS hands over to Newton then; see :func:`hand_over`),
        judged over this many convergence checks.
    predict_miss : int or None
        Also stop so when the rate over the window predicts that ``tol`` is
        out of reach within ``max_iter`` iterations or within this many more
        (see :func:`hand_over`).

    Returns
    -------
    SinkhornOutcome
    """
    xp = prob.xp
    check_every = prob.geom.check_interval(opts.check_every)
    g = xp.where(prob.b > 0, g, -np.inf)  # zero-mass columns stay empty from the start
    if prob.balanced:
        f, g = centred(prob, f, g)
    state = _ScalingIterate(prob, opts, f, g, K) if prob.geom.can_store_kernel else _LogIterate(prob, f, g)
    # a batch stops problem by problem on the L1 criterion (POT's joint "l2" is one criterion)
    freezer = _Freezer(prob) if len(prob.shape) == 3 and norm == "l1" else None
    status, error, it = Status.MAX_ITER, float("inf"), 0
    first_check = len(monitor.history["error"])  # the stall test looks at this loop's checks only
    for it in range(first_iteration, first_iteration + max_iter):
        c = state.row_step()
        last = it == first_iteration + max_iter - 1
        checking = last or (it - first_iteration + 1) % check_every == 0
        if checking:
            error, stop_error = marginal_errors(xp, c, state.col_target(), norm)
            if not np.isfinite(error):  # lost mass
                state.restart()
                continue
            if freezer is not None:
                stop_error = freezer.check(state, c, it - first_iteration + 1, monitor.tol if tol is None else tol)
            stop = monitor.check(it, stop_error, phase, tol=tol)
            if stop is None and stall_window:
                recent = monitor.history["error"][first_check:][-stall_window - 1:]
                checks_left = None if predict_miss is None else \
                    min(first_iteration + max_iter - 1 - it, predict_miss) // check_every
                if hand_over(recent, stall_window, checks_left,
                             monitor.tol if tol is None else tol):
                    stop = Status.STALLED
            if stop is not None:
                status = stop
                break
            if last:
                break
        state.col_step()
        if checking:
            state.maintain()
            if freezer is not None:
                state = freezer.compact(state)
    n_iter = it - first_iteration + 1
    if freezer is not None:
        freezer.finish(state, n_iter)
        state, n_iter = freezer, freezer.n_iter
    return SinkhornOutcome(iterate=state, n_iter=n_iter, status=status, error=error)


def hand_over(errors, window, checks_left, tol):
    """Whether Sinkhorn should stop and leave the rest to Newton steps.

    ``errors`` are this loop's last ``window + 1`` checked errors (or fewer,
    early on). True once there are ``window + 1`` of them and either the error
    fell by less than 0.1% over the window (stalled), or the window's rate of
    convergence predicts more than ``checks_left`` checks to reach ``tol``
    (Sinkhorn would run out of its budget: nearly degenerate plans, supports
    cut by forbidden entries, small ``reg``); ``checks_left=None`` tests the
    stall only.
    """
    if len(errors) <= window:
        return False
    first, last = errors[0], errors[-1]
    if not last <= 0.999 * first:
        return True
    if checks_left is None or last <= tol or tol <= 0:
        return False
    rate = (last / first) ** (1.0 / window)
    return math.log(tol / last) / math.log(rate) > checks_left


def run_sinkhorn(prob, opts, monitor, max_iter, f0, g0, norm="l1"):
    """``method="sinkhorn"``: returns ``(plan, f, g, n_iter_phases, status)``;
    ``plan`` is an array where the geometry stores a kernel (written into
    it), else a :class:`~fastsinkhorn.LazyPlan`.

    A batch of small dense problems on a backend with the ``small_batches``
    capability is solved in one call to it (:mod:`.small_batch`) where the
    options allow and the backend takes it."""
    if small_batch.applies(prob, opts, monitor, norm):
        solved = small_batch.run_small_batch(prob, opts, monitor, max_iter, f0, g0)
        if solved is not None:
            return solved
    out = sinkhorn_loop(prob, opts, monitor, max_iter, f0, g0, norm=norm)
    f, g = out.potentials()
    return out.plan_into(), f, g, {"sinkhorn": out.n_iter}, out.status
