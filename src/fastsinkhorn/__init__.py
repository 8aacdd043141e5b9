"""fastsinkhorn: fast, log-stable entropic optimal transport.

Native API: :func:`solve` returns an :class:`OTResult`, for a dense cost or
a :class:`PointCloud` (costs computed on the fly); :func:`solve_sample`
starts from two samples. POT drop-ins:
:func:`sinkhorn`, :func:`sinkhorn2`, :func:`dist`, :func:`sinkhorn_unbalanced`,
:func:`sinkhorn_unbalanced2`, the modules :mod:`~fastsinkhorn.unbalanced` and
:mod:`~fastsinkhorn.batch`, and exact OT: :func:`solve_exact`, :func:`emd`,
:func:`emd2` (``import fastsinkhorn as ot``).
"""

from .pot.entropic import dist, sinkhorn, sinkhorn2
from .core.result import ConvergenceWarning, OTResult, Status
from . import batch, unbalanced
from .unbalanced import sinkhorn_unbalanced, sinkhorn_unbalanced2
from .geometry.lazy_plan import LazyPlan
from .solvers import METHODS, choose_method, solve, solve_sample
from .geometry import PointCloud

__version__ = "0.1.0"
__all__ = ["solve", "solve_sample", "batch", "unbalanced", "sinkhorn_unbalanced", "sinkhorn_unbalanced2",
           "PointCloud", "LazyPlan", "sinkhorn", "sinkhorn2", "dist", "OTResult", "Status",
           "ConvergenceWarning", "METHODS", "choose_method", "__version__",
           "solve_exact", "ExactResult", "emd", "emd2"]

#: Exact OT loads Numba and SciPy at import: its names are resolved on first use,
#: so that ``import fastsinkhorn`` stays light (NumPy only).
_LAZY = {"solve_exact": ".algorithms.exact.solver", "ExactResult": ".algorithms.exact.solver",
         "emd": ".pot.exact", "emd2": ".pot.exact"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
