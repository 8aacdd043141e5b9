"""Marginal constraints, exact or KL-relaxed (unbalanced OT), for every driver.

Balanced OT asks for ``P 1 = a`` exactly. Unbalanced OT replaces the
constraint by the penalty ``rho * KL(P 1 | a)`` (``rho = inf``: exact). The
drivers keep one frame of potentials, ``P_ij = exp((f_i + g_j - M_ij) / reg)``,
and see each side of the problem only through a :class:`Side`:

* ``potential(lse)``: the exact half-step. Balanced, ``f = reg (log a - lse)``
  with ``lse_i = log sum_j exp((g_j - M_ij) / reg)``; relaxed, the same step
  damped by ``tau = rho / (rho + reg)`` (Chizat et al. 2018), in the frame of
  the reference measure of the entropy (``reg_type``: ``"kl"`` uses
  ``a b^T``, whose frame is shifted by ``reg log a``; ``"entropy"`` uses 1).
* ``target(f)``: the marginal the optimal plan has for these potentials,
  ``a exp(-(f - reg s) / rho)`` (``s`` the frame shift; ``a`` when balanced).
  The L1 distance of the plan's marginals to it is the norm of the dual's
  gradient, which vanishes at the optimum in both cases: it is the marginal
  error every solver checks.
* ``dual(f)`` and ``curvature(target(f))``: this side's term of the concave
  dual and its second derivative (the Newton system's extra diagonal).
"""

import math

import numpy as np


class Side:
    """One marginal of a problem: masses, relaxation and frame.

    Parameters
    ----------
    mass : array (n,) or (B, n)
        Target masses (float64).
    rho : float
        KL penalty of the marginal (``inf``: an exact constraint).
    kl_frame : bool
        The entropy's reference measure is ``a b^T`` (``reg_type="kl"``).
        For an exact constraint the frame does not change the plan.
    reg : float
        Entropic regularisation of the problem (stage).
    xp : module
        numpy or cupy.
    """

    def __init__(self, mass, rho, kl_frame, reg, xp):
        self.mass, self.rho, self.reg, self.xp = mass, rho, reg, xp
        self.exact = math.isinf(rho)
        self.tau = 1.0 if self.exact else rho / (rho + reg)
        with np.errstate(divide="ignore"):
            self.log_mass = xp.log(mass)
        self.shift = self.log_mass if kl_frame and not self.exact else 0.0

    def potential(self, lse):
        """The half-step: the potential that is optimal given the other one."""
        with np.errstate(invalid="ignore"):  # a zero mass whose costs all forbid: -inf - -inf
            step = self.reg * (self.log_mass - lse)
        step = self.xp.where(self.mass > 0, step, -np.inf)  # zero masses: empty, whatever lse
        if self.exact:
            return step
        return self.tau * step + (1.0 - self.tau) * self.reg * self.shift

    def _excess(self, f):
        """``(f - reg s) / rho``, 0 where the mass is zero (whose ``f`` is ``-inf``)."""
        xp = self.xp
        with np.errstate(invalid="ignore"):
            excess = (f - self.reg * self.shift) / self.rho
        return xp.where(self.mass > 0, excess, 0.0)

    def target(self, f):
        """The marginal the plan must have at potentials ``f`` (``mass`` if exact)."""
        if self.exact:
            return self.mass
        return self.mass * self.xp.exp(-self._excess(f))

    def log_scaling_target(self, f0):
        """``h`` of the scaling half-step ``u = exp(h - tau log(K v))`` on a kernel
        absorbed at potentials ``f0`` (``-inf`` where the mass is zero)."""
        with np.errstate(invalid="ignore"):
            h = self.tau * self.log_mass + (1.0 - self.tau) * (self.shift - f0 / self.reg)
        return self.xp.where(self.mass > 0, h, -np.inf)

    def scaling(self, h, colsum):
        """The scaling half-step from the sums ``K^T u`` (or ``K v``)."""
        xp = self.xp
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.exact:
                return xp.where(self.mass > 0, self.mass / colsum, 1.0)
            return xp.where(self.mass > 0, xp.exp(h - self.tau * xp.log(colsum)), 1.0)

    def dual(self, f):
        """This side's term of the dual (a float; per problem for a batch).

        Exact: ``<a, f>``. Relaxed: ``rho <a - target(f), 1>``, which tends to
        ``<a, f - reg s>`` as ``rho`` grows.
        """
        xp = self.xp
        if self.exact:
            return (self.mass * xp.where(xp.isfinite(f), f, 0.0)).sum(axis=-1)
        return self.rho * (self.mass - self.target(f)).sum(axis=-1)

    def curvature(self, target):
        """``reg`` times minus this term's second derivative, from ``target(f)``:
        ``reg target / rho`` (0 if exact)."""
        if self.exact:
            return 0.0
        return self.reg * target / self.rho


def translation(rows, cols, f, g):
    """The shift ``t`` that maximises the dual along ``(f + t, g - t)``.

    The plan does not change along this direction, so only the two marginal
    terms do, and their derivatives balance where ``sum target_a(f + t) =
    sum target_b(g - t)``, i.e. ``A exp(-t / rho_a) = B exp(t / rho_b)``:
    ``t = log(A / B) / (1 / rho_a + 1 / rho_b)`` (an exact side contributes
    ``1 / rho = 0`` and its mass). Sinkhorn's half-steps move along this
    direction at the rate ``tau`` per iteration, which near ``tau = 1`` takes
    ~1 / (1 - tau) iterations; one shift per iteration removes that mode
    (translation-invariant Sinkhorn, Séjourné, Vialard and Peyré 2022).
    Returns ``0`` (or zeros per problem) for balanced OT.
    """
    stiffness = sum(0.0 if side.exact else 1.0 / side.rho for side in (rows, cols))
    if stiffness == 0.0:
        return 0.0
    A, B = rows.target(f).sum(axis=-1), cols.target(g).sum(axis=-1)
    return rows.xp.log(A / B) / stiffness


def check_unbalanced(unbalanced):
    """``(rho_a, rho_b)`` from POT's ``unbalanced`` (None, a scalar or a pair)."""
    if unbalanced is None:
        return math.inf, math.inf
    pair = unbalanced
    if hasattr(unbalanced, "shape"):  # a NumPy/CuPy scalar or array
        pair = [float(x) for x in unbalanced.ravel()] if unbalanced.ndim else float(unbalanced)
    if not isinstance(pair, (tuple, list)):
        pair = (pair, pair)
    if len(pair) == 1:  # POT: a length-1 sequence applies to both marginals
        pair = (pair[0], pair[0])
    if len(pair) != 2:
        raise ValueError(f"unbalanced must be a number or a pair of numbers, got {unbalanced!r}")
    out = []
    for rho in pair:
        try:
            rho = float(rho)
        except (TypeError, ValueError):
            raise TypeError(f"unbalanced must be a number or a pair of numbers, got {unbalanced!r}") from None
        if isinstance(rho, bool) or math.isnan(rho) or rho <= 0:
            raise ValueError(f"unbalanced (the marginal penalty reg_m) must be positive, got {unbalanced!r}")
        out.append(rho)
    return tuple(out)
