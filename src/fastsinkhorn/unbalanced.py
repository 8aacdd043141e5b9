"""POT's ``ot.unbalanced``: unbalanced Sinkhorn drop-ins (KL-relaxed marginals)."""

from .pot.unbalanced import (
    sinkhorn_knopp_unbalanced,
    sinkhorn_stabilized_unbalanced,
    sinkhorn_unbalanced,
    sinkhorn_unbalanced2,
    sinkhorn_unbalanced_translation_invariant,
)

__all__ = ["sinkhorn_unbalanced", "sinkhorn_unbalanced2", "sinkhorn_knopp_unbalanced",
           "sinkhorn_stabilized_unbalanced", "sinkhorn_unbalanced_translation_invariant"]
