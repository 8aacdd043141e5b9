r"""Implicit differentiation of an entropic optimum: one solve with the dual Hessian.

The solvers return the optimal plan ``P = exp((f + g - M) / reg)`` (the
potentials' frame of every driver). Its potentials satisfy, per side, an
optimality condition: balanced, ``P 1 = a``; KL-relaxed with penalty ``rho``,
``f + rho log(P 1) = (k + rho) log a`` (``k = reg`` when the entropy's
reference measure is ``a b^T``, ``reg_type="KL"``, else 0). Differentiating
them,

.. math::
    H (df, dg) = ((P \odot dM) 1, (P \odot dM)^T 1)
    + reg\,(D_a\, da, D_b\, db),\qquad
    H = [[\mathrm{diag}(P1) (1 + reg/\rho_a), P], [P^T, \mathrm{diag}(P^T1)(1 + reg/\rho_b)]],

with ``D_a = 1`` for an exact side and ``P 1 (k + rho) / (rho a)`` for a
relaxed one. So the cotangent ``y`` of the potentials pulls back through one
solve ``H z = y`` (:func:`dual_hessian_solve`), and a cotangent ``G`` of the
plan through the same solve with ``y = ((G P) 1, (G P)^T 1) / reg``, since
``dP = P (df + dg - dM) / reg`` (:func:`pull_back`). Balanced, ``H`` is
singular along ``(1, -1)``, the constant moved from ``f`` to ``g`` that
leaves the plan alone; the right-hand sides of a plan's cotangent are
orthogonal to it and a potentials' cotangent is projected (only losses that
do not see that constant are differentiable), and the solution of least norm
is taken, which fixes the free constant of the masses' gradients (the masses
are tied, so only directions keeping ``sum a = sum b`` are meaningful).

Everything here is NumPy, float64, and sees the plan only through products
``P x`` and ``P^T y`` (:class:`PlanOperator`): a dense plan, or a lazy
point-cloud plan whose products recompute the cost by blocks, so that the
backward of a lazy solve holds O(n + m) memory.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .cg import pcg

#: Relative residual to which :func:`dual_hessian_solve` solves (CG, exact products).
SOLVE_RTOL = 1e-11


@dataclass
class PlanOperator:
    """An optimal plan seen through its products and marginals (all float64).

    Attributes
    ----------
    apply, apply_transpose : callable
        ``x -> P @ x`` and ``y -> P.T @ y``.
    r, c : arrays (n,), (m,)
        ``P 1`` and ``P^T 1``.
    reg : float
    """

    apply: Callable
    apply_transpose: Callable
    r: np.ndarray
    c: np.ndarray
    reg: float

    @classmethod
    def dense(cls, P, reg):
        """The operator of a dense plan (converted to float64 once)."""
        P = np.asarray(P, dtype=np.float64)
        return cls(lambda x: P @ x, lambda y: P.T @ y, P.sum(1), P.sum(0), float(reg))

    @classmethod
    def lazy(cls, plan):
        """The operator of a :class:`~fastsinkhorn.geometry.lazy_plan.LazyPlan`."""
        r, c = (np.asarray(x, dtype=np.float64) for x in plan.marginals())
        return cls(plan.apply, plan.apply_transpose, r, c, float(plan.reg))


@dataclass
class Relaxation:
    """How each side's optimality condition reads (see the module).

    ``rho_a``, ``rho_b``: the marginal penalties (``inf``: exact);
    ``kl_frame``: the entropy's reference measure is ``a b^T``;
    ``a``, ``b``: the masses (float64).
    """

    a: np.ndarray
    b: np.ndarray
    rho_a: float = np.inf
    rho_b: float = np.inf
    kl_frame: bool = True

    @property
    def balanced(self):
        return np.isinf(self.rho_a) and np.isinf(self.rho_b)


def dual_hessian_solve(op, relaxation, y_f, y_g, rtol=SOLVE_RTOL):
    """The solution ``z = (z_f, z_g)`` of ``H z = y`` (the module's ``H``).

    Rows and columns without mass have zero rows in ``H``; their unknowns
    are 0. Balanced, ``y``'s component along ``(1, -1)`` is dropped (the
    system is then consistent) and the solution of least norm returned.
    Solved by conjugate gradient with the Jacobi preconditioner and exact
    products: preconditioned, ``H`` is ``[[I, A], [A^T, I]]`` with ``A`` the
    plan scaled by its marginals, whose condition is set by the spectral gap
    that also sets Sinkhorn's rate, so CG needs about the square root of the
    forward's iteration count.

    Raises
    ------
    RuntimeError
        If CG does not reach ``rtol`` (never a silently inexact gradient).
    """
    r, c = op.r, op.c
    n, m = len(r), len(c)
    rows, cols = r > 0, c > 0
    d_f = r * (1.0 + (0.0 if np.isinf(relaxation.rho_a) else op.reg / relaxation.rho_a))
    d_g = c * (1.0 + (0.0 if np.isinf(relaxation.rho_b) else op.reg / relaxation.rho_b))
    y_f = np.where(rows, np.asarray(y_f, dtype=np.float64), 0.0)
    y_g = np.where(cols, np.asarray(y_g, dtype=np.float64), 0.0)
    balanced = relaxation.balanced
    k = int(rows.sum() + cols.sum())
    if balanced:  # drop the component along (1, -1) on the support
        t = (y_f.sum() - y_g.sum()) / k
        y_f, y_g = np.where(rows, y_f - t, 0.0), np.where(cols, y_g + t, 0.0)
    rhs = np.concatenate([y_f, y_g])
    scale = float(np.abs(rhs).max(initial=0.0))
    if scale == 0.0:
        return np.zeros(n), np.zeros(m)
    diag = np.concatenate([np.where(rows, d_f, 1.0), np.where(cols, d_g, 1.0)])

    def matvec(x):
        x_f, x_g = x[:n], x[n:]
        return np.concatenate([d_f * x_f + op.apply(x_g), op.apply_transpose(x_f) + d_g * x_g])

    z, n_iter, converged = pcg(matvec, rhs / scale, diag, rtol, 20 * (n + m) + 100, np)
    if not converged:
        raise RuntimeError(f"the implicit gradient's linear solve (CG) did not reach rtol={rtol} in "
                           f"{n_iter} iterations")
    z = z * scale
    z_f, z_g = np.where(rows, z[:n], 0.0), np.where(cols, z[n:], 0.0)
    if balanced:  # the least-norm member of z + t (1, -1)
        t = (z_g.sum() - z_f.sum()) / k
        z_f, z_g = np.where(rows, z_f + t, 0.0), np.where(cols, z_g - t, 0.0)
    return z_f, z_g


@dataclass
class Pullback:
    """What :func:`pull_back` gives: the gradient w.r.t. the cost, as its two
    parts, and w.r.t. the masses.

    ``dM = P * (z_f + z_g) - P * G / reg`` entrywise, kept factored so that a
    lazy plan never forms it: ``weights_potentials = (z_f, z_g)`` and the
    plan cotangent ``G`` (``None`` if none) are applied where the cost's own
    parametrisation (coordinates of a point cloud) needs them.
    """

    z_f: np.ndarray
    z_g: np.ndarray
    da: np.ndarray
    db: np.ndarray
    reg: float


def pull_back(op, relaxation, y_f=None, y_g=None, plan_weights=None):
    """Pull cotangents of the potentials and of the plan back to the masses.

    Parameters
    ----------
    op : PlanOperator
    relaxation : Relaxation
    y_f, y_g : arrays or None
        Cotangents of the potentials ``f``, ``g``.
    plan_weights : tuple (w_f, w_g) or None
        ``((G * P) 1, (G * P)^T 1)`` for the plan's cotangent ``G``; the
        caller forms them in the pass it already makes over the plan.

    Returns
    -------
    Pullback
        ``z`` of the one solve and the masses' gradients ``da``, ``db``; the
        cost's gradient is ``P * (z_f + z_g) - P * G / reg`` (formed by
        :func:`entropic_pullback` and, block by block, by the point-cloud
        pullback).
    """
    n, m = len(op.r), len(op.c)
    y_f = np.zeros(n) if y_f is None else np.where(op.r > 0, y_f, 0.0)
    y_g = np.zeros(m) if y_g is None else np.where(op.c > 0, y_g, 0.0)
    if plan_weights is not None:
        y_f, y_g = y_f + plan_weights[0] / op.reg, y_g + plan_weights[1] / op.reg
    z_f, z_g = dual_hessian_solve(op, relaxation, y_f, y_g)
    da = op.reg * mass_factor(op.r, relaxation.a, relaxation.rho_a, relaxation.kl_frame, op.reg) * z_f
    db = op.reg * mass_factor(op.c, relaxation.b, relaxation.rho_b, relaxation.kl_frame, op.reg) * z_g
    return Pullback(z_f, z_g, da, db, op.reg)


def mass_factor(marginal, mass, rho, kl_frame, reg):
    """``D`` of the module for one side: 1 if exact, ``P1 (k + rho) / (rho a)`` if
    relaxed (0 where the mass is zero)."""
    if np.isinf(rho):
        return np.ones_like(marginal)
    k = reg if kl_frame else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mass > 0, marginal * (k + rho) / (rho * mass), 0.0)


def entropic_pullback(P, f, g, M, relaxation, reg, cotangents):
    r"""Gradients of a loss of an entropic solve's outputs w.r.t. ``M``, ``a``, ``b``.

    One problem, dense plan ``P`` (its potentials ``f``, ``g``, cost ``M``).
    ``cotangents``: a dict with the cotangents (float64 or ``None``) of
    ``"value"`` (POT's objective: ``<M, P> + reg Omega(P)`` plus the
    marginal penalties), ``"value_linear"`` (``<M, P>``), ``"plan"``,
    ``"f"`` and ``"g"``. The outputs are functions of the optimal plan and
    of ``(M, a, b)``; all of them are pulled through the plan's derivative in
    one solve (:func:`pull_back`), after the partial derivatives at fixed
    plan: ``value``'s derivative in the plan is an outer sum ``alpha + beta``
    (:func:`value_plan_cotangent`), whose right-hand side is ``H (alpha,
    beta)``, so that for a balanced problem whose loss sees only ``value``
    the solve is skipped (``z = (alpha, beta) / reg``: ``value``'s
    derivative in ``M`` is then the plan, the envelope theorem). The plan's
    cotangent is the only ``n x m`` operand besides ``P`` and ``M``; the
    rest is kept as vectors until ``dM`` is formed, in one pass.

    Returns ``(dM, da, db)`` (float64).
    """
    P = np.asarray(P, dtype=np.float64)
    op = PlanOperator.dense(P, reg)
    n, m = P.shape
    cot_value, cot_linear = cotangents.get("value") or 0.0, cotangents.get("value_linear") or 0.0
    G = cotangents.get("plan")
    w_f, w_g = np.zeros(n), np.zeros(m)  # ((G * P) 1, (G * P)^T 1) of the total plan cotangent
    shift_f, shift_g = np.zeros(n), np.zeros(m)  # value's outer-sum part of that cotangent
    da, db = np.zeros(n), np.zeros(m)
    MP = GP = None
    if cot_linear:
        with np.errstate(invalid="ignore"):  # forbidden (inf) entries carry no mass
            MP = np.where(P > 0, np.asarray(M, dtype=np.float64) * P, 0.0)
        w_f += cot_linear * MP.sum(1)
        w_g += cot_linear * MP.sum(0)
    if cot_value:
        alpha, beta, partial_a, partial_b = value_plan_cotangent(op, f, g, relaxation)
        shift_f, shift_g = cot_value * alpha, cot_value * beta
        w_f += op.r * shift_f + op.apply(shift_g)
        w_g += op.apply_transpose(shift_f) + op.c * shift_g
        da += cot_value * partial_a
        db += cot_value * partial_b
    if G is not None:
        GP = np.where(P > 0, np.asarray(G, dtype=np.float64) * P, 0.0)
        w_f += GP.sum(1)
        w_g += GP.sum(0)
    y_f, y_g = cotangents.get("f"), cotangents.get("g")
    if relaxation.balanced and not cot_linear and G is None and y_f is None and y_g is None:
        z_f, z_g = shift_f / reg, shift_g / reg  # H z = H (alpha, beta) cot / reg: no solve
        da, db = da + reg * z_f, db + reg * z_g
    else:
        back = pull_back(op, relaxation, y_f, y_g, (w_f, w_g))
        z_f, z_g = back.z_f, back.z_g
        da, db = da + back.da, db + back.db
    # dM = P * (z_f + z_g) - P * G_total / reg + (cot_linear + cot_value) P, G_total the plan's
    # total cotangent: cot_linear M + (shift_f + shift_g) + G
    dM = (z_f - shift_f / reg)[:, None] + (z_g - shift_g / reg + cot_linear + cot_value)[None, :]
    dM *= P
    for part, weight in ((MP, cot_linear), (GP, 1.0)):
        if part is not None:
            dM -= (part / reg) * weight  # not weight / reg: a tiny weight over a huge reg underflows
    return dM, da, db


def value_plan_cotangent(op, f, g, relaxation):
    """``value``'s partial derivatives at fixed plan: ``(alpha, beta, partial_a, partial_b)``.

    ``value = <f, P 1> + <g, P^T 1> - k (<P 1, log a> + <P^T 1, log b>)`` plus
    ``rho (<r, log r> - <r, log a>)`` per relaxed side (``r`` its marginal,
    ``k = reg`` in the KL frame, else 0), since ``<M, P> + reg sum P log P
    = <f, P 1> + <g, P^T 1>``. Its derivative in ``P`` is ``alpha_i +
    beta_j`` with ``alpha = f + reg - k log a (+ rho (log r + 1 - log a))``
    and likewise ``beta`` without the ``reg``; in ``a`` at fixed plan,
    ``-(k + rho) r / a`` (``rho`` counted only if relaxed). Entries of zero
    mass are 0 (their rows of the plan are empty).
    """
    k = op.reg if relaxation.kl_frame else 0.0
    sides = []
    for potential, marginal, mass, rho, constant in ((f, op.r, relaxation.a, relaxation.rho_a, op.reg),
                                                     (g, op.c, relaxation.b, relaxation.rho_b, 0.0)):
        potential = np.asarray(potential, dtype=np.float64)
        live = (marginal > 0) & (mass > 0) & np.isfinite(potential)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_mass = np.log(np.where(live, mass, 1.0))
            slope = potential + constant - k * log_mass
            weight = k
            if not np.isinf(rho):
                slope = slope + rho * (np.log(np.where(live, marginal, 1.0)) + 1.0 - log_mass)
                weight = k + rho
            partial = -weight * marginal / np.where(live, mass, 1.0)
        sides += [np.where(live, slope, 0.0), np.where(live, partial, 0.0)]
    alpha, partial_a, beta, partial_b = sides
    return alpha, beta, partial_a, partial_b
