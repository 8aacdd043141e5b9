"""Log-stable Sinkhorn by absorption, written once for every backend.

The iterate is kept as potentials ``(f, g)`` plus scalings ``(u, v)`` on the
stored kernel ``K = exp((f_i + g_j - M_ij) / reg)``; the plan is
``diag(u) K diag(v)``. Iterations are plain scalings, no exp: one
``scaling_pass`` over ``K`` each (a single read of ``K`` on the CPU; two, ``K v``
then ``K^T u``, on the GPU and in the reference backend); when a scaling
leaves ``[1/t, t]`` it is folded into the
potentials and ``K`` recomputed (one exp pass). The first half-step is done
in the log domain, so every row of ``K`` holds mass whatever ``reg``, the cost
scale or the warm start (columns that would not trigger one full log-domain
iteration).

Each scaling pass performs the row half-step and returns the column sums of the
row-normalised plan, so the marginal error of that iterate (rows exact,
columns off by ``v * colsum - b``) costs O(m) and no extra pass: the iterate
that is returned is exactly the one whose error was checked.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._result import Status


@dataclass
class SinkhornOutcome:
    """End state of :func:`sinkhorn_loop` (potentials already absorbed)."""

    f: Any
    g: Any
    K: Any  # buffer holding the kernel; ``plan()`` turns it into the plan
    u: Any
    v: Any
    n_iter: int
    status: Status
    error: float

    def potentials(self, reg, xp):
        """Potentials of the current plan: ``f + reg log u``, ``g + reg log v``."""
        return self.f + reg * xp.log(self.u), self.g + reg * xp.log(self.v)


def log_iteration(prob, f, g):
    """One exact log-domain Sinkhorn iteration (row then column half-step)."""
    be, reg = prob.backend, prob.reg
    f = reg * (prob.log_a - be.lse_rows(prob.M, g, reg))
    g = reg * (prob.log_b - be.lse_cols(prob.M, f, reg))
    return f, g


def marginal_errors(xp, c, b, norm):
    """``(L1, stopping)`` errors of column marginals ``c`` against ``b``."""
    diff = xp.abs(c - b)
    l1 = float(diff.sum())
    return l1, (l1 if norm == "l1" else float(xp.sqrt((diff * diff).sum())))


def sinkhorn_loop(prob, opts, monitor, max_iter, f, g, K=None, phase="sinkhorn",
                  first_iteration=1, norm="l1", tol=None, stall_window=0):
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
        Reusable (n, m) buffer of the problem dtype.
    norm : {"l1", "l2"}
        Norm of the column-marginal violation compared with the tolerance
        (``"l2"`` is POT's criterion); the recorded history is always that norm.
    tol : float or None
        Stop at this error instead of the monitor's tolerance (SNS warm-up).
    stall_window : int
        If positive, stop with ``Status.STALLED`` when the error fell by less
        than 0.1% over this many checks (SNS hands over to Newton then).

    Returns
    -------
    SinkhornOutcome
    """
    be, xp, M, reg = prob.backend, prob.xp, prob.M, prob.reg
    a, b = prob.a, prob.b
    n, m = M.shape
    threshold = opts.absorb_threshold or (1e8 if prob.dtype == np.float32 else 1e50)
    check_every = opts.check_every or be.check_every
    if K is None:
        K = xp.empty(M.shape, dtype=prob.dtype)

    # Row half-step in the log domain: every row then holds its mass whatever
    # reg or the warm start. A column left empty shows up as an infinite
    # scaling after the first pass, which triggers the full log-domain
    # iteration below; the usual case saves the column log-sum-exp passes.
    g = xp.where(b > 0, g, -np.inf)  # zero-mass columns stay empty from the start
    f = reg * (prob.log_a - be.lse_rows(M, g, reg))
    be.plan(M, f, g, reg, K)
    u, v = xp.ones(n), xp.ones(m)
    last_good = (f, g)
    status, error, it = Status.MAX_ITER, float("inf"), 0
    first_check = len(monitor.history["error"])  # the stall test looks at this loop's checks only
    for it in range(first_iteration, first_iteration + max_iter):
        colsum = be.scaling_pass(K, v, a, u)
        last = it == first_iteration + max_iter - 1
        checking = last or (it - first_iteration + 1) % check_every == 0
        if checking:
            error, stop_error = marginal_errors(xp, v * colsum, b, norm)
            if not np.isfinite(error):  # lost mass: restart from the last absorbed state
                f, g = log_iteration(prob, *last_good)
                be.plan(M, f, g, reg, K)
                u[...], v = 1.0, xp.ones(m)
                continue
            stop = monitor.check(it, stop_error, phase, tol=tol)
            recent = monitor.history["error"][first_check:][-stall_window - 1:]
            if stop is None and stall_window and len(recent) > stall_window and recent[-1] > 0.999 * recent[0]:
                stop = Status.STALLED
            if stop is not None:
                status = stop
                break
            if last:
                break
        with np.errstate(divide="ignore", invalid="ignore"):
            v = xp.where(b > 0, b / colsum, 1.0)
        if checking:  # the range check reads u, v: a sync on a GPU, so only at checks
            lo = min(float(u.min()), float(v.min()))
            hi = max(float(u.max()), float(v.max()))
            if not (1.0 / threshold < lo and hi < threshold):  # absorb (also catches inf/nan)
                if np.isfinite(hi) and lo > 0:
                    f, g = f + reg * xp.log(u), g + reg * xp.log(v)
                    last_good = (f, g)
                else:
                    f, g = log_iteration(prob, *last_good)
                be.plan(M, f, g, reg, K)
                u[...], v = 1.0, xp.ones(m)
    return SinkhornOutcome(f=f, g=g, K=K, u=u, v=v, n_iter=it - first_iteration + 1,
                           status=status, error=error)


def run_sinkhorn(prob, opts, monitor, max_iter, f0, g0, norm="l1"):
    """``method="sinkhorn"``: returns ``(plan, f, g, n_iter_phases, status)``."""
    out = sinkhorn_loop(prob, opts, monitor, max_iter, f0, g0, norm=norm)
    f, g = out.potentials(prob.reg, prob.xp)
    plan = prob.backend.scale(out.K, out.u, out.v, out.K)
    return plan, f, g, {"sinkhorn": out.n_iter}, out.status
