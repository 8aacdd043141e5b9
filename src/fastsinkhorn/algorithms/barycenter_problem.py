"""The native barycenter API: :func:`solve_barycenter` checks its arguments,
builds the geometry of the cost (a :class:`~fastsinkhorn.Grid`'s separable
passes or one dense cost shared by the batch) and runs the driver of
:mod:`fastsinkhorn.algorithms.barycenter`."""

import math

import numpy as np

from ..backends import get_backend
from ..core.arrays import array_library
from ..core.checks import check_non_negative, check_positive_int, check_reg
from ..core.validation import MASS_SUM_RTOL, _as_cost, resolve_backend
from ..geometry.grid import Grid, GridGeometry
from ..geometry.shared import SharedCostGeometry
from .barycenter import barycenter_potentials

#: Default ``tol`` of :func:`solve_barycenter`: the largest L1 gap between a
#: plan's barycenter-side marginal and the barycenter.
BARYCENTER_TOL = 1e-6


def solve_barycenter(M, A, reg, weights=None, debiased=False, tol=BARYCENTER_TOL, max_iter=1000,
                     backend="auto", warn=True, callback=None, reg_m=None):
    """Entropic Wasserstein barycenter of ``k`` histograms on a fixed support.

    Minimises ``sum_p w_p OT_reg(a_p, b)`` over the histogram ``b`` by
    iterative Bregman projections in the log domain (exact at any ``reg``;
    see :mod:`fastsinkhorn.algorithms.barycenter`). With ``reg_m``, the
    unbalanced barycenter (POT's ``barycenter_unbalanced``): ``OT_reg`` is
    the unbalanced cost whose two marginals are KL-relaxed with the
    penalty ``reg_m``, ``<M, P> + reg KL(P | 1) + reg_m KL(P 1 | a_p) +
    reg_m KL(P^T 1 | b)``.

    Parameters
    ----------
    M : array (n, m) or Grid
        The cost between the histograms' support (rows) and the barycenter's
        (columns); a :class:`~fastsinkhorn.Grid`: both on the grid, with its
        squared Euclidean cost (nothing n x n is held). ``+inf`` entries
        forbid transport.
    A : array (k, n), or (k, *grid.shape) for a grid
        The histograms, one per row: non-negative, of equal sums (to a
        relative ``MASS_SUM_RTOL``; each is rescaled to their mean sum).
        Unbalanced (``reg_m`` given): any positive masses, kept as they
        are. Not modified.
    reg : float
        Entropic regularisation, ``> 0``.
    weights : array (k,), optional
        Non-negative, not all zero; normalised to sum 1. Default uniform.
    debiased : bool
        The debiased barycenter of Janati et al. (2020) (of the Sinkhorn
        divergences); needs a square cost on one support (``n == m``),
        symmetric.
    tol : float
        Stop when ``max_p ||P_p^T 1 - b||_1 <= tol`` (the rows are exact
        after every iteration); debiased, the self-transport's gap too.
    max_iter : int
    backend : {"auto", "cpu", "gpu", "reference"}
    warn : bool
        Warn (:class:`~fastsinkhorn.ConvergenceWarning`) when ``tol`` is not reached.
    callback : callable, optional
        ``callback(iteration, error)`` after each check.
    reg_m : float, optional
        The KL penalty of the marginals, ``> 0`` (``None`` or ``inf``:
        balanced). Then ``tol`` bounds ``max_p ||P_p^T 1 - b exp(-g_p /
        reg_m)||_1``, the gap to the marginal the optimal plan has at the
        potentials (the rows meet theirs after every iteration).

    Returns
    -------
    BarycenterResult
        ``barycenter`` (m,) (the grid's shape for a grid), float64;
        potentials ``(f, g)`` ``(k, n)``, ``(k, m)``; ``n_iter``,
        ``error``, ``converged``, ``history``.

    Raises
    ------
    TypeError
        ``M`` neither an array nor a Grid; ``debiased`` not a bool;
        ``reg_m`` not a number.
    ValueError
        Wrong shapes, negative / NaN masses, sums that differ (balanced),
        bad ``reg``, ``reg_m``, ``tol``, ``max_iter``, ``weights`` or
        ``backend``.
    NotImplementedError
        ``debiased`` with a finite ``reg_m``.

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as fs
    >>> A = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> res = fs.solve_barycenter(fs.Grid(3), A, reg=0.02)
    >>> res.barycenter.round(3).tolist()
    [0.0, 1.0, 0.0]
    """
    reg = check_reg(reg)
    tol = check_non_negative(tol, "tol")
    max_iter = check_positive_int(max_iter, "max_iter")
    if not isinstance(debiased, (bool, np.bool_)):
        raise TypeError(f"debiased must be a bool, got {debiased!r}")
    reg_m = _as_reg_m(reg_m)
    if debiased and not math.isinf(reg_m):
        raise NotImplementedError("debiased=True with reg_m: the debiased barycenter is balanced only")
    grid = M if isinstance(M, Grid) else None
    library = array_library(A=A) if grid is not None else array_library(M=M, A=A)
    be = get_backend(resolve_backend(backend, library))
    xp = be.xp
    A = _as_histograms(xp, A, grid, balanced=math.isinf(reg_m))
    k = A.shape[0]
    if grid is not None:
        geom, n, m = GridGeometry(grid, be), grid.size, grid.size
    else:
        if not hasattr(M, "shape") and not isinstance(M, (list, tuple)):
            raise TypeError(f"M must be an (n, m) array or a Grid, got {type(M).__name__}")
        cost, cost_range, _ = _as_cost(xp, M)
        if cost.ndim != 2:
            raise ValueError(f"M must be a 2-D cost (n, m) or a Grid, got shape {cost.shape}")
        n, m = cost.shape
        geom = SharedCostGeometry(xp.ascontiguousarray(cost), k + int(debiased), be, cost_range)
    if A.shape[1] != n:
        raise ValueError(f"A must have shape (k, {n}) to match M.shape[0]"
                         f"{' (the grid: (k, *grid.shape) also)' if grid else ''}, got {A.shape}")
    if debiased and n != m:
        raise ValueError(f"debiased=True needs a square cost (one support), got M of shape {(n, m)}")
    w = _as_weights(xp, weights, k)
    with np.errstate(divide="ignore"):
        log_a = xp.log(A)
    res = barycenter_potentials(geom, log_a, reg, w, debiased=bool(debiased), reg_m=reg_m, tol=tol,
                                max_iter=max_iter, warn=warn, callback=callback)
    if grid is not None:
        res.barycenter = res.barycenter.reshape(grid.shape)
    return res


def _as_reg_m(reg_m):
    """``reg_m`` as a float in ``(0, inf]`` (``None``: ``inf``, balanced)."""
    if reg_m is None:
        return math.inf
    if isinstance(reg_m, (bool, np.bool_)):
        raise TypeError(f"reg_m must be a positive number or None, got {reg_m!r}")
    try:
        value = float(reg_m)
    except (TypeError, ValueError):
        raise TypeError(f"reg_m must be a positive number or None, got {reg_m!r}") from None
    if math.isnan(value) or value <= 0:
        raise ValueError(f"reg_m (the marginals' KL penalty) must be positive, got {reg_m!r}")
    return value


def _as_histograms(xp, A, grid, balanced=True):
    """``A`` as a float64 ``(k, n)`` copy, checked; rows rescaled to their mean
    sum (balanced; unbalanced, kept)."""
    if A is None:
        raise ValueError("A must be an array of histograms (k, n), got None")
    A = xp.asarray(A)
    if A.dtype.kind not in "fiub":
        raise TypeError(f"A must hold real numbers, got dtype {A.dtype}")
    A = A.astype(np.float64)  # a copy: the caller's array is never written
    if grid is not None and A.ndim == len(grid.shape) + 1 and tuple(A.shape[1:]) == grid.shape:
        A = A.reshape(A.shape[0], grid.size)
    if A.ndim != 2 or 0 in A.shape:
        raise ValueError(f"A must be a non-empty 2-D array (k, n) of histograms, got shape {A.shape}")
    if not bool(xp.isfinite(A).all()) or bool((A < 0).any()):
        raise ValueError("A must hold non-negative finite masses")
    sums = A.sum(axis=1)
    lo, hi = float(sums.min()), float(sums.max())
    if lo <= 0:
        raise ValueError("A: every histogram must have a positive mass")
    if not balanced:
        return A
    if hi - lo > MASS_SUM_RTOL * hi:
        raise ValueError(f"A: the histograms must have equal sums (to a relative {MASS_SUM_RTOL:g}), "
                         f"got sums from {lo:.6g} to {hi:.6g}")
    # equal masses exactly: else no common column marginal exists and the gap never closes
    return A * (float(sums.mean()) / sums)[:, None]


def _as_weights(xp, weights, k):
    """``weights`` as float64 ``(k,)`` on the simplex (default uniform)."""
    if weights is None:
        return xp.full(k, 1.0 / k)
    w = xp.asarray(weights, dtype=np.float64).reshape(-1) if hasattr(weights, "__len__") else None
    if w is None or w.shape != (k,):
        raise ValueError(f"weights must have shape ({k},) (one per histogram), got {weights!r}")
    if not bool(xp.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weights must be non-negative finite numbers, not all zero")
    return w / w.sum()
