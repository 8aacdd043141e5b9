"""Input checking and normalisation, shared by every entry point.

Nothing here writes into the caller's arrays: masses are copied to float64,
and the cost is only ever read (at most converted once when its dtype is not
float32/float64 or it is not contiguous).
"""

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._arrays import array_library
from .backends import BACKENDS, get_backend


@dataclass
class PreparedProblem:
    """A validated problem as the solvers see it (internal).

    ``M`` is C-contiguous. When the caller's cost was F-ordered the problem is
    stored transposed (``transposed=True``): the solution of the transposed
    problem is the transposed solution, and no copy of the cost is made.
    """

    M: Any
    a: Any  # float64, sums equal to b's
    b: Any
    reg: float
    xp: Any
    backend: Any
    transposed: bool = False
    cost_range: float = 0.0  # max(M) - min(M), for the auto rule

    @property
    def dtype(self):
        return self.M.dtype

    @property
    def log_a(self):
        with np.errstate(divide="ignore"):
            return self.xp.log(self.a)

    @property
    def log_b(self):
        with np.errstate(divide="ignore"):
            return self.xp.log(self.b)


def check_reg(reg):
    """Return ``reg`` as a float, or raise ``ValueError`` naming it."""
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or not math.isfinite(reg) or reg <= 0:
        raise ValueError(f"reg must be a positive finite number, got {reg!r}")
    return float(reg)


def resolve_backend(backend, library):
    """Map ``backend="auto"`` to the arrays' library; check explicit choices."""
    if backend == "auto":
        return "gpu" if library == "cupy" else "cpu"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    if library == "cupy" and backend != "gpu":
        raise TypeError(f"backend={backend!r} needs NumPy arrays, got CuPy arrays; use backend='gpu' or 'auto'")
    return backend


def prepare_problem(M, a, b, reg, backend="auto"):
    """Validate ``(M, a, b, reg)`` and return a :class:`PreparedProblem`.

    Raises
    ------
    TypeError
        CuPy and NumPy arrays mixed; non-numeric input.
    ValueError
        Wrong shapes, NaN/inf, negative masses, masses with different sums,
        ``reg`` not positive and finite, unknown backend.
    """
    library = array_library(M=M, a=a, b=b)
    name = resolve_backend(backend, library)
    be = get_backend(name)
    xp = be.xp
    if library == "numpy" and name == "gpu":  # host arrays on the GPU backend
        M, a, b = (None if x is None else xp.asarray(np.asarray(x)) for x in (M, a, b))
    reg = check_reg(reg)
    M, cost_range = _as_cost(xp, M)
    n, m = M.shape
    a = _as_mass(xp, a, n, "a", "M.shape[0]")
    b = _as_mass(xp, b, m, "b", "M.shape[1]")
    sa, sb = float(a.sum()), float(b.sum())
    if abs(sa - sb) > np.sqrt(np.finfo(M.dtype).eps) * max(sa, sb):
        raise ValueError(f"a and b must have equal sums, got sum(a)={sa!r} and sum(b)={sb!r}")
    b = b * (sa / sb)  # remove the rounding-level mismatch so tol is reachable
    transposed = not M.flags.c_contiguous
    if transposed:  # F-ordered: solve the transposed problem, no copy
        M, a, b = M.T, b, a
    return PreparedProblem(M=M, a=a, b=b, reg=reg, xp=xp, backend=be, transposed=transposed,
                   cost_range=cost_range)


def _as_cost(xp, M):
    if M is None:
        raise ValueError("M must be a 2-D array, got None")
    M = xp.asarray(M)
    if M.dtype.kind not in "fiub":
        raise TypeError(f"M must hold real numbers, got dtype {M.dtype}")
    if M.dtype not in (np.float32, np.float64):
        M = M.astype(np.float64)
    if M.ndim != 2 or 0 in M.shape:
        raise ValueError(f"M must be a non-empty 2-D array, got shape {M.shape}")
    if not (M.flags.c_contiguous or M.flags.f_contiguous):
        M = xp.ascontiguousarray(M)
    # min and max propagate NaN and inf: two reductions, no n x m mask
    lo, hi = float(M.min()), float(M.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("M must not contain NaN or inf")
    return M, hi - lo


def _as_mass(xp, w, size, name, against):
    if w is None or (hasattr(w, "__len__") and len(w) == 0):
        return xp.full(size, 1.0 / size)
    w = xp.asarray(w)
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)  # always a fresh float64 copy
    if w.ndim != 1 or w.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size},) to match {against}, got {w.shape}")
    if not bool(xp.isfinite(w).all()):
        raise ValueError(f"{name} must not contain NaN or inf")
    if bool((w < 0).any()):
        raise ValueError(f"{name} must be non-negative (masses), got min {float(w.min())!r}")
    if not float(w.sum()) > 0:
        raise ValueError(f"{name} must have a positive sum")
    return w


def tolerance_floor(dtype, shape):
    """Smallest L1 marginal error worth asking for in ``dtype``.

    float64: rounding of sums of ``max(n, m)`` terms; float32: rounding of the
    stored plan (internal sums are float64 either way).
    """
    eps = float(np.finfo(dtype).eps)
    if dtype == np.float32:
        return 10 * eps
    return 10 * eps * math.sqrt(max(shape))


def effective_tol(tol, dtype, shape):
    """Default ``tol`` per dtype, raised to :func:`tolerance_floor` with a warning."""
    if tol is None:
        tol = 1e-5 if dtype == np.float32 else 1e-9
    if not (isinstance(tol, numbers.Real) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    floor = tolerance_floor(dtype, shape)
    if tol < floor:
        warnings.warn(
            f"tol={tol:.1e} is below what {np.dtype(dtype).name} can reach for a "
            f"{shape[0]}x{shape[1]} problem; using tol={floor:.1e}",
            UserWarning,
            stacklevel=4,
        )
        tol = floor
    return float(tol)
