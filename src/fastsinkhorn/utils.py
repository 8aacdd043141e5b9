"""POT's ``ot.utils``: the helpers we provide (``dist``, ``unif``), at POT's module path."""

from .geometry.distances import dist
from .pot.utils import unif

__all__ = ["dist", "unif"]
