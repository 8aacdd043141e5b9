"""fastsinkhorn: fast, log-stable entropic optimal transport.

Native API: :func:`solve` returns an :class:`OTResult`, for a dense cost or
a :class:`PointCloud` (costs computed on the fly); :func:`solve_sample`
starts from two samples. POT drop-ins:
:func:`sinkhorn`, :func:`sinkhorn2`, :func:`dist`, :func:`sinkhorn_unbalanced`,
:func:`sinkhorn_unbalanced2`, the modules :mod:`~fastsinkhorn.unbalanced` and
:mod:`~fastsinkhorn.batch` (``import fastsinkhorn as ot``).
"""

from ._pot import dist, sinkhorn, sinkhorn2
from ._result import ConvergenceWarning, OTResult, Status
from . import batch, unbalanced
from .unbalanced import sinkhorn_unbalanced, sinkhorn_unbalanced2
from ._lazy_plan import LazyPlan
from ._solve import METHODS, choose_method, solve, solve_sample
from .geometry import PointCloud
from ._exact import ExactResult, solve_exact
from ._pot_exact import emd, emd2

__version__ = "0.1.0"
__all__ = ["solve", "solve_sample", "batch", "unbalanced", "sinkhorn_unbalanced", "sinkhorn_unbalanced2",
           "PointCloud", "LazyPlan", "sinkhorn", "sinkhorn2", "dist", "OTResult", "Status",
           "ConvergenceWarning", "METHODS", "choose_method", "__version__",
           "solve_exact", "ExactResult", "emd", "emd2"]
