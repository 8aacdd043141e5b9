"""fastsinkhorn: fast, log-stable entropic optimal transport.

Native API: :func:`solve` returns an :class:`OTResult`. POT drop-ins:
:func:`sinkhorn`, :func:`sinkhorn2`, :func:`dist` (``import fastsinkhorn as ot``).
"""

from ._pot import dist, sinkhorn, sinkhorn2
from ._result import ConvergenceWarning, OTResult, Status
from ._solve import METHODS, choose_method, solve

__version__ = "0.1.0"
__all__ = ["solve", "sinkhorn", "sinkhorn2", "dist", "OTResult", "Status",
           "ConvergenceWarning", "METHODS", "choose_method", "__version__"]
