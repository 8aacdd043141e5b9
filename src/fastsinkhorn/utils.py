"""POT's ``ot.utils``: the helpers we provide (``dist``, ``unif``), at POT's module path."""

from .pot.entropic import dist
from .pot.utils import unif

__all__ = ["dist", "unif"]
