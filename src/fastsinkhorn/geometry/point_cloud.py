"""Point-cloud geometries: a cost given by coordinates, never stored.

``solve(PointCloud(x, y), a, b, reg=...)`` runs the same solvers as a dense
cost, with every O(nm) pass computing the cost of each pair from ``x`` and
``y`` as it goes: memory is O((n + m) d) for Sinkhorn and O((n + m) d + n k)
for SNS (its sparse Hessian rows, ``k <= m / 16``: see ``max_per_row`` in
``SNSOptions``), and the result's plan is a
:class:`~fastsinkhorn.LazyPlan`. A batch of clouds (``x`` (B, n, d), ``y``
(B, m, d): many small problems) is solved through its dense ``(B, n, m)``
costs, computed by the backend's kernels, like a batch of cost matrices.
"""

import math

import numpy as np

from ..backends._contract import COST_KINDS, CostSpec
from ..core.arrays import array_library, library_module
from ..core.checks import check_positive, is_real


class PointCloud:
    """The cost ``C_ij = cost(x_i, y_j)`` between two point clouds.

    Parameters
    ----------
    x : array_like (n, d) or (B, n, d)
        Source points (NumPy or CuPy); a 3-D array is a batch of ``B`` clouds.
    y : array_like (m, d) or (B, m, d)
        Target points, same ``d``, batch size and array library as ``x``.
    cost : {"sqeuclidean", "euclidean", "minkowski"}
        ``scale * |x - y|_2^2``, ``scale * |x - y|_2`` or ``scale * |x - y|_p``.
    p : float
        Exponent of the ``"minkowski"`` cost (``p >= 1``); the other costs
        accept only the default (another value raises ``ValueError``).
    scale : float
        Positive factor applied to the cost (e.g. ``1 / max cost``).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0]]); y = np.array([[0.0, 1.0], [1.0, 1.0]])
    >>> fastsinkhorn.PointCloud(x, y).cost_matrix().tolist()
    [[1.0, 2.0], [2.0, 1.0]]
    """

    def __init__(self, x, y, cost="sqeuclidean", p=2.0, scale=1.0):
        self.library = array_library(x=x, y=y)
        xp = library_module(self.library)
        self.x, self.y = _as_points(xp, x, "x"), _as_points(xp, y, "y")
        if self.x.ndim != self.y.ndim or self.x.shape[:-2] != self.y.shape[:-2]:
            raise ValueError(f"x and y must both be single clouds or batches of the same size B, "
                             f"got x.shape={self.x.shape} and y.shape={self.y.shape}")
        if self.x.shape[-1] != self.y.shape[-1]:
            raise ValueError(f"x and y must have the same number of coordinates (d), "
                             f"got x.shape={self.x.shape} and y.shape={self.y.shape}")
        if cost not in COST_KINDS:
            raise ValueError(f"cost must be one of {tuple(COST_KINDS)}, got {cost!r}")
        if cost == "minkowski" and not (is_real(p) and p >= 1):
            raise ValueError(f"p must be a finite number >= 1, got {p!r}")
        if cost != "minkowski" and not (is_real(p) and p == 2):  # the other costs have no exponent
            raise ValueError(f"p={p!r}: the exponent of cost='minkowski'; cost={cost!r} has none "
                             "(only p=2.0, the default, is accepted)")
        self.spec = CostSpec(cost, float(p) if cost == "minkowski" else 2.0, check_positive(scale, "scale"))

    @property
    def shape(self):
        """``(n, m)``, or ``(B, n, m)`` for a batch: the shape of the cost matrix."""
        return (*self.x.shape[:-2], self.x.shape[-2], self.y.shape[-2])

    @property
    def batched(self):
        """Whether this is a batch of ``B`` clouds (``x`` (B, n, d), ``y`` (B, m, d))."""
        return self.x.ndim == 3

    def cost_matrix(self):
        """The dense ``(n, m)`` cost (``(B, n, m)`` for a batch), float64."""
        from ..backends import get_backend

        be = get_backend("gpu" if self.library == "cupy" else "cpu")
        if not self.batched:
            return be.pc_cost_rows(self.x, self.y, self.spec, 0, self.x.shape[0])
        out = be.xp.empty(self.shape)
        for p in range(self.shape[0]):
            out[p] = be.pc_cost_rows(self.x[p], self.y[p], self.spec, 0, self.shape[1])
        return out

    def cost_range_bound(self):
        """An upper bound of ``max C - min C`` from the bounding box of both
        clouds (O((n + m) d)); scales ``reg`` in the ``method="auto"`` rule."""
        xp = library_module(self.library)
        x, y = (v.reshape(-1, v.shape[-1]) for v in (self.x, self.y))
        lo = xp.minimum(x.min(axis=0), y.min(axis=0))
        hi = xp.maximum(x.max(axis=0), y.max(axis=0))
        width = hi - lo
        spec = self.spec
        if spec.kind == "minkowski":
            diameter = float((width ** spec.p).sum()) ** (1.0 / spec.p)
        else:
            diameter = math.sqrt(float((width * width).sum()))
        return spec.scale * (diameter ** 2 if spec.kind == "sqeuclidean" else diameter)

    def __repr__(self):
        *batch, n, m = self.shape
        head = f"{batch[0]} x " if batch else ""
        return f"PointCloud({head}{n} x {m} points in {self.x.shape[-1]}-D, cost={self.spec.kind!r})"


def _as_points(xp, x, name):
    x = xp.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim not in (2, 3) or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty (n, d) array of points (or a (B, n, d) batch), "
                         f"got shape {x.shape}")
    x = xp.ascontiguousarray(x, dtype=np.float64)  # a float64 copy only when needed
    if not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name} must not contain NaN or inf")
    return x
