"""The kernel contract every backend implements, as a type.

The drivers (``_sinkhorn``, ``_sns``) call only these members, plus ``xp``
for O(n) vector work. :class:`~fastsinkhorn.backends._reference.ReferenceBackend`
documents each method's semantics and is the oracle the other backends are
tested against (``tests/test_contract.py`` runs every member on every
available backend).
"""

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class KernelBackend(Protocol):
    """O(nm) kernels behind the solvers; see ``ReferenceBackend`` for semantics."""

    name: str
    xp: Any  # numpy or cupy
    check_every: int  # iterations between host-side convergence checks

    def lse_rows(self, M, g, reg): ...

    def lse_cols(self, M, f, reg): ...

    def plan(self, M, f, g, reg, out): ...

    def scaling_pass(self, K, v, a, u): ...

    def scale(self, K, u, v, out): ...

    def dense_pass(self, M, f, g, reg, k): ...

    def ell_matvec(self, idx, val, x): ...

    def ell_rmatvec(self, idx, val, y, m): ...
