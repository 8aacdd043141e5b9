"""Histograms on a regular grid: the squared Euclidean cost, separable by axis.

On a grid the cost ``C_ij = sum_a (x_a(i_a) - x_a(j_a))^2`` is a sum of one
small ``(k_a, k_a)`` cost per axis, so the kernel ``exp(-C / reg)`` is a
product of one small kernel per axis. A pass over the cost (Sinkhorn's
``lse_rows``) is then a sequence of 1-D log-sum-exps, one axis at a time
(each a batch of lines on the axis's small cost, one matrix product with a
stabilised kernel): ``O(n sum_a k_a)`` work, ``O(n)`` memory, and exact at
any ``reg`` (sums that would underflow are recomputed as plain
log-sum-exps). A 256 x 256 image (65,536 points, whose dense cost would
take 32 GiB) costs two such passes a Sinkhorn iteration.

Points are numbered in C order: the flat histogram of an image ``h`` is
``h.ravel()``. Every pass also takes leading batch axes (``(..., n)``: the
histograms of several problems at once, as a barycenter iterates them).
"""

import functools
import math
import numbers

import numpy as np

from .base import LazyGeometry
from .dense import DenseGeometry
from .shared_kernel import SharedKernel


class Grid:
    """The points of a regular grid and the squared Euclidean cost between them.

    ``solve(Grid(shape), a, b, reg=...)`` transports the histogram ``a`` to
    ``b``, both on the grid (arrays of ``prod(shape)`` values, or of
    ``shape``), with the cost ``|x_i - x_j|^2``; nothing n x n is held, and
    the result's plan is a :class:`~fastsinkhorn.LazyPlan`.

    Parameters
    ----------
    shape : int or tuple of int
        Points along each axis (``d >= 1`` axes, each ``>= 1`` points).
    spacing : float or sequence of float, optional
        Distance between neighbours along each axis (one number: every
        axis). Default: the points of ``linspace(0, 1, k)`` on each axis
        (spacing ``1 / (k - 1)``), as POT's ``convolutional_barycenter2d``
        places them.

    Examples
    --------
    >>> import fastsinkhorn
    >>> grid = fastsinkhorn.Grid((2, 3))
    >>> grid.size, grid.cost_range()
    (6, 2.0)
    >>> grid.cost_matrix()[0].tolist()  # from the corner (0, 0)
    [0.0, 0.25, 1.0, 1.0, 1.25, 2.0]
    """

    def __init__(self, shape, spacing=None):
        self.shape = _as_shape(shape)
        self.spacing = _as_spacing(spacing, self.shape)

    @property
    def size(self):
        """``n = prod(shape)``: the number of points."""
        return math.prod(self.shape)

    def axis_points(self):
        """The coordinates along each axis: a list of float64 ``(k_a,)`` arrays."""
        return [h * np.arange(k, dtype=np.float64) for k, h in zip(self.shape, self.spacing)]

    def axis_costs(self):
        """The squared distances along each axis: float64 ``(k_a, k_a)`` arrays,
        whose sum over the axes is the cost."""
        return [(x[:, None] - x[None, :]) ** 2 for x in self.axis_points()]

    def points(self):
        """The ``(n, d)`` coordinates of the points, in C order (float64)."""
        mesh = np.meshgrid(*self.axis_points(), indexing="ij")
        return np.stack([axis.ravel() for axis in mesh], axis=1)

    def cost_range(self):
        """``max C - min C``: the squared diagonal of the grid."""
        return float(sum((h * (k - 1)) ** 2 for k, h in zip(self.shape, self.spacing)))

    def cost_matrix(self):
        """The dense ``(n, n)`` cost, float64 (explicit: n x n memory)."""
        return grid_cost_rows(self.shape, self.axis_costs(), 0, self.size)

    def flat_mass(self, w, name):
        """The histogram ``w`` as ``(n,)`` (a view where ``w`` has the grid's
        ``shape``); ``None`` or empty passes through (uniform). Values are
        checked by the solve.

        Raises
        ------
        ValueError
            If ``w`` has neither shape ``(n,)`` nor ``shape``.
        """
        if w is None or (hasattr(w, "__len__") and len(w) == 0):
            return w
        w = w if hasattr(w, "shape") else np.asarray(w)
        if tuple(w.shape) == self.shape:
            return w.reshape(-1)
        if tuple(w.shape) == (self.size,):
            return w
        raise ValueError(f"{name} must have shape ({self.size},) or {self.shape} to match the grid, "
                         f"got {tuple(w.shape)}")

    def __repr__(self):
        spacing = ", ".join(f"{h:g}" for h in self.spacing)
        return f"Grid(shape={self.shape}, spacing=({spacing}))"


class GridGeometry(LazyGeometry):
    """A :class:`Grid`'s cost on a backend: every pass is done axis by axis by
    the backend's ``grid_lse``; nothing n x n is held (a
    :class:`~fastsinkhorn.geometry.protocol.Geometry` that cannot store a kernel).

    Raises
    ------
    NotImplementedError
        If the backend does not declare ``grids`` (the ``grid_`` kernels of
        :class:`~fastsinkhorn.backends._contract.KernelBackend`), and from
        :meth:`dense_pass` (SNS needs the largest entries of each plan row).
    """

    def __init__(self, grid, backend):
        if not backend.grids:
            raise NotImplementedError(f"grid costs (Grid) are not implemented on backend={backend.name!r}")
        self.grid, self.backend = grid, backend
        self.axis_costs = grid.axis_costs()
        self._kernels = {}  # (reg, weighted) -> log-kernels, for the current reg only
        self.cost_range = self.cost_scale = grid.cost_range()

    @property
    def shape(self):
        return (self.grid.size, self.grid.size)

    def log_kernels(self, reg, weighted=None):
        """The per-axis log-kernels ``-c_a / reg``; on the axis ``weighted``
        (if any) ``-c_a / reg + log c_a``, so that a pass sums the plan
        weighted by that axis's share of the cost (``log 0 = -inf``). Kept
        for the last ``reg`` asked for: Sinkhorn asks at every half-step."""
        key = (reg, weighted)
        if key not in self._kernels:
            if all(r != reg for r, _ in self._kernels):
                self._kernels.clear()
            kernels = [-c / reg for c in self.axis_costs]
            if weighted is not None:
                with np.errstate(divide="ignore"):
                    kernels[weighted] = kernels[weighted] + np.log(self.axis_costs[weighted])
            self._kernels[key] = kernels
        return self._kernels[key]

    def log_convolve(self, h, reg, weighted=None):
        """``out_i = log sum_j exp(h_j - C_ij / reg)`` (times ``c_a(i_a, j_a)``
        inside the sum on the axis ``weighted``).

        Parameters
        ----------
        h : array, float64, shape (..., n)
            Log-values on the grid (``-inf`` allowed); leading axes are a
            batch, each done alike (one pass for all).
        reg : float
        weighted : int or None

        Returns
        -------
        array, float64, shape (..., n)

        Notes
        -----
        Each axis's pass is a batch of 1-D log-sum-exps, one per line of the
        grid along that axis, all on the axis's ``(k_a, k_a)`` cost: a batch
        on one shared cost, done as one matrix product with that axis's
        stabilised kernel (:class:`~fastsinkhorn.geometry.shared_kernel.SharedKernel`:
        exact, sums that would underflow recomputed); the weighted axis is
        that kernel's :meth:`~fastsinkhorn.geometry.shared_kernel.SharedKernel.weighted_lse_rows`.
        Only array-library calls and the backend's dense log-sum-exps: the
        same code on every backend.
        """
        batch = h.shape[:-1]
        values = h.reshape(batch + self.grid.shape)
        for axis, kernel in enumerate(self.axis_kernels):
            lines = self.xp.moveaxis(values, len(batch) + axis, -1)
            shape = lines.shape
            potentials = reg * lines.reshape(-1, shape[-1])  # the kernel's potentials: reg h
            out = kernel.weighted_lse_rows(potentials, reg) if axis == weighted else \
                kernel.lse_rows(potentials, reg)
            values = self.xp.moveaxis(out.reshape(shape), -1, len(batch) + axis)
        return self.xp.ascontiguousarray(values).reshape(h.shape)

    @functools.cached_property
    def axis_kernels(self):
        """One :class:`~fastsinkhorn.geometry.shared_kernel.SharedKernel` per axis,
        on that axis's cost (its stabilisers kept from pass to pass)."""
        return [SharedKernel(DenseGeometry(self.xp.asarray(c), self.backend, float(c.max())))
                for c in self.axis_costs]

    def cost_rows(self, start, stop):
        """Rows ``start:stop`` of the cost, from the axis costs (float64)."""
        return grid_cost_rows(self.grid.shape, self.axis_costs, start, stop)

    def lse_rows(self, g, reg):
        """``log sum_j exp((g_j - C_ij) / reg)``, float64 (n,), axis by axis."""
        return self.log_convolve(g / reg, reg)

    def lse_cols(self, f, reg):
        """``log sum_i exp((f_i - C_ij) / reg)``: the cost is symmetric, so :meth:`lse_rows` of ``f``."""
        return self.lse_rows(f, reg)

    def dense_pass(self, f, g, reg, k):
        """Not available: SNS's sparse Hessian needs the plan's rows (n x n work)."""
        raise NotImplementedError("method='sns' is not implemented for grid costs (Grid); use method='sinkhorn'")

    def summary(self, f, g, reg):
        """``(r, c, <C, P>)`` of the plan at ``(f, g)`` without n x n work.

        ``r_i = exp(f_i / reg + lse_rows(g)_i)`` (and likewise ``c``), and
        ``<C, P> = sum_a sum_i exp(f_i / reg + w_a(g)_i)`` where ``w_a`` is the
        pass with axis ``a``'s kernel weighted by its cost: ``d + 2`` passes.
        Every exponent is the log of a sum of plan entries (times costs), so
        none overflows.
        """
        xp = self.xp
        r = xp.exp(f / reg + self.lse_rows(g, reg))
        c = xp.exp(g / reg + self.lse_cols(f, reg))
        linear = sum(float(xp.exp(f / reg + self.log_convolve(g / reg, reg, weighted=axis)).sum())
                     for axis in range(len(self.axis_costs)))
        return r, c, linear


def grid_cost_rows(shape, axis_costs, start, stop):
    """Rows ``start:stop`` (C-order point numbers) of the dense grid cost
    ``C_ij = sum_a c_a[i_a, j_a]``, float64 ``(stop - start, n)``."""
    rows, d = stop - start, len(shape)
    out = np.zeros((rows,) + shape)
    for axis, (c, i) in enumerate(zip(axis_costs, np.unravel_index(np.arange(start, stop), shape))):
        out += c[i].reshape((rows,) + (1,) * axis + (shape[axis],) + (1,) * (d - axis - 1))
    return out.reshape(rows, math.prod(shape))


def _as_shape(shape):
    """``shape`` as a tuple of positive ints (an int: one axis)."""
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if not dims or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1
                           for k in dims):
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(int(k) for k in dims)


def _as_spacing(spacing, shape):
    """Per-axis spacings as a tuple of positive finite floats."""
    if spacing is None:  # linspace(0, 1, k): a single point's spacing is immaterial
        return tuple(1.0 / (k - 1) if k > 1 else 1.0 for k in shape)
    values = (spacing,) * len(shape) if isinstance(spacing, numbers.Real) else spacing
    try:
        if isinstance(values, str):  # iterable, but not numbers
            raise TypeError
        values = tuple(values)
    except TypeError:
        raise TypeError(f"spacing must be a number or a sequence of numbers, got {spacing!r}") from None
    if len(values) != len(shape):
        raise ValueError(f"spacing must have one value per axis ({len(shape)}), got {spacing!r}")
    if not all(isinstance(h, numbers.Real) and not isinstance(h, bool) and math.isfinite(h) and h > 0
               for h in values):
        raise ValueError(f"spacing must hold positive finite numbers, got {spacing!r}")
    return tuple(float(h) for h in values)
