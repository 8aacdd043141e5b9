r"""POT's ``grad="last_step"``: the derivative of one Sinkhorn step from the solution.

POT runs the solve without a graph, then one more pair of half-steps from
the detached potentials ``(f0, g0)``, each from the *old* other one:

.. math::
    f = reg \log a - reg\,\mathrm{LSE}_j((g0_j - M_{ij}) / reg),\quad
    g = reg \log b - reg\,\mathrm{LSE}_i((f0_i - M_{ij}) / reg),\quad
    P = \exp((f \oplus g - M) / reg),

and differentiates only those. At the returned potentials the two softmaxes
are the plan normalised by its rows, ``R = P / (P 1)``, and by its columns,
``Q = P / (P^T 1)``, so a cotangent ``G`` of the plan (and ``y`` of the
potentials) pulls back without a solve:

.. math::
    \bar f = (G \odot P) 1 / reg + y_f,\quad \bar g = (G \odot P)^T 1 / reg + y_g,\quad
    \bar M = -G \odot P / reg + R \odot \bar f + Q \odot \bar g,\quad
    \bar a = reg\,\bar f / a,\quad \bar b = reg\,\bar g / b.

As POT's, only the plan carries the graph: ``value`` and ``value_linear``
are differentiated through the plan, not in their explicit dependence on
``M``, ``a`` and ``b`` (POT computes them from the detached inputs). It is
cheaper than the exact (implicit) derivative only by one solve and is not
the derivative of the solution: it is offered because POT offers it.
Balanced problems, one dense plan.
"""

import numpy as np

from .implicit import PlanOperator, value_plan_cotangent


def last_step_pullback(P, f, g, M, relaxation, reg, cotangents):
    """``(dM, da, db)`` of a loss of ``value``, ``value_linear``, ``plan`` and the
    potentials ``f``, ``g`` (``cotangents`` as for
    :func:`~fastsinkhorn.core.implicit.entropic_pullback`) through POT's last step."""
    P = np.asarray(P, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    op = PlanOperator.dense(P, reg)
    G = cotangents.get("plan")
    G = np.zeros_like(P) if G is None else np.array(G, dtype=np.float64)
    cot_value, cot_linear = cotangents.get("value"), cotangents.get("value_linear")
    if cot_linear:
        G += cot_linear * np.where(P > 0, M, 0.0)
    if cot_value:  # through the plan only (see the module)
        alpha, beta, _, _ = value_plan_cotangent(op, f, g, relaxation)
        G += cot_value * (alpha[:, None] + beta[None, :])
    GP = np.where(P > 0, G * P, 0.0)
    f_bar, g_bar = GP.sum(1) / reg, GP.sum(0) / reg
    for bar, y in ((f_bar, cotangents.get("f")), (g_bar, cotangents.get("g"))):
        if y is not None:
            bar += np.where(np.isfinite(y), y, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.where(op.r[:, None] > 0, P / np.where(op.r > 0, op.r, 1.0)[:, None], 0.0)
        Q = np.where(op.c[None, :] > 0, P / np.where(op.c > 0, op.c, 1.0)[None, :], 0.0)
        da = np.where(relaxation.a > 0, reg * f_bar / np.where(relaxation.a > 0, relaxation.a, 1.0), 0.0)
        db = np.where(relaxation.b > 0, reg * g_bar / np.where(relaxation.b > 0, relaxation.b, 1.0), 0.0)
    dM = -GP / reg + R * f_bar[:, None] + Q * g_bar[None, :]
    return dM, da, db
