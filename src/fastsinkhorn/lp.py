"""POT's ``ot.lp``: exact OT drop-ins (``emd``, ``emd2``), at POT's module path.

Importing this module loads Numba and SciPy (the exact solver), so
``import fastsinkhorn`` does not import it: ``fastsinkhorn.lp`` is imported
on first access.
"""

from .pot.exact import emd, emd2

__all__ = ["emd", "emd2"]
