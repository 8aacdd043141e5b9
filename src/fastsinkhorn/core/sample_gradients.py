r"""Gradients of point-cloud OT with respect to the points and the masses.

A loss of a point-cloud solve's outputs has, as a function of the cost, the
gradient ``W = dL/dC`` of :mod:`.implicit` (``W = P (z_f + z_g) - P G / reg``
plus the partials at fixed plan, ``G`` the plan's cotangent): it is pulled
back to the points through the cost's derivative. For ``C_ij = s |x_i -
y_j|^2`` (``s`` the cloud's ``scale``), ``dL/dx_i = sum_j V_ij (x_i - y_j)``
with ``V = 2 s W``, so

.. math::
    \partial_X L = \mathrm{diag}(V 1) X - V Y,\qquad
    \partial_Y L = \mathrm{diag}(V^T 1) Y - V^T X,

and for ``C_ij = s |x_i - y_j|`` the same with ``V = s W / |x_i - y_j|``
(0 where two points coincide). ``W`` is formed one block of rows at a time
(:class:`PlanRows`: the rows of the plan and of the cost, recomputed by a
lazy plan's geometry), so the backward of a lazy solve holds O((n + m) d)
memory; a dense plan goes through the same code in one block.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..geometry.point_cloud import PointCloud
from .implicit import PlanOperator, pull_back, value_plan_cotangent

#: The point-cloud costs whose derivative in the points is implemented.
DIFFERENTIABLE_METRICS = ("sqeuclidean", "euclidean")


def check_metric(metric, where):
    """``NotImplementedError`` naming ``metric`` unless its gradient is implemented."""
    if not (isinstance(metric, str) and metric in DIFFERENTIABLE_METRICS):
        raise NotImplementedError(f"{where}: gradients with metric={metric!r} are not implemented "
                                  f"(only {DIFFERENTIABLE_METRICS}); detach the inputs")


@dataclass
class PlanRows:
    """An optimal plan and its cost, seen by blocks of rows (float64).

    Attributes
    ----------
    op : PlanOperator
        The plan's products and marginals (for the one linear solve).
    potentials : tuple (f, g)
        The plan's potentials, ``P = exp((f + g - C) / reg)``.
    blocks : callable
        ``() -> iterator of (start, stop, P_rows, C_rows)``.
    """

    op: PlanOperator
    potentials: tuple
    blocks: Callable

    @classmethod
    def dense(cls, P, C, potentials, reg):
        """A stored plan ``P`` and its cost ``C``: one block."""
        P, C = (np.asarray(x, dtype=np.float64) for x in (P, C))
        return cls(PlanOperator.dense(P, reg), _float64(potentials), lambda: iter([(0, len(P), P, C)]))

    @classmethod
    def lazy(cls, plan):
        """A :class:`~fastsinkhorn.geometry.lazy_plan.LazyPlan`: rows recomputed at every pass."""
        return cls(PlanOperator.lazy(plan), _float64(plan.potentials), plan.blocks_with_cost)


def cloud_rows(plan, potentials, points, reg):
    """The :class:`PlanRows` of a solve's plan: a lazy plan's own, or a stored
    plan with the cost of ``points`` (recomputed once, dense)."""
    if hasattr(plan, "blocks_with_cost"):  # a LazyPlan
        return PlanRows.lazy(plan)
    C = PointCloud(points.x, points.y, cost=points.metric, scale=points.scale).cost_matrix()
    return PlanRows.dense(plan, C, potentials, reg)


def _float64(pair):
    return tuple(np.asarray(p, dtype=np.float64) for p in pair)


@dataclass
class Points:
    """The two clouds and their cost: ``scale * |x - y|^2`` or ``scale * |x - y|``."""

    x: np.ndarray
    y: np.ndarray
    metric: str = "sqeuclidean"
    scale: float = 1.0

    def __post_init__(self):
        self.x, self.y = (_as_cloud(v) for v in (self.x, self.y))


def _as_cloud(v):
    v = np.asarray(v, dtype=np.float64)
    return v[:, None] if v.ndim == 1 else v


def _point_weights(points, W, C):
    """``V`` with ``dL/dx_i = sum_j V_ij (x_i - y_j)`` for the cost's cotangent ``W``."""
    if points.metric == "sqeuclidean":
        return 2.0 * points.scale * W
    distance = C / points.scale
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(distance > 0, points.scale * W / distance, 0.0)


def _to_points(points, blocks):
    """``(dX, dY)`` from the cost cotangent given by ``blocks``: ``(start, stop, W, C)``."""
    x, y = points.x, points.y
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    for start, stop, W, C in blocks:
        V = _point_weights(points, W, C)
        dx[start:stop] = V.sum(1)[:, None] * x[start:stop] - V @ y
        dy += V.sum(0)[:, None] * y - V.T @ x[start:stop]
    return dx, dy


def sample_pullback(rows, points, relaxation, cotangents):
    """Gradients of a loss of one point-cloud solve's outputs: ``(dX, dY, da, db)``.

    Parameters
    ----------
    rows : PlanRows
    points : Points
    relaxation : ~fastsinkhorn.core.implicit.Relaxation
    cotangents : dict
        Cotangents (float64 or ``None``) of ``"value"``, ``"value_linear"``,
        ``"plan"`` (a dense ``(n, m)`` array: only for a stored plan),
        ``"f"`` and ``"g"``, as in
        :func:`~fastsinkhorn.core.implicit.entropic_pullback`.

    Returns
    -------
    tuple of float64 arrays
        The gradients w.r.t. the source points, the target points, ``a``, ``b``.
    """
    op, (f, g) = rows.op, rows.potentials
    n, m = len(op.r), len(op.c)
    cot_value = float(cotangents.get("value") or 0.0)
    cot_linear = float(cotangents.get("value_linear") or 0.0)
    G_plan = cotangents.get("plan")
    da, db = np.zeros(n), np.zeros(m)
    alpha = beta = None
    if cot_value:
        alpha, beta, partial_a, partial_b = value_plan_cotangent(op, f, g, relaxation)
        da, db = cot_value * partial_a, cot_value * partial_b
        if relaxation.balanced and not cot_linear and G_plan is None and cotangents.get("f") is None \
                and cotangents.get("g") is None:
            # value alone, balanced: the solve's z is (alpha, beta) / reg and the cost's
            # cotangent the plan (the envelope theorem): one pass, no solve (as entropic_pullback)
            dx, dy = _to_points(points, ((s, e, cot_value * P, C) for s, e, P, C in rows.blocks()))
            return dx, dy, da + cot_value * alpha, db + cot_value * beta

    def weighted(start, stop, P, C):
        """``G * P`` on a block (0 where the plan has no mass), ``G`` the plan's whole cotangent."""
        G = np.zeros_like(P) if G_plan is None else np.array(G_plan[start:stop], dtype=np.float64)
        if cot_linear:
            G += cot_linear * np.where(P > 0, C, 0.0)
        if alpha is not None:
            G += cot_value * (alpha[start:stop, None] + beta[None, :])
        return np.where(P > 0, G * P, 0.0)

    w_f, w_g = np.zeros(n), np.zeros(m)
    if G_plan is not None or cot_linear or cot_value:
        for start, stop, P, C in rows.blocks():
            GP = weighted(start, stop, P, C)
            w_f[start:stop] = GP.sum(1)
            w_g += GP.sum(0)
    back = pull_back(op, relaxation, cotangents.get("f"), cotangents.get("g"), (w_f, w_g))

    def cost_cotangents():
        for start, stop, P, C in rows.blocks():
            W = P * (back.z_f[start:stop, None] + back.z_g[None, :] + cot_linear + cot_value)
            yield start, stop, W - weighted(start, stop, P, C) / op.reg, C

    dx, dy = _to_points(points, cost_cotangents())
    return dx, dy, da + back.da, db + back.db


def envelope_pullback(rows, points, cot_value):
    """POT's envelope gradients of ``value`` (balanced): the plan for the cost,
    hence ``dX = 2 s (diag(P 1) X - P Y)`` for the squared Euclidean cost, and
    the centred potentials ``f - mean(f)``, ``g - mean(g)`` for the masses.
    Returns ``(dX, dY, da, db)``."""
    f, g = rows.potentials
    dx, dy = _to_points(points, ((s, e, cot_value * P, C) for s, e, P, C in rows.blocks()))
    return dx, dy, cot_value * (f - f.mean()), cot_value * (g - g.mean())
