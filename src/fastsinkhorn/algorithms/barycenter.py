"""Fixed-support entropic Wasserstein barycenters by iterative Bregman projections.

The barycenter ``b`` of ``k`` histograms ``a_1 .. a_k`` with weights ``w``
(on the simplex) minimises ``sum_p w_p OT_reg(a_p, b)``. Benamou et al.
(2015) solve it by alternating KL projections of the ``k`` plans
``P_p = exp((f_p + g_p - C) / reg)``: onto their row constraints
(``P_p 1 = a_p``) and onto "all column marginals equal" (the common value
is the weighted geometric mean of the plans' column marginals). Here both
projections are done on the potentials, through the geometry's two
log-sum-exp passes, so that nothing underflows at any ``reg`` (a scaling
iteration on ``exp(-C / reg)`` loses every entry below 1e-308):

* rows: ``f_p = reg (log a_p - lse_rows(g_p))`` (``-inf`` where ``a_p = 0``);
* columns: with ``L_p = lse_cols(f_p)``, the column marginal of ``P_p`` is
  ``exp(g_p / reg + L_p)``; the projection keeps ``sum_p w_p g_p`` (0 from
  the start), so ``log b = sum_p w_p L_p`` and ``g_p = reg (log b - L_p)``.

Debiased (Janati, Cuturi, Gramfort 2020): the barycenter of the Sinkhorn
divergences, ``b = d * prod_p (K^T u_p)^{w_p}`` where ``d`` is the
scaling of ``b``'s self-transport (``d K d = b``). In potentials ``h =
reg log d``: ``log b = sum_p w_p L_p + h / reg`` and the damped symmetric
Sinkhorn step ``h <- (h + reg (log b - lse_cols(h))) / 2``, one per
iteration, as POT's scaling version. ``h`` travels as a ``(k+1)``-th
problem of the same batch, so one pass of the geometry serves both.

Unbalanced (``reg_m``, POT's ``barycenter_unbalanced``; Chizat et al.
2018): each plan's two marginals are KL-relaxed, ``reg_m KL(P_p 1 | a_p) +
reg_m KL(P_p^T 1 | b)``, and both half-steps are the balanced ones damped
by ``tau = reg_m / (reg_m + reg)`` (:class:`~fastsinkhorn.core.relaxation.Side`,
in the frame of the reference measure 1, as POT's iteration):
``f_p = tau reg (log a_p - lse_rows(g_p))``, ``g_p = tau reg (log b - L_p)``,
and ``b`` is the power mean ``(sum_p w_p exp((1 - tau) L_p))^(1 / (1 - tau))``
(a log-sum-exp over the batch), which is the weighted arithmetic mean of the
plans' column marginals after the step (``b``'s optimality condition). It
tends to the geometric mean (the balanced ``b``) as ``reg_m`` grows.

The driver sees the cost only through ``geometry.lse_rows`` and
``geometry.lse_cols`` on a batch of potentials (the batch axis first) and
``geometry.xp``: a grid (:class:`~fastsinkhorn.geometry.grid.GridGeometry`)
or a dense cost shared by the batch
(:class:`~fastsinkhorn.geometry.shared.SharedCostGeometry`).
"""

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.marginals import side_error
from ..core.result import ConvergenceWarning

#: The stopping error is computed every this many iterations (it costs
#: O(k m) exponentials, a fraction of the two passes an iteration makes).
CHECK_EVERY = 1


@dataclass
class BarycenterResult:
    """Result of :func:`barycenter_potentials` (and :func:`fastsinkhorn.barycenter`).

    Attributes
    ----------
    barycenter : array, float64, shape (m,) (a grid's shape for a grid)
        ``exp(sum_p w_p L_p (+ h / reg))``: the common column marginal the
        plans converge to.
    potentials : tuple of arrays
        ``(f, g)``, shapes ``(k, n)`` and ``(k, m)``: plan ``p`` is
        ``exp((f_p + g_p - C) / reg)``; ``f`` is ``-inf`` where a histogram
        is zero.
    self_potential : array (m,) or None
        Debiased: ``h``, the potential of the barycenter's self-transport
        (its plan ``exp((h_i + h_j - C_ij) / reg)`` has marginals ``b``).
    n_iter : int
        Iterations run (each: one row and one column projection).
    error : float
        The stopping error at the last check (see :func:`barycenter_potentials`).
    converged : bool
        ``error <= tol``.
    history : list of float
        The error at each check.
    """

    barycenter: Any
    potentials: tuple
    self_potential: Any
    n_iter: int
    error: float
    converged: bool
    history: list
    tol: float = 0.0
    reg: float = 0.0


def barycenter_potentials(geometry, log_a, reg, weights, *, debiased=False, reg_m=math.inf, tol=1e-6,
                          max_iter=1000, warn=True, callback=None):
    """Iterative Bregman projections for a fixed-support barycenter, in potentials.

    Parameters
    ----------
    geometry : object
        Gives ``xp`` and ``lse_rows(g, reg)`` (``(B, m) -> (B, n)``,
        ``log sum_j exp((g_bj - C_ij) / reg)``) and ``lse_cols(f, reg)``
        (``(B, n) -> (B, m)``), for ``B = k`` (and ``k + 1`` when
        ``debiased``: the last problem is the barycenter's self-transport,
        which needs a square cost on one support).
    log_a : array, float64, shape (k, n)
        Logs of the ``k`` histograms (``-inf`` for zero masses), all of the
        same total mass (any masses when ``reg_m`` is finite).
    reg : float
        ``> 0``.
    weights : array, float64, shape (k,)
        Non-negative, summing to 1.
    debiased : bool
        Janati et al.'s debiased barycenter (the extra self-potential);
        balanced only.
    reg_m : float
        KL penalty of both marginals of every plan (``inf``: balanced, the
        exact projections).
    tol : float
        Stop when the error, ``max_p ||P_p^T 1 - b||_1`` (the largest L1 gap
        between a plan's barycenter-side marginal and the barycenter,
        before the column projection; debiased: also the self-transport's
        ``||exp(h / reg + lse_cols(h)) - b||_1``), is ``<= tol``. Rows are
        exact after every iteration, so this is the whole violation.
        Unbalanced: the gap to the marginal the optimal plan has at ``g_p``,
        ``max_p ||P_p^T 1 - b exp(-g_p / reg_m)||_1`` (the rows meet their
        relaxed condition ``P_p 1 = a_p exp(-f_p / reg_m)`` after each row
        step; a zero gap is the fixed point, where ``b = sum_p w_p P_p^T 1``).
    max_iter : int
    warn : bool
        Warn (:class:`~fastsinkhorn.ConvergenceWarning`) if ``tol`` is not reached.
    callback : callable, optional
        ``callback(iteration, error)`` after each check (a verbose table).

    Returns
    -------
    BarycenterResult
        ``barycenter`` flat ``(m,)``.
    """
    xp = geometry.xp
    relaxed = not math.isinf(reg_m)
    if relaxed and debiased:
        raise ValueError("the debiased barycenter is balanced only (reg_m = inf)")
    tau = reg_m / (reg_m + reg) if relaxed else 1.0
    step = reg * tau  # the (damped) half-step's factor
    k, _ = log_a.shape
    w = weights[:, None]
    active = weights > 0  # a zero weight must not turn -inf * 0 into NaN in log b
    n_rows = k + 1 if debiased else k
    m = geometry.shape[-1]
    g = xp.zeros((n_rows, m))  # the last row: h, when debiased
    error, history, it = math.inf, [], 0
    for it in range(1, max_iter + 1):
        # row projection: P_p 1 = a_p exactly (the self row keeps h as f)
        f = xp.empty((n_rows, log_a.shape[1]))
        f[:k] = (log_a - geometry.lse_rows(g, reg)[:k]) * step
        if debiased:
            f[k] = g[k]
        L = geometry.lse_cols(f, reg)
        if relaxed:
            log_b = _weighted_log_power_mean(xp, L[active], weights[active], 1.0 - tau)
        else:
            log_b = _weighted_log_mean(xp, L[:k][active], w[active])
        if debiased:
            log_b = log_b + g[k] / reg
        if it % CHECK_EVERY == 0 or it == max_iter:
            error = _marginal_gap(xp, g, L, log_b, reg, reg_m)
            history.append(error)
            if callback is not None:
                callback(it, error)
        # column projection: every plan's column marginal becomes b
        with np.errstate(invalid="ignore"):
            g_new = (log_b[None, :] - L[:k]) * step
        # b_j = 0 (no finite cost reaches j): keep the exact zero, not -inf - -inf = NaN
        g_new = xp.where(xp.isneginf(log_b)[None, :], -np.inf, g_new)
        if debiased:  # damped symmetric Sinkhorn step of b's self-transport
            h = 0.5 * (g[k] + (log_b - L[k]) * reg)
            g = xp.concatenate([g_new, xp.where(xp.isneginf(log_b), -np.inf, h)[None, :]])
        else:
            g = g_new
        if error <= tol:
            break
    converged = bool(error <= tol)
    if not converged and warn:
        warnings.warn(f"barycenter: not converged after {it} iterations (error {error:.3e} > tol {tol:.1e}); "
                      f"increase max_iter or reg", ConvergenceWarning, stacklevel=3)
    # the barycenter of the last check (its potentials g are projected onto it)
    return BarycenterResult(barycenter=xp.exp(log_b), potentials=(f[:k], g[:k]),
                            self_potential=g[k] if debiased else None, n_iter=it, error=float(error),
                            converged=converged, history=history, tol=tol, reg=reg)


def _weighted_log_mean(xp, L, w):
    """``sum_p w_p L_p``: the log of the weighted geometric mean (a ``-inf``
    column stays ``-inf``)."""
    with np.errstate(invalid="ignore"):
        out = (w * L).sum(axis=0)
    return xp.where(xp.isneginf(L).any(axis=0), -np.inf, out)


def _weighted_log_power_mean(xp, L, w, r):
    """``log (sum_p w_p exp(r L_p))^(1 / r)``, by a log-sum-exp over ``p``
    (``r = 1 - tau`` in (0, 1); a column ``-inf`` in every ``L_p`` stays ``-inf``)."""
    z = r * L + xp.log(w)[:, None]
    top = z.max(axis=0)
    safe = xp.where(xp.isneginf(top), 0.0, top)
    with np.errstate(divide="ignore"):
        out = (safe + xp.log(xp.exp(z - safe[None, :]).sum(axis=0))) / r
    return xp.where(xp.isneginf(top), -np.inf, out)


def _marginal_gap(xp, g, L, log_b, reg, reg_m=math.inf):
    """``max_p ||exp(g_p / reg + L_p) - b||_1``: each plan's (and the self
    plan's) column marginal against ``b`` (unbalanced: against the marginal
    ``b exp(-g_p / reg_m)`` the optimal plan has at ``g_p``)."""
    with np.errstate(invalid="ignore"):
        z = g / reg + L
    cols = xp.exp(xp.where(xp.isnan(z), -np.inf, z))
    if math.isinf(reg_m):
        return float(side_error(xp, cols, xp.exp(log_b)[None, :]).max())
    with np.errstate(invalid="ignore"):
        t = log_b[None, :] - g / reg_m
    target = xp.exp(xp.where(xp.isnan(t), -np.inf, t))
    return float(side_error(xp, cols, target).max())
