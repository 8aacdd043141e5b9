"""POT's ``ot.unbalanced``: unbalanced Sinkhorn and barycenter drop-ins (KL-relaxed marginals)."""

from .pot.barycenters import barycenter_unbalanced, barycenter_unbalanced_sinkhorn, barycenter_unbalanced_stabilized
from .pot.unbalanced import (
    sinkhorn_knopp_unbalanced,
    sinkhorn_stabilized_unbalanced,
    sinkhorn_unbalanced,
    sinkhorn_unbalanced2,
    sinkhorn_unbalanced_translation_invariant,
)

__all__ = ["sinkhorn_unbalanced", "sinkhorn_unbalanced2", "sinkhorn_knopp_unbalanced",
           "sinkhorn_stabilized_unbalanced", "sinkhorn_unbalanced_translation_invariant",
           "barycenter_unbalanced", "barycenter_unbalanced_sinkhorn", "barycenter_unbalanced_stabilized"]
