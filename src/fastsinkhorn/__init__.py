"""fastsinkhorn: fast, log-stable entropic optimal transport.

Native API: :func:`solve` returns an :class:`OTResult`, for a dense cost or
a :class:`PointCloud` (costs computed on the fly) or a :class:`Grid`
(histograms on a regular grid, its cost separable by axis); :func:`solve_sample`
starts from two samples; :func:`solve_barycenter` computes fixed-support
entropic barycenters (dense costs or grids). POT drop-ins (``import fastsinkhorn as ot``):
:func:`sinkhorn`, :func:`sinkhorn2`, :func:`dist`, :func:`unif`,
:func:`sinkhorn_unbalanced`, :func:`sinkhorn_unbalanced2`, :func:`barycenter`,
:func:`barycenter_unbalanced`, exact OT
(:func:`solve_exact`, :func:`emd`, :func:`emd2`), and POT's module paths:
:mod:`~fastsinkhorn.bregman`, :mod:`~fastsinkhorn.lp`, :mod:`~fastsinkhorn.utils`,
:mod:`~fastsinkhorn.solvers`, :mod:`~fastsinkhorn.unbalanced`, :mod:`~fastsinkhorn.batch`.
"""

from . import batch, bregman, solvers, unbalanced, utils
from .algorithms.barycenter_problem import solve_barycenter
from .core.result import ConvergenceWarning, OTResult, Status
from .geometry import Grid, PointCloud
from .geometry.distances import dist
from .geometry.lazy_plan import LazyPlan
from .pot.barycenters import barycenter
from .pot.entropic import sinkhorn, sinkhorn2
from .pot.utils import unif
from .solvers import METHODS, choose_method, solve, solve_sample
from .unbalanced import barycenter_unbalanced, sinkhorn_unbalanced, sinkhorn_unbalanced2

__version__ = "0.1.0"
__all__ = ["solve", "solve_sample", "batch", "bregman", "lp", "solvers", "unbalanced", "utils",
           "sinkhorn_unbalanced", "sinkhorn_unbalanced2",
           "Grid", "PointCloud", "LazyPlan", "sinkhorn", "sinkhorn2", "dist", "unif", "OTResult", "Status",
           "ConvergenceWarning", "METHODS", "choose_method", "__version__",
           "solve_exact", "ExactResult", "emd", "emd2", "barycenter", "solve_barycenter",
           "barycenter_unbalanced"]

#: Exact OT loads Numba and SciPy at import: its names, and the module ``lp``
#: (POT's ``ot.lp``), are resolved on first use, so that ``import fastsinkhorn``
#: stays light (NumPy only).
_LAZY = {"solve_exact": ".algorithms.exact.solver", "ExactResult": ".algorithms.exact.solver",
         "emd": ".pot.exact", "emd2": ".pot.exact"}
_LAZY_MODULES = {"lp": ".lp"}


def __getattr__(name):
    if name in _LAZY or name in _LAZY_MODULES:
        import importlib

        value = (importlib.import_module(_LAZY_MODULES[name], __name__) if name in _LAZY_MODULES
                 else getattr(importlib.import_module(_LAZY[name], __name__), name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
