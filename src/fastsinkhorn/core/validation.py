"""Input checking and normalisation, shared by every entry point.

Nothing here writes into the caller's arrays: masses are copied to float64,
and the cost is only ever read (at most converted once when its dtype is not
float32/float64 or it is not contiguous).
"""

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import BACKENDS, get_backend
from ..geometry.cloud import CloudGeometry
from ..geometry.dense import DenseGeometry
from ..geometry.grid import Grid, GridGeometry
from ..geometry.point_cloud import PointCloud
from ..geometry.shared import SharedCostGeometry
from .arrays import array_library, array_namespace
from .checks import check_non_negative, check_reg  # noqa: F401 (check_reg: re-exported)
from .relaxation import Side
from .transpose import caller_plan, oriented, readable_in_place, solved_transposed


@dataclass
class PreparedProblem:
    """A validated problem as the solvers see it (internal).

    ``geom`` is the cost as the drivers see it (:mod:`fastsinkhorn.geometry.dense`).
    When the caller's dense cost was F-ordered the problem is stored
    transposed (``transposed=True``): the solution of the transposed problem
    is the transposed solution, and no copy of the cost is made
    (:mod:`fastsinkhorn.core.transpose`). :meth:`oriented` and
    :meth:`caller_plan` convert between the caller's orientation and this one.
    """

    geom: Any
    a: Any  # float64, sums equal to b's
    b: Any
    reg: float
    xp: Any
    backend: Any
    transposed: bool = False
    rho_a: float = math.inf  # KL penalties of the marginals (inf: exact, balanced OT)
    rho_b: float = math.inf
    kl_frame: bool = True  # the entropy's reference measure is a b^T (POT's reg_type="kl")
    forbidden: bool = False  # the dense cost has +inf entries

    @property
    def balanced(self):
        return math.isinf(self.rho_a) and math.isinf(self.rho_b)

    # cached: a Side holds log(mass); ``dataclasses.replace`` (a stage's reg, a
    # batch's subset) makes a new problem, hence new sides
    @functools.cached_property
    def rows(self):
        """The row marginal as the drivers see it (:class:`~fastsinkhorn.core.relaxation.Side`)."""
        return Side(self.a, self.rho_a, self.kl_frame, self.reg, self.xp)

    @functools.cached_property
    def cols(self):
        return Side(self.b, self.rho_b, self.kl_frame, self.reg, self.xp)

    def oriented(self, first, second):
        """A pair (potentials, marginals, names...) from the caller's orientation
        to this problem's, or back: swapped when ``transposed``."""
        return oriented(self.transposed, first, second)

    def caller_plan(self, plan):
        """This problem's plan in the caller's orientation."""
        return caller_plan(self.transposed, plan)

    @property
    def dtype(self):
        return self.geom.dtype

    @property
    def shape(self):
        return self.geom.shape

    @property
    def cost_range(self):
        """``max C - min C`` over the finite entries (a bound for point clouds)."""
        return self.geom.cost_range

    @property
    def cost_scale(self):
        """The spread of the costs that can carry mass, which ``reg`` is
        compared with (see :mod:`fastsinkhorn.geometry.cost_scale`)."""
        return self.geom.cost_scale


def resolve_backend(backend, library):
    """Map ``backend="auto"`` to the arrays' library; check explicit choices."""
    if backend == "auto":
        return "gpu" if library == "cupy" else "cpu"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    if library == "cupy" and backend != "gpu":
        raise TypeError(f"backend={backend!r} needs NumPy arrays, got CuPy arrays; use backend='gpu' or 'auto'")
    return backend


def prepare_problem(M, a, b, reg, backend="auto", unbalanced=(math.inf, math.inf), kl_frame=True,
                    check_support=True):
    """Validate ``(M, a, b, reg)`` and return a :class:`PreparedProblem`.

    ``M`` is a dense ``(n, m)`` cost, a :class:`~fastsinkhorn.geometry.PointCloud`
    or a :class:`~fastsinkhorn.Grid` (whose ``a`` and ``b`` may have its shape).
    ``unbalanced`` holds the KL penalties ``(rho_a, rho_b)`` of the marginals
    (``inf``: exact); masses need equal sums only when both are exact.
    ``check_support=False`` skips the check of masses that no finite cost
    reaches (``_drop_unreachable_masses``: for a caller that measures it).

    Raises
    ------
    TypeError
        CuPy and NumPy arrays mixed; non-numeric input.
    ValueError
        Wrong shapes, NaN/inf, negative masses, masses with different sums,
        ``reg`` not positive and finite, unknown backend.
    """
    cloud = M if isinstance(M, PointCloud) else None
    if cloud is not None and cloud.batched:  # many small clouds: their dense costs, one batch
        M, cloud = cloud.cost_matrix(), None
    grid = M if isinstance(M, Grid) else None
    if grid is not None:
        a, b = grid.flat_mass(a, "a"), grid.flat_mass(b, "b")
        library = array_library(a=a, b=b)
    elif cloud is not None:
        library = array_library(x=cloud.x, y=cloud.y, a=a, b=b)
    else:
        library = array_library(M=M, a=a, b=b)
    name = resolve_backend(backend, library)
    be = get_backend(name)
    xp = be.xp
    if library == "numpy" and name == "gpu":  # host arrays on the GPU backend
        a, b = (None if x is None else xp.asarray(np.asarray(x)) for x in (a, b))
        if cloud is None and grid is None:
            M = xp.asarray(np.asarray(M))
    reg = check_reg(reg)
    forbidden = False
    if grid is not None:
        geom, transposed = GridGeometry(grid, be), False
        against = ("the grid's size", "the grid's size")
    elif cloud is not None:
        geom, transposed = CloudGeometry(cloud, be), False
        against = ("x.shape[0]", "y.shape[0]")
    else:
        cost, cost_range, forbidden = _as_cost(xp, M)
        shared = _shared_batch_size(xp, cost, a, b)
        if shared:  # one cost, many marginal pairs: one batch on the cost as it is
            geom, transposed = SharedCostGeometry(xp.ascontiguousarray(cost), shared, be, cost_range), False
        else:
            geom, transposed = DenseGeometry.from_array(cost, be, cost_range)
        against = ("M.shape[-2]", "M.shape[-1]") if cost.ndim == 3 else ("M.shape[0]", "M.shape[1]")
    *batch, n, m = geom.shape
    n, m = oriented(transposed, n, m)  # the caller's sizes
    a = _as_mass(xp, a, batch, n, "a", against[0])
    b = _as_mass(xp, b, batch, m, "b", against[1])
    # F-ordered: solve the transposed problem, no copy
    (a, rho_a), (b, rho_b) = oriented(transposed, (a, unbalanced[0]), (b, unbalanced[1]))
    prob = PreparedProblem(geom=geom, a=a, b=b, reg=reg, xp=xp, backend=be, transposed=transposed,
                           rho_a=rho_a, rho_b=rho_b, kl_frame=kl_frame, forbidden=forbidden)
    if forbidden and check_support:
        _drop_unreachable_masses(prob)
    if prob.balanced:
        prob.b = _equal_sums(xp, a, b, geom.dtype, batch, transposed)
    return prob


def _shared_batch_size(xp, M, a, b):
    """``B`` where a 2-D cost comes with masses ``(B, n)`` and/or ``(B, m)``
    (many problems on one cost), else 0.

    Raises
    ------
    ValueError
        If ``a`` and ``b`` are both 2-D with different numbers of problems,
        or either has more than two axes.
    """
    if M.ndim != 2:
        return 0
    sizes = {}
    for name, w in (("a", a), ("b", b)):
        ndim = getattr(w, "ndim", None)
        if ndim is None and w is not None and not (hasattr(w, "__len__") and len(w) == 0):
            ndim = np.ndim(w)
        if ndim is not None and ndim > 2:
            raise ValueError(f"{name} must be 1-D, or 2-D (one row per problem) for many problems on "
                             f"one cost, got {ndim} axes")
        if ndim == 2:
            sizes[name] = len(w)
    if len(set(sizes.values())) > 1:
        raise ValueError(f"a and b must give the same number of problems (rows), got {sizes['a']} and "
                         f"{sizes['b']}")
    return next(iter(sizes.values()), 0)


#: Balanced OT: masses whose sums differ by at most this, relative to the
#: larger, are accepted and ``b`` is rescaled to the sum of ``a`` (as POT's
#: ``emd`` does within its check); histograms normalised in float32, or
#: rounded, differ by 1e-7 to 1e-4. Larger differences raise ``ValueError``.
MASS_SUM_RTOL = 1e-3


def _equal_sums(xp, a, b, dtype, batch, transposed):
    """``b`` rescaled to the sum of ``a`` after checking that they agree to
    :data:`MASS_SUM_RTOL`."""
    sa, sb = a.sum(axis=-1), b.sum(axis=-1)
    mismatch = xp.abs(sa - sb) > MASS_SUM_RTOL * xp.maximum(sa, sb)
    if bool(mismatch.any()):
        i = int(xp.argmax(mismatch)) if batch else ()  # the first offending problem
        where = f" in problem {i}" if batch else ""
        first, second = oriented(transposed, "a", "b")  # the caller's names
        raise ValueError(f"a and b must have equal sums{where} (to a relative {MASS_SUM_RTOL:g}), got "
                         f"sum({first})={float(sa[i])!r} and sum({second})={float(sb[i])!r} "
                         "(or solve unbalanced OT: unbalanced=...)")
    return b * (sa / sb)[..., None]  # b on the sum of a: tol is reachable


def reference_cost(M, c, reg):
    """``M - reg log c``: the entropy relative to a reference measure ``c`` as
    the plain entropy of the plan for this cost (``KL(P | c) = sum P log P -
    sum P log c`` up to a constant). Returns ``(M_eff, M)`` as float64 arrays.

    Raises ``ValueError``/``NotImplementedError`` naming ``c`` when it is not
    a positive finite ``(n, m)`` array for a dense 2-D ``M``
    (:func:`check_reference_measure`).
    """
    xp, M, c = check_reference_measure(M, c)
    return M - check_reg(reg) * xp.log(c), M


def check_reference_measure(M, c):
    """``(xp, M, c)``, both float64, once ``c`` is checked as a reference measure
    of the KL regulariser for the cost ``M``: a positive finite array of
    ``M``'s shape, for a dense 2-D ``M`` (else ``NotImplementedError``)."""
    if isinstance(M, PointCloud) or getattr(M, "ndim", 2) != 2:
        raise NotImplementedError("c: a reference measure is supported for a dense 2-D M only")
    xp = array_namespace(M=M, c=c)
    M = xp.asarray(M, dtype=np.float64)
    c = xp.asarray(c, dtype=np.float64)
    if c.shape != M.shape:
        raise ValueError(f"c must have the shape of M {M.shape}, got {c.shape}")
    if not bool(xp.isfinite(c).all()) or not bool((c > 0).all()):
        raise ValueError("c (the reference measure) must be positive and finite")
    return xp, M, c


def _as_cost(xp, M):
    """``(M, cost_range, forbidden)``: a float32/float64 cost, checked (``+inf``
    entries, which forbid, allowed: ``forbidden`` says whether there are any;
    ``cost_range`` is that of the finite entries); a 2-D cost C- or
    F-contiguous, a batch ``(B, n, m)`` of costs C-contiguous."""
    if M is None:
        raise ValueError("M must be a 2-D array (or a 3-D batch), got None")
    M = xp.asarray(M)
    if M.dtype.kind not in "fiub":
        raise TypeError(f"M must hold real numbers, got dtype {M.dtype}")
    if M.dtype not in (np.float32, np.float64):
        M = M.astype(np.float64)
    if M.ndim not in (2, 3) or 0 in M.shape:
        raise ValueError(f"M must be a non-empty 2-D array (or a 3-D batch of them), got shape {M.shape}")
    if not readable_in_place(M):
        M = xp.ascontiguousarray(M)
    # min and max propagate NaN and inf: two reductions, no n x m mask
    lo, hi = float(M.min()), float(M.max())
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError("M must not contain NaN")
    if lo == -math.inf:
        raise ValueError("M must not contain -inf (+inf marks a forbidden entry: no mass goes there)")
    forbidden = hi == math.inf
    if forbidden:  # the range of the finite entries
        hi = _finite_max(xp, M)
        if hi == -math.inf:
            raise ValueError("M must have a finite entry (every entry is +inf: nothing can be transported)")
    return M, hi - lo, forbidden


def _unreachable(xp, M, a, b):
    """Positive masses with no finite cost to a positive mass on the other
    side: boolean ``(rows, cols)`` for one ``(n, m)`` cost, by blocks of rows."""
    n, m = M.shape
    row_reach, col_reach = xp.zeros(n, dtype=bool), xp.zeros(m, dtype=bool)
    step = max(1, (1 << 18) // m)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        finite = M[rows] < np.inf
        row_reach[rows] = (finite & (b > 0)[None, :]).any(axis=1)
        col_reach |= (finite & (a[rows] > 0)[:, None]).any(axis=0)
    return (a > 0) & ~row_reach, (b > 0) & ~col_reach


def _drop_unreachable_masses(prob):
    """A cost with forbidden (``+inf``) entries: masses that no finite cost links
    to a positive mass on the other side cannot be transported.

    On an exact (balanced) side that makes the problem infeasible: a
    ``ValueError`` naming the first such entry. On a KL-relaxed side the
    optimal plan simply leaves it empty: its mass is set to zero here (the
    plan and POT's value are unchanged by it), repeatedly, since emptying one
    row can leave a column without partners. Problems whose forbidden entries
    only break Hall's condition (a group of rows with too few partners) pass
    here, and are caught when the solve does not converge
    (:func:`fastsinkhorn.algorithms.exact.feasibility.check_transportable`).
    """
    xp, M = prob.xp, prob.geom.M
    prob.a, prob.b = prob.a.copy(), prob.b.copy()  # (fresh copies may be read-only broadcasts)
    names = prob.oriented(("a", "row"), ("b", "column"))
    batch = prob.shape[0] if len(prob.shape) == 3 else None
    for p in range(batch or 1):
        at = (p,) if batch is not None else ()
        problem = f" in problem {p}" if batch is not None else ""
        while True:
            dead = _unreachable(xp, M[at] if M.ndim == 3 else M, prob.a[at], prob.b[at])
            if not (bool(dead[0].any()) or bool(dead[1].any())):
                break
            for side_dead, mass, rho, (name, axis) in zip(dead, (prob.a, prob.b), (prob.rho_a, prob.rho_b), names):
                if not bool(side_dead.any()):
                    continue
                i = int(xp.argmax(side_dead))
                if math.isinf(rho):
                    raise ValueError(
                        f"M: {axis} {i}{problem} has mass ({name}[{i}] > 0) but no finite cost to a "
                        f"{'column' if axis == 'row' else 'row'} of positive mass (+inf entries forbid): "
                        "the masses cannot be transported")
                mass[at][side_dead] = 0.0
        for mass, (name, _) in zip((prob.a, prob.b), names):
            if not bool((mass[at] > 0).any()):
                raise ValueError(f"M: no mass of {name}{problem} has a finite cost to the other side "
                                 "(+inf entries forbid): nothing can be transported")


def _finite_max(xp, M):
    """Largest finite entry of ``M`` (``-inf`` if none), by blocks: no n x m mask."""
    flat = M.T if solved_transposed(M) else M.reshape(-1, M.shape[-1])
    step = max(1, (1 << 18) // flat.shape[1])
    hi = -math.inf
    for start in range(0, flat.shape[0], step):
        block = flat[start:start + step]
        hi = max(hi, float(xp.where(block < xp.inf, block, -xp.inf).max()))
    return hi


def _as_mass(xp, w, batch, size, name, against):
    """Masses as a fresh float64 ``(size,)`` array, or ``(B, size)`` for a batch
    (one row per problem; a 1-D ``w`` is shared by every problem)."""
    shape = (*batch, size)
    if w is None or (hasattr(w, "__len__") and len(w) == 0):
        return xp.full(shape, 1.0 / size)
    w = xp.asarray(w)
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)  # always a fresh float64 copy
    if w.shape not in ((size,), shape):
        want = f"({size},)" + (f" or {shape}" if batch else "")
        raise ValueError(f"{name} must have shape {want} to match {against}, got {w.shape}")
    if not bool(xp.isfinite(w).all()):
        raise ValueError(f"{name} must not contain NaN or inf")
    if bool((w < 0).any()):
        raise ValueError(f"{name} must be non-negative (masses), got min {float(w.min())!r}")
    if not bool((w.sum(axis=-1) > 0).all()):
        raise ValueError(f"{name} must have a positive sum" + (" in every problem" if batch else ""))
    return xp.ascontiguousarray(xp.broadcast_to(w, shape))


def tolerance_floor(dtype, shape):
    """Smallest L1 marginal error worth asking for in ``dtype``.

    float64: rounding of sums of ``max(n, m)`` terms; float32: rounding of the
    stored plan (internal sums are float64 either way).
    """
    eps = float(np.finfo(dtype).eps)
    if dtype == np.float32:
        return 10 * eps
    return 10 * eps * math.sqrt(max(shape))


#: Default ``tol`` of entropic OT (a bound on the L1 marginal error) per dtype
#: name of the cost: the one definition that ``solve``, the demo and the
#: benchmarks use (POT's drop-ins keep POT's own defaults, ``stopThr``).
DEFAULT_TOL = {"float64": 1e-9, "float32": 1e-5}
#: Default ``tol`` of exact OT (:func:`~fastsinkhorn.solve_exact`), another
#: quantity: reduced costs down to ``-DEFAULT_EXACT_TOL * s`` count as
#: non-negative, ``s`` the largest cost of the basis (a few roundings of
#: ``M_ij - u_i - v_j`` along the basis' paths).
DEFAULT_EXACT_TOL = 1e-12


def default_tol(dtype):
    """:data:`DEFAULT_TOL` for ``dtype`` (a dtype or its name)."""
    return DEFAULT_TOL[np.dtype(dtype).name]


def effective_tol(tol, dtype, shape, given="tol"):
    """Default ``tol`` per dtype, raised to :func:`tolerance_floor` when below it.

    ``given`` names the argument the caller set (``"tol"``, POT's
    ``"stopThr"``): raising it warns, naming it. ``None`` says that ``tol``
    is the entry point's own default, not the user's (POT's ``stopThr=1e-9``
    on a float32 problem): it is raised silently.

    ``tol = 0`` is kept: the solve then runs ``max_iter`` iterations (a common
    way to time a fixed number of iterations).
    """
    if tol is None:
        tol = default_tol(dtype)
    check_non_negative(tol, given or "tol")
    floor = tolerance_floor(dtype, shape)
    if 0 < tol < floor:
        if given:
            warnings.warn(
                f"{given}={tol:.1e} is below what {np.dtype(dtype).name} can reach for a "
                f"{shape[0]}x{shape[1]} problem; using {given}={floor:.1e}",
                UserWarning,
                stacklevel=4,
            )
        tol = floor
    return float(tol)
