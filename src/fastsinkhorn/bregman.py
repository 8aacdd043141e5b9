"""POT's ``ot.bregman``: the entropic OT drop-ins, at POT's module path.

``sinkhorn`` and ``sinkhorn2`` take POT's ``method`` names; the per-method
functions take the signatures of POT's functions of the same names. All run
our best method for the problem (see :func:`fastsinkhorn.sinkhorn`). The
empirical solvers (:mod:`fastsinkhorn.pot.empirical`) start from samples; as
in POT, they are exported here and not at the top level. The fixed-support
barycenters (:mod:`fastsinkhorn.pot.barycenters`) run one log-domain driver;
``barycenter`` is also at the top level, as POT's ``ot.barycenter``.
"""

from .pot.barycenters import (
    barycenter,
    barycenter_debiased,
    barycenter_sinkhorn,
    barycenter_stabilized,
    convolutional_barycenter2d,
    convolutional_barycenter2d_debiased,
)
from .pot.empirical import empirical_sinkhorn, empirical_sinkhorn2, empirical_sinkhorn_divergence
from .pot.entropic import sinkhorn, sinkhorn2
from .pot.sinkhorn_methods import (
    greenkhorn,
    sinkhorn_epsilon_scaling,
    sinkhorn_knopp,
    sinkhorn_log,
    sinkhorn_stabilized,
)

__all__ = ["sinkhorn", "sinkhorn2", "sinkhorn_knopp", "sinkhorn_log", "sinkhorn_stabilized",
           "sinkhorn_epsilon_scaling", "greenkhorn", "empirical_sinkhorn", "empirical_sinkhorn2",
           "empirical_sinkhorn_divergence", "barycenter", "barycenter_sinkhorn", "barycenter_stabilized",
           "barycenter_debiased", "convolutional_barycenter2d", "convolutional_barycenter2d_debiased"]
